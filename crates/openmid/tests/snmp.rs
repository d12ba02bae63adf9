//! SNMP through the instance: an `snmp` alias naming a real net-snmp agent the test
//! starts on loopback, read with `POST /api/v1/actions/snmp` by a MID over v2c (the
//! community's default) and v3 authPriv (SHA-256, AES), the secrets sealed to the MID
//! and never shown.

use openmid_client::ActionOutcome;
use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::NewCredential;
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_proto::secret::Secret;
use openmid_proto::snmp::SnmpResponse;
use openmid_testkit::snmpd::{self, LocalSnmpd, SnmpdError};
use openmid_testkit::{MidProcess, TestInstance, loopback_any_port, wait_until};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_openmid");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_is_read_through_an_alias_over_v2c_and_v3() {
    let agent = match LocalSnmpd::start() {
        Ok(a) => a,
        Err(SnmpdError::Missing) => {
            eprintln!("SKIPPED: snmpd is not installed (Debian: snmpd snmp); CI installs it");
            return;
        }
        Err(e) => panic!("snmpd: {e}"),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
        .await
        .expect("instance");
    let token = instance.auto_validating_token().await.expect("token");
    let mut config = instance.mid_config("snmp-a", &dir.path().join("snmp-a"), Some(token));
    let table: PolicyConfig =
        toml::from_str("[snmp]\nallow_cidrs = [\"127.0.0.0/8\"]\n").expect("policy");
    config.policy = EgressPolicy::new(table).expect("policy compiles");
    let _mid = MidProcess::spawn(Path::new(BIN), &config).expect("MID starts");
    let api = &instance.api;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            api.get_mid("snmp-a")
                .await
                .is_ok_and(|m| m.status == MidStatus::Up)
        })
        .await,
        "MID up"
    );
    let credentials = [
        (
            "snmp-ro",
            CredentialSpec::SnmpCommunity {
                community: SecretValue::Stored(Secret::new(snmpd::COMMUNITY.to_string())),
            },
        ),
        (
            "snmp-v3",
            CredentialSpec::SnmpV3 {
                username: snmpd::PRIV_USER.into(),
                auth_protocol: Some("sha256".into()),
                auth_password: Some(SecretValue::Stored(Secret::new(
                    snmpd::PRIV_AUTH_PASSWORD.to_string(),
                ))),
                priv_protocol: Some("aes".into()),
                priv_password: Some(SecretValue::Stored(Secret::new(
                    snmpd::PRIV_PRIV_PASSWORD.to_string(),
                ))),
            },
        ),
    ];
    for (name, spec) in credentials {
        let info = api
            .create_credential(&NewCredential {
                name: name.into(),
                description: None,
                spec,
            })
            .await
            .expect("credential");
        let shown = serde_json::to_string(&info).expect("json");
        assert!(
            !shown.contains(snmpd::COMMUNITY) && !shown.contains(snmpd::PRIV_PRIV_PASSWORD),
            "{shown}"
        );
        api.create_alias(&Alias {
            name: format!("agent-{name}"),
            description: None,
            kind: ConnectionKind::Snmp,
            base_url: format!("snmp://127.0.0.1:{}", agent.port),
            headers: Default::default(),
            timeout_ms: Some(2_000),
            retry: Default::default(),
            credential: Some(name.into()),
            execution: Execution {
                mid: Some("snmp-a".into()),
                ..Execution::default()
            },
            soap_version: None,
            wsdl: None,
            ca_pem: None,
            host_key: None,
            pool_size: None,
            tls: None,
            options: Default::default(),
            durability: None,
        })
        .await
        .expect("alias");
    }
    let read = |alias: &'static str, operation: serde_json::Value| async move {
        match api
            .run_action::<_, SnmpResponse>(
                "snmp",
                &json!({"alias": alias, "operation": operation}),
                Duration::from_secs(30),
            )
            .await
            .expect("accepted")
        {
            ActionOutcome::Done(r) => {
                assert_eq!(r.state, State::Processed, "{alias}: {:?}", r.error);
                r.response.expect("a response")
            }
            ActionOutcome::Pending(p) => panic!("not done: {p:?}"),
        }
    };
    // v2c by default for a community; a walk of `system`.
    let walk = read(
        "agent-snmp-ro",
        json!({"op": "bulk_walk", "oid": "1.3.6.1.2.1.1"}),
    )
    .await;
    let descr = walk
        .varbinds
        .iter()
        .find(|v| v.oid == "1.3.6.1.2.1.1.1.0")
        .expect("sysDescr");
    assert_eq!(descr.value, json!(snmpd::SYS_DESCR));
    assert!(walk.varbinds.len() >= 7, "{:?}", walk.varbinds);
    // v3 authPriv by default for a v3 user.
    let get = read(
        "agent-snmp-v3",
        json!({"op": "get", "oids": ["1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.5.0"]}),
    )
    .await;
    assert_eq!(get.varbinds[0].value, json!(snmpd::SYS_OBJECT_ID));
    assert_eq!(get.varbinds[1].value, json!(snmpd::SYS_NAME));
    assert!(get.engine_id.is_some(), "v3 tells the agent's engine id");
    // An action without its operation is refused by name.
    let refused = api
        .run_action::<_, SnmpResponse>("snmp", &json!({"alias": "agent-snmp-ro"}), Duration::ZERO)
        .await
        .expect_err("refused");
    assert!(refused.to_string().contains("operation"), "{refused}");
}
