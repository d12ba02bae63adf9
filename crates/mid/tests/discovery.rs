//! The discovery probes (`Ping`, `Shazzam`) against a real network: 20 hosts, each a
//! network namespace joined to a bridge in the root namespace ([`netns`], the harness
//! `openmid-local` has, included by path: that crate depends on this one), 15 of them
//! up and 5 with their link down, in a /24 whose other addresses have no host at
//! all. Some hosts run listeners (a banner service, Python's HTTP server). Needs root:
//! without it each test prints a loud `SKIPPED:` line and passes.
//!
//! Test nets take turns (a file lock), so these tests run one after another.

#[allow(dead_code)]
#[path = "../../local/src/netns.rs"]
mod netns;

#[allow(dead_code)]
#[path = "support/pages_instance.rs"]
mod instance;

use netns::{NetnsError, TestNet};
use openmid_mid::config::LocalSecretPolicy;
use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_mid::probes::{JobContext, ProbeContext, ProbeError};
use openmid_proto::discovery::{
    PingMethod, PingResponse, ScanHost, ScanPage, ScanResponse, Shazzam,
};
use openmid_proto::ecc::Topic;
use openmid_proto::mid::JobRef;
use openmid_proto::probe::Contract;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The stand-in instance, recording this probe's pages.
type FakeInstance = instance::FakeInstance<openmid_proto::discovery::ScanPage>;

/// Hosts in the net; the last [`DOWN`] have their link down.
const HOSTS: u8 = 20;
const DOWN: u8 = 5;
/// Addresses of the /24 that answer a scan: the hosts up, and the bridge's own
/// (the MID's host, 198.18.0.1).
const UP_IN_SUBNET: u64 = (HOSTS - DOWN) as u64 + 1;
/// Hosts running the banner service on port 22 (and 5432 without a banner).
const SSH_HOSTS: [u8; 3] = [0, 3, 6];
/// Hosts running Python's HTTP server on 8080.
const HTTP_HOSTS: [u8; 2] = [1, 3];

/// Listens on `addr` at each `port:banner` argument; writes the banner (if any) to
/// each connection and closes it.
const LISTENER: &str = r#"
import socket, sys, threading
addr = sys.argv[1]
def serve(port, banner):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(1024)
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

fn banner_of(n: u8) -> String {
    format!("SSH-2.0-OpenMidTest_{n}")
}

/// The test net with its listeners started and answering, or `None` (printed)
/// without root.
fn network() -> Option<TestNet> {
    let net = match TestNet::create("omt", HOSTS) {
        Ok(net) => net,
        Err(NetnsError::Unavailable(why)) => {
            eprintln!("SKIPPED: no network namespaces ({why}); run the discovery tests as root");
            return None;
        }
        Err(e) => panic!("making the test net: {e}"),
    };
    for n in HOSTS - DOWN..HOSTS {
        net.set_down(n).unwrap_or_else(|e| panic!("{e}"));
    }
    for n in SSH_HOSTS {
        let mut c = Command::new("python3");
        c.args([
            "-c",
            LISTENER,
            &net.addr(n),
            &format!("22:{}", banner_of(n)),
            "5432:",
        ]);
        net.spawn_in(n, c).unwrap_or_else(|e| panic!("{e}"));
    }
    for n in HTTP_HOSTS {
        let mut c = Command::new("python3");
        c.args(["-m", "http.server", "8080", "--bind", &net.addr(n)]);
        net.spawn_in(n, c).unwrap_or_else(|e| panic!("{e}"));
    }
    for (n, port) in SSH_HOSTS
        .iter()
        .flat_map(|n| [(*n, 22), (*n, 5432)])
        .chain(HTTP_HOSTS.iter().map(|n| (*n, 8080)))
    {
        wait_listening(&format!("{}:{port}", net.addr(n)));
    }
    Some(net)
}

fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let target: std::net::SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{e}"));
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{addr} did not start listening");
}

/// The open ports the test started, by address.
fn expected(net: &TestNet, ports: &[u16]) -> BTreeMap<String, BTreeSet<u16>> {
    let mut want: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for n in SSH_HOSTS {
        for p in [22, 5432] {
            if ports.contains(&p) {
                want.entry(net.addr(n)).or_default().insert(p);
            }
        }
    }
    for n in HTTP_HOSTS {
        if ports.contains(&8080) {
            want.entry(net.addr(n)).or_default().insert(8080);
        }
    }
    want
}

