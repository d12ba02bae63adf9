//! Metric collection end to end: a real instance, a real MID and a real exporter on
//! loopback. The MID scrapes what the instance assigns, under its egress policy,
//! keeps samples on disk while the instance is away (bounded, skipped scrapes
//! counted as a series), and forwards them once each; the instance answers range
//! queries and forwards samples to a real Prometheus by remote write.

use crate::support::{MID, Stack};
use openmid_mid::RunningMid;
use openmid_mid::config::MidConfig;
use openmid_proto::ecc::{Queue, State};
use openmid_proto::metrics::{
    NewScrapeTarget, QueryRangeResponse, SKIPPED_SERIES, ScrapeAccepted, ScrapeTarget,
};
use openmid_proto::mid::MidStatus;
use openmid_proto::time::now_ms;
use openmid_testkit::exporter::{Exporter, GAUGE, SCRAPES};
use openmid_testkit::{Prometheus, TestInstance, loopback_any_port, wait_until};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn target(name: &str, url: &str, interval_ms: u64) -> NewScrapeTarget {
    NewScrapeTarget {
        agent: format!("mid.server.{MID}"),
        target: ScrapeTarget {
            name: name.into(),
            url: url.into(),
            interval_ms,
            timeout_ms: interval_ms,
            labels: BTreeMap::from([("team".to_string(), "core".to_string())]),
        },
    }
}

/// The raw samples of `selector` in the last hour: (labels, [(t_s, value)]).
async fn samples(instance: &TestInstance, selector: &str) -> QueryRangeResponse {
    instance
        .api
        .query_samples(&format!("{selector}[1h]"), None)
        .await
        .expect("query")
}

fn values(r: &QueryRangeResponse) -> Vec<String> {
    r.data
        .result
        .iter()
        .flat_map(|s| s.values.iter().map(|(_, v)| v.clone()))
        .collect()
}

