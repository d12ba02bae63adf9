//! Import Sets end to end: data sources of every kind run through real MIDs into
//! import sets read back by the API as a user would — files the tests write (CSV
//! with a bad row, an xlsx from a real writer, XML, JSON), an SCCM-shaped inventory
//! view on this machine's PostgreSQL and MariaDB read incrementally, a directory of
//! 10,000 users in nested OUs on a slapd the test starts, and a large file on a
//! failover cluster whose MID is killed with `kill -9` mid-import, ending with each
//! source row once.

use openmid_mid::config::PoolSizes;
use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::{ClusterKind, NewCluster, NewCredential};
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::import::{DataSource, ImportSet, ImportState};
use openmid_proto::ldap::LdapResponse;
use openmid_proto::mid::MidStatus;
use openmid_proto::secret::Secret;
use openmid_testkit::databases::Database;
use openmid_testkit::slapd::{LocalSlapd, SlapdError, SlapdOptions};
use openmid_testkit::{
    FileServer, FileServerOptions, MidProcess, TestInstance, loopback_any_port, wait_until,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_openmid");

struct Rig {
    instance: TestInstance,
    dir: tempfile::TempDir,
    /// Where the files the MIDs may read are.
    files: std::path::PathBuf,
}

impl Rig {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let instance =
            TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
                .await
                .expect("instance");
        let files = dir.path().join("imports");
        std::fs::create_dir_all(&files).expect("imports dir");
        Self {
            instance,
            dir,
            files,
        }
    }

    /// A MID allowed loopback for HTTP, SQL and LDAP, and the files directory.
    async fn mid(&self, name: &str) -> MidProcess {
        let token = self.instance.auto_validating_token().await.expect("token");
        let mut config = self
            .instance
            .mid_config(name, &self.dir.path().join(name), Some(token));
        let policy = format!(
            "[http]\nallow_cidrs = [\"127.0.0.0/8\"]\n[sql]\nallow_cidrs = [\"127.0.0.0/8\"]\n\
             [ldap]\nallow_cidrs = [\"127.0.0.0/8\"]\n[file]\nallow_dirs = [{:?}]\n",
            self.files.display().to_string()
        );
        let table: PolicyConfig = toml::from_str(&policy).expect("policy parses");
        config.policy = EgressPolicy::new(table).expect("policy compiles");
        config.pools = PoolSizes {
            interactive: 2,
            expedited: 1,
            standard: 2,
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

    async fn source(&self, source: Value) -> DataSource {
        let source: DataSource = serde_json::from_value(source).expect("a data source");
        self.instance
            .api
            .create_data_source(&source)
            .await
            .expect("data source saved");
        source
    }

    /// Runs `name` and waits for its import set to end.
    async fn run(&self, name: &str) -> ImportSet {
        let api = &self.instance.api;
        let started = api.run_data_source(name).await.expect("run starts");
        assert_eq!(started.state, ImportState::Running);
        let set = api
            .wait_import_set(
                &started.id,
                Duration::from_millis(100),
                Duration::from_secs(120),
            )
            .await
            .expect("import set");
        assert!(set.state.is_final(), "{name} ended: {set:?}");
        set
    }

    /// Every row of an import set, read page by page as a client would.
    async fn rows(&self, id: &str, page: u32) -> Vec<serde_json::Map<String, Value>> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let p = self
                .instance
                .api
                .import_rows(id, after, page)
                .await
                .expect("rows");
            for (i, row) in p.rows.iter().enumerate() {
                assert_eq!(
                    row.row,
                    after + 1 + i as u64,
                    "rows are numbered without gaps"
                );
            }
            out.extend(p.rows.into_iter().map(|r| r.values));
            match p.next_after {
                Some(next) => after = next,
                None => return out,
            }
        }
    }

    async fn alias(&self, alias: Alias) {
        self.instance.api.create_alias(&alias).await.expect("alias");
    }

    async fn credential(&self, name: &str, spec: CredentialSpec) {
        self.instance
            .api
            .create_credential(&NewCredential {
                name: name.into(),
                description: None,
                spec,
            })
            .await
            .expect("credential");
    }
}

