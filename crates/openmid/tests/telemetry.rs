//! The instance's and a real MID process's own series, scraped over HTTP as
//! Prometheus does, before and after real work: a REST call through the MID, one
//! the egress policy refuses, a refused admin token. Also: the MID opens no listener
//! unless configured, `/readyz` on both sides, and the Grafana dashboard uses only
//! series the two actually export.

use openmid_client::ActionOutcome;
use openmid_instance::config::InstanceConfig;
use openmid_mid::config::TelemetrySettings;
use openmid_proto::api::RestAction;
use openmid_proto::mid::MidStatus;
use openmid_proto::secret::Secret;
use openmid_testkit::{MidProcess, TargetService, TestInstance, loopback_any_port, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_openmid");
const METRICS_TOKEN: &str = "scrape-token-for-tests";

/// One sample line of the text format: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text format (what the test needs of it: no escapes inside
/// label values other than `\"`, which our labels never hold).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            panic!("not a sample line: {line}");
        };
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                let mut labels = BTreeMap::new();
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (name.to_string(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// Sum of the samples named `name` whose labels include `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Scraper {
    instance_http: reqwest::Client,
    instance_url: String,
    plain: reqwest::Client,
    mid_url: String,
}

impl Scraper {
    async fn instance(&self) -> Vec<Sample> {
        let resp = self
            .instance_http
            .get(format!("{}/metrics", self.instance_url))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("instance /metrics answers");
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")),
            "Prometheus text format"
        );
        parse(&resp.text().await.expect("body"))
    }

    async fn mid(&self) -> Vec<Sample> {
        let resp = self
            .plain
            .get(format!("{}/metrics", self.mid_url))
            .send()
            .await
            .expect("MID /metrics answers");
        assert_eq!(resp.status(), 200);
        parse(&resp.text().await.expect("body"))
    }

    async fn mid_readyz(&self) -> Option<(u16, serde_json::Value)> {
        let resp = self
            .plain
            .get(format!("{}/readyz", self.mid_url))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.ok()?))
    }
}

