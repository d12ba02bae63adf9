//! The queue, the registry and the admin token survive an instance restart.

use crate::support::{enrolled_client, instance};
use openmid_instance::ecc::QueueStore;
use openmid_proto::api::{NewOutput, RecordQuery};
use openmid_proto::ecc::{State, Topic};
use openmid_proto::mid::{Capacity, MidStatus, PollRequest};
use openmid_testkit::TestInstance;
use serde_json::json;

#[tokio::test]
async fn a_restart_keeps_the_queue_registry_and_token() {
    let (instance, dir) = instance().await;
    let addr = instance.running.addr;
    let fingerprint = instance.running.fingerprint.clone();
    let client = enrolled_client(&instance, "keeper", true).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = instance
            .api
            .insert_output(&NewOutput {
                durability: Default::default(),
                agent: "mid.server.keeper".into(),
                topic: Topic::RESTProbe,
                name: Some(format!("job {i}")),
                source: None,
                payload: json!({"url": format!("http://127.0.0.1:9/{i}")}).into(),
                priority: None,
                correlator: Some("restart".into()),
                max_attempts: None,
                at_most_once: false,
                application: None,
            })
            .await
            .expect("insert");
        ids.push(r.id);
    }
    let token = instance.token.clone();
    instance.shutdown().await;

    let instance = TestInstance::start_in(dir.path(), addr, Some(token))
        .await
        .expect("restart");
    assert!(
        instance.running.admin_token.is_none(),
        "the admin token is printed only once"
    );
    assert_eq!(
        instance.running.fingerprint, fingerprint,
        "the certificate is kept"
    );
    let page = instance
        .api
        .list_records(&RecordQuery {
            correlator: Some("restart".into()),
            ..Default::default()
        })
        .await
        .expect("list with the old token");
    let found: Vec<&str> = page.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(found, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(page.records.iter().all(|r| r.state == State::Ready));
    let mids = instance.api.list_mids().await.expect("mids");
    assert_eq!(mids.len(), 1);
    // Still enrolled and validated; `down` until it reconnects (nobody is connected to
    // an instance that just started).
    assert_eq!(mids[0].status, MidStatus::Down);
    assert!(mids[0].validated_at.is_some());

    // The MID's credentials still work, and the kept work is handed out.
    let answer = client
        .poll(&PollRequest {
            capacity: Capacity {
                interactive: 10,
                ..Default::default()
            },
            wait_ms: 0,
            known_status: Some(MidStatus::Up),
        })
        .await
        .expect("poll after restart");
    assert_eq!(answer.work.len(), 3);
    assert_eq!(answer.status, MidStatus::Up, "its poll brought it back");
    instance.shutdown().await;
}

#[tokio::test]
async fn an_operator_certificate_is_served_instead_of_the_self_signed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let cert_path = dir.path().join("operator.crt");
    let key_path = dir.path().join("operator.key");
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    let instance = TestInstance::start_with(
        openmid_instance::config::InstanceConfig {
            data_dir: dir.path().join("data"),
            listen: openmid_testkit::loopback_any_port(),
            tls_cert: Some(cert_path.clone()),
            tls_key: Some(key_path),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("starts with the operator's certificate");
    assert_eq!(instance.running.cert_path, cert_path);
    let expected =
        openmid_proto::trust::format_fingerprint(&openmid_proto::trust::fingerprint_of(cert.der()));
    assert_eq!(instance.running.fingerprint, expected);
    assert!(
        !dir.path().join("data/tls/instance.crt").exists(),
        "no self-signed certificate made"
    );
    // A client trusting the operator's certificate gets through.
    assert!(
        instance
            .api
            .list_mids()
            .await
            .expect("API over the operator's TLS")
            .is_empty()
    );

    let broken = TestInstance::start_with(
        openmid_instance::config::InstanceConfig {
            data_dir: dir.path().join("data2"),
            listen: openmid_testkit::loopback_any_port(),
            tls_cert: Some(dir.path().join("missing.crt")),
            tls_key: Some(dir.path().join("missing.key")),
            ..Default::default()
        },
        None,
    )
    .await;
    let message = broken.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("missing.crt"), "names the file: {message}");
    instance.shutdown().await;
}