fn alias(
    name: &str,
    kind: ConnectionKind,
    base_url: String,
    credential: Option<&str>,
    execution: Execution,
) -> Alias {
    Alias {
        name: name.into(),
        description: None,
        kind,
        base_url,
        headers: Default::default(),
        timeout_ms: Some(600_000),
        retry: Default::default(),
        credential: credential.map(str::to_string),
        execution,
        soap_version: None,
        wsdl: None,
        ca_pem: None,
        host_key: None,
        pool_size: None,
        tls: (kind == ConnectionKind::Jdbc).then_some(openmid_proto::sql::TlsMode::Disable),
        options: Default::default(),
        durability: None,
    }
}

fn on(mid: &str) -> Execution {
    Execution {
        mid: Some(mid.into()),
        ..Execution::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_every_format_become_import_sets() {
    let rig = Rig::start().await;
    let _mid = rig.mid("files-a").await;
    let dir = &rig.files;
    // CSV: quoted commas and a line break inside a field, and one bad row (line 4).
    std::fs::write(
        dir.join("hosts.csv"),
        "name,ip,ram_gb,seen\nweb1,10.0.0.1,16,2026-11-30\n\"db, primary\",10.0.0.2,64,2026-11-29\nbroken,row\n\"multi\nline\",10.0.0.4,8,2026-11-28\n",
    )
    .expect("csv");
    // xlsx from a real writer.
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write_string(0, 0, "asset").expect("cell");
    sheet.write_string(0, 1, "cost").expect("cell");
    sheet.write_string(0, 2, "active").expect("cell");
    for (i, (asset, cost, active)) in [("laptop-1", 1299.5, true), ("laptop-2", 899.0, false)]
        .into_iter()
        .enumerate()
    {
        let r = i as u32 + 1;
        sheet.write_string(r, 0, asset).expect("cell");
        sheet.write_number(r, 1, cost).expect("cell");
        sheet.write_boolean(r, 2, active).expect("cell");
    }
    book.save(dir.join("assets.xlsx")).expect("xlsx");
    std::fs::write(
        dir.join("printers.xml"),
        r#"<?xml version="1.0"?><fleet><site name="hq"><printer id="p1"><model>LJ 4000</model><ip>10.1.0.5</ip></printer><printer id="p2"><model>MFC</model><ip>10.1.0.6</ip></printer></site></fleet>"#,
    )
    .expect("xml");
    std::fs::write(
        dir.join("apps.json"),
        r#"{"meta": {"v": 2}, "apps": [{"name": "crm", "owner": {"team": "sales"}, "users": 120}, {"name": "erp", "users": 85}]}"#,
    )
    .expect("json");

    let file = |name: &str, path: &str, format: Value| {
        json!({"name": name, "kind": "file", "agent": "mid.server.files-a",
               "read": {"path": dir.join(path).display().to_string(), "format": format}})
    };
    rig.source(file("hosts", "hosts.csv", json!({"type": "csv"})))
        .await;
    rig.source(file("assets", "assets.xlsx", json!({"type": "excel"})))
        .await;
    rig.source(file(
        "printers",
        "printers.xml",
        json!({"type": "xml", "record_path": "/fleet/site/printer"}),
    ))
    .await;
    rig.source(file(
        "apps",
        "apps.json",
        json!({"type": "json", "record_path": "/apps"}),
    ))
    .await;

    let hosts = rig.run("hosts").await;
    assert_eq!(hosts.state, ImportState::CompleteWithErrors, "{hosts:?}");
    assert_eq!((hosts.rows, hosts.errors), (3, 1));
    let types: Vec<(&str, &str)> = hosts
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.type_name.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("name", "string"),
            ("ip", "string"),
            ("ram_gb", "integer"),
            ("seen", "date")
        ]
    );
    let rows = rig.rows(&hosts.id, 2).await;
    assert_eq!(rows[1]["name"], "db, primary");
    assert_eq!(rows[2]["name"], "multi\nline");
    assert_eq!(rows[2]["ram_gb"], "8", "CSV values stay as written");
    let errors = rig
        .instance
        .api
        .import_errors(&hosts.id)
        .await
        .expect("errors");
    assert_eq!(errors.errors.len(), 1);
    assert_eq!(errors.errors[0].line, Some(4), "{:?}", errors.errors);
    // The download is the rows as CSV again, header first.
    let csv_path = rig.dir.path().join("hosts-download.csv");
    rig.instance
        .api
        .download_import_set(&hosts.id, "csv", &csv_path)
        .await
        .expect("download");
    let mut reader = csv::Reader::from_path(&csv_path).expect("csv back");
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(header, ["name", "ip", "ram_gb", "seen"]);
    let back: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("record").iter().map(str::to_string).collect())
        .collect();
    assert_eq!(back.len(), 3);
    assert_eq!(back[2][0], "multi\nline");
    let jsonl = rig.dir.path().join("hosts.jsonl");
    rig.instance
        .api
        .download_import_set(&hosts.id, "jsonl", &jsonl)
        .await
        .expect("jsonl");
    let lines = std::fs::read_to_string(&jsonl).expect("read");
    assert_eq!(lines.lines().count(), 3);

    let assets = rig.run("assets").await;
    assert_eq!(assets.state, ImportState::Complete, "{assets:?}");
    let rows = rig.rows(&assets.id, 100).await;
    assert_eq!(rows[0]["asset"], "laptop-1");
    assert_eq!(rows[0]["cost"], 1299.5);
    assert_eq!(rows[1]["active"], false);

    let printers = rig.run("printers").await;
    let rows = rig.rows(&printers.id, 100).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["@id"], "p1");
    assert_eq!(rows[1]["model"], "MFC");

    let apps = rig.run("apps").await;
    let rows = rig.rows(&apps.id, 100).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["owner"], json!({"team": "sales"}));
    assert_eq!(rows[1]["users"], 85);

    // A file outside the MID's allowed directory is refused by the MID itself.
    let outside = rig.dir.path().join("secret.csv");
    std::fs::write(&outside, "a\n1\n").expect("outside");
    rig.source(
        json!({"name": "outside", "kind": "file", "agent": "mid.server.files-a",
        "read": {"path": outside.display().to_string(), "format": {"type": "csv"}}}),
    )
    .await;
    let refused = rig.run("outside").await;
    assert_eq!(refused.state, ImportState::Error);
    let detail = refused.detail.unwrap_or_default();
    assert!(
        detail.contains("allow_dirs") || detail.contains("policy"),
        "{detail}"
    );
}