/// TCP ports process `pid` listens on, from `/proc` (its socket inodes matched with
/// the LISTEN rows of the kernel's tables).
fn listening_ports(pid: u32) -> Vec<u16> {
    let mut inodes = BTreeSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                let link = link.to_string_lossy().into_owned();
                if let Some(inode) = link
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
                {
                    inodes.insert(inode.to_string());
                }
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            // local_address, …, st (0A = LISTEN), …, inode (column 9).
            if cols.len() > 9
                && cols[3] == "0A"
                && inodes.contains(cols[9])
                && let Some(port) = cols[1]
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            {
                ports.push(port);
            }
        }
    }
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_and_mid_series_move_with_real_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_with(
        InstanceConfig {
            data_dir: dir.path().join("instance"),
            listen: loopback_any_port(),
            metrics_token: Some(Secret::new(METRICS_TOKEN)),
            heartbeat_ms: 500,
            ..InstanceConfig::default()
        },
        None,
    )
    .await
    .expect("instance");
    let target = TargetService::start().await.expect("target");
    let token = instance.auto_validating_token().await.expect("token");

    // A MID with the listener, and one without.
    let port = free_loopback_port();
    let mut config = instance.mid_config("tele-mid", &dir.path().join("mid"), Some(token));
    config.telemetry = Some(TelemetrySettings {
        listen: format!("127.0.0.1:{port}").parse().expect("addr"),
        allow_remote: false,
    });
    let _mid = MidProcess::spawn(Path::new(BIN), &config).expect("MID process");
    // Enrollment tokens are single-use.
    let second_token = instance.auto_validating_token().await.expect("token");
    let quiet_config =
        instance.mid_config("quiet-mid", &dir.path().join("quiet"), Some(second_token));
    let quiet = MidProcess::spawn(Path::new(BIN), &quiet_config).expect("second MID process");
    for name in ["tele-mid", "quiet-mid"] {
        assert!(
            wait_until(Duration::from_secs(30), || async {
                instance
                    .api
                    .get_mid(name)
                    .await
                    .is_ok_and(|m| m.status == MidStatus::Up)
            })
            .await,
            "{name} up"
        );
    }
    assert_eq!(
        listening_ports(quiet.pid()),
        Vec::<u16>::new(),
        "a MID without [telemetry] listens on nothing"
    );

    let tls = openmid_proto::trust::client_config(&instance.trust().expect("trust"))
        .expect("tls config")
        .expect("a CA trust gives a TLS config");
    let scraper = Scraper {
        instance_http: reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .build()
            .expect("client"),
        instance_url: instance.running.url.clone(),
        plain: reqwest::Client::new(),
        mid_url: format!("http://127.0.0.1:{port}"),
    };

    // Without the metrics token, /metrics is refused in the API's error format.
    let refused = scraper
        .instance_http
        .get(format!("{}/metrics", scraper.instance_url))
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.expect("json error");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("metrics_token")),
        "{body}"
    );

    // Readiness on both sides; liveness on the MID.
    let ready = scraper
        .instance_http
        .get(format!("{}/readyz", scraper.instance_url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            scraper.mid_readyz().await.is_some_and(|(s, _)| s == 200)
        })
        .await,
        "the MID is ready once the instance answers it"
    );
    let healthz = scraper
        .plain
        .get(format!("{}/healthz", scraper.mid_url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(healthz.status(), 200);

    let i0 = scraper.instance().await;
    let m0 = scraper.mid().await;
    assert_eq!(value(&i0, "openmid_mids", &[("status", "up")]), 2.0);
    assert_eq!(
        value(&m0, "openmid_mid_pool_size", &[("pool", "interactive")]),
        f64::from(config.pools.interactive)
    );
    assert_eq!(value(&m0, "openmid_mid_session_up", &[]), 1.0);

    // One REST call through the MID.
    let action = RestAction {
        timeout_ms: Some(10_000),
        ..RestAction::new("mid.server.tele-mid", target.url("/hello"))
    };
    match instance
        .api
        .rest_action(&action, Duration::from_secs(20))
        .await
        .expect("accepted")
    {
        ActionOutcome::Done(r) => assert_eq!(r.response.map(|r| r.status), Some(200)),
        ActionOutcome::Pending(p) => panic!("not finished: output {}", p.output_id),
    }
    // One the egress policy refuses (the test policy allows loopback only).
    let denied = RestAction {
        timeout_ms: Some(10_000),
        ..RestAction::new("mid.server.tele-mid", "http://10.255.255.1:8080/x")
    };
    match instance
        .api
        .rest_action(&denied, Duration::from_secs(20))
        .await
        .expect("accepted")
    {
        ActionOutcome::Done(r) => assert!(
            r.error
                .as_deref()
                .is_some_and(|e| e.contains("egress policy")),
            "{:?}",
            r.error
        ),
        ActionOutcome::Pending(p) => panic!("not finished: output {}", p.output_id),
    }
    // A refused admin token.
    let intruder = openmid_client::ApiClient::new(
        &instance.running.url,
        Secret::new("omadm_not-the-token"),
        &instance.trust().expect("trust"),
    )
    .expect("client");
    assert!(intruder.list_mids().await.is_err());

    let i1 = scraper.instance().await;
    let m1 = scraper.mid().await;
    let moved = |before: &[Sample], after: &[Sample], name: &str, labels: &[(&str, &str)]| {
        value(after, name, labels) - value(before, name, labels)
    };
    let rest = [("topic", "RESTProbe")];
    // At least: the MIDs may also have answered their metric-scrape assignments.
    assert!(
        moved(
            &i0,
            &i1,
            "openmid_results_total",
            &[("outcome", "recorded")]
        ) >= 2.0
    );
    assert_eq!(
        moved(&i0, &i1, "openmid_pickup_latency_seconds_count", &rest),
        2.0
    );
    assert_eq!(
        moved(&i0, &i1, "openmid_execution_seconds_count", &rest),
        2.0
    );
    assert!(
        value(
            &i1,
            "openmid_execution_seconds_bucket",
            &[("topic", "RESTProbe"), ("le", "+Inf")]
        ) >= 2.0
    );
    assert_eq!(
        value(
            &i1,
            "openmid_queue_depth",
            &[("state", "ready"), ("topic", "RESTProbe")]
        ),
        0.0,
        "nothing waits"
    );
    assert_eq!(
        value(
            &i1,
            "openmid_queue_depth",
            &[("state", "processing"), ("topic", "RESTProbe")]
        ),
        0.0
    );
    assert!(moved(&i0, &i1, "openmid_auth_failures_total", &[]) >= 1.0);
    assert!(
        moved(
            &i0,
            &i1,
            "openmid_http_requests_total",
            &[
                ("route", "/api/v1/actions/{id}"),
                ("method", "POST"),
                ("status", "200")
            ]
        ) >= 2.0,
        "the actions counted under their route template"
    );
    assert!(
        moved(
            &i0,
            &i1,
            "openmid_session_frames_total",
            &[("kind", "results")]
        ) >= 1.0,
        "the MID's results frames on its session stream are counted"
    );
    assert!(
        moved(
            &i0,
            &i1,
            "openmid_http_requests_total",
            &[("status", "401")]
        ) >= 1.0
    );
    for (name, labels, _) in &i1 {
        if let Some(route) = labels.get("route") {
            assert!(
                !route.contains("tele-mid") && !route.contains("rest/"),
                "a raw path leaked into {name}: {route}"
            );
        }
    }
    assert_eq!(
        moved(
            &m0,
            &m1,
            "openmid_mid_jobs_total",
            &[("topic", "RESTProbe"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            &m0,
            &m1,
            "openmid_mid_jobs_total",
            &[("topic", "RESTProbe"), ("outcome", "denied")]
        ),
        1.0
    );
    assert_eq!(moved(&m0, &m1, "openmid_mid_job_seconds_count", &rest), 2.0);
    assert!(
        moved(
            &m0,
            &m1,
            "openmid_mid_policy_denials_total",
            &[("kind", "http")]
        ) >= 1.0
    );
    assert_eq!(
        value(&m1, "openmid_mid_pool_busy", &[("pool", "interactive")]),
        0.0,
        "no call runs now"
    );

    // The dashboard uses only series these two export.
    let exported: BTreeSet<&str> = i1
        .iter()
        .chain(m1.iter())
        .map(|(n, _, _)| n.as_str())
        .collect();
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/openmid.json"
    ))
    .expect("dashboard file");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).expect("valid JSON");
    let mut used = BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(q) = v["query"].as_str() {
            exprs.push(q.to_string());
        }
    }
    for expr in &exprs {
        let bytes = expr.as_bytes();
        let mut i = 0;
        while let Some(at) = expr[i..].find("openmid_") {
            let start = i + at;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            used.insert(expr[start..end].to_string());
            i = end;
        }
    }
    assert!(
        used.len() >= 15,
        "the dashboard covers the series: {used:?}"
    );
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard uses series nobody exports: {missing:?}"
    );

    // The instance stops: the MID is no longer ready, and says why.
    instance.shutdown().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let answer = scraper.mid_readyz().await;
        if let Some((503, body)) = answer {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the MID's /readyz turns 503 when the instance stops: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("does not answer")),
        "{body}"
    );
    let m2 = scraper.mid().await;
    assert_eq!(value(&m2, "openmid_mid_session_up", &[]), 0.0);
}
