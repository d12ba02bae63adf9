//! What the REST and SOAP probes share: picking the HTTP client for a target's TLS
//! needs, authenticating, trying again by the retry policy, and reading a response
//! under the size cap.

use super::credentials::{self, Credential};
pub use super::urls::{describe, parse_url, shown_url};
use super::{ProbeContext, ProbeError};
use crate::policy::{Protocol, find_denial};
use openmid_proto::credential::KeyPlacement;
use openmid_proto::rest::{RestTimings, RetryPolicy};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Largest response body read whole into memory (a SOAP envelope is parsed whole).
pub const MAX_IN_MEMORY_BODY: usize = 32 * 1024 * 1024;

/// One HTTP call to make, before authentication.
pub struct Call<'a> {
    /// Method.
    pub method: reqwest::Method,
    /// URL (checked: http or https).
    pub url: reqwest::Url,
    /// Headers.
    pub headers: &'a BTreeMap<String, String>,
    /// The request body (sent again on each attempt).
    pub body: Option<CallBody>,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: Option<&'a RetryPolicy>,
    /// CA certificates for the target (PEM).
    pub ca_pem: Option<&'a str>,
    /// Where to write a response body larger than the context's `inline_body_bytes`
    /// (None: always read into memory, under `max_response_bytes`).
    pub spill_to: Option<PathBuf>,
}

/// A request body.
pub enum CallBody {
    /// Bytes in memory.
    Bytes(bytes::Bytes),
    /// A blob on the instance, streamed from there on each attempt.
    Blob {
        /// The blob.
        id: String,
        /// The output that sends it (the instance checks this MID holds it).
        output_id: String,
    },
}

/// A response body written to a file instead of memory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpilledBody {
    /// Bytes written.
    pub size: u64,
    /// Their SHA-256, lower-case hex (checked against the instance's after upload).
    pub sha256: String,
}

/// A response read in full.
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Headers, repeated ones joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// Body, when read into memory (empty when spilled).
    pub body: Vec<u8>,
    /// Set when the body went to the call's `spill_to` file instead.
    pub spilled: Option<SpilledBody>,
    /// Timings of the last attempt.
    pub timings: RestTimings,
    /// Attempts made.
    pub attempts: u32,
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
                        .then(|| {
                            answer
                                .headers
                                .get("retry-after")
                                .and_then(|v| retry_after(v))
                        })
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

/// Redirects followed per attempt.
const MAX_REDIRECTS: u32 = 10;

/// Builds one hop's request: the call's headers and body, and — only while the hop is
/// on the call's own origin — its credential.
async fn request(
    ctx: &ProbeContext,
    client: &reqwest::Client,
    hop: &Hop,
    call: &Call<'_>,
    credential: Option<&Credential>,
) -> Result<reqwest::RequestBuilder, ProbeError> {
    let credential = credential.filter(|_| hop.trusted);
    let mut url = hop.url.clone();
    if let Some(Credential::ApiKey {
        name,
        placement: KeyPlacement::Query,
        key,
    }) = credential
    {
        url.query_pairs_mut().append_pair(name, key.expose());
    }
    let mut builder = client.request(hop.method.clone(), url);
    for (name, value) in call.headers {
        if !hop.with_body && is_body_header(name) {
            continue;
        }
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder = credentials::authenticate(ctx, client, builder, credential).await?;
    match &call.body {
        _ if !hop.with_body => {}
        None => {}
        Some(CallBody::Bytes(body)) => builder = builder.body(body.clone()),
        Some(CallBody::Blob { id, output_id }) => {
            let instance = ctx.instance.as_ref().ok_or_else(|| {
                ProbeError::InvalidInput("body_blob: this MID has no instance session".into())
            })?;
            let (len, stream) = instance
                .blob_body(id, output_id, call.timeout)
                .await
                .map_err(|e| {
                    ProbeError::Target(format!(
                        "fetching the request body (blob {id}) from the instance: {e}"
                    ))
                })?;
            if let Some(len) = len {
                // Targets often refuse chunked uploads; the length is known.
                builder = builder.header(reqwest::header::CONTENT_LENGTH, len);
            }
            builder = builder.body(reqwest::Body::wrap_stream(stream));
        }
    }
    Ok(builder)
}

fn is_body_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-type")
        || name.eq_ignore_ascii_case("content-length")
        || name.eq_ignore_ascii_case("content-encoding")
}

/// Where one hop of a call goes.
#[derive(Debug, Clone, PartialEq)]
struct Hop {
    url: reqwest::Url,
    method: reqwest::Method,
    /// Still on the call's own origin: only then does the credential go along.
    trusted: bool,
    /// The request body goes along (not after a redirect that turns it into a GET).
    with_body: bool,
}

impl Hop {
    fn first(call: &Call<'_>) -> Self {
        Self {
            url: call.url.clone(),
            method: call.method.clone(),
            trusted: true,
            with_body: true,
        }
    }

