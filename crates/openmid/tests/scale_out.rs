//! Several instance nodes on one PostgreSQL, as behind a load balancer: they share
//! the MIDs' presence, wake each other's long-polls and waiting API calls, read each
//! other's blobs, hand the housekeeping on when the node doing it dies, and a node
//! killed under load loses nothing and records nothing twice.
//!
//! Every node serves the same certificate and holds the same master key, as the
//! README says each node must.

use crate::support::MID;
use openmid_client::ActionOutcome;
use openmid_instance::config::InstanceConfig;
use openmid_proto::api::{RecordQuery, RestAction};
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_proto::secret::Secret;
use openmid_testkit::databases::Database;
use openmid_testkit::{
    InstanceProcess, NodeOptions, TargetService, TestInstance, loopback_any_port, wait_until,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_openmid");

/// A master key every node of the test's instance shares (32 bytes, hex).
fn master_key() -> Secret {
    Secret::new("5c".repeat(32))
}

fn store_url(db: &Database) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{}", db.name)
}

fn node_config(
    data_dir: &Path,
    url: &str,
    blobs: &Path,
    tls: Option<&(PathBuf, PathBuf)>,
) -> InstanceConfig {
    InstanceConfig {
        data_dir: data_dir.to_path_buf(),
        listen: loopback_any_port(),
        database: Some(Secret::new(url)),
        blob_dir: Some(blobs.to_path_buf()),
        tls_cert: tls.map(|t| t.0.clone()),
        tls_key: tls.map(|t| t.1.clone()),
        master_key: Some(master_key()),
        ..InstanceConfig::default()
    }
}

/// The certificate and key the first node made, for the others to serve.
fn tls_of(first_data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = first_data_dir.join("tls");
    (dir.join("instance.crt"), dir.join("instance.key"))
}

fn get(url: String) -> RestAction {
    RestAction {
        timeout_ms: Some(10_000),
        ..RestAction::new(format!("mid.server.{MID}"), url)
    }
}