/// Segment files waiting in the MID's sample buffer.
fn buffered(state_dir: &Path) -> usize {
    std::fs::read_dir(state_dir.join("metrics").join("buffer"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

fn buffer_bytes(state_dir: &Path) -> u64 {
    std::fs::read_dir(state_dir.join("metrics").join("buffer"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn scraped_samples_are_answered_by_range_queries_with_their_labels() {
    let stack = Stack::start().await;
    let exporter = Exporter::start().await.expect("exporter");
    exporter.set_gauge(42.5);
    exporter.set_extra("# a bad line is skipped, the rest kept\nnot a sample line\nopenmid_exporter_histogram_bucket{le=\"+Inf\"} 7\n");
    let api = &stack.instance.api;
    let view = api
        .put_scrape_target(&target("exp", &exporter.url(), 200))
        .await
        .expect("target set");
    assert_eq!(view.target.name, "exp");

    let selector = format!("{GAUGE}{{job=\"exp\"}}");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            !values(&samples(&stack.instance, &selector).await).is_empty()
        })
        .await,
        "the MID scraped the exporter and the samples reached the instance"
    );
    let start = (now_ms() - 60_000) as f64 / 1000.0;
    let end = (now_ms() as f64) / 1000.0;
    let r = api
        .query_range(&selector, &start.to_string(), &end.to_string(), "1s")
        .await
        .expect("query_range");
    assert_eq!(
        (r.status.as_str(), r.data.result_type.as_str()),
        ("success", "matrix")
    );
    assert_eq!(r.data.result.len(), 1, "{r:?}");
    let series = &r.data.result[0];
    let want: BTreeMap<String, String> = [
        ("__name__", GAUGE),
        ("job", "exp"),
        ("instance", &exporter.addr.to_string()),
        ("kind", "set by the caller"),
        ("team", "core"),
        ("mid", MID),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(series.metric, want);
    assert!(
        series.values.iter().all(|(_, v)| v == "42.5"),
        "{:?}",
        series.values
    );
    let up = samples(&stack.instance, "up{job=\"exp\"}").await;
    assert!(values(&up).iter().all(|v| v == "1") && !values(&up).is_empty());
    let bad = samples(&stack.instance, "scrape_bad_lines{job=\"exp\"}").await;
    assert!(
        values(&bad).iter().all(|v| v == "1"),
        "the bad line is counted: {bad:?}"
    );
    let hist = samples(&stack.instance, "openmid_exporter_histogram_bucket").await;
    assert_eq!(
        hist.data.result[0].metric.get("le").map(String::as_str),
        Some("+Inf")
    );
    assert!(
        api.series(&format!("{{job=~\"e.p\", __name__=\"{GAUGE}\"}}"))
            .await
            .expect("series")
            .data
            .len()
            == 1
    );

    // Bad input: 400 naming the parameter.
    for (query, needle) in [
        (
            format!("query_range?query={GAUGE}&start=soon&end=1&step=1"),
            "start",
        ),
        (
            format!("query_range?query={GAUGE}&start=1&end=2&step=0"),
            "step",
        ),
        (
            "query_range?query=%7B%7D&start=1&end=2&step=1".to_string(),
            "query",
        ),
        (format!("query_range?query={GAUGE}&start=1&end=2"), "step"),
    ] {
        let err = api.metrics_get(&query).await.expect_err(&query);
        let text = err.to_string();
        assert!(
            text.contains("400") || text.contains("invalid_query"),
            "{query}: {text}"
        );
        assert!(text.contains(needle), "{query}: {text}");
    }
    let bad_target = api
        .put_scrape_target(&target("x y", &exporter.url(), 200))
        .await
        .expect_err("a bad name is refused");
    assert!(bad_target.to_string().contains("name"), "{bad_target}");
    stack.stop().await;
}

/// Starts a MID named `name` with `edit` applied to its config, validated.
async fn mid_with(
    instance: &TestInstance,
    name: &str,
    state_dir: &Path,
    edit: impl FnOnce(&mut MidConfig),
) -> RunningMid {
    let token = instance.auto_validating_token().await.expect("token");
    let mut config = instance.mid_config(name, state_dir, Some(token));
    edit(&mut config);
    let mut mid = openmid_mid::start(config).await.expect("MID starts");
    assert!(
        mid.wait_for_status(MidStatus::Up, Duration::from_secs(20))
            .await
    );
    mid
}

#[tokio::test]
async fn samples_wait_on_disk_while_the_instance_is_down_and_arrive_once() {
    let stack = Stack::start().await;
    let exporter = Exporter::start().await.expect("exporter");
    let api = &stack.instance.api;
    api.put_scrape_target(&target("exp", &exporter.url(), 200))
        .await
        .expect("target set");
    let scrapes = format!("{SCRAPES}{{job=\"exp\"}}");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            !values(&samples(&stack.instance, &scrapes).await).is_empty()
        })
        .await,
        "scraping started"
    );
    let Stack {
        instance,
        target: _target,
        mid,
        dir,
    } = stack;
    let (addr, token, data) = (
        instance.running.addr,
        instance.token.clone(),
        instance.data_dir(),
    );
    instance.shutdown().await;
    let at_outage = exporter.scrapes();
    let state_dir = dir.path().join("mid");
    assert!(
        wait_until(Duration::from_secs(20), || {
            let (n, held) = (exporter.scrapes(), buffered(&state_dir));
            async move { n >= at_outage + 8 && held >= 4 }
        })
        .await,
        "the MID kept scraping into its buffer while the instance was down"
    );
    // The exporter goes away: from here on no new sample of its counter exists.
    exporter.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let served = exporter.scrapes();

    let instance = TestInstance::start_in(&data, addr, Some(token))
        .await
        .expect("restart");
    assert!(
        wait_until(Duration::from_secs(40), || {
            let n = buffered(&state_dir);
            async move { n == 0 }
        })
        .await,
        "the buffer drained once the instance was back"
    );
    let got = values(&samples(&instance, &scrapes).await);
    let want: Vec<String> = (1..=served).map(|n| n.to_string()).collect();
    assert_eq!(
        got, want,
        "every scrape's sample arrived, in order, none twice"
    );
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
}

#[tokio::test]
async fn a_full_buffer_skips_scrapes_and_says_so_in_a_series() {
    let dir = tempfile::tempdir().expect("dir");
    let instance = TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
        .await
        .expect("instance");
    let state_dir = dir.path().join("mid");
    const BOUND: u64 = 6_000;
    let mid = mid_with(&instance, MID, &state_dir, |c| {
        c.metrics.buffer_max_bytes = BOUND
    })
    .await;
    let exporter = Exporter::start().await.expect("exporter");
    instance
        .api
        .put_scrape_target(&target("exp", &exporter.url(), 100))
        .await
        .expect("target set");
    let up = "up{job=\"exp\"}";
    assert!(
        wait_until(Duration::from_secs(20), || async {
            !values(&samples(&instance, up).await).is_empty()
        })
        .await,
        "scraping started"
    );
    let (addr, token, data) = (
        instance.running.addr,
        instance.token.clone(),
        instance.data_dir(),
    );
    instance.shutdown().await;
    // Long enough for the bound to be reached and several scrapes skipped.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        buffer_bytes(&state_dir) <= BOUND,
        "the buffer kept to its bound"
    );
    let instance = TestInstance::start_in(&data, addr, Some(token))
        .await
        .expect("restart");
    let skipped = format!("{SKIPPED_SERIES}{{job=\"exp\"}}");
    assert!(
        wait_until(Duration::from_secs(40), || async {
            values(&samples(&instance, &skipped).await)
                .iter()
                .any(|v| v.parse::<f64>().is_ok_and(|n| n >= 3.0))
        })
        .await,
        "the skipped scrapes are reported as a series"
    );
    // The count only grows: nothing about the gap is lost.
    let counts: Vec<f64> = values(&samples(&instance, &skipped).await)
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
}