fn found(hosts: &[ScanHost]) -> BTreeMap<String, BTreeSet<u16>> {
    let mut got: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for h in hosts {
        let entry = got.entry(h.address.clone()).or_default();
        for p in &h.open {
            assert!(
                entry.insert(p.port),
                "{}:{} reported twice",
                h.address,
                p.port
            );
        }
    }
    got
}

fn policy(text: &str) -> EgressPolicy {
    let config: PolicyConfig = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    EgressPolicy::new(config).unwrap_or_else(|e| panic!("{e}"))
}

fn context(policy: EgressPolicy, instance: Option<&FakeInstance>) -> ProbeContext {
    let ctx = ProbeContext::new(1 << 20, LocalSecretPolicy::default(), Arc::new(policy))
        .unwrap_or_else(|e| panic!("{e}"));
    match instance {
        Some(i) => ctx.with_instance(Arc::new(i.client())),
        None => ctx,
    }
}

fn job(name: &str) -> JobContext {
    JobContext::new(JobRef {
        output_id: name.to_string(),
        attempt: 1,
    })
}

async fn run(
    ctx: &ProbeContext,
    job: &JobContext,
    topic: Topic,
    payload: Value,
) -> Result<Value, ProbeError> {
    openmid_mid::probes::run(topic, payload.into(), None, job, ctx)
        .await
        .map(|p| p.to_value())
}

