//! `openmid bench discovery`: a port scan and an SNMP walk through a MID against the
//! usual tools doing the same job in the same run, on a test network of network
//! namespaces made here (198.18.0.0/24: `--hosts` live hosts with a mix of services,
//! every other address of the /24 without a host).
//!
//! - **Scan**: a `scan` action (Shazzam) of the whole /24 × [`PORTS`], its pages
//!   read, against `nmap -sT -T4 -n -p PORTS 198.18.0.0/24`. Run as root, nmap first
//!   finds the live hosts with ARP requests (raw packets, answered in microseconds on
//!   a LAN) and connects only to those; the scan action connects to every address,
//!   which is nmap's `-Pn` — the same job, measured too (`scan_ratio_pn`). The
//!   headline `scan_ratio` is against plain `-sT -T4`, the harder of the two. Both
//!   sides start with the bridge's neighbour (ARP) cache flushed.
//!   The scan is asked for what `-T4` does: no rate cap of its own (nmap paces by
//!   its congestion window only, so the action gets `--rate`, default 20,000/s, far
//!   above what the /24 needs), a 500 ms connect timeout (`-T4`'s initial RTT
//!   timeout) and no banner reads (`-sT` reads none).
//! - **SNMP**: a bulk walk of an `snmpd`'s whole tree (every module it implements,
//!   no view restricting it) through an `snmp` action, against
//!   `snmpbulkwalk -v2c -Cr25 … .1.3` — the same 25 varbinds per get-bulk.
//!
//! Each side runs `--rounds` times, alternating; the figures are the medians. Ratios
//! are the tool's wall time over openmid's: higher is better for openmid.
//! `same_findings` is true when both scans found the same (address, port) pairs in
//! every round; `same_varbinds` when both walks returned the same OIDs outside the
//! subtrees that change by themselves between two walks (the process and
//! connection tables), in every round.

use super::setup;
use anyhow::{Context, Result, bail};
use openmid_client::{ActionOutcome, ApiClient};
use openmid_local::snmpd::{COMMUNITY, LocalSnmpd};
use openmid_local::test_network::{HostSpec, TestNetwork, TestNetworkError};
use openmid_mid::config::PoolSizes;
use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::NewCredential;
use openmid_proto::command_output::{OutputLine, OutputStream};
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::discovery::{ScanPage, ScanResponse};
use openmid_proto::ecc::State;
use openmid_proto::secret::Secret;
use openmid_proto::snmp::SnmpResponse;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const MID_NAME: &str = "bench-discovery-mid";
const AGENT: &str = "mid.server.bench-discovery-mid";
/// The scanned range: the test net's whole /24.
const RANGE: &str = "198.18.0.0/24";
/// The bridge: the MID's own side of the test net (whatever this machine listens on
/// there, both scanners find alike).
const BRIDGE: &str = openmid_local::netns::BRIDGE_ADDR;
/// The 20 ports scanned: the usual suspects of a LAN.
pub(super) const PORTS: [u16; 20] = [
    21, 22, 23, 25, 53, 80, 110, 135, 139, 143, 443, 445, 993, 3306, 3389, 5432, 5900, 6379, 8080,
    8443,
];
/// Varbinds per get-bulk, both sides (net-snmp's own default is 10).
const MAX_REPETITIONS: u32 = 25;
/// Where the walks start: everything (`.1.3` holds the whole tree an agent serves).
const WALK_ROOT: &str = "1.3";
/// Subtrees whose rows come and go between two walks by themselves: hrSWRun and
/// hrSWRunPerf (processes), TCP and UDP endpoint tables (connections, including the
/// walks' own).
const VOLATILE: [&str; 7] = [
    "1.3.6.1.2.1.25.4.",
    "1.3.6.1.2.1.25.5.",
    "1.3.6.1.2.1.6.13.",
    "1.3.6.1.2.1.6.19.",
    "1.3.6.1.2.1.6.20.",
    "1.3.6.1.2.1.7.5.",
    "1.3.6.1.2.1.7.7.",
];

/// What `snmpbulkwalk` prints for endOfMibView.
const END_OF_VIEW: &str = "No more variables left in this MIB View";

const POLICY: &str = r#"
[scan]
allow_cidrs = ["198.18.0.0/24"]
[snmp]
allow_cidrs = ["198.18.0.0/24"]
"#;

