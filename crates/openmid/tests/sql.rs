//! SQL through the instance: a jdbc alias, `POST /api/v1/actions/sql`, pages of rows
//! followed while the query runs, and a paged read on a failover cluster whose MID is
//! killed mid-query continuing on the other member with each row once. Against the
//! PostgreSQL server this machine runs (127.0.0.1:5432); each test makes its own
//! database and drops it.

use openmid_client::ActionOutcome;
use openmid_mid::config::PoolSizes;
use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::{ClusterKind, NewCluster, NewCredential};
use openmid_proto::command_output::{OutputLine, OutputStream};
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_proto::secret::Secret;
use openmid_proto::sql::{SqlAction, SqlPage, SqlResponse};
use openmid_testkit::databases::Database;
use openmid_testkit::{MidProcess, TestInstance, loopback_any_port, wait_until};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_openmid");

/// SQL (and HTTP) to loopback allowed; reads only.
const POLICY: &str = r#"
[http]
allow_cidrs = ["127.0.0.0/8"]
[sql]
allow_cidrs = ["127.0.0.0/8"]
"#;

struct Rig {
    instance: TestInstance,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let instance =
            TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
                .await
                .expect("instance");
        Self { instance, dir }
    }

    async fn mid(&self, name: &str) -> MidProcess {
        let token = self.instance.auto_validating_token().await.expect("token");
        let mut config = self
            .instance
            .mid_config(name, &self.dir.path().join(name), Some(token));
        let table: PolicyConfig = toml::from_str(POLICY).expect("policy parses");
        config.policy = EgressPolicy::new(table).expect("policy compiles");
        config.pools = PoolSizes {
            interactive: 4,
            expedited: 1,
            standard: 1,
        };
        let process = MidProcess::spawn(Path::new(BIN), &config).expect("MID process starts");
        let api = &self.instance.api;
        assert!(
            wait_until(Duration::from_secs(20), || async {
                api.get_mid(name)
                    .await
                    .is_ok_and(|m| m.status == MidStatus::Up && m.health.is_some())
            })
            .await,
            "MID {name} is up"
        );
        process
    }

    async fn alias(&self, db: &Database, execution: Execution) {
        let api = &self.instance.api;
        api.create_credential(&NewCredential {
            name: "pg".into(),
            description: None,
            spec: CredentialSpec::Database {
                username: "postgres".into(),
                password: SecretValue::Stored(Secret::new("unused-with-trust-auth".to_string())),
            },
        })
        .await
        .expect("credential");
        api.create_alias(&Alias {
            name: "inventory".into(),
            description: None,
            kind: ConnectionKind::Jdbc,
            base_url: format!("postgres://127.0.0.1:5432/{}", db.name),
            headers: Default::default(),
            timeout_ms: Some(120_000),
            retry: Default::default(),
            credential: Some("pg".into()),
            execution,
            soap_version: None,
            wsdl: None,
            ca_pem: None,
            host_key: None,
            pool_size: None,
            tls: Some(openmid_proto::sql::TlsMode::Disable),
            options: Default::default(),
            durability: None,
        })
        .await
        .expect("alias");
    }

    /// Every page of `output_id`'s `rows` stream, read to the end.
    async fn pages(&self, output_id: &str) -> Vec<SqlPage> {
        let mut lines = self
            .instance
            .api
            .follow_output(output_id, None, true)
            .await
            .expect("follow");
        let mut pages = Vec::new();
        while let Some(line) = lines.next().await.expect("line") {
            match &line {
                OutputLine::Chunk {
                    stream: OutputStream::Rows,
                    ..
                } => {
                    let bytes = line.bytes().expect("bytes");
                    pages.push(serde_json::from_slice(&bytes).expect("a page"));
                }
                OutputLine::End { .. } => break,
                other => panic!("unexpected line {other:?}"),
            }
        }
        pages
    }
}