/// An SCCM-shaped inventory (`v_R_System` joined to its hardware scan), read whole,
/// then only what changed since: on PostgreSQL and on MariaDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_view_imports_whole_then_only_what_changed() {
    let rig = Rig::start().await;
    let _mid = rig.mid("inv-a").await;
    for maria in [false, true] {
        let Some(mut db) = Database::create("sccm", maria) else {
            continue;
        };
        let (ts, gen_rows) = if maria {
            (
                "DATETIME",
                "INSERT INTO System_DISC (ItemKey, Name0, Operating_System_Name_and0) \
                 SELECT seq, CONCAT('PC-', LPAD(seq, 5, '0')), IF(seq % 3 = 0, 'Windows Server 2022', 'Windows 11') FROM seq_1_to_1200; \
                 INSERT INTO WorkstationStatus_DATA (MachineID, LastHWScan) \
                 SELECT seq, TIMESTAMP('2026-11-01 00:00:00') + INTERVAL seq MINUTE FROM seq_1_to_1200",
            )
        } else {
            (
                "timestamp",
                "INSERT INTO System_DISC SELECT g, 'PC-' || lpad(g::text, 5, '0'), CASE WHEN g % 3 = 0 THEN 'Windows Server 2022' ELSE 'Windows 11' END FROM generate_series(1, 1200) g; \
                 INSERT INTO WorkstationStatus_DATA SELECT g, timestamp '2026-11-01 00:00:00' + g * interval '1 minute' FROM generate_series(1, 1200) g",
            )
        };
        db.run(&format!(
            "CREATE TABLE System_DISC (ItemKey int PRIMARY KEY, Name0 varchar(64), Operating_System_Name_and0 varchar(64)); \
             CREATE TABLE WorkstationStatus_DATA (MachineID int PRIMARY KEY, LastHWScan {ts} NOT NULL); \
             CREATE VIEW v_R_System AS SELECT s.ItemKey AS ResourceID, s.Name0, s.Operating_System_Name_and0, w.LastHWScan \
             FROM System_DISC s JOIN WorkstationStatus_DATA w ON w.MachineID = s.ItemKey"
        ));
        db.run(gen_rows);
        let tag = if maria { "maria" } else { "pg" };
        // MariaDB gets a read-only login of its own; this machine's PostgreSQL
        // trusts loopback, so any password does.
        let user = if maria {
            let user = format!("imp_{}", std::process::id());
            db.create_reader(&user, "imp-pw");
            user
        } else {
            "postgres".to_string()
        };
        let cred = format!("sccm-{tag}");
        rig.credential(
            &cred,
            CredentialSpec::Database {
                username: user,
                password: SecretValue::Stored(Secret::new("imp-pw".to_string())),
            },
        )
        .await;
        let alias_name = format!("sccm-{tag}");
        rig.alias(alias(
            &alias_name,
            ConnectionKind::Jdbc,
            db.url(),
            Some(&cred),
            on("inv-a"),
        ))
        .await;
        let name = format!("inventory-{tag}");
        let column = |c: &str| {
            if maria {
                c.to_string()
            } else {
                c.to_lowercase()
            }
        };
        rig.source(json!({"name": name, "kind": "sql", "marker": column("LastHWScan"),
            "read": {"alias": alias_name, "statement": "SELECT ResourceID, Name0, Operating_System_Name_and0, LastHWScan FROM v_R_System",
                     "keyset": [column("ResourceID")], "page_rows": 250}}))
            .await;
        let first = rig.run(&name).await;
        assert_eq!(first.state, ImportState::Complete, "{tag}: {first:?}");
        assert_eq!(first.rows, 1200, "{tag}");
        let rows = rig.rows(&first.id, 500).await;
        let ids: BTreeSet<i64> = rows
            .iter()
            .map(|r| r[&column("ResourceID")].as_i64().expect("id"))
            .collect();
        assert_eq!(ids.len(), 1200, "{tag}: each row once");
        assert!(
            first
                .marker_to
                .as_deref()
                .is_some_and(|m| m.starts_with("2026-11-01T20:00")),
            "{tag}: {:?}",
            first.marker_to
        );

        // Three machines scanned again; the next run reads those (and the row at the
        // last marker, which `>=` takes again).
        db.run("UPDATE WorkstationStatus_DATA SET LastHWScan = '2026-11-30 12:00:00' WHERE MachineID IN (7, 70, 700)");
        let second = rig.run(&name).await;
        assert_eq!(second.state, ImportState::Complete, "{tag}: {second:?}");
        assert_eq!(second.marker_from, first.marker_to, "{tag}");
        let rows = rig.rows(&second.id, 500).await;
        let ids: BTreeSet<i64> = rows
            .iter()
            .map(|r| r[&column("ResourceID")].as_i64().expect("id"))
            .collect();
        assert_eq!(ids, BTreeSet::from([7, 70, 700, 1200]), "{tag}");
        let info = rig
            .instance
            .api
            .get_data_source(&name)
            .await
            .expect("source");
        assert!(
            info.marker_value
                .as_deref()
                .is_some_and(|m| m.starts_with("2026-11-30T12:00")),
            "{tag}: {:?}",
            info.marker_value
        );
    }
}