/// Flags of `openmid bench discovery`.
#[derive(clap::Args)]
pub(super) struct DiscoveryArgs {
    /// Live hosts in the /24 (the rest of its addresses have none).
    #[arg(long, default_value_t = 30)]
    hosts: u8,
    /// Rounds of each side, alternating; the figures are medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The scan action's `rate_per_sec`.
    #[arg(long, default_value_t = 20_000)]
    rate: u32,
    /// The scan action's `concurrency`.
    #[arg(long, default_value_t = 4096)]
    concurrency: u32,
    /// The scan action's `timeout_ms`.
    #[arg(long, default_value_t = 500)]
    timeout_ms: u64,
    /// Skip `nmap -Pn` (about a minute: it waits on every port of every empty address).
    #[arg(long)]
    skip_pn: bool,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// What a scan found: the open ports by address, and how long it took.
struct Scan {
    secs: f64,
    open: BTreeMap<String, BTreeSet<u16>>,
    hosts_up: u64,
}

impl Scan {
    fn open_ports(&self) -> usize {
        self.open.values().map(BTreeSet::len).sum()
    }
}

/// What a walk returned, and how long it took.
struct Walk {
    secs: f64,
    oids: Vec<String>,
    /// The probe's own time (the MID's walk, without the trips to and from it).
    probe_secs: Option<f64>,
}

impl Walk {
    /// The OIDs outside [`VOLATILE`].
    fn stable(&self) -> Vec<&str> {
        self.oids
            .iter()
            .map(String::as_str)
            .filter(|o| !VOLATILE.iter().any(|v| o.starts_with(v)))
            .collect()
    }
}

/// The services of host `n`: a deterministic mix over [`PORTS`] — SSH on every
/// third, HTTP on every other, HTTPS on every fourth, and each remaining port open
/// on one host in five; SNMP on host 0 (the walked agent).
fn spec(n: u8) -> HostSpec {
    let mut spec = HostSpec::new();
    if n.is_multiple_of(3) {
        spec = spec.ssh();
    }
    if n.is_multiple_of(2) {
        spec = spec.http(80, &format!("nginx/1.{n}.0"));
    }
    if n % 4 == 1 {
        spec = spec.https(
            443,
            "Apache/2.4.57 (Debian)",
            &[&format!("host{n}.lab.test")],
        );
    }
    for (i, port) in PORTS.iter().enumerate() {
        if matches!(port, 22 | 80 | 443) {
            continue;
        }
        if (usize::from(n) + i).is_multiple_of(5) {
            spec = spec.open(&[*port]);
        }
    }
    if n == 0 {
        spec = spec.snmp(
            "Linux bench-agent 6.1.0 #1 SMP x86_64",
            "1.3.6.1.4.1.8072.3.2.10",
            "bench-agent",
        );
    }
    spec
}

/// Finds `program` on `PATH`.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

pub(super) async fn run(args: DiscoveryArgs) -> Result<ExitCode> {
    if args.hosts == 0 || args.hosts > openmid_local::netns::MAX_HOSTS {
        bail!(
            "--hosts must be 1–{} (the /24's addresses from .10)",
            openmid_local::netns::MAX_HOSTS
        );
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    for (program, package) in [("nmap", "nmap"), ("snmpbulkwalk", "snmp")] {
        if !installed(program) {
            bail!(
                "{program} is not installed: this benchmark measures openmid against it \
                 (Debian: apt-get install {package})"
            );
        }
    }
    eprintln!("starting a test network: {} hosts in {RANGE}", args.hosts);
    let specs: Vec<HostSpec> = (0..args.hosts).map(spec).collect();
    let net = match TestNetwork::start("ombd", &specs) {
        Ok(net) => net,
        Err(e @ TestNetworkError::Unavailable(_)) => {
            bail!("{e}: this benchmark builds its network in namespaces")
        }
        Err(e) => return Err(e).context("starting the test network"),
    };
    let expected = net.expected_open(&PORTS);
    let setup = setup()?;
    let api = setup.api.clone();
    let _mid = setup
        .spawn_mid(MID_NAME, POLICY, PoolSizes::default())
        .await?;
    let agent = net.snmpd(0).context("host 0 runs the walked agent")?;
    make_snmp_alias(&api, agent).await?;

    let mut mid_scans = Vec::new();
    let mut nmap_scans = Vec::new();
    let mut pn_scans = Vec::new();
    let mut mid_walks = Vec::new();
    let mut tool_walks = Vec::new();
    for round in 0..args.rounds {
        eprintln!("round {}/{}: scans", round + 1, args.rounds);
        // Alternating who goes first: neither side always meets a warmer machine.
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            flush_neighbours(&net)?;
            if side == 0 {
                mid_scans.push(mid_scan(&api, &args).await?);
            } else {
                nmap_scans.push(nmap_scan(false)?);
            }
        }
        eprintln!("round {}/{}: walks", round + 1, args.rounds);
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            if side == 0 {
                mid_walks.push(mid_walk(&api).await?);
            } else {
                tool_walks.push(tool_walk(agent)?);
            }
        }
    }
    if !args.skip_pn {
        eprintln!("nmap -Pn (every address, as the scan action does)");
        flush_neighbours(&net)?;
        pn_scans.push(nmap_scan(true)?);
    }