#[tokio::test]
async fn the_policy_refuses_a_target_outside_it_visibly() {
    let stack = Stack::start().await;
    let api = &stack.instance.api;
    api.put_scrape_target(&target("outside", "http://198.18.0.7:9100/metrics", 200))
        .await
        .expect("the instance accepts it; the MID's policy decides");
    let correlator = format!("metrics:{MID}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let accepted = loop {
        let page = api
            .list_records(&openmid_proto::api::RecordQuery {
                correlator: Some(correlator.clone()),
                limit: Some(100),
                ..Default::default()
            })
            .await
            .expect("records");
        let found = page
            .records
            .iter()
            .filter(|r| r.queue == Queue::Input && r.state == State::Processed)
            .filter_map(|r| serde_json::from_value::<ScrapeAccepted>(r.payload.clone()).ok())
            .find(|a| !a.refused.is_empty());
        if found.is_some() || tokio::time::Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let accepted = accepted.expect("the MID answered the assignment naming the refused target");
    assert_eq!(accepted.refused[0].name, "outside");
    assert!(
        accepted.refused[0].reason.contains("198.18.0.7"),
        "the reason names what was refused: {}",
        accepted.refused[0].reason
    );
    assert!(accepted.scraping.is_empty());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let none = samples(&stack.instance, "up{job=\"outside\"}").await;
    assert!(none.data.result.is_empty(), "nothing was scraped: {none:?}");
    stack.stop().await;
}

#[tokio::test]
async fn samples_reach_a_real_prometheus_by_remote_write() {
    if openmid_testkit::Prometheus::binary().is_none() {
        eprintln!(
            "SKIPPED: {} is not installed (apt-get install prometheus); the remote-write test did not run",
            openmid_testkit::prometheus::BINARY
        );
        return;
    }
    let prometheus = Prometheus::start().await.expect("prometheus starts");
    let dir = tempfile::tempdir().expect("dir");
    let mut config = openmid_instance::config::InstanceConfig {
        data_dir: dir.path().join("instance"),
        listen: loopback_any_port(),
        ..Default::default()
    };
    config.metrics.remote_write = Some(openmid_instance::config::RemoteWriteConfig {
        url: prometheus.write_url(),
        bearer_token: Some(openmid_proto::secret::Secret::new(
            "not-checked-by-prometheus",
        )),
        username: None,
        password: None,
        batch_samples: 50,
    });
    let instance = TestInstance::start_with(config, None)
        .await
        .expect("instance");
    let mid = instance
        .start_mid(MID, &dir.path().join("mid"), true)
        .await
        .expect("MID");
    let exporter = Exporter::start().await.expect("exporter");
    exporter.set_gauge(-3.25);
    instance
        .api
        .put_scrape_target(&target("exp", &exporter.url(), 200))
        .await
        .expect("target set");
    let query = format!("{GAUGE}{{job=\"exp\",mid=\"{MID}\"}}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let last = loop {
        let answer = prometheus.query(&query).await.unwrap_or_default();
        let arrived = answer["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty());
        if arrived || tokio::time::Instant::now() >= deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        last["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "Prometheus has the series: {last}"
    );
    let result = &last["data"]["result"][0];
    assert_eq!(result["value"][1], "-3.25", "{result}");
    assert_eq!(result["metric"]["team"], "core");
    assert_eq!(result["metric"]["instance"], exporter.addr.to_string());
    // The counter went over too, scrape by scrape.
    let scrapes = prometheus
        .query(&format!("count_over_time({SCRAPES}{{job=\"exp\"}}[10m])"))
        .await
        .expect("query");
    let n: f64 = scrapes["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(n >= 1.0, "{scrapes}");
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
}

/// The `mid` labels of the series `selector` matches, with samples after `after_ms`.
async fn scraped_by(instance: &TestInstance, selector: &str, after_ms: i64) -> Vec<String> {
    let r = samples(instance, selector).await;
    let mut mids: Vec<String> = r
        .data
        .result
        .iter()
        .filter(|s| s.values.iter().any(|(t, _)| *t * 1000.0 > after_ms as f64))
        .filter_map(|s| s.metric.get("mid").cloned())
        .collect();
    mids.sort();
    mids.dedup();
    mids
}

#[tokio::test]
async fn a_clusters_targets_are_each_scraped_by_one_up_member_and_move_when_it_goes_down() {
    let dir = tempfile::tempdir().expect("dir");
    let instance = TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
        .await
        .expect("instance");
    let a = instance
        .start_mid("mid-a", &dir.path().join("a"), true)
        .await
        .expect("mid-a");
    let b = instance
        .start_mid("mid-b", &dir.path().join("b"), true)
        .await
        .expect("mid-b");
    instance
        .api
        .create_cluster(&openmid_proto::api::NewCluster {
            name: "east".into(),
            kind: openmid_proto::api::ClusterKind::LoadBalance,
            members: vec!["mid-a".into(), "mid-b".into()],
        })
        .await
        .expect("cluster");
    let exporters = [
        Exporter::start().await.expect("e1"),
        Exporter::start().await.expect("e2"),
    ];
    for (i, e) in exporters.iter().enumerate() {
        let mut t = target(&format!("e{}", i + 1), &e.url(), 200);
        t.agent = "mid.cluster.east".into();
        instance.api.put_scrape_target(&t).await.expect("target");
    }
    let started = now_ms();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            scraped_by(&instance, "up{job=\"e1\"}", started).await.len() == 1
                && scraped_by(&instance, "up{job=\"e2\"}", started).await.len() == 1
        })
        .await,
        "both targets are scraped"
    );
    let views = instance
        .api
        .list_scrape_targets(Some("mid.cluster.east"))
        .await
        .expect("targets");
    let owners: Vec<Option<String>> = views.iter().map(|v| v.assigned_to.clone()).collect();
    assert_eq!(
        owners,
        vec![Some("mid-a".to_string()), Some("mid-b".to_string())],
        "one target per member"
    );
    // Each target by exactly its owner, never both members.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        scraped_by(&instance, "up{job=\"e1\"}", started).await,
        ["mid-a"]
    );
    assert_eq!(
        scraped_by(&instance, "up{job=\"e2\"}", started).await,
        ["mid-b"]
    );

    a.shutdown().await.expect("mid-a stops");
    let after = now_ms() + 500;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            scraped_by(&instance, "up{job=\"e1\"}", after).await == ["mid-b"]
        })
        .await,
        "mid-a's target moved to mid-b"
    );
    let views = instance
        .api
        .list_scrape_targets(Some("mid.cluster.east"))
        .await
        .expect("targets");
    assert!(
        views
            .iter()
            .all(|v| v.assigned_to.as_deref() == Some("mid-b")),
        "{views:?}"
    );
    assert_eq!(
        scraped_by(&instance, "up{job=\"e2\"}", after).await,
        ["mid-b"]
    );
    b.shutdown().await.expect("mid-b stops");
    instance.shutdown().await;
}

