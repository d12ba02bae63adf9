//! A typed client of the admin API, used by `openmid ctl`, the demo, the test kit and
//! the benchmarks — so every caller speaks the API exactly as users do. A crate of its
//! own: a caller of the API needs the wire types and HTTPS, not the server.

pub mod audit;
mod connections;
mod discovery;
pub mod follow;
mod imports;
mod metrics;
mod queue;
mod registry;

use openmid_proto::alias::{Alias, AliasInfo, CredentialInfo};
use openmid_proto::api::{
    ActionPending, ActionResult, ClusterInfo, CommandAction, EnrollmentToken, ErrorBody, MidInfo,
    NewCluster, NewCredential, NewEnrollmentToken, NewOutput, ProfileUpdate, RecordPage,
    RecordQuery, RestAction, SoapAction, StatusChange,
};
use openmid_proto::command::CommandResponse;
use openmid_proto::ecc::EccRecord;
use openmid_proto::encode_path_segment as encode;
use openmid_proto::rest::RestResponse;
use openmid_proto::secret::Secret;
use openmid_proto::soap::SoapResponse;
use openmid_proto::trust::{Trust, TrustError, client_config};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Errors of API calls.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The instance answered with an error.
    #[error("{status}: {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The request did not get an answer. The cause is the error's `source` (not
    /// repeated in this message, so a printed chain says each thing once).
    #[error("request to {url} failed")]
    Transport {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from {url}: {detail}")]
    Unexpected {
        /// The URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// The base URL is not usable.
    #[error("instance URL `{0}` is not a valid https:// or http:// URL")]
    BadUrl(String),
    /// TLS trust settings are wrong.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A local file (a blob to upload or download) could not be used; the cause is the
    /// error's `source`.
    #[error("{path}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result of an action call: finished, or still running when the wait ran out.
#[derive(Debug, Clone)]
pub enum ActionOutcome<R = RestResponse> {
    /// Finished (HTTP 200).
    Done(Box<ActionResult<R>>),
    /// Still queued or running (HTTP 202).
    Pending(ActionPending),
}

/// Admin API client.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: reqwest::Url,
    token: Secret,
}

impl ApiClient {
    /// A client for the instance at `base_url`, authenticating with the admin `token`.
    pub fn new(base_url: &str, token: Secret, trust: &Trust) -> Result<Self, ClientError> {
        let base = reqwest::Url::parse(base_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| ClientError::BadUrl(base_url.to_string()))?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60));
        if let Some(tls) = client_config(trust)? {
            builder = builder.tls_backend_preconfigured(tls);
        }
        let http = builder.build().map_err(|source| ClientError::Transport {
            url: base_url.to_string(),
            source: source.without_url(),
        })?;
        Ok(Self { http, base, token })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<(StatusCode, T), ClientError> {
        let url = self
            .base
            .join(path)
            .map_err(|_| ClientError::BadUrl(format!("{}{path}", self.base)))?;
        let mut req = self
            .http
            .request(method, url.clone())
            .bearer_auth(self.token.expose())
            .timeout(timeout);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source: source.without_url(),
        })?;
        let status = resp.status();
        Ok((status, answer_json(&url, resp).await?))
    }

    const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    pub(crate) async fn action<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        wait: Duration,
    ) -> Result<ActionOutcome<R>, ClientError> {
        let path = format!("{path}?wait={}", wait.as_secs_f64());
        let timeout = wait + Self::DEFAULT_TIMEOUT;
        let (status, value): (_, serde_json::Value) =
            self.call(method, &path, body, timeout).await?;
        let unexpected = |e: serde_json::Error| ClientError::Unexpected {
            url: format!("{}{path}", self.base),
            detail: e.to_string(),
        };
        if status == StatusCode::ACCEPTED {
            Ok(ActionOutcome::Pending(
                serde_json::from_value(value).map_err(unexpected)?,
            ))
        } else {
            Ok(ActionOutcome::Done(Box::new(
                serde_json::from_value(value).map_err(unexpected)?,
            )))
        }
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (_, value) = self
            .call::<(), _>(Method::GET, path, None, Self::DEFAULT_TIMEOUT)
            .await?;
        Ok(value)
    }

    pub(crate) async fn send<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let (_, value) = self
            .call(method, path, Some(body), Self::DEFAULT_TIMEOUT)
            .await?;
        Ok(value)
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<(), ClientError> {
        let _: (_, serde::de::IgnoredAny) = self
            .call::<(), _>(Method::DELETE, path, None, Self::DEFAULT_TIMEOUT)
            .await?;
        Ok(())
    }
}

