//! Payloads of the `RESTProbe` topic.

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
    /// Timeout for the whole call in milliseconds (default 30 000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// A request body: text sent as is, or JSON serialized (and `content-type` defaulted to
/// `application/json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Where the time went, measured on the MID.
    pub timings: RestTimings,
}

/// Timings of one REST call as the MID saw them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestTimings {
    /// Request sent → response headers received.
    pub headers_ms: f64,
    /// Request sent → body fully read.
    pub total_ms: f64,
}
