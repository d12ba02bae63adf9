//! The SNMP probe against a real net-snmp agent (`snmpd`) each test starts on
//! loopback ([`snmpd`], the harness of `openmid-local`, included by path), its walks
//! compared with net-snmp's own `snmpwalk`/`snmpbulkwalk` of the same agent. Without
//! snmpd each test prints a loud `SKIPPED:` line and passes. Property tests check the
//! BER codec never panics and round-trips.

#[allow(dead_code)]
#[path = "../../local/src/snmpd.rs"]
mod snmpd;

use openmid_mid::config::LocalSecretPolicy;
use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_mid::probes::snmp::ber::{self, Pdu, Value};
use openmid_mid::probes::{JobContext, ProbeContext, ProbeError};
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::ecc::Topic;
use openmid_proto::mid::JobRef;
use openmid_proto::secret::Secret;
use openmid_proto::snmp::SnmpResponse;
use proptest::prelude::*;
use serde_json::{Value as Json, json};
use snmpd::LocalSnmpd;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SYSTEM: &str = "1.3.6.1.2.1.1";
const IF_TABLE: &str = "1.3.6.1.2.1.2.2";

fn agent() -> Option<LocalSnmpd> {
    match LocalSnmpd::start() {
        Ok(a) => Some(a),
        Err(snmpd::SnmpdError::Missing) => {
            eprintln!(
                "SKIPPED: {} is not installed (apt-get install snmpd snmp)",
                snmpd::SNMPD
            );
            None
        }
        Err(e) => panic!("starting snmpd: {e}"),
    }
}

