//! `RESTProbe`: one HTTP(S) request to an internal service.

use super::credentials::Credential;
use super::http::{self, Call};
use super::{ProbeContext, ProbeError};
use base64::Engine;
use openmid_proto::rest::{Body, DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, RestRequest, RestResponse};
use std::time::Duration;

/// Makes the request (with the credential and retry policy it names) and reads the
/// whole response (up to the context's cap).
pub async fn run(
    req: RestRequest,
    credential: Option<&Credential>,
    ctx: &ProbeContext,
) -> Result<RestResponse, ProbeError> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| ProbeError::InvalidInput(format!("`{}` is not an HTTP method", req.method)))?;
    let url = http::parse_url(&req.url)?;
    let timeout_ms = req
        .timeout_ms
        .unwrap_or(DEFAULT_TIMEOUT_MS)
        .clamp(1, MAX_TIMEOUT_MS);
    let mut headers = req.headers;
    let body = match req.body {
        None => None,
        Some(Body::Text(text)) => Some(bytes::Bytes::from(text)),
        Some(Body::Json(value)) => {
            if !headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")) {
                headers.insert("content-type".into(), "application/json".into());
            }
            Some(bytes::Bytes::from(value.to_string()))
        }
    };
    let answer = http::send(
        ctx,
        Call {
            method,
            url,
            headers: &headers,
            body,
            timeout: Duration::from_millis(timeout_ms),
            retry: req.retry.as_ref(),
            ca_pem: req.ca_pem.as_deref(),
        },
        credential,
    )
    .await?;
    let (body, body_base64) = match String::from_utf8(answer.body) {
        Ok(text) => (Some(text), None),
        Err(e) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
        ),
    };
    Ok(RestResponse {
        status: answer.status,
        headers: answer.headers,
        body,
        body_base64,
        timings: answer.timings,
        attempts: answer.attempts,
    })
}
