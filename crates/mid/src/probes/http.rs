//! What the REST and SOAP probes share: picking the HTTP client for a target's TLS
//! needs, authenticating, trying again by the retry policy, and reading a response
//! under the size cap.

use super::credentials::{self, Credential};
use super::{ProbeContext, ProbeError};
use openmid_proto::credential::KeyPlacement;
use openmid_proto::rest::{RetryPolicy, RestTimings};
use std::collections::BTreeMap;
use std::error::Error as _;
use std::time::{Duration, Instant};

/// One HTTP call to make, before authentication.
pub struct Call<'a> {
    /// Method.
    pub method: reqwest::Method,
    /// URL (checked: http or https).
    pub url: reqwest::Url,
    /// Headers.
    pub headers: &'a BTreeMap<String, String>,
    /// Body bytes (sent again on each attempt).
    pub body: Option<bytes::Bytes>,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: Option<&'a RetryPolicy>,
    /// CA certificates for the target (PEM).
    pub ca_pem: Option<&'a str>,
}

/// A response read in full.
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Headers, repeated ones joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: Vec<u8>,
    /// Timings of the last attempt.
    pub timings: RestTimings,
    /// Attempts made.
    pub attempts: u32,
}

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

/// Makes the call: authenticates, retries by the policy, reads the whole answer.
pub async fn send(
    ctx: &ProbeContext,
    call: Call<'_>,
    credential: Option<&Credential>,
) -> Result<Answer, ProbeError> {
    let client = ctx.client_for(call.ca_pem, credential)?;
    let shown = shown_url(&call.url);
    let retries = call.retry.map_or(0, RetryPolicy::retries);
    let mut attempt = 0u32;
    let mut refreshed_token = false;
    loop {
        attempt += 1;
        let outcome = send_once(ctx, &client, &call, credential, &shown).await;
        let policy = call.retry;
        let wait = match &outcome {
            Ok(answer) if answer.status == 401 && !refreshed_token => {
                // A cached OAuth token the target no longer accepts (revoked, rotated
                // key): fetch a new one once, whatever the retry policy says.
                if let Some(Credential::OAuth2(oauth)) = credential {
                    ctx.tokens.forget(oauth).await;
                    refreshed_token = true;
                    attempt -= 1;
                    Some(Duration::ZERO)
                } else {
                    None
                }
            }
            Ok(answer) => policy
                .filter(|p| attempt <= retries && p.retry_on.contains(&answer.status))
                .map(|p| {
                    let after = p
                        .honour_retry_after
                        .then(|| answer.headers.get("retry-after").and_then(|v| retry_after(v)))
                        .flatten();
                    wait_before(p, attempt, after)
                }),
            Err(ProbeError::Target(_) | ProbeError::Timeout(_)) => policy
                .filter(|p| attempt <= retries && p.on_connect_error)
                .map(|p| wait_before(p, attempt, None)),
            Err(_) => None,
        };
        match wait {
            None => {
                return outcome.map(|mut a| {
                    a.attempts = attempt;
                    a
                });
            }
            Some(wait) => {
                tracing::debug!(url = %shown, attempt, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn wait_before(policy: &RetryPolicy, retry: u32, retry_after: Option<Duration>) -> Duration {
    let planned = Duration::from_millis(policy.delay_before(retry));
    let max = Duration::from_millis(policy.max_delay_ms);
    retry_after.map_or(planned, |a| a.max(planned)).min(max)
}

/// `Retry-After`: delta-seconds or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

async fn send_once(
    ctx: &ProbeContext,
    client: &reqwest::Client,
    call: &Call<'_>,
    credential: Option<&Credential>,
    shown: &str,
) -> Result<Answer, ProbeError> {
    let mut url = call.url.clone();
    if let Some(Credential::ApiKey {
        name,
        placement: KeyPlacement::Query,
        key,
    }) = credential
    {
        url.query_pairs_mut().append_pair(name, key.expose());
    }
    let mut builder = client.request(call.method.clone(), url);
    for (name, value) in call.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder = credentials::authenticate(ctx, builder, credential).await?;
    if let Some(body) = &call.body {
        builder = builder.body(body.clone());
    }
    let method = &call.method;
    let started = Instant::now();
    let exchange = async {
        let mut resp = builder
            .send()
            .await
            .map_err(|e| ProbeError::Target(describe(method, shown, &e)))?;
        let headers_ms = ms(started.elapsed());
        let status = resp.status().as_u16();
        let headers = header_map(resp.headers());
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ProbeError::Target(describe(method, shown, &e)))?
        {
            if body.len() + chunk.len() > ctx.max_response_bytes {
                return Err(ProbeError::TooLarge {
                    limit: ctx.max_response_bytes,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
            timings: RestTimings {
                headers_ms,
                total_ms: ms(started.elapsed()),
            },
            attempts: 1,
        })
    };
    let limit = call.timeout.as_millis() as u64;
    tokio::time::timeout(call.timeout, exchange)
        .await
        .map_err(|_| ProbeError::Timeout(limit))?
}

/// Response headers as a map; repeated headers joined with `, `.
pub fn header_map(headers: &reqwest::header::HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
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

#[cfg(test)]
mod tests {
    use super::*;
    use openmid_proto::rest::RetryMode;

    #[test]
    fn urls_are_shown_without_secrets() {
        let url = reqwest::Url::parse("https://user:pw@h:8/p?token=s#f").expect("url");
        assert_eq!(shown_url(&url), "https://h:8/p");
    }

    #[test]
    fn waits_follow_the_policy_and_retry_after() {
        let p = RetryPolicy {
            mode: RetryMode::Exponential,
            delay_ms: 100,
            max_delay_ms: 1_000,
            ..RetryPolicy::default()
        };
        assert_eq!(wait_before(&p, 1, None), Duration::from_millis(100));
        assert_eq!(wait_before(&p, 3, None), Duration::from_millis(400));
        assert_eq!(wait_before(&p, 9, None), Duration::from_millis(1_000));
        assert_eq!(
            wait_before(&p, 1, Some(Duration::from_secs(60))),
            Duration::from_millis(1_000),
            "Retry-After is capped by max_delay_ms"
        );
        assert_eq!(retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }
}