    /// The hop a redirect answer leads to. Credentials never leave the call's origin
    /// (scheme, host and port): a redirect elsewhere is followed without them, the way
    /// curl does without `--location-trusted`; a redirect from https to http is
    /// refused, since whatever it carries would cross the network in clear.
    fn follow(
        &self,
        origin: &reqwest::Url,
        status: u16,
        location: &str,
    ) -> Result<Self, ProbeError> {
        let next = self.url.join(location).map_err(|e| {
            ProbeError::Target(format!("redirect ({status}) to an invalid location: {e}"))
        })?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(ProbeError::Target(format!(
                "redirect ({status}) to a `{}` URL refused",
                next.scheme()
            )));
        }
        if self.url.scheme() == "https" && next.scheme() == "http" {
            return Err(ProbeError::Target(format!(
                "redirect ({status}) from https to http ({}) refused: it would leave TLS",
                shown_url(&next)
            )));
        }
        // 303 always, and 301/302 after a POST (as browsers do), turn into a GET.
        let to_get =
            status == 303 || (matches!(status, 301 | 302) && self.method == reqwest::Method::POST);
        Ok(Self {
            trusted: self.trusted && next.origin() == origin.origin(),
            method: if to_get && self.method != reqwest::Method::HEAD {
                reqwest::Method::GET
            } else {
                self.method.clone()
            },
            with_body: self.with_body && !to_get,
            url: next,
        })
    }
}

async fn send_once(
    ctx: &ProbeContext,
    client: &reqwest::Client,
    call: &Call<'_>,
    credential: Option<&Credential>,
    shown: &str,
) -> Result<Answer, ProbeError> {
    let method = &call.method;
    let started = Instant::now();
    let exchange = async {
        let mut resp = follow(ctx, client, call, credential, shown).await?;
        let headers_ms = ms(started.elapsed());
        let status = resp.status().as_u16();
        let headers = header_map(resp.headers());
        let mut body = Vec::new();
        let mut spill: Option<Spill> = None;
        let mut total = 0usize;
        // A body that can spill to disk may be as large as max_response_bytes; one that
        // must stay in memory (SOAP, which is parsed whole) has a tighter cap.
        let (limit, setting) = if call.spill_to.is_some() {
            (ctx.max_response_bytes, "max_response_bytes")
        } else {
            (
                ctx.max_response_bytes.min(MAX_IN_MEMORY_BODY),
                "max_response_bytes, at most 32 MiB for a body parsed in memory",
            )
        };
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| ProbeError::Target(describe(method, shown, &e)))?
        {
            total += chunk.len();
            if total > limit {
                return Err(ProbeError::TooLarge { limit, setting });
            }
            if let Some(spill) = spill.as_mut() {
                spill.write(&chunk).await?;
                continue;
            }
            match call.spill_to.as_deref() {
                Some(path) if total > ctx.inline_body_bytes => {
                    // Too big to keep in memory: from here on the body goes to disk.
                    let mut file = Spill::create(path).await?;
                    file.write(&body).await?;
                    file.write(&chunk).await?;
                    body = Vec::new();
                    spill = Some(file);
                }
                _ => body.extend_from_slice(&chunk),
            }
        }
        let spilled = match spill {
            Some(file) => Some(file.finish().await?),
            None => None,
        };
        Ok(Answer {
            status,
            headers,
            body,
            spilled,
            timings: RestTimings {
                headers_ms,
                total_ms: ms(started.elapsed()),
            },
            attempts: 1,
        })
    };
    let limit = call.timeout.as_millis() as u64;
    let outcome = tokio::time::timeout(call.timeout, exchange)
        .await
        .map_err(|_| ProbeError::Timeout(limit))
        .and_then(|r| r);
    if outcome.is_err()
        && let Some(path) = &call.spill_to
    {
        // A failed or timed-out read leaves no partial body behind.
        let _ = tokio::fs::remove_file(part_path(path)).await;
    }
    outcome
}

/// Sends the call's request and follows its redirects (each hop checked by the
/// egress policy where it goes, the credential kept on the call's own origin): the
/// final response, its body not yet read.
async fn follow(
    ctx: &ProbeContext,
    client: &reqwest::Client,
    call: &Call<'_>,
    credential: Option<&Credential>,
    shown: &str,
) -> Result<reqwest::Response, ProbeError> {
    let method = &call.method;
    let mut hop = Hop::first(call);
    let mut redirects = 0;
    loop {
        // Off the call's origin, no client certificate either: the plain client.
        let plain;
        let hop_client = if hop.trusted {
            client
        } else {
            plain = ctx.client_for(call.ca_pem, None)?;
            &plain
        };
        // Every hop, the first and each redirect's, is checked where it goes.
        ctx.policy.check_url(Protocol::Http, &hop.url)?;
        let resp = request(ctx, hop_client, &hop, call, credential)
            .await?
            .send()
            .await
            .map_err(|e| match find_denial(&e) {
                Some(denial) => ProbeError::Policy(denial.clone()),
                None => ProbeError::Target(describe(method, shown, &e)),
            })?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok());
        let (true, Some(location)) = (matches!(status, 301 | 302 | 303 | 307 | 308), location)
        else {
            return Ok(resp);
        };
        redirects += 1;
        if redirects > MAX_REDIRECTS {
            return Err(ProbeError::Target(format!(
                "{method} {shown}: more than {MAX_REDIRECTS} redirects"
            )));
        }
        let next = hop.follow(&call.url, status, location)?;
        if hop.trusted && !next.trusted {
            tracing::debug!(from = %shown, to = %shown_url(&next.url), "redirect to another origin: followed without the credential");
        }
        hop = next;
    }
}

