//! `RESTProbe`: one HTTP(S) request to an internal service.

use super::{ProbeContext, ProbeError};
use base64::Engine;
use openmid_proto::rest::{
    Body, DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, RestRequest, RestResponse, RestTimings,
};
use std::collections::BTreeMap;
use std::error::Error as _;
use std::time::{Duration, Instant};

/// Makes the request and reads the whole response (up to the context's cap).
pub async fn run(req: RestRequest, ctx: &ProbeContext) -> Result<RestResponse, ProbeError> {
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| ProbeError::InvalidInput(format!("`{}` is not an HTTP method", req.method)))?;
    let url =
        reqwest::Url::parse(&req.url).map_err(|e| ProbeError::InvalidInput(format!("url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ProbeError::InvalidInput(format!(
            "url: scheme `{}` is not allowed",
            url.scheme()
        )));
    }
    let shown = shown_url(&url);
    let timeout_ms = req
        .timeout_ms
        .unwrap_or(DEFAULT_TIMEOUT_MS)
        .clamp(1, MAX_TIMEOUT_MS);
    let mut builder = ctx.http.request(method.clone(), url);
    let has_content_type = req
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("content-type"));
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder = match req.body {
        None => builder,
        Some(Body::Text(text)) => builder.body(text),
        Some(Body::Json(value)) => {
            if !has_content_type {
                builder = builder.header("content-type", "application/json");
            }
            builder.body(value.to_string())
        }
    };
    let started = Instant::now();
    let call = async {
        let mut resp = builder
            .send()
            .await
            .map_err(|e| ProbeError::Target(describe(&method, &shown, &e)))?;
        let headers_ms = ms(started.elapsed());
        let status = resp.status().as_u16();
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in resp.headers() {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_string())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ProbeError::Target(describe(&method, &shown, &e)))?
        {
            if body.len() + chunk.len() > ctx.max_response_bytes {
                return Err(ProbeError::TooLarge {
                    limit: ctx.max_response_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        let (body, body_base64) = match String::from_utf8(body) {
            Ok(text) => (Some(text), None),
            Err(e) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
            ),
        };
        Ok(RestResponse {
            status,
            headers,
            body,
            body_base64,
            timings: RestTimings {
                headers_ms,
                total_ms: ms(started.elapsed()),
            },
        })
    };
    tokio::time::timeout(Duration::from_millis(timeout_ms), call)
        .await
        .map_err(|_| ProbeError::Timeout(timeout_ms))?
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The URL as it may be shown: without user info, query or fragment (they can carry
/// secrets).
fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Describes a failed call by its cause chain, without the URL reqwest would add.
fn describe(method: &reqwest::Method, shown: &str, e: &reqwest::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_secrets() {
        let url = reqwest::Url::parse("https://user:pw@h:8/p?token=s#f").expect("url");
        assert_eq!(shown_url(&url), "https://h:8/p");
    }
}
