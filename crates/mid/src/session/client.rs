//! The MID's HTTPS client for the instance: TLS trust from the config, an optional
//! outbound proxy, credentials and protocol version on every request.

use super::proxy::ProxySettings;
use crate::config::MidConfig;
use openmid_proto::api::ErrorBody;
use openmid_proto::mid::{
    EnrollRequest, EnrollResponse, HeartbeatRequest, HeartbeatResponse, PollRequest, PollResponse,
    ResultsRequest, ResultsResponse,
};
use openmid_proto::secret::Secret;
use openmid_proto::trust::client_config;
use openmid_proto::{PROTOCOL_HEADER, PROTOCOL_VERSION};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Errors of one session request.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No answer (instance down, network, TLS); try again later.
    #[error("instance unreachable: {0}")]
    Unreachable(String),
    /// The instance refused the request.
    #[error("instance refused ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// Setting the client up failed.
    #[error("{0}")]
    Setup(String),
}

impl SessionError {
    /// Whether retrying cannot help: bad credentials, invalidated, name taken, protocol
    /// mismatch. Other refusals are retried with back-off.
    pub fn is_fatal(&self) -> bool {
        match self {
            SessionError::Refused { status, .. } => matches!(status, 401 | 403 | 409 | 426),
            SessionError::Setup(_) => true,
            SessionError::Unreachable(_) => false,
        }
    }
}

/// Client of `/mid/v1`.
pub struct InstanceClient {
    http: reqwest::Client,
    /// The instance's nodes: `instance_url` first, then `standby_urls`.
    bases: Vec<reqwest::Url>,
    /// The node requests go to; the next one after a request to it got no answer.
    current: std::sync::atomic::AtomicUsize,
    bearer: std::sync::RwLock<Option<Secret>>,
    proxy: Option<ProxySettings>,
}