fn ids(pages: &[SqlPage]) -> Vec<i64> {
    pages
        .iter()
        .flat_map(|p| p.rows.iter())
        .map(|r| r[0].as_i64().expect("an integer id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_through_an_alias_streams_its_pages() {
    let Some(db) = Database::create("pages", false) else {
        return;
    };
    db.run(
        "CREATE TABLE item (id int PRIMARY KEY, name text, price numeric(10,2), seen timestamptz)",
    );
    db.run("INSERT INTO item SELECT g, 'item ' || g, g * 1.25, '2026-01-01T00:00:00Z'::timestamptz + g * interval '1 minute' FROM generate_series(1, 2500) g");
    let rig = Rig::start().await;
    let _mid = rig.mid("sql-a").await;
    rig.alias(
        &db,
        Execution {
            mid: Some("sql-a".into()),
            ..Execution::default()
        },
    )
    .await;
    let action = SqlAction {
        alias: "inventory".into(),
        statement: "SELECT id, name, price, seen FROM item WHERE id > $1 ORDER BY id".into(),
        params: vec![serde_json::json!(0)],
        page_rows: Some(1000),
        ..SqlAction::default()
    };
    let done = match rig
        .instance
        .api
        .run_action::<_, SqlResponse>("sql", &action, Duration::from_secs(60))
        .await
        .expect("accepted")
    {
        ActionOutcome::Done(r) => r,
        ActionOutcome::Pending(p) => panic!("not done: {p:?}"),
    };
    assert_eq!(done.state, State::Processed, "{:?}", done.error);
    let response = done.response.expect("a response");
    assert_eq!((response.rows, response.pages), (2500, 3));
    assert!(response.read_only, "a read-only session by default");
    let names: Vec<&str> = response.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "name", "price", "seen"]);
    assert_eq!(
        response.columns[2].json, "decimal",
        "{:?}",
        response.columns[2]
    );
    assert_eq!(
        response.first_page[0][2],
        serde_json::json!("1.25"),
        "exact numerics as strings"
    );
    assert_eq!(
        response.first_page[0][3],
        serde_json::json!("2026-01-01T00:01:00Z")
    );
    let pages = rig.pages(&done.output_id).await;
    assert_eq!(ids(&pages), (1..=2500).collect::<Vec<_>>());
    assert!(pages[0].columns.is_some(), "page 0 carries the columns");

    // A write is refused by the database session itself (nothing parses the SQL).
    let write = SqlAction {
        alias: "inventory".into(),
        statement: "DELETE FROM item".into(),
        ..SqlAction::default()
    };
    let refused = match rig
        .instance
        .api
        .run_action::<_, SqlResponse>("sql", &write, Duration::from_secs(60))
        .await
        .expect("accepted")
    {
        ActionOutcome::Done(r) => r,
        ActionOutcome::Pending(p) => panic!("not done: {p:?}"),
    };
    assert_eq!(refused.state, State::Error);
    let error = refused.error.unwrap_or_default();
    assert!(error.contains("read-only"), "{error}");
}

/// A read on a failover cluster whose first member is killed mid-query continues on
/// the second after the last page the instance stored: every row once, in order.
/// (The keyset way of resuming is covered by the SQL probe's own tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_a_cluster_continues_after_its_mid_dies() {
    let Some(db) = Database::create("failover", false) else {
        return;
    };
    db.run("CREATE TABLE reading (id int PRIMARY KEY, v double precision)");
    db.run("INSERT INTO reading SELECT g, g / 7.0 FROM generate_series(1, 6000) g");
    let rig = Rig::start().await;
    let mut a = rig.mid("sql-fo-a").await;
    let _b = rig.mid("sql-fo-b").await;
    rig.instance
        .api
        .create_cluster(&NewCluster {
            name: "sqlfo".into(),
            kind: ClusterKind::Failover,
            members: vec!["sql-fo-a".into(), "sql-fo-b".into()],
        })
        .await
        .expect("cluster");
    rig.alias(
        &db,
        Execution {
            cluster: Some("sqlfo".into()),
            ..Execution::default()
        },
    )
    .await;
    // About 1 ms a row on the server, read in the primary key's order (an index
    // scan streams; the second attempt skips the rows already stored): six seconds
    // of pages, 200 rows each.
    let action = SqlAction {
        alias: "inventory".into(),
        statement: "SELECT id, v, pg_sleep(0.001) IS NULL AS slept FROM reading ORDER BY id".into(),
        page_rows: Some(200),
        ..SqlAction::default()
    };
    let output_id = match rig
        .instance
        .api
        .run_action::<_, SqlResponse>("sql", &action, Duration::ZERO)
        .await
        .expect("accepted")
    {
        ActionOutcome::Pending(p) => p.output_id,
        ActionOutcome::Done(r) => r.output_id,
    };
    // Kill the first member once a few pages are stored on the instance.
    let api = &rig.instance.api;
    let stored_some = wait_until(Duration::from_secs(30), || async {
        match api.follow_output(&output_id, None, false).await {
            Ok(mut lines) => {
                let mut n = 0;
                while let Ok(Some(_)) = lines.next().await {
                    n += 1;
                }
                n >= 4
            }
            Err(_) => false,
        }
    })
    .await;
    assert!(stored_some, "pages arrive while the query runs");
    a.kill();
    let pages = rig.pages(&output_id).await;
    let record = api.get_record(&output_id).await.expect("record");
    assert_eq!(record.state, State::Processed, "{:?}", record.error);
    assert_eq!(record.attempt, 2, "the second member finished it");
    assert_eq!(record.claimed_by.as_deref(), Some("sql-fo-b"));
    let got = ids(&pages);
    let unique: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "no row twice");
    assert_eq!(got, (1..=6000).collect::<Vec<_>>(), "every row, in order");
    let numbers: Vec<u64> = pages.iter().map(|p| p.page).collect();
    assert_eq!(
        numbers,
        (0..pages.len() as u64).collect::<Vec<_>>(),
        "pages numbered across attempts"
    );
}
