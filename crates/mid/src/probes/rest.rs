//! `RESTProbe`: one HTTP(S) request to an internal service.

use super::credentials::Credential;
use super::http::{self, Call, CallBody, SpilledBody};
use super::{JobContext, ProbeContext, ProbeError};
use base64::Engine;
use openmid_proto::rest::{Body, DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, RestRequest, RestResponse};
use std::time::Duration;

/// Makes the request (with the credential and retry policy it names) and reads the
/// whole response (up to the context's cap). A body over the context's
/// `inline_body_bytes` is written to the job's body file instead of memory; it is then
/// returned as the second value, and the response carries no body of its own.
pub async fn run(
    req: RestRequest,
    credential: Option<&Credential>,
    job: &JobContext,
    ctx: &ProbeContext,
) -> Result<(RestResponse, Option<SpilledBody>), ProbeError> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| ProbeError::InvalidInput(format!("`{}` is not an HTTP method", req.method)))?;
    let url = http::parse_url(&req.url)?;
    let timeout_ms = req
        .timeout_ms
        .unwrap_or(DEFAULT_TIMEOUT_MS)
        .clamp(1, MAX_TIMEOUT_MS);
    let mut headers = job.with_trace_header(req.headers);
    let body = match (req.body, req.body_blob) {
        (Some(_), Some(_)) => {
            return Err(ProbeError::InvalidInput(
                "give `body` or `body_blob`, not both".into(),
            ));
        }
        (None, None) => None,
        (None, Some(id)) => Some(CallBody::Blob {
            id,
            output_id: job.id.output_id.clone(),
        }),
        (Some(Body::Text(text)), None) => Some(CallBody::Bytes(bytes::Bytes::from(text))),
        (Some(Body::Json(value)), None) => {
            if !headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type"))
            {
                headers.insert("content-type".into(), "application/json".into());
            }
            Some(CallBody::Bytes(bytes::Bytes::from(value.to_string())))
        }
    };
    let spill_to = ctx
        .outbox_dir
        .as_deref()
        .map(|dir| crate::outbox::body_path(dir, &job.id));
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
            spill_to: spill_to.clone(),
        },
        credential,
    )
    .await?;
    let (body, body_base64) = if answer.spilled.is_some() {
        (None, None)
    } else {
        if let Some(path) = &spill_to {
            // An earlier try of this attempt (a retried status) may have spilled.
            // Unlinked here rather than through `tokio::fs`: almost always there is
            // no such file, which one cached lookup tells, while the blocking pool's
            // hand-off (two thread wake-ups) cost more than the rest of a small call.
            let _ = std::fs::remove_file(path);
        }
        match String::from_utf8(answer.body) {
            Ok(text) => (Some(text), None),
            Err(e) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
            ),
        }
    };
    let response = RestResponse {
        status: answer.status,
        headers: answer.headers,
        body,
        body_base64,
        body_blob: None,
        timings: answer.timings,
        attempts: answer.attempts,
    };
    Ok((response, answer.spilled))
}

/// The `RESTProbe` entry of the [registry](super::registry).
pub struct RestProbe;

impl super::registry::Probe for RestProbe {
    type Contract = openmid_proto::rest::Rest;
    const PROTOCOL: Option<crate::policy::Protocol> = Some(crate::policy::Protocol::Http);

    fn run<'a>(
        &'a self,
        req: RestRequest,
        call: super::registry::Call<'a>,
    ) -> futures::future::BoxFuture<'a, Result<super::registry::Ran<RestResponse>, ProbeError>>
    {
        Box::pin(async move {
            let (response, body_file) = run(req, call.credential, call.job, call.ctx).await?;
            Ok(super::registry::Ran {
                response,
                body_file,
            })
        })
    }
}
