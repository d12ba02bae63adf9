//! The probe contract both sides compile against. A topic is one type implementing
//! [`Contract`]: its name, its request and response types, how a request is validated
//! (errors name the field), which network target it touches (for `mid.auto`'s IP
//! ranges and the MID's egress check) and which credential it uses. The instance
//! validates, selects a MID and shows results through it; the MID decodes and runs
//! through it. Adding a topic is a module here with its `Contract` and one line in
//! each side's registration table.

use crate::credential::CredentialRef;
use crate::ecc::Topic;
use crate::payload::Payload;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// A request field that is wrong, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field (`url`, `headers`, `retry.delay_ms` …).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A [`FieldError`] for `field`.
pub fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// The network target a request will touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP literal.
    pub host: String,
    /// Port, when known.
    pub port: Option<u16>,
}

impl Target {
    /// The host as an IP address, when it is one (the instance cannot resolve names
    /// the way the MID, inside its network, would).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The target of an `http(s)` URL.
    pub fn of_url(url: &str) -> Option<Self> {
        let url = url::Url::parse(url).ok()?;
        // An IPv6 literal without its URL brackets, as a host elsewhere is written.
        let host = match url.host()? {
            url::Host::Domain(name) => name.to_string(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        Some(Self {
            host,
            port: url.port_or_known_default(),
        })
    }
}

/// What a topic is, for both sides.
pub trait Contract: 'static {
    /// The topic.
    const TOPIC: Topic;
    /// The output's payload.
    type Request: Serialize + DeserializeOwned + Send;
    /// The input's payload.
    type Response: Serialize + DeserializeOwned + Send;
    /// Checks a request before it is queued (and again on the MID).
    fn validate(req: &Self::Request) -> Result<(), FieldError>;
    /// The network target it touches, if any.
    fn target(req: &Self::Request) -> Option<Target>;
    /// The credential it uses, if any.
    fn credential(req: &Self::Request) -> Option<&CredentialRef>;
    /// A blob on the instance it reads (a large request body), if any.
    fn body_blob(_req: &Self::Request) -> Option<&str> {
        None
    }
    /// The longest the whole job may run, when the request bounds it. The MID's
    /// registry turns it into the job's deadline: a probe that does not watch the
    /// deadline itself is stopped there and the job ends `Timeout`. `None` for topics
    /// whose timeout is per attempt (REST and SOAP retry within their own bounds).
    fn timeout(_req: &Self::Request) -> Option<std::time::Duration> {
        None
    }
    /// Whether an attempt after a lost one continues from the output the earlier
    /// attempts streamed (a paged read) rather than starting over: the instance keeps
    /// their chunks as the output's and hands the new attempt the last one
    /// ([`Contract::resume`]); followers see one stream, without a restart.
    const RESUMES: bool = false;
    /// Sets `req` up to continue after `last`, the data of the last chunk earlier
    /// attempts streamed.
    fn resume(_req: &mut Self::Request, _last: &[u8]) -> Result<(), FieldError> {
        Ok(())
    }
}

/// Decodes a payload as `C`'s request (a shape error names `payload`) and validates it.
pub fn decode<C: Contract>(payload: &serde_json::Value) -> Result<C::Request, FieldError> {
    validated::<C>(C::Request::deserialize(payload))
}

/// [`decode`] for a payload carried as text: read straight into the request.
pub fn decode_payload<C: Contract>(payload: &Payload) -> Result<C::Request, FieldError> {
    validated::<C>(payload.decode())
}

fn validated<C: Contract>(
    req: Result<C::Request, serde_json::Error>,
) -> Result<C::Request, FieldError> {
    let req = req.map_err(|e| field_error("payload", without_position(&e)))?;
    C::validate(&req)?;
    Ok(req)
}

/// What a decoding error says, without where in the text it was: the text is the
/// payload as stored, not the body the caller sent, so its line and column would
/// point nowhere the caller can look.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if e.line() == 0 {
        return text;
    }
    let at = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&at) {
        Some(message) => message.to_string(),
        None => text,
    }
}

/// Whether `name` is an HTTP header name (an RFC 9110 token).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token_byte)
}

/// Whether `value` can be sent as an HTTP header value: visible characters, spaces and
/// tabs; no line breaks or other control characters.
pub fn is_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Whether `method` is an HTTP method (a token).
pub fn is_method(method: &str) -> bool {
    is_header_name(method)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks header names and values are valid HTTP.
pub fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), FieldError> {
    for (name, value) in headers {
        if !is_header_name(name) {
            return Err(field_error(
                "headers",
                format!("`{name}` is not a valid header name"),
            ));
        }
        if !is_header_value(value) {
            return Err(field_error(
                "headers",
                format!("the value of `{name}` is not a valid header value"),
            ));
        }
    }
    Ok(())
}

/// Checks an absolute `http(s)` URL with a host.
pub fn check_http_url(field: &str, url: &str) -> Result<url::Url, FieldError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| field_error(field, format!("`{url}` is not an absolute URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(field_error(
            field,
            format!(
                "scheme `{}` is not allowed: use http or https",
                parsed.scheme()
            ),
        ));
    }
    if parsed.host_str().is_none() {
        return Err(field_error(field, "has no host"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_syntax() {
        assert!(is_header_name("X-API-Key"));
        assert!(!is_header_name("bad name"));
        assert!(!is_header_name(""));
        assert!(is_header_value("a b\tc"));
        assert!(!is_header_value("a\r\nInjected: 1"));
        assert!(is_method("PATCH") && !is_method("GE T"));
    }

    #[test]
    fn targets_of_urls() {
        let t = Target::of_url("http://10.1.2.3:8080/x").expect("target");
        assert_eq!((t.ip(), t.port), ("10.1.2.3".parse().ok(), Some(8080)));
        let t = Target::of_url("https://[fd00::5]/x").expect("target");
        assert_eq!((t.ip(), t.port), ("fd00::5".parse().ok(), Some(443)));
        assert_eq!(
            Target::of_url("https://api.corp/x").and_then(|t| t.ip()),
            None
        );
    }
}