#[tokio::test]
async fn finished_records_past_the_retention_are_purged_and_open_ones_kept() {
    use openmid_instance::ecc::{Lifecycle, SqliteStore};
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_with(
        openmid_instance::config::InstanceConfig {
            data_dir: dir.path().to_path_buf(),
            listen: openmid_testkit::loopback_any_port(),
            retention_hours: 1,
            ..Default::default()
        },
        None,
    )
    .await
    .expect("instance");
    let target = openmid_testkit::TargetService::start()
        .await
        .expect("target");
    let mid = instance
        .start_mid("keeper", &dir.path().join("m"), true)
        .await
        .expect("MID");
    let old = instance
        .api
        .rest_action(
            &openmid_proto::api::RestAction::new("mid.server.keeper", target.url("/hello")),
            std::time::Duration::from_secs(15),
        )
        .await
        .expect("action");
    let openmid_client::ActionOutcome::Done(old) = old else {
        panic!("done")
    };
    mid.shutdown().await.expect("stops");
    let waiting = instance
        .api
        .insert_output(&openmid_testkit::rest_output(
            "mid.server.keeper",
            &target.url("/hello"),
            "open",
        ))
        .await
        .expect("insert");
    let token = instance.token.clone();
    let addr = instance.running.addr;
    instance.shutdown().await;

    // Age the finished pair by two hours, as if time had passed.
    let store = SqliteStore::open(&dir.path().join("openmid.db"))
        .await
        .expect("open");
    let two_hours_ago = openmid_proto::time::now_ms() - 2 * 3_600_000;
    assert_eq!(
        store
            .purge_finished(two_hours_ago, 1000)
            .await
            .expect("purge"),
        0,
        "nothing that old yet"
    );
    store.close().await;
    let db = rusqlite::Connection::open(dir.path().join("openmid.db")).expect("db");
    db.execute(
        "UPDATE ecc SET processed_at = ? WHERE processed_at IS NOT NULL",
        [two_hours_ago],
    )
    .expect("age");
    drop(db);

    let instance = TestInstance::start_with(
        openmid_instance::config::InstanceConfig {
            data_dir: dir.path().to_path_buf(),
            listen: addr,
            retention_hours: 1,
            ..Default::default()
        },
        Some(token),
    )
    .await
    .expect("restart");
    let api = &instance.api;
    let gone = openmid_testkit::wait_until(std::time::Duration::from_secs(10), || async {
        api.get_record(&old.output_id).await.is_err()
    })
    .await;
    assert!(gone, "the old output was purged at start");
    assert!(
        api.get_record(old.input_id.as_deref().unwrap_or_default())
            .await
            .is_err(),
        "with its input"
    );
    assert_eq!(
        api.get_record(&waiting.id).await.expect("kept").state,
        State::Ready,
        "open work is kept"
    );
    instance.shutdown().await;
}

/// Credentials survive a restart under the same master key (given by environment, so no
/// key file is made); under another key the instance still starts, shows them, and says
/// plainly why they cannot be used or changed.
#[tokio::test]
async fn credentials_survive_a_restart_and_a_wrong_master_key_is_named() {
    use openmid_client::ClientError;
    use openmid_instance::config::InstanceConfig;
    use openmid_proto::api::NewCredential;
    use openmid_proto::credential::{CredentialSpec, REDACTED, SecretValue};
    use openmid_proto::secret::Secret;

    let dir = tempfile::tempdir().expect("tempdir");
    let config = |key: &str| InstanceConfig {
        data_dir: dir.path().to_path_buf(),
        listen: openmid_testkit::loopback_any_port(),
        master_key: Some(Secret::new(key)),
        ..InstanceConfig::default()
    };
    let key_a = "a".repeat(64);
    let key_b = "b".repeat(64);
    let instance = TestInstance::start_with(config(&key_a), None)
        .await
        .expect("start");
    let update = |user: &str| NewCredential {
        name: "svc".into(),
        description: None,
        spec: CredentialSpec::Basic {
            username: user.into(),
            password: SecretValue::stored(REDACTED),
        },
    };
    instance
        .api
        .create_credential(&NewCredential {
            spec: CredentialSpec::Basic {
                username: "u".into(),
                password: SecretValue::stored("pw"),
            },
            ..update("u")
        })
        .await
        .expect("created");
    assert!(
        !dir.path().join("master.key").exists(),
        "a key from the environment makes no key file"
    );
    let token = instance.token.clone();
    instance.shutdown().await;

    let instance = TestInstance::start_with(config(&key_b), Some(token.clone()))
        .await
        .expect("starts under another key");
    let shown = instance.api.get_credential("svc").await.expect("shown");
    assert_eq!(shown.spec.type_name(), "basic");
    match instance.api.put_credential(&update("u2")).await {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => {
            assert_eq!((status, code.as_str()), (500, "vault"));
            assert!(message.contains("master key"), "{message}");
        }
        other => panic!("expected a vault error, got {other:?}"),
    }
    instance.shutdown().await;

    let instance = TestInstance::start_with(config(&key_a), Some(token))
        .await
        .expect("starts under the right key");
    let changed = instance
        .api
        .put_credential(&update("u2"))
        .await
        .expect("update keeps the stored secret");
    assert_eq!(
        changed.spec,
        CredentialSpec::Basic {
            username: "u2".into(),
            password: SecretValue::stored(REDACTED),
        }
    );
    instance.shutdown().await;
}