#[tokio::test]
async fn two_nodes_share_presence_wake_ups_waits_and_blobs() {
    let Some(db) = Database::create("scale_out", false) else {
        return;
    };
    let url = store_url(&db);
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = dir.path().join("shared-blobs");
    let target = TargetService::start().await.expect("target");
    let a = TestInstance::start_with(node_config(&dir.path().join("a"), &url, &blobs, None), None)
        .await
        .expect("node a");
    let tls = tls_of(&a.data_dir());
    let b = TestInstance::start_with(
        node_config(&dir.path().join("b"), &url, &blobs, Some(&tls)),
        Some(a.token.clone()),
    )
    .await
    .expect("node b joins on the same database");

    let nodes = b.api.list_nodes().await.expect("nodes");
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    assert!(nodes.iter().all(|n| n.alive), "{nodes:?}");
    assert_eq!(
        nodes.iter().filter(|n| n.leader).count(),
        1,
        "one node does the housekeeping: {nodes:?}"
    );

    // The MID long-polls node a only.
    let mid = a
        .start_mid(MID, &dir.path().join("mid"), true)
        .await
        .expect("MID enrolls through a");
    // Node b counts it as connected, and keeps doing so past the disconnect grace:
    // b never saw a poll from it, and does not take it for gone.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    for node in [&a, &b] {
        let seen = node.api.get_mid(MID).await.expect("the MID");
        assert_eq!(seen.status, MidStatus::Up, "up on every node");
    }

    // Work inserted through b reaches the MID polling a, and b's `?wait` returns the
    // result the MID posted to a.
    let started = Instant::now();
    let via_b = match b
        .api
        .rest_action(&get(target.url("/hello?via=b")), Duration::from_secs(20))
        .await
        .expect("accepted by b")
    {
        ActionOutcome::Done(r) => *r,
        ActionOutcome::Pending(p) => panic!("b's wait did not see the result: {p:?}"),
    };
    assert_eq!(via_b.state, State::Processed);
    assert_eq!(via_b.response.map(|r| r.status), Some(200));
    // Woken across nodes, not found when the MID's poll timed out (30 s).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    // Inserted through a without waiting; waited for on b.
    let pending = match a
        .api
        .rest_action(&get(target.url("/hello?via=a")), Duration::ZERO)
        .await
        .expect("accepted by a")
    {
        ActionOutcome::Pending(p) => p.output_id,
        ActionOutcome::Done(r) => r.output_id,
    };
    let waited: openmid_proto::api::RestActionResult = match b
        .api
        .get_action(&pending, Duration::from_secs(20))
        .await
        .expect("b answers")
    {
        ActionOutcome::Done(r) => *r,
        ActionOutcome::Pending(p) => panic!("b's wait did not see a's output finish: {p:?}"),
    };
    assert_eq!(waited.state, State::Processed);
    assert_eq!(target.hits(), 2);

    // A blob uploaded through one node is read through the other.
    let body = vec![7u8; 300_000];
    let blob = a
        .api
        .upload_blob(reqwest::Body::from(body.clone()))
        .await
        .expect("upload through a");
    let copy = dir.path().join("copy");
    b.api
        .download_blob(&blob.id, &copy)
        .await
        .expect("download through b");
    assert_eq!(std::fs::read(&copy).expect("copy"), body);

    // Node a stops: the MID moves to b by itself (standby URL) — here it is told b's
    // URL by restarting it with a config naming both, as an operator's would.
    mid.shutdown().await.expect("MID stops");
    let mut config = a.mid_config(MID, &dir.path().join("mid"), None);
    config.standby_urls = vec![b.running.url.clone()];
    let mut mid = openmid_mid::start(config).await.expect("MID restarts");
    assert!(
        mid.wait_for_status(MidStatus::Up, Duration::from_secs(20))
            .await
    );
    let before = b.api.mid_history(MID).await.expect("history").len();
    a.shutdown().await;
    let after_move = match b
        .api
        .rest_action(
            &get(target.url("/hello?after=a-stopped")),
            Duration::from_secs(30),
        )
        .await
        .expect("accepted by b")
    {
        ActionOutcome::Done(r) => *r,
        ActionOutcome::Pending(p) => panic!("not done after a stopped: {p:?}"),
    };
    assert_eq!(after_move.state, State::Processed);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            b.api
                .list_nodes()
                .await
                .is_ok_and(|n| n.iter().any(|n| n.answering && n.leader))
        })
        .await,
        "b does the housekeeping once a is gone"
    );
    // Past the node timeout and the grace: the MID moved, it never went down.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let history = b.api.mid_history(MID).await.expect("history");
    assert_eq!(
        history.len(),
        before,
        "no status change when the MID moved between nodes: {history:?}"
    );
    assert_eq!(b.api.get_mid(MID).await.expect("MID").status, MidStatus::Up);
    mid.shutdown().await.expect("MID stops");
    b.shutdown().await;
}

