//! The scheduler against a real store, with a clock the test moves: runs start when
//! due and only then, a run due while the previous one runs is skipped, two
//! schedulers never start one due run twice, and retention purges ended sets.

use super::*;
use crate::config::InstanceConfig;
use crate::ecc::{RegistryStore, SqliteStore};
use crate::vault::Vault;
use openmid_proto::import::DataSource;
use openmid_proto::time::parse_rfc3339;
use std::sync::atomic::{AtomicI64, Ordering};

/// A clock that stands where the test puts it.
struct TestClock(AtomicI64);

impl TestClock {
    fn at(text: &str) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(parse_rfc3339(text).expect("time"))))
    }

    fn set(&self, text: &str) {
        self.0
            .store(parse_rfc3339(text).expect("time"), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

async fn dispatcher(dir: &tempfile::TempDir) -> Arc<Dispatcher> {
    let store = SqliteStore::open(&dir.path().join("openmid.db"))
        .await
        .expect("store");
    let config = InstanceConfig {
        data_dir: dir.path().to_path_buf(),
        ..InstanceConfig::default()
    };
    // Runs go to a cluster with no member up: queued, never run (no MID runs here).
    store
        .put_cluster(
            "importers",
            openmid_proto::api::ClusterKind::Failover,
            &["m1".to_string()],
            openmid_proto::time::now_ms(),
        )
        .await
        .expect("cluster");
    Arc::new(Dispatcher::new(
        Arc::new(store),
        Arc::new(config),
        Arc::new(Vault::from_key([7; 32])),
    ))
}

fn file_source(name: &str, schedule: serde_json::Value) -> DataSource {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "kind": "file",
        "read": {"path": "/srv/imports/hosts.csv", "format": {"type": "csv"}},
        "agent": "mid.cluster.importers",
        "schedule": schedule,
    }))
    .expect("data source")
}

/// Puts a source whose schedule counts from the test clock's time (saving it uses
/// the real time; `next_run_at` is what the scheduler reads).
async fn put(d: &Dispatcher, clock: &TestClock, source: DataSource) {
    let name = source.name.clone();
    let compiled = Compiled::new(source.schedule.as_ref().expect("schedule")).expect("compiles");
    d.imports()
        .put_data_source(source, true)
        .await
        .expect("saved");
    let row = d
        .store()
        .get_data_source(&name)
        .await
        .expect("read")
        .expect("row");
    let now = clock.now_ms();
    assert!(
        d.store()
            .reschedule_data_source(
                &name,
                row.next_run_at,
                compiled.next_after(now, Some(now)),
                Some(now)
            )
            .await
            .expect("reschedule")
    );
}

/// Ends the running output of `source`'s import set (no MID runs in these tests: it
/// is cancelled).
async fn end_last_run(d: &Dispatcher, source: &str) {
    let sets = d
        .store()
        .list_import_sets(Some(source), Some("running"), None, 1)
        .await
        .expect("list");
    let set = sets.first().expect("a running set");
    d.cancel(&set.output_id).await.expect("cancel");
}

#[tokio::test]
async fn runs_start_when_due_and_only_then() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dispatcher(&dir).await;
    let clock = TestClock::at("2026-12-01T10:00:00.000Z");
    put(
        &d,
        &clock,
        file_source("hourly", serde_json::json!({"every": "1h"})),
    )
    .await;
    put(
        &d,
        &clock,
        file_source(
            "nightly",
            serde_json::json!({"cron": "0 2 * * *", "time_zone": "Europe/Paris"}),
        ),
    )
    .await;
    let scheduler = Scheduler::new(d.clone(), clock.clone());

    assert!(scheduler.tick().await.expect("tick").started.is_empty());
    clock.set("2026-12-01T10:59:59.000Z");
    assert!(scheduler.tick().await.expect("tick").started.is_empty());
    clock.set("2026-12-01T11:00:00.000Z");
    assert_eq!(
        scheduler.tick().await.expect("tick").started,
        vec!["hourly"]
    );
    // Due once: the same moment again starts nothing.
    assert!(scheduler.tick().await.expect("tick").started.is_empty());
    let next = d.imports().get_data_source("hourly").await.expect("source");
    assert_eq!(
        next.next_run_at.as_deref(),
        Some("2026-12-01T12:00:00.000Z")
    );

    // The next hour comes while the first run still runs: skipped, not piled up.
    clock.set("2026-12-01T12:00:30.000Z");
    let tick = scheduler.tick().await.expect("tick");
    assert_eq!(tick.skipped, vec!["hourly"]);
    assert!(tick.started.is_empty());
    end_last_run(&d, "hourly").await;
    // The next tick sees it ended.
    clock.set("2026-12-01T12:10:00.000Z");
    assert_eq!(scheduler.tick().await.expect("tick").ended, 1);

    // 02:00 in Paris on 2 December is 01:00 UTC.
    clock.set("2026-12-02T00:59:00.000Z");
    let tick = scheduler.tick().await.expect("tick");
    assert!(!tick.started.contains(&"nightly".to_string()));
    clock.set("2026-12-02T01:00:00.000Z");
    let tick = scheduler.tick().await.expect("tick");
    assert!(tick.started.contains(&"nightly".to_string()), "{tick:?}");
    let sets = d
        .imports()
        .import_sets(Some("nightly"), None, None, 10)
        .await
        .expect("sets");
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].trigger, "schedule");
}

