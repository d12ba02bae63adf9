//! How a probe's target URL is checked and told: parsed as http(s) only, shown without
//! the parts that can carry secrets, and a failed call described by its causes. Shared
//! by the HTTP calls and the OAuth token fetch, each of which uses the other, so it
//! stands on its own.

use super::ProbeError;
use std::error::Error as _;

/// Parses and checks a probe URL.
pub fn parse_url(url: &str) -> Result<reqwest::Url, ProbeError> {
    let url =
        reqwest::Url::parse(url).map_err(|e| ProbeError::InvalidInput(format!("url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ProbeError::InvalidInput(format!(
            "url: scheme `{}` is not allowed",
            url.scheme()
        )));
    }
    Ok(url)
}

/// The URL as it may be shown: without user info, query or fragment (they can carry
/// secrets).
pub fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Describes a failed call by its cause chain, without the URL reqwest would add.
pub fn describe(method: &reqwest::Method, shown: &str, e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "could not connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "failed reading the response"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    causes.dedup();
    if causes.is_empty() {
        format!("{method} {shown}: {kind}")
    } else {
        format!("{method} {shown}: {kind}: {}", causes.join(": "))
    }
}
