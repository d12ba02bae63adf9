//! The audit log end to end: admin calls (refused ones too) with their actor, peer,
//! action, target and status; what a real MID ran (a command, a SQL statement on this
//! machine's PostgreSQL) with the MID, output id and exit status or rows; never a
//! secret; `GET /api/v1/audit` filtered and paged, bad parameters refused by name.

use openmid_client::ActionOutcome;
use openmid_client::audit::AuditQuery;
use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::{CommandAction, NewCredential, NewEnrollmentToken};
use openmid_proto::audit::AuditEntry;
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_proto::secret::Secret;
use openmid_proto::sql::{SqlAction, SqlResponse};
use openmid_testkit::databases::Database;
use openmid_testkit::{TestInstance, loopback_any_port};
use std::time::Duration;

const MID: &str = "mid-audit";

/// Commands as the command tests allow them, and SQL to loopback.
fn policy() -> EgressPolicy {
    let text = format!(
        "{}\n[sql]\nallow_cidrs = [\"127.0.0.0/8\"]\n",
        crate::command::POLICY
    );
    let table: PolicyConfig = toml::from_str(&text).expect("policy parses");
    EgressPolicy::new(table).expect("policy compiles")
}

struct Rig {
    instance: TestInstance,
    mid: openmid_mid::RunningMid,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// An instance and a MID enrolled with a token that does not validate it: an admin
    /// validates it, as the audit log then shows.
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let instance =
            TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
                .await
                .expect("instance");
        let token = instance
            .api
            .create_enrollment_token(&NewEnrollmentToken::default())
            .await
            .expect("token");
        let mut config = instance.mid_config(MID, &dir.path().join("mid"), Some(token.token));
        config.policy = policy();
        let mut mid = openmid_mid::start(config).await.expect("MID starts");
        assert!(
            mid.wait_for_status(MidStatus::ValidationPending, Duration::from_secs(20))
                .await,
            "MID enrolled"
        );
        instance.api.validate_mid(MID).await.expect("validated");
        assert!(
            mid.wait_for_status(MidStatus::Up, Duration::from_secs(20))
                .await,
            "MID is up"
        );
        Self {
            instance,
            mid,
            _dir: dir,
        }
    }

    async fn audit(&self, q: AuditQuery) -> Vec<AuditEntry> {
        self.instance
            .api
            .list_audit(&q)
            .await
            .expect("audit listed")
            .entries
    }

    async fn stop(self) {
        self.mid.shutdown().await.expect("MID stops");
        self.instance.shutdown().await;
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

/// The result of an action that must have finished within its wait.
fn finished<R>(outcome: ActionOutcome<R>) -> Box<openmid_proto::api::ActionResult<R>> {
    match outcome {
        ActionOutcome::Done(r) => r,
        ActionOutcome::Pending(p) => panic!("not finished: {p:?}"),
    }
}

fn action(a: &str) -> AuditQuery {
    AuditQuery {
        action: Some(a.into()),
        ..AuditQuery::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_and_what_a_mid_ran_are_audited_without_secrets() {
    let rig = Rig::start().await;
    let api = &rig.instance.api;
    let canary = format!("canary-{}", std::process::id());

    // Admin actions: the token's fingerprint, the peer, the action and its target.
    let validated = rig.audit(action("mid.validate")).await;
    assert_eq!(validated.len(), 1, "{validated:?}");
    let v = &validated[0];
    assert_eq!(v.target.as_deref(), Some(MID));
    assert_eq!((v.outcome.as_str(), v.status), ("ok", Some(200)));
    assert_eq!(v.from.as_deref(), Some("127.0.0.1"));
    assert!(v.actor.starts_with("token:"), "{}", v.actor);
    assert!(!v.actor.contains(rig.instance.token.expose()));
    let token_actor = v.actor.clone();
    let tokens = rig.audit(action("enroll-token.create")).await;
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0].actor, token_actor);

    api.create_credential(&NewCredential {
        name: "pg".into(),
        description: None,
        spec: CredentialSpec::Database {
            username: "postgres".into(),
            password: SecretValue::Stored(Secret::new(canary.clone())),
        },
    })
    .await
    .expect("credential");
    api.create_credential(&NewCredential {
        name: "doomed".into(),
        description: None,
        spec: CredentialSpec::Basic {
            username: "u".into(),
            password: SecretValue::Stored(Secret::new(canary.clone())),
        },
    })
    .await
    .expect("credential");
    api.delete_credential("doomed").await.expect("deleted");
    let deleted = rig.audit(action("credential.delete")).await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].target.as_deref(), Some("doomed"));

    // Failed calls are recorded with their status: a 404, and a refused token.
    api.validate_mid("no-such-mid")
        .await
        .expect_err("no such MID");
    let failed = rig
        .audit(AuditQuery {
            action: Some("mid.*".into()),
            ..AuditQuery::default()
        })
        .await;
    let missing = failed
        .iter()
        .find(|e| e.target.as_deref() == Some("no-such-mid"))
        .expect("the failed validation is there");
    assert_eq!(
        (missing.outcome.as_str(), missing.status),
        ("failed", Some(404))
    );
    assert!(
        missing
            .error
            .as_deref()
            .is_some_and(|e| e.contains("no-such-mid"))
    );
    assert!(failed.iter().all(|e| e.action.starts_with("mid.")));
    let refused = http()
        .delete(format!("{}api/v1/aliases/x", api.base_url()))
        .bearer_auth(format!("wrong-{canary}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status().as_u16(), 401);
    let anonymous = rig
        .audit(AuditQuery {
            actor: Some("unauthenticated".into()),
            ..AuditQuery::default()
        })
        .await;
    assert_eq!(anonymous.len(), 1, "{anonymous:?}");
    assert_eq!(
        (
            anonymous[0].action.as_str(),
            anonymous[0].target.as_deref(),
            anonymous[0].status
        ),
        ("alias.delete", Some("x"), Some(401))
    );

    // A command run through the MID: its MID, output id, command line and exit.
    let mut script = CommandAction::on(MID, "/bin/sh", &["-e"]);
    script.script = Some(format!("echo {canary}; exit 3"));
    script.env.insert("GREETING".into(), canary.clone());
    let ran = match api
        .command_action(&script, Duration::from_secs(30))
        .await
        .expect("accepted")
    {
        ActionOutcome::Done(r) => *r,
        ActionOutcome::Pending(p) => panic!("not finished: {p:?}"),
    };
    assert_eq!(ran.state, State::Processed, "{:?}", ran.error);
    let echo = match api
        .command_action(
            &CommandAction::on(MID, "/bin/echo", &["hello", "audit log"]),
            Duration::from_secs(30),
        )
        .await
        .expect("accepted")
    {
        ActionOutcome::Done(r) => *r,
        ActionOutcome::Pending(p) => panic!("not finished: {p:?}"),
    };
    let commands = rig
        .audit(AuditQuery {
            action: Some("command.run".into()),
            mid: Some(MID.into()),
            ..AuditQuery::default()
        })
        .await;
    assert_eq!(commands.len(), 2, "{commands:?}");
    // Newest first.
    let (e, s) = (&commands[0], &commands[1]);
    assert_eq!(e.output_id.as_deref(), Some(echo.output_id.as_str()));
    assert_eq!(e.actor, format!("mid:{MID}"));
    assert_eq!(e.mid.as_deref(), Some(MID));
    assert_eq!(e.topic.as_deref(), Some("Command"));
    assert_eq!(e.detail.as_deref(), Some("/bin/echo hello 'audit log'"));
    assert_eq!((e.outcome.as_str(), e.status), ("ok", Some(0)));
    assert_eq!(s.output_id.as_deref(), Some(ran.output_id.as_str()));
    assert_eq!((s.outcome.as_str(), s.status), ("failed", Some(3)));
    let detail = s.detail.as_deref().unwrap_or("");
    assert!(detail.starts_with("/bin/sh -e <script of"), "{detail}");

    // A SQL statement through a jdbc alias, with its rows.
    match Database::create("audit", false) {
        None if std::env::var_os("CI").is_some() => panic!("CI needs PostgreSQL on 127.0.0.1:5432"),
        None => eprintln!("SKIPPED: the SQL part (no PostgreSQL on 127.0.0.1:5432)"),
        Some(db) => {
            db.run("CREATE TABLE item (id int PRIMARY KEY)");
            db.run("INSERT INTO item SELECT g FROM generate_series(1, 7) g");
            api.create_alias(&Alias {
                name: "inventory".into(),
                description: None,
                kind: ConnectionKind::Jdbc,
                base_url: format!("postgres://127.0.0.1:5432/{}", db.name),
                headers: Default::default(),
                timeout_ms: Some(60_000),
                retry: Default::default(),
                credential: Some("pg".into()),
                execution: Execution {
                    mid: Some(MID.into()),
                    ..Execution::default()
                },
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
            let query = SqlAction {
                alias: "inventory".into(),
                statement: "SELECT id FROM item WHERE id > $1 AND $2::text <> ''".into(),
                // A bound value is data, not the statement: never in the log.
                params: vec![serde_json::json!(0), serde_json::json!(canary)],
                ..SqlAction::default()
            };
            let done = match api
                .run_action::<_, SqlResponse>("sql", &query, Duration::from_secs(60))
                .await
                .expect("accepted")
            {
                ActionOutcome::Done(r) => r,
                ActionOutcome::Pending(p) => panic!("not done: {p:?}"),
            };
            assert_eq!(done.state, State::Processed, "{:?}", done.error);
            let sql = rig.audit(action("sql.run")).await;
            assert_eq!(sql.len(), 1, "{sql:?}");
            assert_eq!(sql[0].output_id.as_deref(), Some(done.output_id.as_str()));
            assert_eq!(
                sql[0].detail.as_deref(),
                Some("SELECT id FROM item WHERE id > $1 AND $2::text <> ''")
            );
            assert_eq!(sql[0].rows, Some(7));
            assert_eq!(sql[0].mid.as_deref(), Some(MID));
            assert_eq!(
                sql[0].target,
                Some(format!("postgres://127.0.0.1:5432/{}", db.name))
            );
        }
    }

    // No secret anywhere in the log: not the credential, the environment, stdin, the
    // script, the admin token or a refused one.
    let all = api
        .list_audit(&AuditQuery {
            limit: Some(1000),
            ..AuditQuery::default()
        })
        .await
        .expect("all");
    let text = serde_json::to_string(&all).expect("json");
    assert!(!text.contains(&canary), "{text}");
    assert!(!text.contains(rig.instance.token.expose()));

    // Paging newest first, and time filters.
    let first = api
        .list_audit(&AuditQuery {
            limit: Some(2),
            ..AuditQuery::default()
        })
        .await
        .expect("page");
    assert_eq!(first.entries.len(), 2);
    assert!(first.entries[0].id > first.entries[1].id);
    let before = first.next_before.expect("more pages");
    let second = api
        .list_audit(&AuditQuery {
            limit: Some(2),
            before: Some(before),
            ..AuditQuery::default()
        })
        .await
        .expect("page");
    assert!(second.entries.iter().all(|e| e.id < before));
    assert_eq!(second.entries[0].id, all.entries[2].id);
    let none = rig
        .audit(AuditQuery {
            until: Some("2000-01-01T00:00:00Z".into()),
            ..AuditQuery::default()
        })
        .await;
    assert!(none.is_empty());
    let recent = rig
        .audit(AuditQuery {
            since: Some(first.entries[1].at_ms.to_string()),
            ..AuditQuery::default()
        })
        .await;
    assert!(recent.len() >= 2 && recent.iter().all(|e| e.at_ms >= first.entries[1].at_ms));
    let by_token = rig
        .audit(AuditQuery {
            actor: Some(token_actor.clone()),
            limit: Some(1000),
            ..AuditQuery::default()
        })
        .await;
    assert!(by_token.iter().all(|e| e.actor == token_actor));
    assert!(by_token.iter().any(|e| e.action == "credential.create"));

    // Bad parameters: 400 with the API's error naming the parameter.
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("since=yesterday", "since"),
        ("until=2026-13-45", "until"),
        ("before=-4", "before"),
        ("sort=asc", "sort"),
        (
            "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            "until",
        ),
    ] {
        let resp = http()
            .get(format!("{}api/v1/audit?{query}", api.base_url()))
            .bearer_auth(rig.instance.token.expose())
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 400, "{query}");
        let body: serde_json::Value = resp.json().await.expect("a JSON error");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(param), "{query}: {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    // The log cannot be changed through the API.
    let delete = http()
        .delete(format!("{}api/v1/audit", api.base_url()))
        .bearer_auth(rig.instance.token.expose())
        .send()
        .await
        .expect("sent");
    assert_eq!(delete.status().as_u16(), 405);
    rig.stop().await;
}

/// A durable action a caller waits on is audited once, with what the call answered:
/// a 200 when its result came in time (the entry written with the result), a 202 when
/// the wait ran out first, and no 200 for that call when its result comes later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waited_action_is_audited_once_with_what_it_answered() {
    let rig = Rig::start().await;
    let api = &rig.instance.api;
    let in_time = CommandAction::on(MID, "/bin/echo", &["in time"]);
    let done = finished(
        api.command_action(&in_time, Duration::from_secs(30))
            .await
            .expect("accepted"),
    );
    assert_eq!(done.state, State::Processed, "{:?}", done.error);
    let runs = rig.audit(action("action.run")).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (runs[0].outcome.as_str(), runs[0].status),
        ("ok", Some(200))
    );
    assert!(runs[0].actor.starts_with("token:"), "{}", runs[0].actor);
    assert_eq!(runs[0].from.as_deref(), Some("127.0.0.1"));

    let mut late = CommandAction::on(MID, "/bin/sh", &["-e"]);
    late.script = Some("sleep 2; echo late".into());
    let pending = match api
        .command_action(&late, Duration::from_millis(300))
        .await
        .expect("accepted")
    {
        ActionOutcome::Pending(p) => p,
        ActionOutcome::Done(r) => panic!("finished within 0.3 s: {r:?}"),
    };
    let done = finished(
        api.get_action::<serde_json::Value>(&pending.output_id, Duration::from_secs(30))
            .await
            .expect("polled"),
    );
    assert_eq!(done.state, State::Processed, "{:?}", done.error);
    let runs = rig.audit(action("action.run")).await;
    assert_eq!(runs.len(), 2, "one entry a call: {runs:?}");
    assert_eq!(
        (runs[0].outcome.as_str(), runs[0].status),
        ("ok", Some(202)),
        "the late call answered 202: {runs:?}"
    );
    assert_eq!(runs[0].target, runs[1].target);
    rig.stop().await;
}