#[tokio::test]
async fn two_schedulers_start_a_due_run_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dispatcher(&dir).await;
    let clock = TestClock::at("2026-12-01T10:00:00.000Z");
    put(
        &d,
        &clock,
        file_source("twice", serde_json::json!({"every": "15m"})),
    )
    .await;
    clock.set("2026-12-01T10:15:00.000Z");
    let (a, b) = (
        Scheduler::new(d.clone(), clock.clone()),
        Scheduler::new(d.clone(), clock.clone()),
    );
    let (ta, tb) = tokio::join!(a.tick(), b.tick());
    let started = ta.expect("a").started.len() + tb.expect("b").started.len();
    assert_eq!(started, 1);
    let sets = d
        .imports()
        .import_sets(Some("twice"), None, None, 10)
        .await
        .expect("sets");
    assert_eq!(sets.len(), 1);
}

#[tokio::test]
async fn a_paused_source_runs_only_by_hand_and_ended_sets_expire() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dispatcher(&dir).await;
    let clock = TestClock::at("2026-12-01T10:00:00.000Z");
    let mut source = file_source("paused", serde_json::json!({"every": "1h"}));
    source.enabled = false;
    source.retention_days = Some(1);
    d.imports()
        .put_data_source(source, true)
        .await
        .expect("saved");
    let info = d.imports().get_data_source("paused").await.expect("source");
    assert_eq!(info.next_run_at, None);
    let scheduler = Scheduler::new(d.clone(), clock.clone());
    clock.set("2026-12-05T10:00:00.000Z");
    assert!(scheduler.tick().await.expect("tick").started.is_empty());

    let set = d
        .imports()
        .run("paused", Trigger::Manual)
        .await
        .expect("by hand");
    assert_eq!(set.state, ImportState::Running);
    let again = d.imports().run("paused", Trigger::Manual).await;
    assert!(
        matches!(again, Err(DispatchError::Conflict(_))),
        "one run at a time"
    );
    end_last_run(&d, "paused").await;
    let ended = d.imports().import_set(&set.id).await.expect("set");
    assert_eq!(ended.state, ImportState::Cancelled);

    // Kept a day after it ended (stamped in real time), then purged with its
    // output's records.
    let purge_clock = Arc::new(TestClock(AtomicI64::new(openmid_proto::time::now_ms())));
    let purger = Scheduler::new(d.clone(), purge_clock.clone());
    assert_eq!(purger.purge().await.expect("purge"), 0);
    purge_clock.0.fetch_add(2 * 86_400_000, Ordering::SeqCst);
    assert_eq!(purger.purge().await.expect("purge"), 1);
    assert!(
        d.store()
            .get_import_set(&set.id)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        d.store()
            .get_record(&set.output_id)
            .await
            .expect("read")
            .is_none()
    );
}

#[tokio::test]
async fn a_source_is_checked_as_a_run_would_be() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dispatcher(&dir).await;
    let parse = |v: serde_json::Value| serde_json::from_value::<DataSource>(v).expect("parses");
    let cases = [
        (
            serde_json::json!({"name": "a", "kind": "file",
                "read": {"path": "/x.csv", "format": {"type": "csv"}}}),
            "read.agent",
        ),
        (
            serde_json::json!({"name": "a", "kind": "sql",
                "read": {"alias": "nope", "statement": "SELECT 1"}}),
            "read.alias",
        ),
        (
            serde_json::json!({"name": "a", "kind": "file", "agent": "mid.auto",
                "read": {"path": "/x.csv", "format": {"type": "csv"}}, "schedule": {"cron": "99 * * * *"}}),
            "schedule.cron",
        ),
        (
            serde_json::json!({"name": "a", "kind": "file", "agent": "mid.auto", "marker": "m",
                "read": {"path": "/x.csv", "format": {"type": "csv"}}}),
            "marker",
        ),
    ];
    for (body, field) in cases {
        match d.imports().put_data_source(parse(body), true).await {
            Err(DispatchError::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(
        d.imports()
            .list_data_sources()
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn a_changed_read_starts_its_marker_over() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dispatcher(&dir).await;
    let alias: openmid_proto::alias::Alias = serde_json::from_value(serde_json::json!({
        "name": "dir", "kind": "ldap", "base_url": "ldap://10.0.0.5/dc=example,dc=com",
        "execution": {"cluster": "importers"}
    }))
    .expect("alias");
    d.connections()
        .put_alias(alias, true)
        .await
        .expect("alias saved");
    let source = |filter: &str| {
        serde_json::from_value::<DataSource>(serde_json::json!({
            "name": "people", "kind": "ldap", "marker": "modifyTimestamp",
            "read": {"alias": "dir", "filter": filter}
        }))
        .expect("source")
    };
    d.imports()
        .put_data_source(source("(objectClass=person)"), true)
        .await
        .expect("saved");
    // As a complete run would leave it.
    let mut row = d
        .store()
        .get_data_source("people")
        .await
        .expect("read")
        .expect("row");
    row.marker_value = Some("20261201120000Z".into());
    d.store().put_data_source(&row).await.expect("marker");

    let same = d
        .imports()
        .put_data_source(source("(objectClass=person)"), false)
        .await
        .expect("saved again");
    assert_eq!(same.marker_value.as_deref(), Some("20261201120000Z"));
    let changed = d
        .imports()
        .put_data_source(source("(objectClass=inetOrgPerson)"), false)
        .await
        .expect("changed");
    assert_eq!(
        changed.marker_value, None,
        "a new filter reads everything again"
    );
}
