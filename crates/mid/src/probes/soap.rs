//! `SOAPProbe`: one SOAP 1.1 or 1.2 call. The envelope is built here (from the Body's
//! XML or from an operation and its parameters) and the answer taken apart, a Fault
//! into its code, reason and detail rather than an opaque HTTP 500.

use super::credentials::Credential;
use super::http::{self, Call};
use super::soap_xml;
use super::{JobContext, ProbeContext, ProbeError};
use openmid_proto::rest::{DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS};
use openmid_proto::soap::{NOT_SOAP_BODY_LIMIT, NotSoap, SoapRequest, SoapResponse, SoapVersion};
use soap_xml::WsdlAction;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// Makes the call and parses the answer.
pub async fn run(
    mut req: SoapRequest,
    credential: Option<&Credential>,
    job: &JobContext,
    ctx: &ProbeContext,
) -> Result<SoapResponse, ProbeError> {
    // Every request of the call (the WSDL's too) carries the job's trace.
    req.headers = job.with_trace_header(std::mem::take(&mut req.headers));
    let url = http::parse_url(&req.url)?;
    let body_xml = match (&req.body, &req.operation) {
        (Some(body), None) => {
            soap_xml::check_body_xml(body)
                .map_err(|e| ProbeError::InvalidInput(format!("body: {e}")))?;
            body.clone()
        }
        (None, Some(operation)) => soap_xml::operation_body_in_form(
            operation,
            req.namespace.as_deref(),
            &req.params,
            req.element_form.unwrap_or_default(),
        )
        .map_err(|e| ProbeError::InvalidInput(e.to_string()))?,
        _ => {
            return Err(ProbeError::InvalidInput(
                "give `body` or `operation`, exactly one".into(),
            ));
        }
    };
    let envelope = soap_xml::envelope(req.version, &body_xml);
    let timeout_ms = req
        .timeout_ms
        .unwrap_or(DEFAULT_TIMEOUT_MS)
        .clamp(1, MAX_TIMEOUT_MS);
    let timeout = Duration::from_millis(timeout_ms);
    let action = match (&req.soap_action, &req.operation) {
        (Some(action), _) => unquoted(action).to_string(),
        (None, Some(operation)) => match &req.wsdl_url {
            Some(wsdl) => wsdl_action(wsdl, operation, &req, credential, ctx, timeout).await?,
            None => derived_action(req.namespace.as_deref(), operation),
        },
        (None, None) => String::new(),
    };
    let mut headers = req.headers.clone();
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
    let answer = http::send(
        ctx,
        Call {
            method: reqwest::Method::POST,
            url: url.clone(),
            headers: &headers,
            body: Some(http::CallBody::Bytes(bytes::Bytes::from(envelope))),
            timeout,
            retry: req.retry.as_ref(),
            ca_pem: req.ca_pem.as_deref(),
            spill_to: None,
        },
        credential,
    )
    .await?;
    let headers = shown_headers(answer.headers);
    let parsed = match soap_xml::parse_response(&answer.body) {
        Ok(parsed) => parsed,
        Err(e) => {
            let message = format!(
                "POST {}: HTTP {} without a SOAP envelope: {e}",
                http::shown_url(&url),
                answer.status
            );
            let response = SoapResponse {
                status: answer.status,
                version: req.version,
                body: None,
                result: None,
                fault: None,
                not_soap: Some(not_soap(&e.to_string(), &headers, &answer.body)),
                headers,
                timings: answer.timings,
            };
            let response = serde_json::to_value(&response)
                .map_err(|e| ProbeError::InvalidInput(e.to_string()))?;
            return Err(ProbeError::Answered {
                message,
                response: Box::new(response),
            });
        }
    };
    Ok(SoapResponse {
        status: answer.status,
        headers,
        version: parsed.version,
        body: parsed.body,
        result: parsed.result,
        fault: parsed.fault,
        not_soap: None,
        timings: answer.timings,
    })
}

/// `action` without one pair of surrounding double quotes, so an action given already
/// quoted (`"urn:x"`, as it appears in the header) is not quoted twice.
fn unquoted(action: &str) -> &str {
    let action = action.trim();
    action
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .unwrap_or(action)
}