#[tokio::test]
async fn a_restarted_mid_scrapes_from_its_kept_assignment_while_the_instance_is_down() {
    let stack = Stack::start().await;
    let exporter = Exporter::start().await.expect("exporter");
    stack
        .instance
        .api
        .put_scrape_target(&target("exp", &exporter.url(), 200))
        .await
        .expect("target set");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            !values(&samples(&stack.instance, "up{job=\"exp\"}").await).is_empty()
        })
        .await,
        "scraping started"
    );
    let Stack {
        instance,
        target: _target,
        mid,
        dir,
    } = stack;
    let (addr, token, data) = (
        instance.running.addr,
        instance.token.clone(),
        instance.data_dir(),
    );
    let (url, cert) = (
        instance.running.url.clone(),
        instance.running.cert_path.clone(),
    );
    instance.shutdown().await;
    mid.shutdown().await.expect("MID stops");
    let state_dir = dir.path().join("mid");
    let before = exporter.scrapes();
    // A new MID process, with no instance to ask: the kept assignment is enough.
    let config = openmid_testkit::mid_config(&url, &cert, MID, &state_dir, None);
    let mid = openmid_mid::start(config).await.expect("MID restarts");
    assert!(
        wait_until(Duration::from_secs(20), || {
            let n = exporter.scrapes();
            async move { n >= before + 5 }
        })
        .await,
        "the restarted MID scrapes without the instance"
    );
    let instance = TestInstance::start_in(&data, addr, Some(token))
        .await
        .expect("restart");
    let scrapes = format!("{SCRAPES}{{job=\"exp\"}}");
    assert!(
        wait_until(Duration::from_secs(40), || async {
            values(&samples(&instance, &scrapes).await)
                .iter()
                .any(|v| v.parse::<u64>().is_ok_and(|n| n > before))
        })
        .await,
        "what it scraped meanwhile arrived"
    );
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
}

