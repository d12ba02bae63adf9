//! Discovery of a network of 22 hosts in network namespaces (198.18.0.0/24, only
//! inside them) running real services — OpenSSH's sshd, HTTP and HTTPS servers,
//! net-snmp's snmpd posing as a Linux host, a Cisco switch and a printer — through
//! a cluster of two real MIDs: ping and scan find exactly the live hosts and open
//! ports, the identify stage reads HTTP `Server` headers, TLS names and SNMP system
//! groups, classification names each host, later runs (two at once) update rather
//! than duplicate, and a chunked run survives one MID killed mid-run with every
//! host filed once.

use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::{ClusterKind, NewCluster, NewCredential, RecordQuery};
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::devices::{Device, DiscoveryRun, DiscoveryState, NewDiscoveryRun};
use openmid_proto::discovery::PortSpec;
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_proto::secret::Secret;
use openmid_testkit::snmpd;
use openmid_testkit::test_network::{HostSpec, TestNetwork, TestNetworkError};
use openmid_testkit::{MidProcess, TestInstance, loopback_any_port, wait_until};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_openmid");
/// The ports every run scans.
const PORTS: [u16; 9] = [22, 80, 443, 3306, 5432, 8080, 8443, 9100, 3389];

/// The hosts, and the class each must be given.
fn network() -> Vec<(HostSpec, &'static str)> {
    let mut hosts = vec![
        (HostSpec::new().ssh(), "linux_server"),
        (HostSpec::new().ssh().open(&[5432]), "linux_server"),
        (
            HostSpec::new().ssh().http(8080, "Jetty(9.4.53)"),
            "linux_server",
        ),
        (HostSpec::new().http(80, "nginx/1.22.1"), "web_server"),
        (
            HostSpec::new().https(
                443,
                "Apache/2.4.57 (Debian)",
                &["web4.corp.test", "www.corp.test"],
            ),
            "web_server",
        ),
        (
            HostSpec::new().http(80, "Microsoft-IIS/10.0").https(
                8443,
                "Microsoft-IIS/10.0",
                &["iis5.corp.test"],
            ),
            "windows_server",
        ),
        (
            HostSpec::new().ssh().snmp(
                "Linux db6 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 x86_64",
                "1.3.6.1.4.1.8072.3.2.10",
                "db6.corp.test",
            ),
            "linux_server",
        ),
        (
            HostSpec::new().banner(22, "SSH-2.0-Cisco-1.25").snmp(
                "Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M), Version 15.2(7)E8",
                "1.3.6.1.4.1.9.1.1208",
                "sw7",
            ),
            "network_device",
        ),
        (
            HostSpec::new().open(&[9100]).snmp(
                "HP ETHERNET MULTI-ENVIRONMENT,ROM none,JETDIRECT,JD153",
                "1.3.6.1.4.1.11.2.3.9.1",
                "printer8",
            ),
            "printer",
        ),
        (HostSpec::new().open(&[3306]), "database"),
        (HostSpec::new().open(&[3389]), "windows_server"),
    ];
    for _ in 0..7 {
        hosts.push((HostSpec::new(), "unknown"));
    }
    for _ in 0..4 {
        hosts.push((HostSpec::new().down(), "down"));
    }
    hosts
}