/// The action when neither the call nor a WSDL says: `{namespace}#{operation}`, the
/// form of many document/literal services and of the test service, or
/// `{namespace}{operation}` when the namespace already ends in `/` or `#` (.NET's
/// `http://tempuri.org/` + `Add`). Without a namespace: empty.
fn derived_action(namespace: Option<&str>, operation: &str) -> String {
    match namespace.filter(|ns| !ns.is_empty()) {
        Some(ns) if ns.ends_with('/') || ns.ends_with('#') => format!("{ns}{operation}"),
        Some(ns) => format!("{ns}#{operation}"),
        None => String::new(),
    }
}

/// How long a WSDL's actions are reused before it is fetched again: a WSDL changes with
/// a deployment, and one extra GET per call would double the load on the service.
const WSDL_TTL: Duration = Duration::from_secs(300);
/// Most WSDLs remembered; past it the memory starts over.
const MAX_WSDLS: usize = 64;

/// A WSDL's actions and when they were read.
type KnownWsdl = (Instant, Arc<Vec<WsdlAction>>);

/// WSDL actions by URL, shared by the jobs of this process (actions are not secret).
static WSDL_ACTIONS: LazyLock<Mutex<HashMap<String, KnownWsdl>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The `soapAction` the WSDL at `wsdl` gives `operation`, fetched with the call's
/// credential, TLS settings and egress policy (the instance made sure it is on the
/// endpoint's origin).
async fn wsdl_action(
    wsdl: &str,
    operation: &str,
    req: &SoapRequest,
    credential: Option<&Credential>,
    ctx: &ProbeContext,
    timeout: Duration,
) -> Result<String, ProbeError> {
    let cached = WSDL_ACTIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(wsdl)
        .filter(|(at, _)| at.elapsed() < WSDL_TTL)
        .map(|(_, actions)| actions.clone());
    let url =
        http::parse_url(wsdl).map_err(|e| ProbeError::InvalidInput(format!("wsdl_url: {e}")))?;
    let actions = match cached {
        Some(actions) => actions,
        None => {
            let mut headers = req.headers.clone();
            headers.retain(|name, _| {
                !(name.eq_ignore_ascii_case("content-type")
                    || name.eq_ignore_ascii_case("soapaction"))
            });
            let answer = http::send(
                ctx,
                Call {
                    method: reqwest::Method::GET,
                    url: url.clone(),
                    headers: &headers,
                    body: None,
                    timeout,
                    retry: req.retry.as_ref(),
                    ca_pem: req.ca_pem.as_deref(),
                    spill_to: None,
                },
                credential,
            )
            .await?;
            if !(200..300).contains(&answer.status) {
                return Err(ProbeError::Target(format!(
                    "soap_action: GET {} (the alias's WSDL): HTTP {}; give `soap_action` or fix the alias's `wsdl`",
                    http::shown_url(&url),
                    answer.status
                )));
            }
            let actions = Arc::new(soap_xml::wsdl_actions(&answer.body).map_err(|e| {
                ProbeError::Target(format!(
                    "soap_action: the WSDL at {}: {e}",
                    http::shown_url(&url)
                ))
            })?);
            let mut cache = WSDL_ACTIONS.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= MAX_WSDLS {
                cache.clear();
            }
            cache.insert(wsdl.to_string(), (Instant::now(), actions.clone()));
            actions
        }
    };
    soap_xml::soap_action_for(&actions, operation, req.version)
        .map(|action| unquoted(&action).to_string())
        .ok_or_else(|| {
            ProbeError::Target(format!(
                "soap_action: the WSDL at {} has no binding operation `{operation}`; give `soap_action`",
                http::shown_url(&url)
            ))
        })
}

/// Response headers as the result shows them: without the cookies the service set for
/// the MID (a session is the MID's, not the caller's to see or replay).
fn shown_headers(mut headers: BTreeMap<String, String>) -> BTreeMap<String, String> {
    headers.retain(|name, _| {
        !(name.eq_ignore_ascii_case("set-cookie") || name.eq_ignore_ascii_case("set-cookie2"))
    });
    headers
}