async fn ctl(stack: &Stack, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_openmid"))
        .arg("ctl")
        .args(args)
        .env("OPENMID_URL", &stack.instance.running.url)
        .env("OPENMID_TOKEN", stack.instance.token.expose())
        .env("OPENMID_CA", &stack.instance.running.cert_path)
        .output()
        .await
        .expect("ctl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn ctl_sets_targets_and_queries_samples() {
    let stack = Stack::start().await;
    let exporter = Exporter::start().await.expect("exporter");
    exporter.set_gauge(7.0);
    let agent = format!("mid.server.{MID}");
    let url = exporter.url();
    let (ok, out, err) = ctl(
        &stack,
        &[
            "metrics",
            "targets",
            "set",
            "--agent",
            &agent,
            "--name",
            "exp",
            "--url",
            &url,
            "--interval-ms",
            "200",
            "--label",
            "team=core",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("scrape target exp"), "{out}");
    let (ok, out, err) = ctl(
        &stack,
        &[
            "metrics", "targets", "set", "--agent", "mid.auto", "--name", "x", "--url", &url,
        ],
    )
    .await;
    assert!(
        !ok && err.contains("agent"),
        "mid.auto is refused naming the field: {out}{err}"
    );
    let selector = format!("{GAUGE}{{job=\"exp\"}}");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            !values(&samples(&stack.instance, &selector).await).is_empty()
        })
        .await,
        "scraped"
    );
    let (ok, out, err) = ctl(
        &stack,
        &["--json", "metrics", "query", &selector, "--step", "1s"],
    )
    .await;
    assert!(ok, "{out}{err}");
    let r: QueryRangeResponse = serde_json::from_str(&out).expect("JSON answer");
    assert!(
        !r.data.result.is_empty() && values(&r).iter().all(|v| v == "7"),
        "{out}"
    );
    let (ok, out, _) = ctl(&stack, &["metrics", "targets", "list"]).await;
    assert!(ok && out.contains("exp") && out.contains(MID), "{out}");
    let (ok, out, err) = ctl(&stack, &["metrics", "query", "1bad", "--step", "1s"]).await;
    assert!(
        !ok && (out + &err).contains("query"),
        "a bad selector names the parameter"
    );
    let (ok, _, err) = ctl(&stack, &["metrics", "targets", "delete", &agent, "exp"]).await;
    assert!(ok, "{err}");
    stack.stop().await;
}

