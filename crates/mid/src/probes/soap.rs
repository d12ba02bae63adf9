//! `SOAPProbe`: one SOAP 1.1 or 1.2 call. The envelope is built here (from the Body's
//! XML or from an operation and its parameters) and the answer taken apart, a Fault
//! into its code, reason and detail rather than an opaque HTTP 500.

use super::credentials::Credential;
use super::http::{self, Call};
use super::soap_xml;
use super::{ProbeContext, ProbeError};
use openmid_proto::rest::{DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS};
use openmid_proto::soap::{SoapRequest, SoapResponse, SoapVersion};
use std::time::Duration;

/// Makes the call and parses the answer.
pub async fn run(
    req: SoapRequest,
    credential: Option<&Credential>,
    ctx: &ProbeContext,
) -> Result<SoapResponse, ProbeError> {
    let url = http::parse_url(&req.url)?;
    let body_xml = match (&req.body, &req.operation) {
        (Some(body), None) => {
            soap_xml::check_body_xml(body)
                .map_err(|e| ProbeError::InvalidInput(format!("body: {e}")))?;
            body.clone()
        }
        (None, Some(operation)) => {
            soap_xml::operation_body(operation, req.namespace.as_deref(), &req.params)
                .map_err(|e| ProbeError::InvalidInput(e.to_string()))?
        }
        _ => {
            return Err(ProbeError::InvalidInput(
                "give `body` or `operation`, exactly one".into(),
            ));
        }
    };
    let envelope = soap_xml::envelope(req.version, &body_xml);
    let mut headers = req.headers.clone();
    let action = req.soap_action.clone().unwrap_or_default();
    let has = |name: &str, headers: &std::collections::BTreeMap<String, String>| {
        headers.keys().any(|k| k.eq_ignore_ascii_case(name))
    };
    match req.version {
        SoapVersion::V1_1 => {
            if !has("content-type", &headers) {
                headers.insert("content-type".into(), "text/xml; charset=utf-8".into());
            }
            if !has("soapaction", &headers) {
                headers.insert("SOAPAction".into(), format!("\"{action}\""));
            }
        }
        SoapVersion::V1_2 => {
            if !has("content-type", &headers) {
                let mut ct = "application/soap+xml; charset=utf-8".to_string();
                if !action.is_empty() {
                    ct.push_str(&format!("; action=\"{action}\""));
                }
                headers.insert("content-type".into(), ct);
            }
        }
    }
    let timeout_ms = req
        .timeout_ms
        .unwrap_or(DEFAULT_TIMEOUT_MS)
        .clamp(1, MAX_TIMEOUT_MS);
    let answer = http::send(
        ctx,
        Call {
            method: reqwest::Method::POST,
            url: url.clone(),
            headers: &headers,
            body: Some(http::CallBody::Bytes(bytes::Bytes::from(envelope))),
            timeout: Duration::from_millis(timeout_ms),
            retry: req.retry.as_ref(),
            ca_pem: req.ca_pem.as_deref(),
            spill_to: None,
        },
        credential,
    )
    .await?;
    let parsed = soap_xml::parse_response(&answer.body).map_err(|e| {
        ProbeError::Target(format!(
            "POST {}: HTTP {} without a SOAP envelope: {e}",
            http::shown_url(&url),
            answer.status
        ))
    })?;
    Ok(SoapResponse {
        status: answer.status,
        headers: answer.headers,
        version: parsed.version,
        body: parsed.body,
        result: parsed.result,
        fault: parsed.fault,
        timings: answer.timings,
    })
}
