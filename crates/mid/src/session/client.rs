//! The MID's HTTPS client for the instance: TLS trust from the config, an optional
//! outbound proxy, credentials and protocol version on every request.

use super::proxy::ProxySettings;
use super::stream::{OpenError, Pushed, Stream};
use crate::config::{MidConfig, Transport};
use openmid_proto::api::ErrorBody;
use openmid_proto::mid::{
    EnrollRequest, EnrollResponse, HeartbeatRequest, HeartbeatResponse, PollRequest, PollResponse,
    ResultsRequest, ResultsResponse,
};
use openmid_proto::secret::Secret;
use openmid_proto::session::{Kind, SESSION_PATH};
use openmid_proto::trust::client_config;
use openmid_proto::{PROTOCOL_HEADER, PROTOCOL_VERSION};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

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
    /// The protocol spoken on the long-poll routes: 1 when the config asks for the
    /// long-poll transport (as the release before the stream), else ours.
    protocol: u32,
    /// Whether to use the session stream at all (`transport`).
    use_stream: bool,
    /// The open session stream, if any.
    stream: std::sync::Mutex<Option<Arc<Stream>>>,
    /// Held while a stream is being opened, so requests wait for one opening.
    opening: tokio::sync::Mutex<()>,
    /// After the stream was found unsupported: the long-poll routes until then.
    stream_off_until: std::sync::Mutex<Option<std::time::Instant>>,
    /// Where express jobs and rescued work coming down the stream go (set by the
    /// session).
    pushed: std::sync::OnceLock<mpsc::Sender<Pushed>>,
}

