//! Checks an output's payload against its topic before it is queued, so a malformed
//! request is refused at the API with the field named instead of failing on a MID.

use openmid_proto::ecc::Topic;
use openmid_proto::rest::{MAX_TIMEOUT_MS, RestRequest, RetryPolicy};
use openmid_proto::soap::SoapRequest;
use std::collections::BTreeMap;

/// A payload problem: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    /// Dotted path of the field, e.g. `payload.url`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> PayloadError {
    PayloadError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Checks `payload` for `topic`.
pub fn check(topic: Topic, payload: &serde_json::Value) -> Result<(), PayloadError> {
    match topic {
        Topic::RESTProbe => {
            let req: RestRequest = serde_json::from_value(payload.clone())
                .map_err(|e| err("payload", e.to_string()))?;
            check_rest(&req)
        }
        Topic::SOAPProbe => {
            let req: SoapRequest = serde_json::from_value(payload.clone())
                .map_err(|e| err("payload", e.to_string()))?;
            check_soap(&req)
        }
        Topic::Command => {
            let req: openmid_proto::command::CommandRequest =
                serde_json::from_value(payload.clone())
                    .map_err(|e| err("payload", e.to_string()))?;
            req.validate().map_err(|e| err(e.field, e.message))
        }
        other => Err(err(
            "topic",
            format!(
                "topic `{other}` has no probe in this release yet; supported: {}, {}, {}",
                Topic::RESTProbe,
                Topic::SOAPProbe,
                Topic::Command
            ),
        )),
    }
}

/// Checks a REST request: method, absolute http(s) URL, header syntax, timeout.
pub fn check_rest(req: &RestRequest) -> Result<(), PayloadError> {
    if reqwest::Method::from_bytes(req.method.as_bytes()).is_err() || req.method.is_empty() {
        return Err(err(
            "method",
            format!("`{}` is not an HTTP method", req.method),
        ));
    }
    if let Some(id) = &req.body_blob {
        if req.body.is_some() {
            return Err(err("body_blob", "give `body` or `body_blob`, not both"));
        }
        if !openmid_proto::blob::is_valid_blob_id(id) {
            return Err(err(
                "body_blob",
                format!("`{id}` is not a blob id (POST /api/v1/blobs answers one)"),
            ));
        }
    }
    check_common(&req.url, &req.headers, req.timeout_ms, req.retry.as_ref())
}

/// Checks a SOAP request: endpoint, version, body or operation, headers, timeout.
/// A `body` must be well-formed XML content (the check the MID makes before sending,
/// made here so a broken Body is refused before it is queued, with the problem named).
pub fn check_soap(req: &SoapRequest) -> Result<(), PayloadError> {
    check_common(&req.url, &req.headers, req.timeout_ms, req.retry.as_ref())?;
    // It travels in a header (1.1) or a Content-Type parameter (1.2), quoted.
    if let Some(action) = &req.soap_action
        && (reqwest::header::HeaderValue::from_str(action).is_err()
            || action.trim().trim_matches('"').contains('"'))
    {
        return Err(err(
            "soap_action",
            "must be a URI usable in an HTTP header: no control characters, no `\"` inside",
        ));
    }
    if let Some(wsdl) = &req.wsdl_url {
        let wsdl = reqwest::Url::parse(wsdl)
            .map_err(|e| err("wsdl_url", format!("`{wsdl}` is not an absolute URL: {e}")))?;
        // The MID sends the call's credential to it.
        let endpoint = reqwest::Url::parse(&req.url).map_err(|e| err("url", e.to_string()))?;
        if wsdl.origin() != endpoint.origin() {
            return Err(err("wsdl_url", "must be on the origin of `url`"));
        }
    }
    match (&req.body, &req.operation) {
        (Some(_), Some(_)) => Err(err("body", "give `body` or `operation`, not both")),
        (None, None) => Err(err("operation", "give `operation` or `body`")),
        (None, Some(op)) if op.is_empty() => Err(err("operation", "must not be empty")),
        (Some(_), None) if req.element_form.is_some() => {
            Err(err("element_form", "`element_form` goes with `operation`"))
        }
        (Some(body), None) => openmid_proto::soap::xml::check_body(body)
            .map_err(|e| err("body", format!("not well-formed XML: {e}"))),
        _ => Ok(()),
    }
}

