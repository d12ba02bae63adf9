//! Payloads of the `RESTProbe` topic.

use crate::credential::CredentialRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default time a REST call may take, end to end, on the MID.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Longest time a REST call may be given.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// Input of a `RESTProbe` output: one HTTP request the MID makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestRequest {
    /// HTTP method (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body (UTF-8 text; JSON callers send their JSON as a string or object).
    #[serde(default)]
    pub body: Option<Body>,
    /// Id of a blob uploaded to the instance (`POST /api/v1/blobs`) to send as the
    /// body instead of `body`, for bodies too large for a JSON payload. The MID streams
    /// it from the instance on every attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_blob: Option<String>,
    /// Timeout of one attempt in milliseconds (default 30 000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The credential to authenticate with (sealed to the MID at claim time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialRef>,
    /// When and how to try again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// PEM CA certificates the target's TLS certificate must chain to, for internal
    /// CAs (default: the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// The alias the call came through, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Capabilities a MID must offer besides the probe's own (from the alias's
    /// execution settings; used when the instance picks the MID).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mid_capabilities: Vec<String>,
}

impl RestRequest {
    /// A GET of `url` with everything else default.
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: default_method(),
            url: url.into(),
            headers: BTreeMap::new(),
            body: None,
            body_blob: None,
            timeout_ms: None,
            credential: None,
            retry: None,
            ca_pem: None,
            alias: None,
            mid_capabilities: Vec::new(),
        }
    }
}

/// How the MID tries a call again when the target is busy or briefly away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// `none`, `fixed` or `exponential` (default `none`).
    #[serde(default)]
    pub mode: RetryMode,
    /// Retries after the first attempt (default 3, at most 10).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Wait before the first retry, in milliseconds (default 500).
    #[serde(default = "default_delay_ms")]
    pub delay_ms: u64,
    /// Longest wait between two attempts, in milliseconds (default 30 000); also caps
    /// a `Retry-After` the target asks for.
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
    /// Statuses that are retried (default 429, 502, 503, 504).
    #[serde(default = "default_retry_on")]
    pub retry_on: Vec<u16>,
    /// Wait as long as the target's `Retry-After` says (capped by `max_delay_ms`).
    #[serde(default = "default_true")]
    pub honour_retry_after: bool,
    /// Also retry when the target cannot be reached or times out (default true).
    #[serde(default = "default_true")]
    pub on_connect_error: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            mode: RetryMode::None,
            max_retries: default_max_retries(),
            delay_ms: default_delay_ms(),
            max_delay_ms: default_max_delay_ms(),
            retry_on: default_retry_on(),
            honour_retry_after: true,
            on_connect_error: true,
        }
    }
}

impl RetryPolicy {
    /// Most retries a policy may ask for.
    pub const MAX_RETRIES: u32 = 10;
    /// Longest wait a policy may ask for between attempts (10 minutes).
    pub const MAX_DELAY_MS: u64 = 600_000;

    /// The wait before retry number `retry` (1-based), before any `Retry-After`.
    pub fn delay_before(&self, retry: u32) -> u64 {
        let delay = match self.mode {
            RetryMode::None => 0,
            RetryMode::Fixed => self.delay_ms,
            RetryMode::Exponential => {
                let factor = 1u64 << retry.saturating_sub(1).min(20);
                self.delay_ms.saturating_mul(factor)
            }
        };
        delay.min(self.max_delay_ms)
    }

    /// Retries this policy allows.
    pub fn retries(&self) -> u32 {
        match self.mode {
            RetryMode::None => 0,
            _ => self.max_retries,
        }
    }

    /// What is wrong with the policy, as `(field, message)`.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.max_retries > Self::MAX_RETRIES {
            return Some((
                "max_retries",
                format!("must be 0–{}, got {}", Self::MAX_RETRIES, self.max_retries),
            ));
        }
        if self.max_delay_ms > Self::MAX_DELAY_MS {
            return Some((
                "max_delay_ms",
                format!(
                    "must be at most {}, got {}",
                    Self::MAX_DELAY_MS,
                    self.max_delay_ms
                ),
            ));
        }
        if self.delay_ms > self.max_delay_ms {
            return Some(("delay_ms", "must not exceed max_delay_ms".to_string()));
        }
        if let Some(bad) = self.retry_on.iter().find(|s| !(100..=599).contains(*s)) {
            return Some(("retry_on", format!("{bad} is not an HTTP status")));
        }
        None
    }
}