#[tokio::test]
async fn a_node_killed_under_load_loses_nothing_and_records_nothing_twice() {
    let Some(db) = Database::create("scale_out_kill", false) else {
        return;
    };
    let url = store_url(&db);
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = dir.path().join("shared-blobs");
    std::fs::create_dir_all(dir.path().join("a")).expect("a dir");
    std::fs::create_dir_all(dir.path().join("b")).expect("b dir");
    let shared = NodeOptions {
        database: Some(Secret::new(url.clone())),
        blob_dir: Some(blobs),
        master_key: Some(master_key()),
        // A poll answer the killed node had committed but not yet sent never reaches
        // the MID: that job waits for its lease to lapse and runs again (attempt 2).
        // A short lease keeps the wait short.
        env: vec![
            ("OPENMID_INSTANCE_LEASE_MS".into(), "4000".into()),
            ("OPENMID_INSTANCE_HEARTBEAT_MS".into(), "1000".into()),
        ],
        ..NodeOptions::default()
    };
    // Node a starts first, so it is the one doing the housekeeping when it is killed.
    let mut a = InstanceProcess::spawn_node(Path::new(BIN), &dir.path().join("a"), &shared, "info")
        .expect("node a");
    let b = InstanceProcess::spawn_node(
        Path::new(BIN),
        &dir.path().join("b"),
        &NodeOptions {
            tls: Some(tls_of(&dir.path().join("a"))),
            token: Some(a.token.clone()),
            ..shared.clone()
        },
        "info",
    )
    .expect("node b");
    let api_a = a.api().expect("a's API");
    let api_b = b.api().expect("b's API");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            api_a
                .list_nodes()
                .await
                .is_ok_and(|n| n.iter().any(|n| n.answering && n.leader))
        })
        .await,
        "a, started first, leads"
    );

    let target = TargetService::start().await.expect("target");
    let token = openmid_testkit::auto_validating_token(&api_a)
        .await
        .expect("token");
    let mut config = a.mid_config(MID, &dir.path().join("mid"), Some(token));
    config.standby_urls = vec![b.url.clone()];
    let mut mid = openmid_mid::start(config).await.expect("MID");
    assert!(
        mid.wait_for_status(MidStatus::Up, Duration::from_secs(20))
            .await,
        "the MID is up through a"
    );

    // Load through b (which stays): 8 callers, 40 calls each, every one waiting.
    const CALLERS: usize = 8;
    const CALLS: usize = 40;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let api = api_b.clone();
        let target_url = target.url("/");
        let done = done.clone();
        callers.spawn(async move {
            let mut ids = Vec::new();
            for call in 0..CALLS {
                let action = get(format!("{target_url}hello?caller={caller}&call={call}"));
                let id = match api
                    .rest_action(&action, Duration::from_secs(60))
                    .await
                    .expect("b accepts every call")
                {
                    ActionOutcome::Done(r) => {
                        assert_eq!(r.state, State::Processed, "{r:?}");
                        assert_eq!(r.response.as_ref().map(|x| x.status), Some(200));
                        r.output_id
                    }
                    ActionOutcome::Pending(p) => panic!("not finished in 60 s: {p:?}"),
                };
                ids.push(id);
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            ids
        });
    }
    assert!(
        wait_until(Duration::from_secs(60), || async {
            done.load(std::sync::atomic::Ordering::Relaxed) >= CALLERS * CALLS / 4
        })
        .await,
        "a quarter of the calls are done before the kill"
    );
    a.kill();
    let killed = Instant::now();
    let mut ids = Vec::new();
    while let Some(joined) = callers.join_next().await {
        ids.extend(joined.expect("caller"));
    }
    let total = CALLERS * CALLS;
    assert_eq!(ids.len(), total);

    // Every call ran once, and one result is recorded for each.
    assert_eq!(
        target.hits(),
        total as u64,
        "each call reached the target once"
    );
    let inputs =
        db.query("SELECT count(*), count(DISTINCT response_to) FROM ecc WHERE queue = 'input'");
    assert_eq!(
        inputs.trim(),
        format!("{total}|{total}"),
        "one input per output"
    );
    let unfinished = db.query(
        "SELECT count(*) FROM ecc WHERE queue = 'output' AND (state <> 'processed' OR attempt > 2)",
    );
    assert_eq!(
        unfinished.trim(),
        "0",
        "every output processed, at most once again"
    );
    let again = db.query("SELECT count(*) FROM ecc WHERE queue = 'output' AND attempt = 2");

    // b took the housekeeping over, and the MID never went down.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            api_b
                .list_nodes()
                .await
                .is_ok_and(|n| n.iter().any(|n| n.answering && n.leader))
        })
        .await,
        "b leads once a is dead"
    );
    let history = api_b.mid_history(MID).await.expect("history");
    assert!(
        history.iter().all(|c| c.to != MidStatus::Down),
        "the MID moved to b without going down: {history:?}"
    );
    let page = api_b
        .list_records(&RecordQuery {
            queue: Some("output".into()),
            limit: Some(1),
            ..RecordQuery::default()
        })
        .await
        .expect("records");
    assert!(!page.records.is_empty());
    eprintln!(
        "{total} calls, node a killed after {} of them; all done {:?} after the kill; {} claimed in an answer the killed node never sent, run again after their lease",
        CALLERS * CALLS / 4,
        killed.elapsed(),
        again.trim()
    );
    mid.shutdown().await.expect("MID stops");
    drop(b);
}