/// Checks header names and values are valid HTTP.
pub fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), PayloadError> {
    for (name, value) in headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(err(
                "headers",
                format!("`{name}` is not a valid header name"),
            ));
        }
        if reqwest::header::HeaderValue::from_str(value).is_err() {
            return Err(err(
                "headers",
                format!("the value of `{name}` is not a valid header value"),
            ));
        }
    }
    Ok(())
}

fn check_common(
    url: &str,
    headers: &BTreeMap<String, String>,
    timeout_ms: Option<u64>,
    retry: Option<&RetryPolicy>,
) -> Result<(), PayloadError> {
    let url = reqwest::Url::parse(url)
        .map_err(|e| err("url", format!("`{url}` is not an absolute URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err(
            "url",
            format!(
                "scheme `{}` is not allowed: use http or https",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none() {
        return Err(err("url", "has no host"));
    }
    check_headers(headers)?;
    if let Some(t) = timeout_ms
        && (t == 0 || t > MAX_TIMEOUT_MS)
    {
        return Err(err(
            "timeout_ms",
            format!("must be 1–{MAX_TIMEOUT_MS}, got {t}"),
        ));
    }
    if let Some((field, message)) = retry.and_then(RetryPolicy::problem) {
        return Err(err(&format!("retry.{field}"), message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn rest_payloads() {
        assert!(check(Topic::RESTProbe, &json!({"url": "http://10.0.0.5:8080/x"})).is_ok());
        let bad = [
            (json!({}), "payload"),
            (json!({"url": "ftp://x/y"}), "url"),
            (json!({"url": "not a url"}), "url"),
            (json!({"url": "http://x", "method": "GE T"}), "method"),
            (
                json!({"url": "http://x", "headers": {"bad name": "v"}}),
                "headers",
            ),
            (json!({"url": "http://x", "timeout_ms": 0}), "timeout_ms"),
            (json!({"url": "http://x", "surprise": 1}), "payload"),
        ];
        for (payload, field) in bad {
            let got = check(Topic::RESTProbe, &payload).err().map(|e| e.field);
            assert_eq!(got.as_deref(), Some(field), "{payload}");
        }
        assert_eq!(
            check(Topic::Ping, &json!({}))
                .err()
                .map(|e| e.field)
                .as_deref(),
            Some("topic")
        );
    }

    #[test]
    fn soap_actions_must_fit_in_a_header() {
        let soap = |action: &str| json!({"url": "http://10.0.0.5/ws", "operation": "Op", "soap_action": action});
        for ok in ["urn:x#Op", "\"urn:x#Op\"", "", "http://tempuri.org/Op"] {
            assert!(check(Topic::SOAPProbe, &soap(ok)).is_ok(), "{ok}");
        }
        for bad in ["urn:x\nInjected: 1", "urn:\"x\"", "\u{1}"] {
            let e = check(Topic::SOAPProbe, &soap(bad)).expect_err(bad);
            assert_eq!(e.field, "soap_action", "{bad}");
        }
    }

    #[test]
    fn soap_bodies_must_be_well_formed() {
        let soap = |body: &str| json!({"url": "http://10.0.0.5/ws", "body": body});
        for ok in [
            "<a/>",
            "<m:Op xmlns:m=\"urn:m\"><m:x>1</m:x></m:Op>",
            "<soap:Header/>",
            "",
        ] {
            assert!(check(Topic::SOAPProbe, &soap(ok)).is_ok(), "{ok}");
        }
        for (bad, needle) in [
            ("<Echo><text>unclosed</Echo>", ""),
            ("<a>", "not closed"),
            ("<x:a/>", "`x`"),
            ("<!DOCTYPE a><a/>", "DOCTYPE"),
        ] {
            let e = check(Topic::SOAPProbe, &soap(bad)).expect_err(bad);
            assert_eq!(e.field, "body", "{bad}");
            assert!(e.message.contains(needle), "{bad}: {}", e.message);
        }
    }

    proptest! {
        #[test]
        fn checker_never_panics(url in ".{0,60}", method in "[A-Za-z ]{0,8}") {
            let _ = check(Topic::RESTProbe, &json!({"url": url, "method": method}));
        }
    }
}
