//! Probes: one module per topic, each with one entry point
//! `async fn run(input, ctx) -> Result<Output, ProbeError>`. Adding a probe is a new
//! module and one line in [`run`].

pub mod rest;

use openmid_proto::ecc::Topic;
use std::time::Duration;

/// What every probe may use.
pub struct ProbeContext {
    /// HTTP client for REST/SOAP targets (connection pools are shared across jobs).
    pub http: reqwest::Client,
    /// Largest response body read.
    pub max_response_bytes: usize,
}

impl ProbeContext {
    /// Builds the context. Probe traffic goes straight to internal targets: the proxy
    /// (if any) is only for reaching the instance.
    pub fn new(max_response_bytes: usize) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            max_response_bytes,
        })
    }
}

/// Why a probe failed. The message goes into the input record's `error`, so it must
/// say what failed without carrying secrets.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The payload does not fit the topic.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// This MID has no probe for the topic.
    #[error("this MID ({version}) has no probe for topic {topic}")]
    Unsupported {
        /// The topic.
        topic: Topic,
        /// Our version.
        version: &'static str,
    },
    /// The target could not be reached or answered badly.
    #[error("{0}")]
    Target(String),
    /// The call took longer than allowed.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The response exceeded the size cap.
    #[error(
        "response body exceeds the {limit}-byte limit (max_response_bytes); nothing was truncated, the call is reported as failed"
    )]
    TooLarge {
        /// The cap.
        limit: usize,
    },
}

/// Runs the probe for `topic`.
pub async fn run(
    topic: Topic,
    payload: serde_json::Value,
    ctx: &ProbeContext,
) -> Result<serde_json::Value, ProbeError> {
    fn input<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ProbeError> {
        serde_json::from_value(v).map_err(|e| ProbeError::InvalidInput(e.to_string()))
    }
    fn output<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, ProbeError> {
        serde_json::to_value(v).map_err(|e| ProbeError::InvalidInput(e.to_string()))
    }
    match topic {
        Topic::RESTProbe => output(&rest::run(input(payload)?, ctx).await?),
        other => Err(ProbeError::Unsupported {
            topic: other,
            version: openmid_proto::BUILD_VERSION,
        }),
    }
}
