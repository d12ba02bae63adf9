//! Discovery through the instance: `POST /api/v1/actions/ping` and `/scan` run by a
//! real MID against a network of network namespaces the test makes (198.18.0.0/24,
//! only inside them), the scan's hosts followed in pages as they are found, and the
//! MID's `[policy.scan]` refusing what it does not allow.

use openmid_client::ActionOutcome;
use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_proto::command_output::{OutputLine, OutputStream};
use openmid_proto::devices::{DiscoveryState, NewDiscoveryRun};
use openmid_proto::discovery::{PingResponse, PortSpec, ScanPage, ScanResponse};
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_testkit::netns::{NetnsError, TestNet};
use openmid_testkit::{MidProcess, TestInstance, loopback_any_port, wait_until};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_openmid");

/// A TCP listener on the given ports of one address, writing a banner if given.
const LISTENER: &str = r#"
import socket, sys, threading
addr = sys.argv[1]
def serve(port, banner):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        try:
            if banner:
                c.sendall(banner.encode() + b"\r\n")
        except OSError:
            pass
        c.close()
for spec in sys.argv[2:]:
    port, banner = spec.split(":", 1)
    threading.Thread(target=serve, args=(int(port), banner), daemon=True).start()
threading.Event().wait()
"#;

fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let target: std::net::SocketAddr = addr.parse().expect("address");
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{addr} did not start listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_scan_through_the_instance_find_the_live_hosts_and_open_ports() {
    let net = match TestNet::create("ome", 6) {
        Ok(net) => net,
        Err(NetnsError::Unavailable(why)) => {
            eprintln!("SKIPPED: no network namespaces ({why}); CI runs this test as root");
            return;
        }
        Err(e) => panic!("making the test net: {e}"),
    };
    // Hosts 0–3 up, 4–5 down; an SSH-like banner on 0, a database port on 1.
    net.set_down(4).expect("down");
    net.set_down(5).expect("down");
    for (n, specs) in [
        (0u8, vec!["22:SSH-2.0-OpenSSH_9.2p1 Debian-2"]),
        (1, vec!["5432:"]),
    ] {
        let mut c = Command::new("python3");
        c.args(["-c", LISTENER, &net.addr(n)]).args(specs);
        net.spawn_in(n, c).expect("listener");
    }
    wait_listening(&format!("{}:22", net.addr(0)));
    wait_listening(&format!("{}:5432", net.addr(1)));

    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
        .await
        .expect("instance");
    let token = instance.auto_validating_token().await.expect("token");
    let mut config = instance.mid_config("scan-a", &dir.path().join("scan-a"), Some(token));
    let table: PolicyConfig =
        toml::from_str("[scan]\nallow_cidrs = [\"198.18.0.0/24\"]\ndeny_ports = [23]\n")
            .expect("policy");
    config.policy = EgressPolicy::new(table).expect("policy compiles");
    let _mid = MidProcess::spawn(Path::new(BIN), &config).expect("MID starts");
    let api = &instance.api;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            api.get_mid("scan-a")
                .await
                .is_ok_and(|m| m.status == MidStatus::Up)
        })
        .await,
        "MID up"
    );

    let targets = format!("{}-{}", net.addr(0), net.addr(5));
    let ping = match api
        .run_action::<_, PingResponse>(
            "ping",
            &json!({"agent": "mid.server.scan-a", "targets": [targets], "count": 2, "timeout_ms": 500}),
            Duration::from_secs(60),
        )
        .await
        .expect("ping")
    {
        ActionOutcome::Done(r) => {
            assert_eq!(r.state, State::Processed, "{:?}", r.error);
            r.response.expect("a response")
        }
        ActionOutcome::Pending(p) => panic!("not done: {p:?}"),
    };
    let alive: BTreeSet<String> = ping
        .hosts
        .iter()
        .filter(|h| h.alive)
        .map(|h| h.address.clone())
        .collect();
    let want: BTreeSet<String> = (0..4).map(|n| net.addr(n)).collect();
    assert_eq!(alive, want, "{ping:?}");

    // The scan, followed page by page; 23 is refused by the MID's own policy.
    let started = match api
        .run_action::<_, ScanResponse>(
            "scan",
            &json!({"agent": "mid.server.scan-a", "targets": ["198.18.0.0/27"], "ports": [22, 23, 80, "5430-5433"],
                    "rate_per_sec": 2000, "timeout_ms": 500}),
            Duration::ZERO,
        )
        .await
        .expect("scan")
    {
        ActionOutcome::Pending(p) => p.output_id,
        ActionOutcome::Done(r) => r.output_id,
    };
    let mut lines = api
        .follow_output(&started, None, true)
        .await
        .expect("follow");
    let mut found: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let mut banners = Vec::new();
    while let Some(line) = lines.next().await.expect("line") {
        match &line {
            OutputLine::Chunk {
                stream: OutputStream::Rows,
                ..
            } => {
                let page: ScanPage =
                    serde_json::from_slice(&line.bytes().expect("bytes")).expect("a page");
                for host in page.hosts {
                    for port in host.open {
                        banners.extend(port.banner.clone());
                        assert!(
                            found
                                .entry(host.address.clone())
                                .or_default()
                                .insert(port.port),
                            "each host and port once"
                        );
                    }
                }
            }
            OutputLine::End { .. } => break,
            _ => {}
        }
    }
    let expected = BTreeMap::from([
        (net.addr(0), BTreeSet::from([22])),
        (net.addr(1), BTreeSet::from([5432])),
    ]);
    assert_eq!(found, expected);
    assert!(
        banners.iter().any(|b| b.contains("OpenSSH_9.2p1")),
        "{banners:?}"
    );
    let done = match api
        .run_action::<_, ScanResponse>("scan", &json!({}), Duration::ZERO)
        .await
    {
        Err(e) => e.to_string(),
        Ok(_) => String::new(),
    };
    assert!(
        done.contains("agent"),
        "a body without its fields is refused by name: {done}"
    );
    let result = api
        .get_action::<ScanResponse>(&started, Duration::from_secs(30))
        .await
        .expect("result");
    let response = match result {
        ActionOutcome::Done(r) => r.response.expect("a response"),
        ActionOutcome::Pending(p) => panic!("not done: {p:?}"),
    };
    assert_eq!(response.refused_ports, vec![23]);
    // Up: a refused connection is an answer too — hosts 0–3, and the bridge
    // (198.18.0.1, the MID's own side of the test net).
    assert_eq!(response.hosts_up, 5);

    // A discovery run: ping, scan what answered, file devices; a second run updates
    // the same devices rather than adding any.
    let request = NewDiscoveryRun {
        agent: "mid.server.scan-a".into(),
        targets: vec![targets.clone()],
        ports: vec![
            PortSpec::Number(22),
            PortSpec::Number(80),
            PortSpec::Text("5430-5433".into()),
        ],
        rate_per_sec: Some(2000),
        timeout_ms: Some(500),
        ..NewDiscoveryRun::default()
    };
    let mut first_seen = BTreeMap::new();
    for round in 0..2 {
        let run = api.start_discovery(&request).await.expect("run starts");
        let run = api
            .wait_discovery_run(&run.id, Duration::from_millis(100), Duration::from_secs(60))
            .await
            .expect("run");
        assert_eq!(run.state, DiscoveryState::Complete, "{run:?}");
        assert_eq!(run.hosts_alive, 4);
        assert_eq!(
            (run.devices_new, run.devices_updated),
            if round == 0 { (4, 0) } else { (0, 4) },
            "round {round}"
        );
        let devices = api.list_devices(None, None, 100).await.expect("devices");
        assert_eq!(devices.len(), 4, "one device per address: {devices:?}");
        let class: BTreeMap<&str, &str> = devices
            .iter()
            .map(|d| (d.address.as_str(), d.class.as_str()))
            .collect();
        let (a0, a1, a2) = (net.addr(0), net.addr(1), net.addr(2));
        assert_eq!(class[a0.as_str()], "linux_server", "{devices:?}");
        assert_eq!(class[a1.as_str()], "database");
        assert_eq!(class[a2.as_str()], "unknown");
        let linux = api.get_device(&a0).await.expect("device");
        assert!(linux.evidence[0].contains("OpenSSH_9.2p1"), "{linux:?}");
        assert_eq!(linux.last_run, run.id);
        for d in &devices {
            let seen = first_seen
                .entry(d.address.clone())
                .or_insert(d.first_seen.clone());
            assert_eq!(*seen, d.first_seen, "first_seen stays");
        }
    }

    // A range the MID's policy does not allow fails with the rule's words.
    let refused = match api
        .run_action::<_, ScanResponse>(
            "scan",
            &json!({"agent": "mid.server.scan-a", "targets": ["198.19.0.0/30"], "ports": [22]}),
            Duration::from_secs(30),
        )
        .await
        .expect("scan")
    {
        ActionOutcome::Done(r) => r,
        ActionOutcome::Pending(p) => panic!("not done: {p:?}"),
    };
    assert_eq!(refused.state, State::Error);
    let error = refused.error.unwrap_or_default();
    assert!(error.contains("policy.scan"), "{error}");
}
