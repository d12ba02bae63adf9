//! One scrape of one target: a GET under the egress policy (the shared probe client
//! resolves every name through the policy), the body read up to a cap, parsed, and
//! labelled as Prometheus labels it (`job`, `instance`, the target's own labels), with
//! the per-scrape series Prometheus adds (`up`, `scrape_duration_seconds`,
//! `scrape_samples_scraped`).

use openmid_proto::metrics::{NAME_LABEL, Sample, ScrapeTarget, SeriesSamples, text};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Largest exposition read (Prometheus' default `body_size_limit` is unlimited; a MID
/// must not be made to hold an unbounded body).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What a scrape found.
pub struct Scraped {
    /// Every series, the per-scrape ones included.
    pub series: Vec<SeriesSamples>,
    /// Why it failed (`up` is 0), if it did.
    pub error: Option<String>,
    /// Lines of the body that were skipped.
    pub bad_lines: Vec<text::LineError>,
}

/// The labels every sample of `target` carries.
pub fn target_labels(target: &ScrapeTarget) -> BTreeMap<String, String> {
    let mut labels = target.labels.clone();
    labels.insert("job".into(), target.name.clone());
    if let Ok(url) = url::Url::parse(&target.url) {
        let host = url.host_str().unwrap_or_default();
        let instance = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        labels.insert("instance".into(), instance);
    }
    labels
}

/// One series of one sample with the target's labels.
pub fn single(name: &str, base: &BTreeMap<String, String>, t_ms: i64, value: f64) -> SeriesSamples {
    let mut labels = base.clone();
    labels.insert(NAME_LABEL.into(), name.into());
    SeriesSamples {
        labels,
        samples: vec![Sample { t_ms, value }],
    }
}

/// Scrapes `target` once, at `t_ms`.
pub async fn scrape(client: &reqwest::Client, target: &ScrapeTarget, t_ms: i64) -> Scraped {
    let base = target_labels(target);
    let started = Instant::now();
    let fetched = tokio::time::timeout(
        Duration::from_millis(target.timeout_ms),
        fetch(client, &target.url),
    )
    .await
    .unwrap_or_else(|_| Err(format!("timed out after {} ms", target.timeout_ms)));
    let mut series = Vec::new();
    let mut bad_lines = Vec::new();
    let error = match fetched {
        Ok(body) => {
            let exposition = text::parse(&body);
            bad_lines = exposition.errors;
            let mut by_labels: BTreeMap<BTreeMap<String, String>, Vec<Sample>> = BTreeMap::new();
            for s in exposition.samples {
                let mut labels = BTreeMap::new();
                for (k, v) in s.labels {
                    // The target's own labels win; the scraped one is kept renamed.
                    if base.contains_key(&k) {
                        labels.insert(format!("exported_{k}"), v);
                    } else {
                        labels.insert(k, v);
                    }
                }
                labels.extend(base.clone());
                labels.insert(NAME_LABEL.into(), s.name);
                by_labels.entry(labels).or_default().push(Sample {
                    t_ms: s.timestamp_ms.unwrap_or(t_ms),
                    value: s.value,
                });
            }
            series.extend(
                by_labels
                    .into_iter()
                    .map(|(labels, samples)| SeriesSamples { labels, samples }),
            );
            None
        }
        Err(e) => Some(e),
    };
    let scraped = series.iter().map(|s| s.samples.len()).sum::<usize>();
    let elapsed = started.elapsed().as_secs_f64();
    series.push(single(
        "up",
        &base,
        t_ms,
        if error.is_none() { 1.0 } else { 0.0 },
    ));
    series.push(single("scrape_duration_seconds", &base, t_ms, elapsed));
    series.push(single(
        "scrape_samples_scraped",
        &base,
        t_ms,
        scraped as f64,
    ));
    series.push(single(
        "scrape_bad_lines",
        &base,
        t_ms,
        bad_lines.len() as f64,
    ));
    Scraped {
        series,
        error,
        bad_lines,
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let mut resp = client
        .get(url)
        .header(
            reqwest::header::ACCEPT,
            "text/plain;version=0.0.4;q=1,*/*;q=0.1",
        )
        .send()
        .await
        .map_err(|e| describe(&e))?;
    if !resp.status().is_success() {
        return Err(format!(
            "the target answered HTTP {}",
            resp.status().as_u16()
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(format!(
                "the exposition is larger than {MAX_BODY_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "the exposition is not UTF-8".to_string())
}

/// A failed request, with the policy's denial when that is the cause.
fn describe(e: &reqwest::Error) -> String {
    match crate::policy::find_denial(e) {
        Some(denial) => denial.to_string(),
        None => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            msg
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves `body` at `/metrics` (and 503 at `/down`) on loopback.
    async fn serve(body: &'static str) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .route("/metrics", axum::routing::get(move || async move { body }))
            .route(
                "/down",
                axum::routing::get(|| async {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "no")
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn target(url: String) -> ScrapeTarget {
        ScrapeTarget {
            name: "node".into(),
            url,
            interval_ms: 1000,
            timeout_ms: 1000,
            labels: BTreeMap::from([("team".to_string(), "core".to_string())]),
        }
    }

    fn find<'a>(s: &'a Scraped, name: &str) -> &'a SeriesSamples {
        s.series
            .iter()
            .find(|x| x.labels.get(NAME_LABEL).map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[tokio::test]
    async fn samples_are_labelled_as_prometheus_labels_them() {
        let addr = serve("a{job=\"theirs\",x=\"1\"} 5\nb 2 1000\nbroken line\n").await;
        let client = reqwest::Client::new();
        let s = scrape(&client, &target(format!("http://{addr}/metrics")), 77).await;
        assert_eq!(s.error, None);
        assert_eq!(s.bad_lines.len(), 1);
        let a = find(&s, "a");
        assert_eq!(a.labels.get("job").map(String::as_str), Some("node"));
        assert_eq!(
            a.labels.get("exported_job").map(String::as_str),
            Some("theirs")
        );
        assert_eq!(a.labels.get("instance"), Some(&addr.to_string()));
        assert_eq!(a.labels.get("team").map(String::as_str), Some("core"));
        assert_eq!(a.samples[0].t_ms, 77, "no timestamp written: the scrape's");
        assert_eq!(
            find(&s, "b").samples[0].t_ms,
            1000,
            "the exposition's own timestamp"
        );
        assert_eq!(find(&s, "up").samples[0].value, 1.0);
        assert_eq!(find(&s, "scrape_samples_scraped").samples[0].value, 2.0);
        assert_eq!(find(&s, "scrape_bad_lines").samples[0].value, 1.0);
    }

    #[tokio::test]
    async fn a_failed_scrape_is_up_zero_with_the_reason() {
        let addr = serve("").await;
        let client = reqwest::Client::new();
        let s = scrape(&client, &target(format!("http://{addr}/down")), 1).await;
        assert!(
            s.error.as_deref().is_some_and(|e| e.contains("503")),
            "{:?}",
            s.error
        );
        assert_eq!(find(&s, "up").samples[0].value, 0.0);
    }
}