#[tokio::test]
async fn remote_write_resumes_after_an_instance_restart_without_loss() {
    if openmid_testkit::Prometheus::binary().is_none() {
        eprintln!(
            "SKIPPED: {} is not installed (apt-get install prometheus); the remote-write resume test did not run",
            openmid_testkit::prometheus::BINARY
        );
        return;
    }
    let prometheus = Prometheus::start().await.expect("prometheus starts");
    let dir = tempfile::tempdir().expect("dir");
    let config = |listen| {
        let mut c = openmid_instance::config::InstanceConfig {
            data_dir: dir.path().join("instance"),
            listen,
            ..Default::default()
        };
        c.metrics.remote_write = Some(openmid_instance::config::RemoteWriteConfig {
            url: prometheus.write_url(),
            bearer_token: None,
            username: None,
            password: None,
            batch_samples: 7,
        });
        c
    };
    let instance = TestInstance::start_with(config(loopback_any_port()), None)
        .await
        .expect("instance");
    let mid = instance
        .start_mid(MID, &dir.path().join("mid"), true)
        .await
        .expect("MID");
    let exporter = Exporter::start().await.expect("exporter");
    instance
        .api
        .put_scrape_target(&target("exp", &exporter.url(), 200))
        .await
        .expect("target set");
    let scrapes = format!("{SCRAPES}{{job=\"exp\"}}");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            values(&samples(&instance, &scrapes).await).len() >= 5
        })
        .await
    );
    let (addr, token) = (instance.running.addr, instance.token.clone());
    instance.shutdown().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let instance = TestInstance::start_with(config(addr), Some(token))
        .await
        .expect("restart");
    tokio::time::sleep(Duration::from_secs(1)).await;
    exporter.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let served = exporter.scrapes();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            values(&samples(&instance, &scrapes).await).len() as u64 == served
        })
        .await,
        "the instance has every scrape"
    );
    let count = format!("count_over_time({scrapes}[1h])");
    let mut last = serde_json::Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        last = prometheus.query(&count).await.unwrap_or_default();
        if last["data"]["result"][0]["value"][1].as_str() == Some(served.to_string().as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        last["data"]["result"][0]["value"][1].as_str(),
        Some(served.to_string().as_str()),
        "Prometheus got every sample across the restart: {last}"
    );
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
}