fn context(policy: &str) -> ProbeContext {
    let config: PolicyConfig = toml::from_str(policy).unwrap_or_else(|e| panic!("{e}"));
    let policy = EgressPolicy::new(config).unwrap_or_else(|e| panic!("{e}"));
    ProbeContext::new(1 << 20, LocalSecretPolicy::default(), Arc::new(policy))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn loopback() -> ProbeContext {
    context("[snmp]\nallow_cidrs = [\"127.0.0.0/8\"]\n")
}

fn job(name: &str) -> JobContext {
    JobContext::new(JobRef {
        output_id: name.to_string(),
        attempt: 1,
    })
}

fn community(c: &str) -> Option<CredentialSpec> {
    Some(CredentialSpec::SnmpCommunity {
        community: SecretValue::Stored(Secret::new(c)),
    })
}

fn v3(
    user: &str,
    auth: Option<(&str, &str)>,
    privacy: Option<(&str, &str)>,
) -> Option<CredentialSpec> {
    let s = |p: &str| Some(SecretValue::Stored(Secret::new(p)));
    Some(CredentialSpec::SnmpV3 {
        username: user.to_string(),
        auth_protocol: auth.map(|a| a.0.to_string()),
        auth_password: auth.and_then(|a| s(a.1)),
        priv_protocol: privacy.map(|p| p.0.to_string()),
        priv_password: privacy.and_then(|p| s(p.1)),
    })
}

fn request(port: u16, version: &str, operation: Json) -> Json {
    json!({
        "host": "127.0.0.1", "port": port, "version": version,
        "credential": {"id": "c1", "name": "snmp"},
        "operation": operation, "timeout_ms": 500, "retries": 1,
    })
}

async fn run(
    ctx: &ProbeContext,
    payload: Json,
    cred: Option<CredentialSpec>,
) -> Result<SnmpResponse, ProbeError> {
    let v = openmid_mid::probes::run(Topic::SNMPProbe, payload.into(), cred, &job("snmp"), ctx)
        .await?
        .to_value();
    Ok(serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}")))
}

fn ok(r: Result<SnmpResponse, ProbeError>) -> SnmpResponse {
    r.unwrap_or_else(|e| panic!("the job failed: {e}"))
}

fn oids(r: &SnmpResponse) -> Vec<String> {
    r.varbinds.iter().map(|v| v.oid.clone()).collect()
}

/// The OIDs net-snmp's `program` lists for `root` (`-On`: numeric, leading dot).
fn reference(a: &LocalSnmpd, program: &str, root: &str) -> Vec<String> {
    let out = a
        .client(program, &["-v2c", "-c", snmpd::COMMUNITY, "-On"], &[root])
        .unwrap_or_else(|e| panic!("{e}"));
    out.lines()
        .filter_map(|l| l.split(" = ").next())
        .map(|o| o.trim_start_matches('.').to_string())
        .filter(|o| !o.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_over_v1_and_v2c() {
    let Some(a) = agent() else { return };
    let ctx = loopback();
    for version in ["v1", "v2c"] {
        let op = json!({"op": "get", "oids": ["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.3.0"]});
        let r = ok(run(
            &ctx,
            request(a.port, version, op),
            community(snmpd::COMMUNITY),
        )
        .await);
        assert_eq!(r.varbinds.len(), 3, "{r:?}");
        assert_eq!(r.varbinds[0].value, json!(snmpd::SYS_DESCR));
        assert_eq!(r.varbinds[0].type_name, "octet_string");
        assert_eq!(r.varbinds[1].value, json!(snmpd::SYS_OBJECT_ID));
        assert_eq!(r.varbinds[1].type_name, "oid");
        assert_eq!(r.varbinds[2].type_name, "timeticks");
        let op = json!({"op": "get_next", "oids": ["1.3.6.1.2.1.1.5"]});
        let r = ok(run(
            &ctx,
            request(a.port, version, op),
            community(snmpd::COMMUNITY),
        )
        .await);
        assert_eq!(oids(&r), ["1.3.6.1.2.1.1.5.0"]);
        assert_eq!(r.varbinds[0].value, json!(snmpd::SYS_NAME));
    }
    // A missing object: v2c says so in the varbind, v1 with noSuchName.
    let op = || json!({"op": "get", "oids": ["1.3.6.1.2.1.1.99.0"]});
    let r = ok(run(
        &ctx,
        request(a.port, "v2c", op()),
        community(snmpd::COMMUNITY),
    )
    .await);
    assert!(r.varbinds[0].type_name.starts_with("no_such_"), "{r:?}");
    let r = run(
        &ctx,
        request(a.port, "v1", op()),
        community(snmpd::COMMUNITY),
    )
    .await;
    let text = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("no such name: 1.3.6.1.2.1.1.99.0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walks_match_net_snmp() {
    let Some(a) = agent() else { return };
    let ctx = loopback();
    for root in [SYSTEM, IF_TABLE] {
        let want = reference(&a, "/usr/bin/snmpwalk", root);
        assert!(!want.is_empty());
        let r = ok(run(
            &ctx,
            request(a.port, "v1", json!({"op": "walk", "oid": root})),
            community(snmpd::COMMUNITY),
        )
        .await);
        assert_eq!(oids(&r), want, "walk of {root}");
        let want = reference(&a, "/usr/bin/snmpbulkwalk", root);
        let op = json!({"op": "bulk_walk", "oid": root, "max_repetitions": 7});
        let r = ok(run(
            &ctx,
            request(a.port, "v2c", op),
            community(snmpd::COMMUNITY),
        )
        .await);
        assert_eq!(oids(&r), want, "bulk walk of {root}");
        assert!(!r.truncated);
    }
    let mut req = request(a.port, "v2c", json!({"op": "bulk_walk", "oid": SYSTEM}));
    req["max_varbinds"] = json!(3);
    let r = ok(run(&ctx, req, community(snmpd::COMMUNITY)).await);
    assert_eq!((r.varbinds.len(), r.truncated), (3, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_table_rows() {
    let Some(a) = agent() else { return };
    let ctx = loopback();
    let descr = reference(&a, "/usr/bin/snmpwalk", "1.3.6.1.2.1.2.2.1.2");
    let op = json!({"op": "table", "oid": IF_TABLE, "columns": [1, 2]});
    let r = ok(run(
        &ctx,
        request(a.port, "v2c", op),
        community(snmpd::COMMUNITY),
    )
    .await);
    let rows = r.table.unwrap_or_default();
    assert_eq!(rows.len(), descr.len(), "{rows:?}");
    for row in &rows {
        assert_eq!(
            row.columns.get(&1),
            Some(&json!(row.index.parse::<u64>().unwrap_or(0)))
        );
        assert!(
            row.columns.get(&2).is_some_and(|v| v.is_string()),
            "{row:?}"
        );
        assert_eq!(row.columns.len(), 2);
    }
    let op = json!({"op": "table", "oid": "1.3.6.1.2.1.2.2.1"});
    let r = ok(run(&ctx, request(a.port, "v1", op), community(snmpd::COMMUNITY)).await);
    assert_eq!(r.table.map(|t| t.len()), Some(descr.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_users() {
    let Some(a) = agent() else { return };
    let ctx = loopback();
    let op = || json!({"op": "get", "oids": ["1.3.6.1.2.1.1.5.0"]});
    let cred = v3(
        snmpd::PRIV_USER,
        Some(("sha-256", snmpd::PRIV_AUTH_PASSWORD)),
        Some(("aes", snmpd::PRIV_PRIV_PASSWORD)),
    );
    let r = ok(run(&ctx, request(a.port, "v3", op()), cred).await);
    assert_eq!(r.varbinds[0].value, json!(snmpd::SYS_NAME));
    assert!(r.engine_id.is_some_and(|e| e.len() >= 10));
    let cred = v3(snmpd::AUTH_USER, Some(("sha", snmpd::AUTH_PASSWORD)), None);
    let r = ok(run(
        &ctx,
        request(a.port, "v3", json!({"op": "bulk_walk", "oid": SYSTEM})),
        cred,
    )
    .await);
    assert_eq!(oids(&r), reference(&a, "/usr/bin/snmpbulkwalk", SYSTEM));
    let r = ok(run(
        &ctx,
        request(a.port, "v3", op()),
        v3(snmpd::NOAUTH_USER, None, None),
    )
    .await);
    assert_eq!(r.varbinds[0].value, json!(snmpd::SYS_NAME));
    let canary = "Wr0ng-Canary-Auth-77";
    let r = run(
        &ctx,
        request(a.port, "v3", op()),
        v3(snmpd::AUTH_USER, Some(("sha", canary)), None),
    )
    .await;
    let text = r.err().map(|e| e.to_string()).unwrap_or_default();
    eprintln!("wrong auth password: {text}");
    assert!(
        text.contains("authentication failed") && !text.contains(canary),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_and_refusals_end_clearly() {
    let Some(a) = agent() else { return };
    let ctx = loopback();
    let op = || json!({"op": "get", "oids": ["1.3.6.1.2.1.1.1.0"]});
    let started = Instant::now();
    let r = run(
        &ctx,
        request(a.port, "v2c", op()),
        community("Wrong-Community-Canary"),
    )
    .await;
    let text = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("no SNMP answer") && text.contains("500 ms") && text.contains("2 attempts"),
        "{text}"
    );
    assert!(!text.contains("Canary"), "{text}");
    assert!(started.elapsed() < Duration::from_millis(2500));
    let port = snmpd::free_udp_port().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let r = run(
        &ctx,
        request(port, "v2c", op()),
        community(snmpd::COMMUNITY),
    )
    .await;
    let text = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let denied = run(
        &context(""),
        request(a.port, "v2c", op()),
        community(snmpd::COMMUNITY),
    )
    .await;
    assert!(matches!(denied, Err(ProbeError::Policy(_))), "{denied:?}");
    let v3_with_community = run(
        &ctx,
        request(a.port, "v3", op()),
        community(snmpd::COMMUNITY),
    )
    .await;
    assert!(matches!(v3_with_community, Err(ProbeError::Credential(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_ends_promptly() {
    let ctx = loopback();
    let port = snmpd::free_udp_port().unwrap_or_else(|e| panic!("{e}"));
    // A socket that takes requests and never answers.
    let silent = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
    let mut req = request(port, "v2c", json!({"op": "walk", "oid": SYSTEM}));
    req["timeout_ms"] = json!(10_000);
    let job = job("cancel");
    let cancel = job.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let r =
        openmid_mid::probes::run(Topic::SNMPProbe, req.into(), community("x"), &job, &ctx).await;
    assert!(matches!(r, Err(ProbeError::Cancelled)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(silent);
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(|n| Value::Integer(i64::from(n))),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::OctetString),
        Just(Value::Null),
        any_oid().prop_map(Value::Oid),
        any::<[u8; 4]>().prop_map(Value::IpAddress),
        any::<u32>().prop_map(Value::Counter32),
        any::<u32>().prop_map(Value::Gauge32),
        any::<u32>().prop_map(Value::TimeTicks),
        any::<u64>().prop_map(Value::Counter64),
        Just(Value::EndOfMibView),
        Just(Value::NoSuchInstance),
    ]
}

fn any_oid() -> impl Strategy<Value = Vec<u32>> {
    (
        0u32..3,
        0u32..40,
        proptest::collection::vec(any::<u32>(), 0..20),
    )
        .prop_map(|(a, b, rest)| {
            let mut o = vec![a, b];
            o.extend(rest);
            o
        })
}

proptest! {
    #[test]
    fn the_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ber::read_community_message(&bytes);
        let _ = ber::read_pdu(&bytes);
        let _ = openmid_mid::probes::snmp::v3::decode(&bytes);
        let _ = openmid_mid::probes::snmp::v3::read_scoped(&bytes);
    }

    #[test]
    fn what_is_encoded_decodes(id in any::<i32>(), vbs in proptest::collection::vec((any_oid(), any_value()), 0..20), community in proptest::collection::vec(any::<u8>(), 0..40)) {
        let pdu = Pdu { kind: ber::tag::RESPONSE, request_id: id, error_status: 0, error_index: 0, varbinds: vbs };
        let msg = ber::community_message(1, &community, &pdu);
        let got = ber::read_community_message(&msg);
        prop_assert_eq!(got, Ok((1, community, pdu)));
    }
}

#[test]
fn known_encodings() {
    let mut out = Vec::new();
    ber::value(&mut out, &Value::Oid(vec![1, 3, 6, 1, 2, 1, 1, 1, 0]));
    assert_eq!(out, [0x06, 0x08, 0x2b, 6, 1, 2, 1, 1, 1, 0]);
    let mut out = Vec::new();
    ber::integer(&mut out, 128);
    assert_eq!(out, [0x02, 0x02, 0x00, 0x80]);
    let mut out = Vec::new();
    ber::integer(&mut out, -129);
    assert_eq!(out, [0x02, 0x02, 0xff, 0x7f]);
    let mut out = Vec::new();
    ber::value(&mut out, &Value::Counter32(u32::MAX));
    assert_eq!(out, [0x41, 0x05, 0, 0xff, 0xff, 0xff, 0xff]);
}

/// RFC 3414 A.3.2: "maplesyrup" localized to engine 000000000000000000000002.
#[test]
fn rfc3414_key_localization() {
    use openmid_mid::probes::snmp::usm::{AuthProtocol, localized_key};
    let engine = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let k = localized_key(AuthProtocol::Sha1, b"maplesyrup", &engine);
    assert_eq!(
        k.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "6695febc9288e36282235fc7151f128497b38f3f"
    );
    assert!(AuthProtocol::parse("MD5").is_err());
    assert_eq!(AuthProtocol::parse("SHA-256").map(|p| p.mac_len()), Ok(24));
}

#[test]
fn aes_cfb_round_trips() {
    use openmid_mid::probes::snmp::usm::{decrypt, encrypt};
    let key = [7u8; 20];
    let c = encrypt(&key, 3, 99, &[1; 8], b"scoped pdu bytes").unwrap_or_default();
    assert_ne!(c, b"scoped pdu bytes");
    let p = decrypt(&key, 3, 99, &[1; 8], &c).unwrap_or_default();
    assert_eq!(p, b"scoped pdu bytes");
}

proptest! {
    #[test]
    fn v3_messages_round_trip(
        msg_id in 0i64..i64::from(i32::MAX),
        flags in 0u8..8,
        engine in proptest::collection::vec(any::<u8>(), 0..32),
        boots in 0i64..i64::from(i32::MAX),
        user in proptest::collection::vec(any::<u8>(), 0..32),
        auth in proptest::collection::vec(any::<u8>(), 0..48),
        encrypted in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        use openmid_mid::probes::snmp::v3::{self, Data, SecParams};
        let sec = SecParams { engine_id: engine, boots, time: boots / 2, user, auth: auth.clone(), privacy: vec![9; 8] };
        let data = Data::Encrypted(encrypted);
        let bytes = v3::encode(msg_id, flags, &sec, &data);
        let m = v3::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!((m.msg_id, m.flags, &m.sec, &m.data), (msg_id, flags, &sec, &data));
        prop_assert_eq!(bytes.get(m.auth_range.clone()), Some(&auth[..]));
    }
}