/// What a non-SOAP answer said: the parser's finding, the content type and the start
/// of the body, cut at a character boundary within [`NOT_SOAP_BODY_LIMIT`] bytes.
fn not_soap(problem: &str, headers: &BTreeMap<String, String>, body: &[u8]) -> NotSoap {
    let head = body
        .get(..body.len().min(NOT_SOAP_BODY_LIMIT))
        .unwrap_or_default();
    let text = match std::str::from_utf8(head) {
        Ok(text) => text.to_string(),
        // Cut inside a character: drop its first bytes rather than show U+FFFD.
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(head.get(..e.valid_up_to()).unwrap_or_default()).into_owned()
        }
        Err(_) => String::from_utf8_lossy(head).into_owned(),
    };
    NotSoap {
        problem: problem.to_string(),
        content_type: headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
            .map(|(_, value)| value.clone()),
        body: text,
        truncated: body.len() > head.len(),
        body_bytes: body.len() as u64,
    }
}

/// The `SOAPProbe` entry of the [registry](super::registry).
pub struct SoapProbe;

impl super::registry::Probe for SoapProbe {
    type Contract = openmid_proto::soap::Soap;
    const PROTOCOL: Option<crate::policy::Protocol> = Some(crate::policy::Protocol::Http);

    fn run<'a>(
        &'a self,
        req: SoapRequest,
        call: super::registry::Call<'a>,
    ) -> futures::future::BoxFuture<'a, Result<super::registry::Ran<SoapResponse>, ProbeError>>
    {
        Box::pin(async move {
            let response = run(req, call.credential, call.job, call.ctx).await?;
            Ok(super::registry::Ran::response(response))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_soap_bodies_are_kept_bounded_and_cut_between_characters() {
        let headers = BTreeMap::from([("content-type".to_string(), "text/html".to_string())]);
        let page = b"<html><title>401</title></html>";
        let kept = not_soap("found an HTML page", &headers, page);
        assert_eq!(kept.body.as_bytes(), page);
        assert_eq!(
            (kept.truncated, kept.body_bytes),
            (false, page.len() as u64)
        );
        assert_eq!(kept.content_type.as_deref(), Some("text/html"));

        // 4095 ASCII bytes then a 2-byte character straddling the limit.
        let mut long = vec![b'a'; NOT_SOAP_BODY_LIMIT - 1];
        long.extend_from_slice("é and more".as_bytes());
        let kept = not_soap("x", &BTreeMap::new(), &long);
        assert_eq!(kept.body.len(), NOT_SOAP_BODY_LIMIT - 1);
        assert!(kept.truncated);
        assert_eq!(kept.body_bytes, long.len() as u64);
        assert_eq!(kept.content_type, None);

        let kept = not_soap("empty", &BTreeMap::new(), b"");
        assert_eq!((kept.body.as_str(), kept.truncated), ("", false));
        let kept = not_soap("binary", &BTreeMap::new(), &[0xff, 0xfe, b'x']);
        assert!(kept.body.ends_with('x'));
    }

    #[test]
    fn actions_are_quoted_once_and_derived_from_the_namespace() {
        assert_eq!(unquoted("\"urn:x\""), "urn:x");
        assert_eq!(unquoted(" urn:x "), "urn:x");
        assert_eq!(unquoted("\""), "\"");
        assert_eq!(unquoted("\"\""), "");
        assert_eq!(derived_action(Some("urn:calc"), "Add"), "urn:calc#Add");
        assert_eq!(
            derived_action(Some("http://tempuri.org/"), "Add"),
            "http://tempuri.org/Add"
        );
        assert_eq!(derived_action(Some("urn:x#"), "Add"), "urn:x#Add");
        assert_eq!(derived_action(Some(""), "Add"), "");
        assert_eq!(derived_action(None, "Add"), "");
    }

    #[test]
    fn cookies_the_service_set_are_not_shown() {
        let headers = BTreeMap::from([
            ("Set-Cookie".to_string(), "s=1".to_string()),
            ("set-cookie2".to_string(), "s=1".to_string()),
            ("www-authenticate".to_string(), "Basic".to_string()),
        ]);
        assert_eq!(
            shown_headers(headers).into_keys().collect::<Vec<_>>(),
            ["www-authenticate"]
        );
    }
}