/// Opens a streamed download: the call's request made once (no retries), its
/// redirects followed as [`send`] does, the response returned once its headers came
/// (within the call's timeout) so the body can be read as it arrives — for bodies too
/// large to hold, such as a file import's.
pub async fn open(
    ctx: &ProbeContext,
    call: &Call<'_>,
    credential: Option<&Credential>,
) -> Result<reqwest::Response, ProbeError> {
    let client = ctx.client_for(call.ca_pem, credential)?;
    let shown = shown_url(&call.url);
    let limit = call.timeout.as_millis() as u64;
    tokio::time::timeout(call.timeout, follow(ctx, &client, call, credential, &shown))
        .await
        .map_err(|_| ProbeError::Timeout(limit))?
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// A response body being written to disk, its SHA-256 computed on the way.
struct Spill {
    file: tokio::fs::File,
    path: PathBuf,
    digest: aws_lc_rs::digest::Context,
    size: u64,
}

impl Spill {
    async fn create(path: &Path) -> Result<Self, ProbeError> {
        let io = |e: std::io::Error| {
            ProbeError::Target(format!(
                "writing the response body to {}: {e}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        let file = tokio::fs::File::create(part_path(path)).await.map_err(io)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            digest: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            size: 0,
        })
    }

    fn io_error(&self, e: std::io::Error) -> ProbeError {
        ProbeError::Target(format!(
            "writing the response body to {}: {e}",
            self.path.display()
        ))
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ProbeError> {
        self.digest.update(bytes);
        self.size += bytes.len() as u64;
        let written = self.file.write_all(bytes).await;
        written.map_err(|e| self.io_error(e))
    }

    /// fsyncs and renames the file into place: a body file that exists is complete.
    async fn finish(mut self) -> Result<SpilledBody, ProbeError> {
        let synced = async {
            self.file.flush().await?;
            self.file.sync_all().await?;
            tokio::fs::rename(part_path(&self.path), &self.path).await
        }
        .await;
        synced.map_err(|e| self.io_error(e))?;
        Ok(SpilledBody {
            size: self.size,
            sha256: hex::encode(self.digest.finish().as_ref()),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use openmid_proto::rest::RetryMode;

    fn hop(url: &str, method: reqwest::Method) -> Hop {
        Hop {
            url: reqwest::Url::parse(url).expect("url"),
            method,
            trusted: true,
            with_body: true,
        }
    }

    #[test]
    fn redirects_keep_credentials_on_the_origin_and_never_downgrade() {
        let origin = reqwest::Url::parse("https://api.corp:8443/v1/x").expect("url");
        let first = hop("https://api.corp:8443/v1/x", reqwest::Method::GET);
        let same = first.follow(&origin, 302, "/v2/x").expect("same origin");
        assert!(same.trusted);
        assert_eq!(same.url.as_str(), "https://api.corp:8443/v2/x");
        for elsewhere in [
            "https://cdn.corp:8443/x",
            "https://api.corp:9443/x",
            "https://API.corp.evil/x",
        ] {
            let next = first.follow(&origin, 307, elsewhere).expect("followed");
            assert!(!next.trusted, "{elsewhere}");
            // Once off the origin, never trusted again, even on the way back.
            let back = next.follow(&origin, 302, "https://api.corp:8443/v1/x");
            assert!(!back.expect("followed").trusted, "{elsewhere} and back");
        }
        let down = first.follow(&origin, 301, "http://api.corp:8443/v1/x");
        assert!(down.is_err_and(|e| e.to_string().contains("https to http")));
        assert!(first.follow(&origin, 302, "file:///etc/passwd").is_err());
        assert!(first.follow(&origin, 302, "ftp://api.corp/x").is_err());
    }

    #[test]
    fn redirects_change_the_method_as_browsers_do() {
        let origin = reqwest::Url::parse("http://h/").expect("url");
        let post = hop("http://h/a", reqwest::Method::POST);
        for (status, method, body) in [
            (301, reqwest::Method::GET, false),
            (302, reqwest::Method::GET, false),
            (303, reqwest::Method::GET, false),
            (307, reqwest::Method::POST, true),
            (308, reqwest::Method::POST, true),
        ] {
            let next = post.follow(&origin, status, "/b").expect("followed");
            assert_eq!((next.method, next.with_body), (method, body), "{status}");
        }
        let put = hop("http://h/a", reqwest::Method::PUT);
        let next = put.follow(&origin, 302, "/b").expect("followed");
        assert_eq!(next.method, reqwest::Method::PUT);
    }

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