/// How long a MID sticks to long-polls after finding the stream unsupported before
/// it tries the stream again (an instance upgraded meanwhile, a proxy changed).
const STREAM_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long opening the session stream may take. Every request waits on the opener,
/// so an instance that takes the connection but never answers must not hold them all.
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(20);

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
            protocol: match config.transport {
                Transport::LongPoll => 1,
                Transport::Stream => PROTOCOL_VERSION,
            },
            use_stream: config.transport == Transport::Stream,
            stream: std::sync::Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            stream_off_until: std::sync::Mutex::new(None),
            pushed: std::sync::OnceLock::new(),
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

    /// Sets the session credential (`MID_ID.SECRET`). An open session stream is
    /// closed: the next one opens with the new credential.
    pub fn set_bearer(&self, bearer: Secret) {
        *self.bearer.write().unwrap_or_else(|e| e.into_inner()) = Some(bearer);
        let open = self.stream.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(open) = open {
            open.close();
        }
    }

    /// The protocol version this MID announces at enrollment.
    pub fn protocol(&self) -> u32 {
        self.protocol
    }

    /// What the instance pushes down the session stream (express jobs, work of a
    /// poll given up) goes to `jobs`.
    pub fn take_pushed(&self, jobs: mpsc::Sender<Pushed>) {
        let _ = self.pushed.set(jobs);
    }

    /// Closes the session stream (at the end of the session: the instance then sees
    /// this MID go, as it saw its last request end).
    pub fn close_stream(&self) {
        let open = self.stream.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(open) = open {
            open.close();
        }
    }

    /// Whether requests go by the session stream now.
    pub fn on_stream(&self) -> bool {
        self.stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|s| !s.is_ended())
    }

    /// The open session stream, opening one when there is none: `None` when the
    /// session goes by long-polls (by config, or because the stream is unsupported
    /// on the way to the instance).
    async fn stream(&self) -> Result<Option<Arc<Stream>>, SessionError> {
        if !self.use_stream {
            return Ok(None);
        }
        if let Some(until) = *self
            .stream_off_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            && std::time::Instant::now() < until
        {
            return Ok(None);
        }
        if let Some(open) = self.open_stream() {
            return Ok(Some(open));
        }
        let _opening = self.opening.lock().await;
        if let Some(open) = self.open_stream() {
            return Ok(Some(open));
        }
        let (node, req) = self.request(reqwest::Method::POST, SESSION_PATH, None)?;
        let opened = tokio::time::timeout(
            STREAM_OPEN_TIMEOUT,
            Stream::open(req, node, self.pushed.get().cloned()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(OpenError::Session(SessionError::Unreachable(format!(
                "no answer to the session stream within {} s",
                STREAM_OPEN_TIMEOUT.as_secs()
            ))))
        });
        match opened {
            Ok(stream) => {
                tracing::debug!(node = %self.bases[node], "session stream open");
                *self.stream.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream.clone());
                Ok(Some(stream))
            }
            Err(OpenError::Unsupported(why)) => {
                tracing::warn!(why, "no session stream to the instance: using long-polls");
                *self
                    .stream_off_until
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) =
                    Some(std::time::Instant::now() + STREAM_RETRY_AFTER);
                Ok(None)
            }
            Err(OpenError::Session(e)) => {
                if matches!(e, SessionError::Unreachable(_)) {
                    self.move_on_from(node);
                }
                Err(e)
            }
        }
    }

    /// The stream in use, if it is still open. One that broke sends the next
    /// requests to the next node, as a request without an answer would.
    fn open_stream(&self) -> Option<Arc<Stream>> {
        let mut slot = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(open) if !open.is_ended() => Some(open.clone()),
            Some(ended) => {
                if ended.broke() {
                    self.move_on_from(ended.node);
                }
                *slot = None;
                None
            }
            None => None,
        }
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, SessionError> {
        let (node, req) = self.request(reqwest::Method::POST, path, Some(timeout))?;
        let resp = match req.json(body).send().await {
            Ok(resp) => resp,
            Err(e) => return Err(self.unreachable(node, e).await),
        };
        read_answer(resp).await
    }

    /// A request to `path` on the current node with the protocol version and the
    /// session credential, and which node that is. `timeout` covers the whole
    /// exchange (none for the session stream, which stays open).
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        timeout: Option<Duration>,
    ) -> Result<(usize, reqwest::RequestBuilder), SessionError> {
        let (node, base) = self.base();
        let url = base
            .join(path)
            .map_err(|e| SessionError::Setup(e.to_string()))?;
        let protocol = if path == SESSION_PATH {
            PROTOCOL_VERSION
        } else {
            self.protocol
        };
        let mut req = self
            .http
            .request(method, url)
            .header(PROTOCOL_HEADER, protocol.to_string());
        if let Some(timeout) = timeout {
            req = req.timeout(timeout);
        }
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
            Some(timeout),
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
        let (node, req) = self.request(reqwest::Method::PUT, &path, Some(timeout))?;
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

    /// Sends chunks of a running command's output (an `Output` frame, or
    /// `POST /mid/v1/results/{output}/{attempt}/output`).
    pub async fn post_output(
        &self,
        job: &openmid_proto::mid::JobRef,
        post: &openmid_proto::command_output::OutputPost,
    ) -> Result<openmid_proto::command_output::OutputAck, SessionError> {
        let timeout = Duration::from_secs(60);
        if let Some(stream) = self.stream().await? {
            /// An `OutputFrame` without copying the chunks.
            #[derive(Serialize)]
            struct Frame<'a> {
                output_id: &'a str,
                attempt: u32,
                post: &'a openmid_proto::command_output::OutputPost,
            }
            let frame = Frame {
                output_id: &job.output_id,
                attempt: job.attempt,
                post,
            };
            return stream.call(Kind::Output, &frame, timeout).await;
        }
        let path = format!(
            "mid/v1/results/{}/{}/output",
            openmid_proto::encode_path_segment(&job.output_id),
            job.attempt
        );
        self.post(&path, post, timeout).await
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

    /// Long-polls for work (a poll frame on the session stream).
    pub async fn poll(&self, req: &PollRequest) -> Result<PollResponse, SessionError> {
        let timeout = Duration::from_millis(req.wait_ms) + Duration::from_secs(15);
        if let Some(stream) = self.stream().await? {
            return stream.call(Kind::Poll, req, timeout).await;
        }
        self.post("mid/v1/poll", req, timeout).await
    }

    /// Posts a batch of results.
    pub async fn post_results(
        &self,
        req: &ResultsRequest,
    ) -> Result<ResultsResponse, SessionError> {
        let timeout = Duration::from_secs(60);
        if let Some(stream) = self.stream().await? {
            return stream.call(Kind::Results, req, timeout).await;
        }
        self.post("mid/v1/results", req, timeout).await
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
        let timeout = Duration::from_secs(30);
        if let Some(stream) = self.stream().await? {
            return stream.call(Kind::Heartbeat, req, timeout).await;
        }
        self.post("mid/v1/heartbeat", req, timeout).await
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
pub(super) async fn error_of(resp: reqwest::Response) -> Result<reqwest::Response, SessionError> {
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

pub(super) fn unreachable(e: &reqwest::Error) -> SessionError {
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