fn serde_urlencoded_query(q: &RecordQuery) -> String {
    let limit = q.limit.map(|l| l.to_string());
    let pairs: Vec<String> = [
        ("queue", q.queue.as_deref()),
        ("state", q.state.as_deref()),
        ("agent", q.agent.as_deref()),
        ("topic", q.topic.as_deref()),
        ("correlator", q.correlator.as_deref()),
        ("limit", limit.as_deref()),
        ("after", q.after.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={}", encode(v))))
    .collect();
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Longest a blob upload or download may take (100 MB over a slow link takes minutes).
const BLOB_TIMEOUT: Duration = Duration::from_secs(3600);

impl ApiClient {
    fn blob_url(&self, path: &str) -> Result<reqwest::Url, ClientError> {
        self.base
            .join(path)
            .map_err(|_| ClientError::BadUrl(format!("{}{path}", self.base)))
    }

    /// Uploads `body` as a blob (`POST /api/v1/blobs`), streamed as it comes; name the
    /// answer's id in a REST action's `body_blob`.
    pub async fn upload_blob(
        &self,
        body: reqwest::Body,
    ) -> Result<openmid_proto::blob::BlobRef, ClientError> {
        let url = self.blob_url("api/v1/blobs")?;
        let req = self
            .http
            .post(url.clone())
            .bearer_auth(self.token.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .timeout(BLOB_TIMEOUT)
            .body(body);
        let resp = req.send().await.map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source: source.without_url(),
        })?;
        answer_json(&url, resp).await
    }

    /// Uploads the file at `path` as a blob, streaming it from disk.
    pub async fn upload_blob_file(
        &self,
        path: &std::path::Path,
    ) -> Result<openmid_proto::blob::BlobRef, ClientError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| ClientError::File {
                path: path.to_path_buf(),
                source,
            })?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        self.upload_blob(reqwest::Body::wrap_stream(stream)).await
    }

    /// Downloads blob `id` (`GET /api/v1/blobs/{id}`) into the file `to`, chunk by
    /// chunk. Returns the size and SHA-256 of what was written; a digest that differs
    /// from the one the instance announces is an error.
    pub async fn download_blob(
        &self,
        id: &str,
        to: &std::path::Path,
    ) -> Result<openmid_proto::blob::BlobRef, ClientError> {
        use tokio::io::AsyncWriteExt;
        let url = self.blob_url(&format!("api/v1/blobs/{}", encode(id)))?;
        let transport = |source: reqwest::Error| ClientError::Transport {
            url: url.to_string(),
            source: source.without_url(),
        };
        let file_error = |source| ClientError::File {
            path: to.to_path_buf(),
            source,
        };
        let mut resp = self
            .http
            .get(url.clone())
            .bearer_auth(self.token.expose())
            .timeout(BLOB_TIMEOUT)
            .send()
            .await
            .map_err(transport)?;
        if !resp.status().is_success() {
            return Err(answer_json::<serde::de::IgnoredAny>(&url, resp)
                .await
                .err()
                .unwrap_or_else(|| ClientError::Unexpected {
                    url: url.to_string(),
                    detail: "an error status with a success body".into(),
                }));
        }
        let announced = resp
            .headers()
            .get("x-openmid-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut file = tokio::fs::File::create(to).await.map_err(file_error)?;
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut size = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            digest.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(file_error)?;
        }
        file.flush().await.map_err(file_error)?;
        let sha256 = hex::encode(digest.finish().as_ref());
        if let Some(announced) = announced
            && announced != sha256
        {
            return Err(ClientError::Unexpected {
                url: url.to_string(),
                detail: format!("blob digest {sha256} differs from the announced {announced}"),
            });
        }
        Ok(openmid_proto::blob::BlobRef {
            id: id.to_string(),
            size,
            sha256,
        })
    }
}

/// Reads a JSON answer, or the API error it carries.
async fn answer_json<T: DeserializeOwned>(
    url: &reqwest::Url,
    resp: reqwest::Response,
) -> Result<T, ClientError> {
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source: source.without_url(),
        })?;
    if !status.is_success() {
        return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(e) => ClientError::Api {
                status: status.as_u16(),
                code: e.error.code,
                message: e.error.message,
            },
            Err(_) => ClientError::Unexpected {
                url: url.to_string(),
                detail: format!("HTTP {status} without an error body"),
            },
        });
    }
    // An empty answer (204) reads as `null`.
    let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
    serde_json::from_slice(bytes).map_err(|e| ClientError::Unexpected {
        url: url.to_string(),
        detail: e.to_string(),
    })
}