    let without_bridge = |open: &BTreeMap<String, BTreeSet<u16>>| {
        let mut open = open.clone();
        open.remove(BRIDGE);
        open
    };
    let same_findings = mid_scans
        .iter()
        .chain(&pn_scans)
        .all(|s| s.open == nmap_scans[0].open)
        && nmap_scans.iter().all(|s| s.open == nmap_scans[0].open);
    let as_started = mid_scans
        .iter()
        .all(|s| without_bridge(&s.open) == expected);
    let reference = tool_walks[0].stable();
    let same_varbinds = mid_walks
        .iter()
        .chain(&tool_walks)
        .all(|w| w.stable() == reference);
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let secs = |s: &[Scan]| median(&s.iter().map(|s| s.secs).collect::<Vec<_>>());
    let walk_secs = |w: &[Walk]| median(&w.iter().map(|w| w.secs).collect::<Vec<_>>());
    let (mid_secs, nmap_secs) = (secs(&mid_scans), secs(&nmap_scans));
    let pn_secs = (!pn_scans.is_empty()).then(|| secs(&pn_scans));
    let (mid_walk_secs, tool_walk_secs) = (walk_secs(&mid_walks), walk_secs(&tool_walks));
    let probe_walk_secs = median(
        &mid_walks
            .iter()
            .filter_map(|w| w.probe_secs)
            .collect::<Vec<_>>(),
    );
    let scan_ratio = nmap_secs / mid_secs;
    let scan_ratio_pn = pn_secs.map(|p| p / mid_secs);
    let snmp_ratio = tool_walk_secs / mid_walk_secs;
    let (mid_found, nmap_found) = (&mid_scans[0], &nmap_scans[0]);
    let (mid_varbinds, tool_varbinds) = (mid_walks[0].oids.len(), tool_walks[0].oids.len());

    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(vec!["figure", "the tool", "openmid via MID", "ratio"]);
    t.add_row(vec![
        format!("scan {RANGE} × {} ports, wall time", PORTS.len()),
        format!("{nmap_secs:.2} s (nmap -sT -T4)"),
        format!("{mid_secs:.2} s"),
        format!("{scan_ratio:.2}×"),
    ]);
    if let (Some(p), Some(r)) = (pn_secs, scan_ratio_pn) {
        t.add_row(vec![
            "  the same, nmap -Pn (every address)".into(),
            format!("{p:.2} s"),
            format!("{mid_secs:.2} s"),
            format!("{r:.2}×"),
        ]);
    }
    t.add_row(vec![
        "hosts with open ports / open ports".into(),
        format!("{} / {}", nmap_found.open.len(), nmap_found.open_ports()),
        format!("{} / {}", mid_found.open.len(), mid_found.open_ports()),
        if same_findings { "same" } else { "DIFFERENT" }.into(),
    ]);
    t.add_row(vec![
        "hosts up".into(),
        format!("{} (ARP)", nmap_found.hosts_up),
        format!("{} (answered a connect)", mid_found.hosts_up),
        String::new(),
    ]);
    t.add_row(vec![
        format!("SNMP bulk walk of the whole tree (-Cr{MAX_REPETITIONS})"),
        format!("{tool_walk_secs:.3} s (snmpbulkwalk)"),
        format!("{mid_walk_secs:.3} s"),
        format!("{snmp_ratio:.2}×"),
    ]);
    t.add_row(vec![
        "  of which the MID's walk itself".into(),
        String::new(),
        format!("{probe_walk_secs:.3} s"),
        String::new(),
    ]);
    t.add_row(vec![
        "varbinds".into(),
        tool_varbinds.to_string(),
        mid_varbinds.to_string(),
        if same_varbinds { "same" } else { "DIFFERENT" }.into(),
    ]);
    println!("{t}");
    println!(
        "scan action: rate_per_sec {}, concurrency {}, timeout_ms {}, banner false; \
         nmap: -sT -T4 -n -p {} {RANGE}; {} live hosts; medians of {} rounds",
        args.rate,
        args.concurrency,
        args.timeout_ms,
        port_list(),
        args.hosts,
        args.rounds
    );
    if !same_findings {
        println!("nmap found:    {:?}", nmap_found.open);
        println!("openmid found: {:?}", mid_found.open);
    }
    if !same_varbinds {
        let differ = |a: &Walk, b: &Walk| -> Vec<String> {
            let theirs: BTreeSet<&str> = b.stable().into_iter().collect();
            a.stable()
                .into_iter()
                .filter(|o| !theirs.contains(o))
                .take(5)
                .map(str::to_string)
                .collect()
        };
        for (i, (m, t)) in mid_walks.iter().zip(&tool_walks).enumerate() {
            println!(
                "round {}: only openmid's walk: {:?}; only snmpbulkwalk's: {:?}",
                i + 1,
                differ(m, t),
                differ(t, m)
            );
        }
    }
    if !as_started {
        println!("started:       {expected:?}");
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "hosts": args.hosts,
                "ports": PORTS.len(),
                "rounds": args.rounds,
                "rate_per_sec": args.rate,
                "concurrency": args.concurrency,
                "timeout_ms": args.timeout_ms,
                "nmap_secs": nmap_secs,
                "nmap_pn_secs": pn_secs,
                "openmid_scan_secs": mid_secs,
                "scan_ratio": scan_ratio,
                "scan_ratio_pn": scan_ratio_pn,
                "same_findings": same_findings,
                "findings_as_started": as_started,
                "hosts_with_open_ports": mid_found.open.len(),
                "open_ports": mid_found.open_ports(),
                "nmap_open_ports": nmap_found.open_ports(),
                "openmid_hosts_up": mid_found.hosts_up,
                "nmap_hosts_up": nmap_found.hosts_up,
                "snmpbulkwalk_secs": tool_walk_secs,
                "openmid_snmp_secs": mid_walk_secs,
                "openmid_snmp_probe_secs": probe_walk_secs,
                "snmp_ratio": snmp_ratio,
                "snmpbulkwalk_varbinds": tool_varbinds,
                "openmid_varbinds": mid_varbinds,
                "same_varbinds": same_varbinds,
            })
        );
    }
    drop(setup);
    drop(net);
    Ok(if same_findings && as_started && same_varbinds {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn port_list() -> String {
    PORTS.map(|p| p.to_string()).join(",")
}

/// Empties the bridge's neighbour cache, so each scan resolves every address anew.
fn flush_neighbours(net: &TestNetwork) -> Result<()> {
    let status = Command::new("ip")
        .args(["neigh", "flush", "dev", &net.net().bridge()])
        .stdout(Stdio::null())
        .status()
        .context("running ip neigh flush")?;
    if !status.success() {
        bail!("ip neigh flush failed: {status}");
    }
    Ok(())
}

/// The scan action, its result waited for and its pages read.
async fn mid_scan(api: &ApiClient, args: &DiscoveryArgs) -> Result<Scan> {
    let body = serde_json::json!({
        "agent": AGENT,
        "targets": [RANGE],
        "ports": PORTS,
        "rate_per_sec": args.rate,
        "concurrency": args.concurrency,
        "timeout_ms": args.timeout_ms,
        "banner": false,
    });
    let started = Instant::now();
    let (id, response) = match api
        .run_action::<_, ScanResponse>("scan", &body, Duration::from_secs(300))
        .await?
    {
        ActionOutcome::Done(r) => {
            if r.state != State::Processed {
                bail!("the scan failed: {:?}", r.error);
            }
            (r.output_id.clone(), r.response.context("a scan result")?)
        }
        ActionOutcome::Pending(p) => bail!("the scan was not done in 300 s: {p:?}"),
    };
    let mut open: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let mut lines = api.follow_output(&id, None, true).await?;
    while let Some(line) = lines.next().await? {
        match &line {
            OutputLine::Chunk {
                stream: OutputStream::Rows,
                ..
            } => {
                let bytes = line.bytes().context("a page's bytes")?;
                let page: ScanPage = serde_json::from_slice(&bytes).context("a scan page")?;
                for host in page.hosts {
                    let ports = open.entry(host.address).or_default();
                    ports.extend(host.open.iter().map(|p| p.port));
                }
            }
            OutputLine::End { .. } => break,
            _ => {}
        }
    }
    Ok(Scan {
        secs: started.elapsed().as_secs_f64(),
        open,
        hosts_up: response.hosts_up,
    })
}

/// `nmap -sT -T4 -n` (with `-Pn` when `every_address`) of [`RANGE`], its grepable
/// output read.
fn nmap_scan(every_address: bool) -> Result<Scan> {
    let mut nmap = Command::new("nmap");
    nmap.args(["-sT", "-T4", "-n"]);
    if every_address {
        nmap.arg("-Pn");
    }
    let started = Instant::now();
    let out = nmap
        .args(["-p", &port_list(), "-oG", "-", RANGE])
        .stdin(Stdio::null())
        .output()
        .context("running nmap")?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "nmap failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let found = parse_grepable(&String::from_utf8_lossy(&out.stdout));
    Ok(Scan {
        secs,
        open: found.open,
        hosts_up: found.up.len() as u64,
    })
}

/// What nmap's grepable output (`-oG`) says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Grepable {
    up: BTreeSet<String>,
    open: BTreeMap<String, BTreeSet<u16>>,
}

/// Reads `Host: ADDR (NAME)\tStatus: Up` and `Host: ADDR (NAME)\tPorts: 22/open/tcp//ssh///, …`
/// lines; anything else is skipped.
fn parse_grepable(text: &str) -> Grepable {
    let mut found = Grepable::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("Host: ") else {
            continue;
        };
        let Some(address) = rest.split_whitespace().next() else {
            continue;
        };
        for field in rest.split('\t').skip(1) {
            if field.trim() == "Status: Up" {
                found.up.insert(address.to_string());
            } else if let Some(ports) = field.strip_prefix("Ports: ") {
                for entry in ports.split(", ") {
                    let mut parts = entry.trim().split('/');
                    if let (Some(port), Some("open"), Some("tcp")) =
                        (parts.next(), parts.next(), parts.next())
                        && let Ok(port) = port.parse::<u16>()
                    {
                        found.up.insert(address.to_string());
                        found
                            .open
                            .entry(address.to_string())
                            .or_default()
                            .insert(port);
                    }
                }
            }
        }
    }
    found
}