struct Rig {
    net: TestNetwork,
    classes: Vec<&'static str>,
    instance: TestInstance,
    mids: BTreeMap<&'static str, MidProcess>,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Option<Self> {
        let specs = network();
        let net = match TestNetwork::start(
            "omd",
            &specs.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(),
        ) {
            Ok(net) => net,
            Err(TestNetworkError::Unavailable(why)) => {
                eprintln!("SKIPPED: no network namespaces ({why}); CI runs this test as root");
                return None;
            }
            Err(e) => panic!("making the test network: {e}"),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let instance =
            TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
                .await
                .expect("instance");
        let mut rig = Self {
            net,
            classes: specs.iter().map(|(_, c)| *c).collect(),
            instance,
            mids: BTreeMap::new(),
            _dir: dir,
        };
        for name in ["disc-a", "disc-b"] {
            let token = rig.instance.auto_validating_token().await.expect("token");
            let mut config =
                rig.instance
                    .mid_config(name, &rig._dir.path().join(name), Some(token));
            let table: PolicyConfig = toml::from_str(
                "[scan]\nallow_cidrs = [\"198.18.0.0/24\"]\n[snmp]\nallow_cidrs = [\"198.18.0.0/24\"]\n",
            )
            .expect("policy");
            config.policy = EgressPolicy::new(table).expect("policy compiles");
            rig.mids.insert(
                name,
                MidProcess::spawn(Path::new(BIN), &config).expect("MID starts"),
            );
        }
        let api = &rig.instance.api;
        for name in ["disc-a", "disc-b"] {
            assert!(
                wait_until(Duration::from_secs(30), || async {
                    api.get_mid(name)
                        .await
                        .is_ok_and(|m| m.status == MidStatus::Up)
                })
                .await,
                "MID {name} up"
            );
        }
        api.create_cluster(&NewCluster {
            name: "disc".into(),
            kind: ClusterKind::LoadBalance,
            members: vec!["disc-a".into(), "disc-b".into()],
        })
        .await
        .expect("cluster");
        api.create_credential(&NewCredential {
            name: "lan-ro".into(),
            description: None,
            spec: CredentialSpec::SnmpCommunity {
                community: SecretValue::Stored(Secret::new(snmpd::COMMUNITY.to_string())),
            },
        })
        .await
        .expect("credential");
        api.create_alias(&Alias {
            name: "lan-snmp".into(),
            description: None,
            kind: ConnectionKind::Snmp,
            base_url: "snmp://198.18.0.1:161".into(),
            headers: Default::default(),
            timeout_ms: Some(1_000),
            retry: Default::default(),
            credential: Some("lan-ro".into()),
            execution: Execution {
                cluster: Some("disc".into()),
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
        Some(rig)
    }

    fn request(&self, chunk_size: u32, rate_per_sec: u32) -> NewDiscoveryRun {
        NewDiscoveryRun {
            agent: "mid.cluster.disc".into(),
            targets: vec![format!(
                "{}-{}",
                self.net.addr(0),
                self.net.addr(self.net.hosts() - 1)
            )],
            ports: PORTS
                .iter()
                .map(|p| PortSpec::Number(u32::from(*p)))
                .collect(),
            rate_per_sec: Some(rate_per_sec),
            timeout_ms: Some(700),
            snmp_aliases: vec!["lan-snmp".into()],
            chunk_size: Some(chunk_size),
        }
    }

    async fn finish(&self, run: DiscoveryRun) -> DiscoveryRun {
        let run = self
            .instance
            .api
            .wait_discovery_run(
                &run.id,
                Duration::from_millis(100),
                Duration::from_secs(120),
            )
            .await
            .expect("run");
        assert_eq!(run.state, DiscoveryState::Complete, "{run:#?}");
        run
    }

    async fn devices(&self) -> BTreeMap<String, Device> {
        self.instance
            .api
            .list_devices(None, None, 1000)
            .await
            .expect("devices")
            .into_iter()
            .map(|d| (d.address.clone(), d))
            .collect()
    }

    /// What every run must have filed: each live host once, with exactly its open
    /// ports, in its class.
    fn check_devices(&self, devices: &BTreeMap<String, Device>) {
        let up = self.net.up();
        assert_eq!(
            devices.keys().cloned().collect::<BTreeSet<_>>(),
            up,
            "a device for each live host, and only those"
        );
        let want = self.net.expected_open(&PORTS);
        for (n, class) in self.classes.iter().enumerate() {
            let address = self.net.addr(n as u8);
            let Some(device) = devices.get(&address) else {
                assert_eq!(*class, "down", "{address} was not filed");
                continue;
            };
            let open: BTreeSet<u16> = device.open_ports.iter().map(|p| p.port).collect();
            assert_eq!(
                open,
                want.get(&address).cloned().unwrap_or_default(),
                "{address}'s open ports"
            );
            assert_eq!(device.class, *class, "{address}: {device:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_discovers_a_network_of_22_hosts_and_files_each_once() {
    let Some(mut rig) = Rig::start().await else {
        return;
    };
    let api = &rig.instance.api;

    // First run: 22 addresses in chunks of 8 — three ping jobs, the scans and
    // identifications of the 18 live hosts in three more each.
    let run = api
        .start_discovery(&rig.request(8, 2000))
        .await
        .expect("run starts");
    let run = rig.finish(run).await;
    assert_eq!(run.hosts_alive, 18, "{run:#?}");
    assert_eq!((run.devices_new, run.devices_updated), (18, 0));
    assert_eq!(run.errors, 0, "{run:#?}");
    let stages = |stage: &str| run.jobs.iter().filter(|j| j.stage == stage).count();
    assert_eq!(
        (stages("ping"), stages("scan"), stages("identify")),
        (3, 3, 3),
        "{:#?}",
        run.jobs
    );
    let first = rig.devices().await;
    rig.check_devices(&first);

    // What the hosts said: names from SNMP and TLS, servers, the rule that decided.
    let by = |n: u8| &first[&rig.net.addr(n)];
    assert_eq!(by(6).name.as_deref(), Some("db6.corp.test"));
    assert!(by(6).evidence[0].contains("sysDescr"), "{:#?}", by(6));
    assert_eq!(by(7).name.as_deref(), Some("sw7"));
    assert!(by(7).evidence[0].contains("Cisco"), "{:#?}", by(7));
    assert_eq!(by(8).name.as_deref(), Some("printer8"));
    assert_eq!(by(4).name.as_deref(), Some("web4.corp.test"));
    let web4 = by(4).identity.as_ref().expect("identity");
    assert!(
        web4.tls_names
            .ends_with(&["web4.corp.test".to_string(), "www.corp.test".to_string()]),
        "the certificate's names, its DNS names after its common name: {web4:#?}"
    );
    assert_eq!(
        web4.web.first().and_then(|w| w.server.as_deref()),
        Some("Apache/2.4.57 (Debian)")
    );
    assert!(by(3).evidence[0].contains("nginx/1.22.1"), "{:#?}", by(3));
    assert!(by(5).evidence[0].contains("Microsoft-IIS"), "{:#?}", by(5));
    assert!(
        by(0).evidence[0].contains("SSH banner \"SSH-2.0-OpenSSH"),
        "{:#?}",
        by(0)
    );
    let unknown = by(12).identity.as_ref().expect("asked");
    assert!(
        unknown.snmp.is_none() && unknown.errors.iter().any(|e| e.starts_with("snmp:")),
        "a host without an agent says why: {unknown:#?}"
    );

    // Two more runs at once: every device updated in place by each, none added.
    let (eight, five) = (rig.request(8, 2000), rig.request(5, 2000));
    let (a, b) = tokio::join!(api.start_discovery(&eight), api.start_discovery(&five));
    let (a, b) = (a.expect("run starts"), b.expect("run starts"));
    let (a, b) = tokio::join!(rig.finish(a), rig.finish(b));
    for run in [&a, &b] {
        assert_eq!((run.devices_new, run.devices_updated), (0, 18), "{run:#?}");
        assert_eq!(run.errors, 0, "{run:#?}");
    }
    let second = rig.devices().await;
    rig.check_devices(&second);
    for (address, d) in &second {
        assert_eq!(d.id, first[address].id, "{address} kept its id");
        assert_eq!(d.first_seen, first[address].first_seen);
        assert!(d.last_run == a.id || d.last_run == b.id, "{d:#?}");
    }
    let last_runs: BTreeSet<&str> = second.values().map(|d| d.last_run.as_str()).collect();
    assert_eq!(
        last_runs.len(),
        1,
        "the run filed last saw every host: {last_runs:?}"
    );

    // Third run, in chunks of two and slowly, with disc-b killed while it holds one
    // of the run's jobs: its chunk is leased again to disc-a, and every host is
    // still filed once.
    let run = api
        .start_discovery(&rig.request(2, 25))
        .await
        .expect("run starts");
    let b = api.get_mid("disc-b").await.expect("disc-b");
    let held = wait_until(Duration::from_secs(60), || async {
        api.list_records(&RecordQuery {
            correlator: Some(run.id.clone()),
            queue: Some("output".into()),
            state: Some(State::Processing.as_str().into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .is_ok_and(|page| {
            page.records.iter().any(|r| {
                r.claimed_by.as_deref() == Some(b.id.as_str())
                    || r.claimed_by.as_deref() == Some("disc-b")
            })
        })
    })
    .await;
    assert!(held, "disc-b took one of the run's jobs");
    rig.mids.get_mut("disc-b").expect("disc-b").kill();
    let run = rig.finish(run).await;
    assert_eq!(run.errors, 0, "no chunk lost: {run:#?}");
    assert_eq!(run.hosts_alive, 18);
    assert_eq!((run.devices_new, run.devices_updated), (0, 18), "{run:#?}");
    let outputs = api
        .list_records(&RecordQuery {
            correlator: Some(run.id.clone()),
            queue: Some("output".into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .expect("records");
    assert!(
        outputs.records.iter().any(|r| r.attempt >= 2),
        "a chunk ran again after the kill"
    );
    let jobs: BTreeSet<&str> = run.jobs.iter().map(|j| j.output.as_str()).collect();
    let outputs_of_run: BTreeSet<&str> = outputs.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(outputs_of_run, jobs, "each stage's jobs queued once");
    let unfinished: Vec<_> = outputs
        .records
        .iter()
        .filter(|r| r.state != State::Processed)
        .map(|r| (&r.name, r.state, &r.error, r.attempt))
        .collect();
    assert!(
        unfinished.is_empty(),
        "every chunk ended processed: {unfinished:#?}"
    );
    let third = rig.devices().await;
    rig.check_devices(&third);
    for (address, d) in &third {
        assert_eq!(d.id, first[address].id, "{address} never duplicated");
    }
}