/// The shape of the waits between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryMode {
    /// One attempt only.
    #[default]
    None,
    /// The same wait before every retry.
    Fixed,
    /// The wait doubles before every retry.
    Exponential,
}

fn default_max_retries() -> u32 {
    3
}

fn default_delay_ms() -> u64 {
    500
}

fn default_max_delay_ms() -> u64 {
    30_000
}

fn default_retry_on() -> Vec<u16> {
    vec![429, 502, 503, 504]
}

fn default_true() -> bool {
    true
}

/// A request body: text sent as is, or JSON serialized (and `content-type` defaulted to
/// `application/json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Body {
    /// Sent as is.
    Text(String),
    /// Serialized as JSON.
    Json(serde_json::Value),
}

fn default_method() -> String {
    "GET".to_string()
}

/// Output of a `RESTProbe`: the target's response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// Body as text, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Body as base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The body as a blob on the instance (`GET /api/v1/blobs/{id}`), set instead of
    /// `body`/`body_base64` when it was larger than the MID's `inline_body_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_blob: Option<crate::blob::BlobRef>,
    /// Where the time went, measured on the MID.
    pub timings: RestTimings,
    /// Attempts made (1 without retries).
    #[serde(default = "one")]
    pub attempts: u32,
}

fn one() -> u32 {
    1
}

/// Timings of one REST call as the MID saw them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestTimings {
    /// Request sent → response headers received.
    pub headers_ms: f64,
    /// Request sent → body fully read.
    pub total_ms: f64,
}

/// The `RESTProbe` topic.
pub struct Rest;

impl crate::probe::Contract for Rest {
    const TOPIC: crate::ecc::Topic = crate::ecc::Topic::RESTProbe;
    type Request = RestRequest;
    type Response = RestResponse;

    /// Method, absolute http(s) URL, header syntax, timeout, retry policy, blob id.
    fn validate(req: &RestRequest) -> Result<(), crate::probe::FieldError> {
        use crate::probe::field_error;
        if !crate::probe::is_method(&req.method) {
            return Err(field_error(
                "method",
                format!("`{}` is not an HTTP method", req.method),
            ));
        }
        if let Some(id) = &req.body_blob {
            if req.body.is_some() {
                return Err(field_error(
                    "body_blob",
                    "give `body` or `body_blob`, not both",
                ));
            }
            if !crate::blob::is_valid_blob_id(id) {
                return Err(field_error(
                    "body_blob",
                    format!("`{id}` is not a blob id (POST /api/v1/blobs answers one)"),
                ));
            }
        }
        check_http_call(&req.url, &req.headers, req.timeout_ms, req.retry.as_ref())
    }

    fn target(req: &RestRequest) -> Option<crate::probe::Target> {
        crate::probe::Target::of_url(&req.url)
    }

    fn credential(req: &RestRequest) -> Option<&CredentialRef> {
        req.credential.as_ref()
    }

    fn body_blob(req: &RestRequest) -> Option<&str> {
        req.body_blob.as_deref()
    }
}

/// What every HTTP call (REST or SOAP) must get right: an absolute http(s) URL, valid
/// headers, a timeout within bounds and a sane retry policy.
pub fn check_http_call(
    url: &str,
    headers: &BTreeMap<String, String>,
    timeout_ms: Option<u64>,
    retry: Option<&RetryPolicy>,
) -> Result<(), crate::probe::FieldError> {
    use crate::probe::field_error;
    crate::probe::check_http_url("url", url)?;
    crate::probe::check_headers(headers)?;
    if let Some(t) = timeout_ms
        && (t == 0 || t > MAX_TIMEOUT_MS)
    {
        return Err(field_error(
            "timeout_ms",
            format!("must be 1–{MAX_TIMEOUT_MS}, got {t}"),
        ));
    }
    if let Some((field, message)) = retry.and_then(RetryPolicy::problem) {
        return Err(field_error(&format!("retry.{field}"), message));
    }
    Ok(())
}