/// A community credential and an `snmp` alias for `agent`, run by the MID.
async fn make_snmp_alias(api: &ApiClient, agent: &LocalSnmpd) -> Result<()> {
    api.create_credential(&NewCredential {
        name: "bench-snmp".into(),
        description: None,
        spec: CredentialSpec::SnmpCommunity {
            community: SecretValue::Stored(Secret::new(COMMUNITY.to_string())),
        },
    })
    .await?;
    api.create_alias(&Alias {
        name: "bench-snmp".into(),
        description: None,
        kind: ConnectionKind::Snmp,
        base_url: format!("snmp://{}", agent.peer()),
        headers: Default::default(),
        timeout_ms: Some(2_000),
        retry: Default::default(),
        credential: Some("bench-snmp".into()),
        execution: Execution {
            mid: Some(MID_NAME.into()),
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
    .await?;
    Ok(())
}

/// The whole tree through the `snmp` action.
async fn mid_walk(api: &ApiClient) -> Result<Walk> {
    let body = serde_json::json!({
        "alias": "bench-snmp",
        "operation": {"op": "bulk_walk", "oid": WALK_ROOT, "max_repetitions": MAX_REPETITIONS},
    });
    let started = Instant::now();
    let response = match api
        .run_action::<_, SnmpResponse>("snmp", &body, Duration::from_secs(120))
        .await?
    {
        ActionOutcome::Done(r) => {
            if r.state != State::Processed {
                bail!("the walk failed: {:?}", r.error);
            }
            r.response.context("a walk result")?
        }
        ActionOutcome::Pending(p) => bail!("the walk was not done in 120 s: {p:?}"),
    };
    let secs = started.elapsed().as_secs_f64();
    if response.truncated {
        bail!("the walk stopped at max_varbinds: the agent holds more than the probe returns");
    }
    Ok(Walk {
        secs,
        oids: response.varbinds.into_iter().map(|v| v.oid).collect(),
        probe_secs: Some(response.duration_ms as f64 / 1e3),
    })
}

/// The whole tree with `snmpbulkwalk`.
fn tool_walk(agent: &LocalSnmpd) -> Result<Walk> {
    let started = Instant::now();
    let out = agent
        .client(
            "snmpbulkwalk",
            &[
                "-v2c",
                "-c",
                COMMUNITY,
                &format!("-Cr{MAX_REPETITIONS}"),
                "-On",
            ],
            &[&format!(".{WALK_ROOT}")],
        )
        .context("running snmpbulkwalk")?;
    let secs = started.elapsed().as_secs_f64();
    Ok(Walk {
        secs,
        oids: walked_oids(&out),
        probe_secs: None,
    })
}

/// The OIDs of `snmpbulkwalk -On` output: one `.OID = TYPE: VALUE` line per varbind
/// (a value's own line breaks continue on lines that do not start with `.`). The
/// line net-snmp adds at the end of the agent's tree, the last OID again with
/// [`END_OF_VIEW`], is no varbind of the walk.
fn walked_oids(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let (oid, value) = l.split_once(" = ")?;
            if value.starts_with(END_OF_VIEW) {
                return None;
            }
            let oid = oid.strip_prefix('.')?;
            (!oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
                .then(|| oid.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn render(g: &Grepable) -> String {
        let mut out = String::from("# Nmap 7.93 scan initiated as: nmap -oG -\n");
        for addr in &g.up {
            out.push_str(&format!("Host: {addr} ()\tStatus: Up\n"));
            let ports: Vec<String> = g
                .open
                .get(addr)
                .into_iter()
                .flatten()
                .map(|p| format!("{p}/open/tcp//svc///"))
                .chain(std::iter::once("9/closed/tcp//discard///".to_string()))
                .collect();
            out.push_str(&format!(
                "Host: {addr} ()\tPorts: {}\tIgnored State: closed (1)\n",
                ports.join(", ")
            ));
        }
        out.push_str("# Nmap done at Tue Dec  1 17:00:00 2026 -- 256 IP addresses\n");
        out
    }

    proptest! {
        #[test]
        fn grepable_output_reads_back_what_it_says(
            hosts in proptest::collection::btree_map(
                (0u8..=255).prop_map(|o| format!("198.18.0.{o}")),
                proptest::collection::btree_set(1u16..=65535, 0..6),
                0..12,
            )
        ) {
            let want = Grepable {
                up: hosts.keys().cloned().collect(),
                open: hosts.into_iter().filter(|(_, p)| !p.is_empty()).collect(),
            };
            prop_assert_eq!(parse_grepable(&render(&want)), want);
        }

        #[test]
        fn any_text_is_read_without_panicking(text in "\\PC*") {
            let _ = parse_grepable(&text);
            let _ = walked_oids(&text);
        }
    }

    #[test]
    fn a_walks_multi_line_value_is_one_varbind() {
        let out = ".1.3.6.1.2.1.1.1.0 = STRING: \"two\nlines\"\n.1.3.6.1.2.1.1.2.0 = OID: .1.3.6.1.4.1.8072.3.2.10\n\
                   .1.3.6.1.2.1.1.2.0 = No more variables left in this MIB View (It is past the end of the MIB tree)\n";
        assert_eq!(
            walked_oids(out),
            vec!["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0"]
        );
    }

    #[test]
    fn every_port_is_scanned_once_and_the_mix_opens_each_somewhere() {
        assert_eq!(PORTS.iter().collect::<BTreeSet<_>>().len(), 20);
        let open: BTreeSet<u16> = (0..30).flat_map(|n| spec(n).open_ports()).collect();
        assert_eq!(open, PORTS.iter().copied().collect());
    }
}