fn decoded<T: serde::de::DeserializeOwned>(r: Result<Value, ProbeError>) -> T {
    let v = r.unwrap_or_else(|e| panic!("the job failed: {e}"));
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

/// Every host with open ports, over the pages of `output`; each page's hosts after
/// the previous page's, `hosts_done` never going back.
fn paged_hosts(fake: &FakeInstance, output: &str) -> (Vec<ScanHost>, Vec<ScanPage>) {
    let pages = fake.pages_of(output);
    let mut done = 0;
    let mut hosts = Vec::new();
    for p in &pages {
        assert!(p.hosts_done >= done, "hosts_done went back: {pages:?}");
        done = p.hosts_done;
        hosts.extend(p.hosts.iter().cloned());
    }
    (hosts, pages)
}

fn up_hosts(net: &TestNet) -> BTreeSet<String> {
    (0..HOSTS - DOWN).map(|n| net.addr(n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_finds_exactly_the_live_hosts_by_icmp_and_by_tcp() {
    let Some(net) = network() else { return };
    let ctx = context(EgressPolicy::default(), None);
    let range = "198.18.0.8-198.18.0.40";
    let alive = |r: &PingResponse| -> BTreeSet<String> {
        r.hosts
            .iter()
            .filter(|h| h.alive)
            .map(|h| h.address.clone())
            .collect()
    };

    let started = Instant::now();
    let r: PingResponse = decoded(
        run(
            &ctx,
            &job("ping-icmp"),
            Topic::Ping,
            json!({"targets": [range], "count": 3, "interval_ms": 50, "timeout_ms": 500}),
        )
        .await,
    );
    eprintln!(
        "ICMP ping of 33 addresses ({} socket): {} alive in {:?}",
        r.icmp_socket.as_deref().unwrap_or("-"),
        r.alive,
        started.elapsed()
    );
    assert_eq!(r.method_used, PingMethod::Icmp, "root sends ICMP");
    assert_eq!(r.icmp_socket.as_deref(), Some("raw"));
    assert_eq!(alive(&r), up_hosts(&net));
    assert_eq!(r.hosts.len(), 33);
    for h in r.hosts.iter().filter(|h| h.alive) {
        assert_eq!((h.sent, h.received, h.loss), (3, 3, 0.0), "{h:?}");
        let (min, avg, max) = (
            h.rtt_min_ms.unwrap_or(-1.0),
            h.rtt_avg_ms.unwrap_or(-1.0),
            h.rtt_max_ms.unwrap_or(-1.0),
        );
        assert!(
            0.0 <= min && min <= avg && avg <= max && max < 500.0,
            "{h:?}"
        );
    }
    for h in r.hosts.iter().filter(|h| !h.alive) {
        assert_eq!((h.received, h.loss, h.rtt_avg_ms), (0, 1.0, None), "{h:?}");
    }

    // The TCP fallback, forced: port 9 is closed everywhere, and a refusal proves
    // the host is up as much as an accepted connection does.
    let started = Instant::now();
    let r: PingResponse = decoded(
        run(
            &ctx,
            &job("ping-tcp"),
            Topic::Ping,
            json!({"targets": [range], "mode": "tcp", "tcp_ports": [9, 22], "count": 2,
                   "interval_ms": 50, "timeout_ms": 500}),
        )
        .await,
    );
    eprintln!(
        "TCP ping of 33 addresses: {} alive in {:?}",
        r.alive,
        started.elapsed()
    );
    assert_eq!(r.method_used, PingMethod::Tcp);
    assert_eq!(alive(&r), up_hosts(&net));
    assert!(r.hosts.iter().all(|h| h.method == PingMethod::Tcp));

    // The fallback function itself.
    let h = openmid_mid::probes::discovery::tcp_ping(
        net.addr(0).parse().unwrap_or_else(|e| panic!("{e}")),
        &[22],
        1,
        Duration::ZERO,
        Duration::from_millis(500),
    )
    .await;
    assert!(h.alive && h.received == 1, "{h:?}");
    let h = openmid_mid::probes::discovery::tcp_ping(
        net.addr(HOSTS - 1)
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
        &[22],
        1,
        Duration::ZERO,
        Duration::from_millis(300),
    )
    .await;
    assert!(!h.alive, "{h:?}");

    // Two pings at once, each matching only its own replies.
    let one = json!({"targets": [range], "count": 2, "interval_ms": 20, "timeout_ms": 500});
    let (job_a, job_b) = (job("ping-a"), job("ping-b"));
    let (a, b) = tokio::join!(
        run(&ctx, &job_a, Topic::Ping, one.clone()),
        run(&ctx, &job_b, Topic::Ping, one)
    );
    let (a, b): (PingResponse, PingResponse) = (decoded(a), decoded(b));
    assert_eq!((alive(&a), alive(&b)), (up_hosts(&net), up_hosts(&net)));
    assert!(
        a.hosts
            .iter()
            .chain(&b.hosts)
            .filter(|h| h.alive)
            .all(|h| h.received == 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_finds_exactly_the_open_ports_with_banners_in_pages() {
    let Some(net) = network() else { return };
    let fake = FakeInstance::start(Duration::ZERO).await;
    let ctx = context(EgressPolicy::default(), Some(&fake));
    let ports = [22u16, 80, 5432, 8080, 9];
    let started = Instant::now();
    let r: ScanResponse = decoded(
        run(
            &ctx,
            &job("scan"),
            Topic::Shazzam,
            json!({"targets": ["198.18.0.0/24"], "ports": [22, 80, "5432", "8080-8080", 9],
                   "rate_per_sec": 5000, "timeout_ms": 400}),
        )
        .await,
    );
    eprintln!(
        "scan of 254 hosts × 5 ports at 5000/s: {:?}, {r:?}",
        started.elapsed()
    );
    let (hosts, pages) = paged_hosts(&fake, "scan");
    assert_eq!(found(&hosts), expected(&net, &ports));
    assert_eq!(r.hosts_scanned, 254);
    assert_eq!(r.hosts_up, UP_IN_SUBNET, "every up host refuses port 9");
    assert_eq!(r.open_ports, 3 * 2 + 2);
    assert_eq!(r.pages, pages.len() as u64);
    assert_eq!(pages.last().map(|p| p.hosts_done), Some(254));
    assert_eq!(fake.disorder_and_largest().0, 0, "pages in sequence");
    for h in &hosts {
        for p in &h.open {
            let n: u8 = h
                .address
                .rsplit('.')
                .next()
                .and_then(|o| o.parse::<u8>().ok())
                .unwrap_or(0)
                .saturating_sub(10);
            match p.port {
                22 => assert_eq!(
                    p.banner.as_deref(),
                    Some(format!("{}\\r\\n", banner_of(n)).as_str())
                ),
                _ => assert_eq!(
                    p.banner, None,
                    "{}:{} sends nothing first",
                    h.address, p.port
                ),
            }
        }
    }

    // Three jobs of one range, as a cluster shares it: each host once.
    let mut all = Vec::new();
    let mut scanned = 0;
    for index in 0..3 {
        let output = format!("chunk-{index}");
        let r: ScanResponse = decoded(
            run(
                &ctx,
                &job(&output),
                Topic::Shazzam,
                json!({"targets": ["198.18.0.0/24"], "ports": [22, 8080], "rate_per_sec": 5000,
                       "timeout_ms": 400, "chunk": {"index": index, "of": 3}}),
            )
            .await,
        );
        scanned += r.hosts_scanned;
        all.extend(paged_hosts(&fake, &output).0);
    }
    assert_eq!(scanned, 254);
    let addresses: Vec<&str> = all.iter().map(|h| h.address.as_str()).collect();
    let unique: BTreeSet<&str> = addresses.iter().copied().collect();
    assert_eq!(
        addresses.len(),
        unique.len(),
        "a host reported by two chunks"
    );
    assert_eq!(found(&all), expected(&net, &[22, 8080]));

    // A re-run after an attempt stored pages up to 198.18.0.12 (hosts_done 12)
    // continues after it: the hosts it reports and the stored ones are each once.
    let stored: Vec<ScanHost> = hosts
        .iter()
        .filter(|h| {
            h.address
                .rsplit('.')
                .next()
                .and_then(|o| o.parse::<u8>().ok())
                .is_some_and(|o| o <= 12)
        })
        .cloned()
        .collect();
    let stored_ports = stored.iter().map(|h| h.open.len() as u64).sum();
    let last = ScanPage {
        page: 1,
        hosts: stored.clone(),
        hosts_done: 12,
        hosts_up: 4,
        open_ports: stored_ports,
    };
    let mut req: openmid_proto::discovery::ScanRequest = serde_json::from_value(json!({
        "targets": ["198.18.0.0/24"], "ports": [22, 80, 5432, 8080, 9], "rate_per_sec": 5000, "timeout_ms": 400}))
        .unwrap_or_else(|e| panic!("{e}"));
    Shazzam::resume(&mut req, &serde_json::to_vec(&last).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
    fake.expect_seq("resumed", 2);
    let r: ScanResponse = decoded(
        run(
            &ctx,
            &job("resumed"),
            Topic::Shazzam,
            serde_json::to_value(&req).unwrap_or_default(),
        )
        .await,
    );
    let (resumed, pages) = paged_hosts(&fake, "resumed");
    assert_eq!(pages.first().map(|p| p.page), Some(2), "pages number on");
    assert!(
        resumed
            .iter()
            .all(|h| !stored.iter().any(|s| s.address == h.address)),
        "a stored host again"
    );
    let mut whole = stored.clone();
    whole.extend(resumed);
    assert_eq!(found(&whole), expected(&net, &ports));
    assert_eq!(r.hosts_scanned, 254, "counted over both attempts");
    assert_eq!(r.hosts_up, UP_IN_SUBNET);
    assert_eq!(fake.disorder_and_largest().0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_holds_scans_run_at_once_and_cancel_promptly() {
    let Some(net) = network() else { return };
    let ctx = context(EgressPolicy::default(), None);
    let up = format!("{}-{}", net.addr(0), net.addr(4));
    for (ports, rate) in [("1-100", 1000u32), ("1-40", 250)] {
        let connects = 5 * ports
            .split('-')
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
        let started = Instant::now();
        let r: ScanResponse = decoded(
            run(
                &ctx,
                &job("rate"),
                Topic::Shazzam,
                json!({"targets": [up], "ports": [ports], "rate_per_sec": rate, "banner": false}),
            )
            .await,
        );
        let took = started.elapsed();
        let floor = f64::from(connects) / f64::from(rate);
        eprintln!(
            "rate limit: {connects} connects at {rate}/s took {took:?} (N/R = {floor:.2} s), achieved {:.1}/s",
            r.rate_per_sec_achieved
        );
        // The bucket starts full with 1/20 s of attempts, so at least N/R − 1/20 s.
        assert!(
            took.as_secs_f64() >= floor - 0.06,
            "{took:?} for {connects} at {rate}/s"
        );
        assert!(r.rate_per_sec_achieved <= f64::from(rate) * 1.2, "{r:?}");
    }

    // Two scans at once on one MID both complete, each with every result.
    let scan = json!({"targets": ["198.18.0.0/24"], "ports": [22, 8080, 9], "rate_per_sec": 3000, "timeout_ms": 400});
    let started = Instant::now();
    let (job_a, job_b) = (job("at-once-a"), job("at-once-b"));
    let (a, b) = tokio::join!(
        run(&ctx, &job_a, Topic::Shazzam, scan.clone()),
        run(&ctx, &job_b, Topic::Shazzam, scan)
    );
    let (a, b): (ScanResponse, ScanResponse) = (decoded(a), decoded(b));
    eprintln!("two scans at once: {:?}; {a:?}; {b:?}", started.elapsed());
    for r in [&a, &b] {
        assert_eq!(
            (r.hosts_scanned, r.hosts_up, r.open_ports),
            (254, UP_IN_SUBNET, 5)
        );
    }

    // A cancelled scan stops at once.
    let slow = job("cancelled");
    let cancel = slow.cancel.clone();
    let started = Instant::now();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let r = run(
        &ctx,
        &slow,
        Topic::Shazzam,
        json!({"targets": ["198.18.0.0/24"], "ports": ["1-100"], "rate_per_sec": 200}),
    )
    .await;
    let took = started.elapsed();
    let _ = stopper.await;
    eprintln!("cancelled scan stopped after {took:?}");
    assert!(matches!(r, Err(ProbeError::Cancelled)), "{r:?}");
    assert!(took < Duration::from_millis(1000), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_decides_which_ranges_and_ports() {
    let Some(net) = network() else { return };
    let ctx = context(
        policy("[scan]\nallow_cidrs = [\"198.18.0.0/28\"]\ndeny_ports = [8080, \"5000-5999\"]\n"),
        None,
    );
    let r: ScanResponse = decoded(
        run(&ctx, &job("partly"), Topic::Shazzam,
            json!({"targets": ["198.18.0.0/24"], "ports": [22, 5432, 8080], "timeout_ms": 400, "rate_per_sec": 5000})).await,
    );
    eprintln!(
        "partly refused: {} refused addresses, ports {:?}",
        r.refused_count, r.refused_ports
    );
    assert_eq!(
        r.refused_count,
        254 - 15,
        "198.18.0.16 and up are outside the /28"
    );
    assert_eq!(r.refused.first().map(String::as_str), Some("198.18.0.16"));
    assert_eq!(r.refused_ports, [5432, 8080]);
    assert_eq!(r.hosts_scanned, 254);
    // Only 22 is scanned, only on hosts inside the /28 (198.18.0.10, .13).
    assert_eq!(r.open_ports, 2, "{r:?}");

    for (what, payload, topic) in [
        (
            "a range outside allow_cidrs",
            json!({"targets": ["198.18.1.0/24"], "ports": [22]}),
            Topic::Shazzam,
        ),
        (
            "only denied ports",
            json!({"targets": [net.addr(0)], "ports": [8080]}),
            Topic::Shazzam,
        ),
        (
            "a ping outside allow_cidrs",
            json!({"targets": ["198.18.0.100-198.18.0.120"]}),
            Topic::Ping,
        ),
        (
            "a TCP ping on denied ports only",
            json!({"targets": [net.addr(0)], "mode": "tcp", "tcp_ports": [8080]}),
            Topic::Ping,
        ),
    ] {
        let r = run(&ctx, &job("refused"), topic, payload).await;
        let text = match &r {
            Err(e) => e.to_string(),
            Ok(v) => format!("(no error: {v})"),
        };
        eprintln!("{what}: {text}");
        assert!(matches!(r, Err(ProbeError::Policy(_))), "{what}: {text}");
        assert!(
            text.contains("policy.scan") || text.contains("scan"),
            "{what}: {text}"
        );
    }

    // The default policy refuses loopback, reported per address.
    let ctx = context(EgressPolicy::default(), None);
    let r = run(
        &ctx,
        &job("loopback"),
        Topic::Ping,
        json!({"targets": ["127.0.0.1"]}),
    )
    .await;
    assert!(matches!(r, Err(ProbeError::Policy(_))), "{r:?}");
    let r: PingResponse = decoded(
        run(
            &ctx,
            &job("mixed"),
            Topic::Ping,
            json!({"targets": ["127.0.0.1", net.addr(0)], "count": 1}),
        )
        .await,
    );
    assert_eq!(
        (r.refused.as_slice(), r.alive),
        (["127.0.0.1".to_string()].as_slice(), 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_a_scan_of_254_hosts_by_10_ports() {
    let Some(net) = network() else { return };
    let ctx = context(EgressPolicy::default(), None);
    let ports = [21, 22, 23, 25, 80, 443, 3389, 5432, 8080, 9];
    // 239 of the addresses have no host: each of their connects holds a slot for
    // the whole timeout, so at 512 slots the scan is bound by concurrency / timeout
    // (about 512 connects a second), not by the rate, until the slots are raised.
    for (rate, concurrency) in [(1000u32, 512u32), (10_000, 512), (10_000, 4096)] {
        let started = Instant::now();
        let r: ScanResponse = decoded(
            run(
                &ctx,
                &job("measured"),
                Topic::Shazzam,
                json!({"targets": ["198.18.0.0/24"], "ports": ports, "rate_per_sec": rate,
                       "concurrency": concurrency}),
            )
            .await,
        );
        let took = started.elapsed();
        eprintln!(
            "MEASURED: 254 hosts × 10 ports (2540 connects, timeout 1000 ms) at {rate}/s, concurrency {concurrency}: {took:?}, achieved {:.1} connects/s, {} up, {} open",
            r.rate_per_sec_achieved, r.hosts_up, r.open_ports
        );
        assert_eq!(
            r.open_ports as usize,
            expected(&net, &ports)
                .values()
                .map(BTreeSet::len)
                .sum::<usize>()
        );
    }
}