fn slapd(users: u32) -> Option<LocalSlapd> {
    match LocalSlapd::start(&SlapdOptions { users, tls: false }) {
        Ok(s) => Some(s),
        Err(SlapdError::Missing) => {
            eprintln!("SKIPPED: slapd is not installed (Debian: slapd ldap-utils); CI installs it");
            None
        }
        Err(e) => panic!("slapd: {e}"),
    }
}

/// A directory of 10,000 users in nested OUs, imported whole, then only what changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_imports_whole_then_only_what_changed() {
    let Some(dir) = slapd(10_000) else {
        return;
    };
    let rig = Rig::start().await;
    let _mid = rig.mid("dir-a").await;
    let (bind_dn, password) = dir.admin();
    rig.credential(
        "dir-admin",
        CredentialSpec::LdapBind {
            bind_dn: bind_dn.into(),
            password: SecretValue::Stored(Secret::new(password.to_string())),
        },
    )
    .await;
    rig.alias(alias(
        "corp-dir",
        ConnectionKind::Ldap,
        format!("{}/{}", dir.url(), dir.base_dn()),
        Some("dir-admin"),
        on("dir-a"),
    ))
    .await;
    // The action through the same alias: a bind test, and a search of one OU.
    let bound = match rig
        .instance
        .api
        .run_action::<_, LdapResponse>(
            "ldap",
            &json!({"alias": "corp-dir", "operation": "bind"}),
            Duration::from_secs(30),
        )
        .await
        .expect("bind test")
    {
        openmid_client::ActionOutcome::Done(r) => r.response.expect("a response"),
        openmid_client::ActionOutcome::Pending(p) => panic!("not done: {p:?}"),
    };
    assert_eq!(
        bound.bound_as.as_deref(),
        Some(format!("dn:{bind_dn}").as_str())
    );
    let found = match rig
        .instance
        .api
        .run_action::<_, LdapResponse>(
            "ldap",
            &json!({"alias": "corp-dir", "filter": "(uid=user0004*)", "attributes": ["uid", "mail"]}),
            Duration::from_secs(30),
        )
        .await
        .expect("search")
    {
        openmid_client::ActionOutcome::Done(r) => r.response.expect("a response"),
        openmid_client::ActionOutcome::Pending(p) => panic!("not done: {p:?}"),
    };
    assert_eq!(found.entries, 10, "user00040 … user00049");
    assert!(
        found
            .first_page
            .iter()
            .all(|e| e.attributes["mail"].is_array())
    );

    rig.source(
        json!({"name": "people", "kind": "ldap", "marker": "modifyTimestamp",
        "read": {"alias": "corp-dir", "filter": "(objectClass=inetOrgPerson)",
                 "attributes": ["uid", "cn", "mail", "jpegPhoto"], "page_size": 500},
        "schedule": {"cron": "0 2 * * *", "time_zone": "Europe/Paris"}}),
    )
    .await;
    // The seed shares one second of modifyTimestamp; one user changed a second later
    // makes the marker a moment few entries share, as in a directory in use.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    dir.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: sn\nsn: first\n",
        openmid_testkit::slapd::user_dn(1)
    ))
    .expect("modify");
    let first = rig.run("people").await;
    assert_eq!(first.state, ImportState::Complete, "{first:?}");
    assert_eq!(first.rows, 10_000);
    let rows = rig.rows(&first.id, 5000).await;
    let uids: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["uid"].as_str().expect("uid"))
        .collect();
    assert_eq!(uids.len(), 10_000, "each user once");
    assert!(
        rows.iter().all(|r| r["mail"].is_array()),
        "two mails: an array"
    );
    assert!(
        rows.iter().any(|r| r.contains_key("jpegPhoto")),
        "binary attributes come as base64"
    );
    let columns: Vec<&str> = first.columns.iter().map(|c| c.name.as_str()).collect();
    assert!(
        columns.contains(&"dn") && columns.contains(&"mail"),
        "{columns:?}"
    );
    let marker = first.marker_to.clone().expect("a marker");

    // modifyTimestamp has one-second resolution: change users a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let changed = [17u32, 4242, 9999];
    for i in changed {
        dir.modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: cn\ncn: Renamed {i}\n",
            openmid_testkit::slapd::user_dn(i)
        ))
        .expect("modify");
    }
    let second = rig.run("people").await;
    assert_eq!(second.state, ImportState::Complete, "{second:?}");
    assert_eq!(second.marker_from.as_deref(), Some(marker.as_str()));
    let rows = rig.rows(&second.id, 1000).await;
    let renamed: BTreeSet<String> = rows
        .iter()
        .filter(|r| r["cn"].as_str().is_some_and(|c| c.starts_with("Renamed")))
        .map(|r| r["cn"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(renamed.len(), 3, "{rows:?}");
    assert!(
        rows.len() < 10_000,
        "only what changed since the marker: {}",
        rows.len()
    );
}

/// A 2.5 MB CSV served at 1 MB/s through an HTTP alias to a failover cluster: the
/// first member is killed with `kill -9` partway; the second continues from the last
/// stored page's byte offset (a `Range` request) and the import set holds every row
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_continues_on_another_member_after_kill_9() {
    let rig = Rig::start().await;
    let rows = 40_000u64;
    let mut text = String::from("id,host,owner,note\n");
    for i in 1..=rows {
        text.push_str(&format!(
            "{i},host-{i:06}.corp.example,team-{},\"note, {i}\"\n",
            i % 17
        ));
    }
    let served = rig.dir.path().join("served");
    std::fs::create_dir_all(&served).expect("dir");
    std::fs::write(served.join("cmdb.csv"), &text).expect("csv");
    let server = FileServer::start(FileServerOptions {
        root: served.clone(),
        bytes_per_sec: 1_000_000,
    })
    .await
    .expect("file server");
    let mut a = rig.mid("imp-fo-a").await;
    let _b = rig.mid("imp-fo-b").await;
    rig.instance
        .api
        .create_cluster(&NewCluster {
            name: "importers".into(),
            kind: ClusterKind::Failover,
            members: vec!["imp-fo-a".into(), "imp-fo-b".into()],
        })
        .await
        .expect("cluster");
    rig.alias(alias(
        "share",
        ConnectionKind::Http,
        server.base_url(),
        None,
        Execution {
            cluster: Some("importers".into()),
            ..Execution::default()
        },
    ))
    .await;
    rig.source(json!({"name": "cmdb", "kind": "file",
        "read": {"alias": "share", "url_path": "/cmdb.csv", "format": {"type": "csv"}, "page_rows": 500}}))
        .await;
    let api = &rig.instance.api;
    let started = api.run_data_source("cmdb").await.expect("run");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            api.get_import_set(&started.id)
                .await
                .is_ok_and(|s| s.rows >= 5_000)
        })
        .await,
        "some pages stored before the kill"
    );
    a.kill();
    let set = api
        .wait_import_set(
            &started.id,
            Duration::from_millis(200),
            Duration::from_secs(120),
        )
        .await
        .expect("import set");
    assert_eq!(set.state, ImportState::Complete, "{set:?}");
    assert_eq!(set.rows, rows);
    let got = rig.rows(&set.id, 10_000).await;
    let ids: Vec<u64> = got
        .iter()
        .map(|r| r["id"].as_str().expect("id").parse().expect("number"))
        .collect();
    assert_eq!(
        ids,
        (1..=rows).collect::<Vec<_>>(),
        "every row once, in order"
    );
    assert!(
        server.range_requests() >= 1,
        "the second member continued by byte offset"
    );
    let record = api.get_record(&set.output_id).await.expect("record");
    assert!(record.attempt >= 2, "it moved: attempt {}", record.attempt);
}