impl InstanceClient {
    /// Builds the client from the config.
    pub fn new(config: &MidConfig) -> Result<Self, SessionError> {
        let mut bases = vec![
            reqwest::Url::parse(&config.instance_url)
                .map_err(|e| SessionError::Setup(format!("instance_url: {e}")))?,
        ];
        for (i, url) in config.standby_urls.iter().enumerate() {
            bases.push(
                reqwest::Url::parse(url)
                    .map_err(|e| SessionError::Setup(format!("standby_urls[{i}]: {e}")))?,
            );
        }
        let trust = config
            .trust()
            .map_err(|e| SessionError::Setup(e.to_string()))?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_keep_alive_interval(Duration::from_secs(20))
            .http2_keep_alive_while_idle(true)
            .user_agent(format!("openmid-mid/{}", openmid_proto::BUILD_VERSION));
        if let Some(tls) = client_config(&trust).map_err(|e| SessionError::Setup(e.to_string()))? {
            builder = builder.tls_backend_preconfigured(tls);
        }
        let proxy = config
            .proxy
            .as_deref()
            .map(|p| ProxySettings::new(p, config.proxy_password.as_ref()))
            .transpose()
            .map_err(|e| SessionError::Setup(e.to_string()))?;
        if let Some(proxy) = &proxy {
            builder = builder.proxy(
                proxy
                    .proxy()
                    .map_err(|e| SessionError::Setup(e.to_string()))?,
            );
        }
        let http = builder
            .build()
            .map_err(|e| SessionError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            bases,
            current: std::sync::atomic::AtomicUsize::new(0),
            bearer: std::sync::RwLock::new(None),
            proxy,
        })
    }

    /// The node requests go to now, and its index.
    fn base(&self) -> (usize, &reqwest::Url) {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len();
        (i, &self.bases[i])
    }

    /// After a request to node `failed` got no answer, later requests go to the next
    /// node (once per failure of that node: requests failing together move on once).
    fn move_on_from(&self, failed: usize) {
        if self.bases.len() < 2 {
            return;
        }
        let next = (failed + 1) % self.bases.len();
        if self
            .current
            .compare_exchange(
                failed,
                next,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
        {
            tracing::warn!(
                from = %self.bases[failed],
                to = %self.bases[next],
                "instance node did not answer; trying the next one"
            );
        }
    }

    /// A request to node `node` that got no answer: the next request goes to the next
    /// node. Through a proxy that refused the tunnel, the proxy's own answer is added
    /// (reqwest only says the tunnel was unsuccessful).
    async fn unreachable(&self, node: usize, e: reqwest::Error) -> SessionError {
        self.move_on_from(node);
        let SessionError::Unreachable(text) = unreachable(&e) else {
            return unreachable(&e);
        };
        let Some(proxy) = self.proxy.as_ref().filter(|_| text.contains("tunnel")) else {
            return SessionError::Unreachable(text);
        };
        let base = &self.bases[node];
        let target = format!(
            "{}:{}",
            base.host_str().unwrap_or_default(),
            base.port_or_known_default().unwrap_or(443)
        );
        match proxy.diagnose(&target).await {
            Some(status) => SessionError::Unreachable(format!(
                "the proxy refused the tunnel to {target}: it answered `{status}`{}",
                if status.starts_with("407") {
                    " (check the user and proxy_password)"
                } else {
                    ""
                }
            )),
            None => SessionError::Unreachable(text),
        }
    }

    /// Sets the session credential (`MID_ID.SECRET`).
    pub fn set_bearer(&self, bearer: Secret) {
        *self.bearer.write().unwrap_or_else(|e| e.into_inner()) = Some(bearer);
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, SessionError> {
        let (node, req) = self.request(reqwest::Method::POST, path, timeout)?;
        let resp = match req.json(body).send().await {
            Ok(resp) => resp,
            Err(e) => return Err(self.unreachable(node, e).await),
        };
        read_answer(resp).await
    }

    /// A request to `path` on the current node with the protocol version and the
    /// session credential, and which node that is.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        timeout: Duration,
    ) -> Result<(usize, reqwest::RequestBuilder), SessionError> {
        let (node, base) = self.base();
        let url = base
            .join(path)
            .map_err(|e| SessionError::Setup(e.to_string()))?;
        let mut req = self
            .http
            .request(method, url)
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
            .timeout(timeout);
        let bearer = self
            .bearer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(bearer) = bearer {
            req = req.bearer_auth(bearer.expose());
        }
        Ok((node, req))
    }

    /// Streams the request body `blob_id` of the output this MID holds, for sending it
    /// on to a target as it arrives. Returns its length (when the instance says) and
    /// the stream; `timeout` covers the whole transfer.
    pub async fn blob_body(
        &self,
        blob_id: &str,
        output_id: &str,
        timeout: Duration,
    ) -> Result<
        (
            Option<u64>,
            impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + use<>,
        ),
        SessionError,
    > {
        if !openmid_proto::blob::is_valid_blob_id(blob_id) {
            return Err(SessionError::Setup(format!("`{blob_id}` is not a blob id")));
        }
        let (node, req) = self.request(
            reqwest::Method::GET,
            &format!(
                "mid/v1/blobs/{blob_id}?output={}",
                openmid_proto::encode_path_segment(output_id)
            ),
            timeout,
        )?;
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) => return Err(self.unreachable(node, e).await),
        };
        let resp = error_of(resp).await?;
        Ok((resp.content_length(), resp.bytes_stream()))
    }

    /// Uploads the response body of `job` from the file at `path`, streaming it
    /// (`PUT /mid/v1/results/{output}/{attempt}/body`).
    pub async fn upload_body(
        &self,
        job: &openmid_proto::mid::JobRef,
        path: &std::path::Path,
    ) -> Result<openmid_proto::blob::BlobRef, SessionError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| SessionError::Setup(format!("{}: {e}", path.display())))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| SessionError::Setup(format!("{}: {e}", path.display())))?
            .len();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        // Generous: the body may be hundreds of megabytes on a slow uplink.
        let timeout = Duration::from_secs(120) + Duration::from_millis(len / 1_000);
        let path = format!(
            "mid/v1/results/{}/{}/body",
            openmid_proto::encode_path_segment(&job.output_id),
            job.attempt
        );
        let (node, req) = self.request(reqwest::Method::PUT, &path, timeout)?;
        let resp = req
            .header(reqwest::header::CONTENT_LENGTH, len)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        let resp = match resp {
            Ok(resp) => resp,
            Err(e) => return Err(self.unreachable(node, e).await),
        };
        read_answer(resp).await
    }

    /// Posts chunks of a running command's output
    /// (`POST /mid/v1/results/{output}/{attempt}/output`).
    pub async fn post_output(
        &self,
        job: &openmid_proto::mid::JobRef,
        post: &openmid_proto::command_output::OutputPost,
    ) -> Result<openmid_proto::command_output::OutputAck, SessionError> {
        let path = format!(
            "mid/v1/results/{}/{}/output",
            openmid_proto::encode_path_segment(&job.output_id),
            job.attempt
        );
        self.post(&path, post, Duration::from_secs(60)).await
    }

    /// Forwards a batch of scraped samples (`POST /mid/v1/metrics`).
    pub async fn post_samples(
        &self,
        batch: &openmid_proto::metrics::SampleBatch,
    ) -> Result<openmid_proto::metrics::SampleBatchAck, SessionError> {
        self.post("mid/v1/metrics", batch, Duration::from_secs(60))
            .await
    }

    /// Enrolls with a one-time token.
    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, SessionError> {
        self.post("mid/v1/enroll", req, Duration::from_secs(30))
            .await
    }

    /// Long-polls for work.
    pub async fn poll(&self, req: &PollRequest) -> Result<PollResponse, SessionError> {
        let timeout = Duration::from_millis(req.wait_ms) + Duration::from_secs(15);
        self.post("mid/v1/poll", req, timeout).await
    }

    /// Posts a batch of results.
    pub async fn post_results(
        &self,
        req: &ResultsRequest,
    ) -> Result<ResultsResponse, SessionError> {
        self.post("mid/v1/results", req, Duration::from_secs(60))
            .await
    }

    /// Sends a new key pair and secret (authenticated with the current ones).
    pub async fn rekey(&self, req: &openmid_proto::mid::RekeyRequest) -> Result<(), SessionError> {
        let _: serde::de::IgnoredAny = self
            .post("mid/v1/rekey", req, Duration::from_secs(30))
            .await?;
        Ok(())
    }

    /// Heartbeats.
    pub async fn heartbeat(
        &self,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, SessionError> {
        self.post("mid/v1/heartbeat", req, Duration::from_secs(30))
            .await
    }
}

/// A JSON answer (an empty one reads as `null`), or the session error it carries.
async fn read_answer<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, SessionError> {
    let bytes = error_of(resp)
        .await?
        .bytes()
        .await
        .map_err(|e| unreachable(&e))?;
    let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
    serde_json::from_slice(bytes)
        .map_err(|e| SessionError::Unreachable(format!("unreadable answer: {e}")))
}

/// The response when it succeeded, else the session error it carries.
async fn error_of(resp: reqwest::Response) -> Result<reqwest::Response, SessionError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let bytes = resp.bytes().await.map_err(|e| unreachable(&e))?;
    let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => ("http".into(), format!("HTTP {status}")),
    };
    if status.is_server_error() {
        return Err(SessionError::Unreachable(format!("{status}: {message}")));
    }
    Err(SessionError::Refused {
        status: status.as_u16(),
        code,
        message,
    })
}

fn unreachable(e: &reqwest::Error) -> SessionError {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    SessionError::Unreachable(text)
}
