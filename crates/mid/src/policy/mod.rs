//! The MID's egress policy: what its probes may reach and which commands it may run,
//! whatever the instance asks. A compromised instance must not be able to use MIDs as
//! open pivots into the network they sit in, so the rules live in the MID's own config
//! and are checked where connections open — after DNS resolution, on every redirect,
//! for token calls too — and before any process starts.
//!
//! ```toml
//! [policy.default]                  # shared by every protocol
//! deny_cidrs = ["10.99.0.0/16"]     # deny lists add up; deny always wins
//!
//! [policy.http]                     # REST and SOAP (also: ssh, sql, ldap, snmp, scan)
//! allow_hosts = ["*.corp.example.com", "api.example.com"]
//! allow_cidrs = ["10.0.0.0/8"]      # a protocol's allow list replaces the default's
//! allow_ports = [443, "8000-8999"]
//! deny_ports = ["1-1023"]
//! # allow_cidrs = ["127.0.0.1/32"]  # lifts the built-in loopback refusal (tests, demo)
//!
//! [policy.sql]
//! allow_cidrs = ["10.20.0.0/16"]
//! writes = false                    # the default: every SQL session is read-only
//!
//! [policy.command]                  # nothing runs unless listed here
//! interpreters = ["/bin/sh"]        # may be handed a script body
//!
//! [[policy.command.programs]]
//! path = "/usr/bin/df"
//! args = ["-h", "**"]               # "*" any one argument, "**" any remaining, globs
//! env = ["LANG", "LC_*"]
//! max_runtime_secs = 30
//!
//! [[policy.command.programs]]
//! path = "/bin/sh"                  # the interpreter's own bounds
//! cwd = ["/var/lib/openmid/work"]
//! max_runtime_secs = 120
//! ```
//!
//! Network rules, per protocol: a target is refused when its port, host name or any
//! address it is reached at matches a deny entry; an address is refused when it is in
//! a [built-in range](builtin) (loopback, unspecified, link-local, cloud metadata)
//! unless an `allow_cidrs` entry inside that range holds it; and where an allow list is
//! set, the port, name and every address must be on it. Empty allow lists mean "any".
//! A name that resolves to some refused addresses is reached only at the others; one
//! whose addresses are all refused is refused. Addresses are compared in canonical
//! form, so `::ffff:169.254.169.254` is `169.254.169.254`.
//!
//! Wiring: a [`PolicyResolver`] plugs into `reqwest::ClientBuilder::dns_resolver`
//! and [`EgressPolicy::redirect_policy`] into `redirect`; reqwest does not resolve
//! IP-literal URLs, so callers also run [`EgressPolicy::check_url`] before each
//! request. Commands go through [`EgressPolicy::check_command`] or
//! [`EgressPolicy::check_script`]. [`EgressPolicy::explain`] tells an operator how a
//! job would be decided.

pub mod builtin;
mod command;
mod config;
mod denial;
mod explain;
mod file;
mod network;
mod pattern;
mod redirect;
mod resolve;
#[cfg(test)]
mod tests;

pub use command::Allowed;
pub use config::{
    CommandConfig, NetworkConfig, PolicyConfig, PolicyError, PortSpec, ProgramConfig, SqlConfig,
};
pub use denial::{Aspect, CommandRefusal, Denial, EntryRefusal, Mismatch, find_denial};
pub use explain::{Explanation, Job, Verdict};
pub use file::{FileConfig, FileRefusal};
pub use redirect::TooManyRedirects;
pub use resolve::{PolicyResolver, ResolveError};

use command::{CommandRules, Run};
use explain::Trace;
use network::{Host, NetworkRules};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Which probe family's network rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// REST and SOAP.
    Http,
    /// SSH.
    Ssh,
    /// SQL databases.
    Sql,
    /// LDAP.
    Ldap,
    /// SNMP.
    Snmp,
    /// Ping and port scans.
    Scan,
}

impl Protocol {
    /// Every protocol, in the order of [`EgressPolicy::denials`].
    pub const ALL: [Protocol; 6] = [
        Self::Http,
        Self::Ssh,
        Self::Sql,
        Self::Ldap,
        Self::Snmp,
        Self::Scan,
    ];

    /// The section name in `[policy]`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Ssh => "ssh",
            Self::Sql => "sql",
            Self::Ldap => "ldap",
            Self::Snmp => "snmp",
            Self::Scan => "scan",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Refusals counted since start, per protocol and for commands (what the heartbeat
/// reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DenialCounts {
    /// Network refusals, in [`Protocol::ALL`] order.
    pub network: [u64; 6],
    /// Command refusals.
    pub command: u64,
    /// Local file refusals (`policy.file`).
    pub file: u64,
}

impl DenialCounts {
    /// Network refusals for one protocol.
    pub fn of(&self, protocol: Protocol) -> u64 {
        self.network[protocol.index()]
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        self.network.iter().sum::<u64>() + self.command + self.file
    }
}

#[derive(Debug, Default)]
struct Counters {
    network: [AtomicU64; 6],
    command: AtomicU64,
    file: AtomicU64,
}

/// The compiled `[policy]` table. Built only from a valid [`PolicyConfig`]
/// (deserializing checks it), so every check runs on rules known to be well formed.
/// Clones share their denial counters: the probes' copy and the heartbeat's count
/// the same refusals.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "PolicyConfig", into = "PolicyConfig")]
pub struct EgressPolicy {
    config: PolicyConfig,
    network: Vec<NetworkRules>,
    command: CommandRules,
    counters: Arc<Counters>,
}

impl Default for EgressPolicy {
    /// The built-in refusals only: any host and port, no commands. The same rules as
    /// compiling an empty [`PolicyConfig`] (a test checks it), built directly because
    /// `Default` cannot return the compile step's `Result`.
    fn default() -> Self {
        Self {
            config: PolicyConfig::default(),
            network: Protocol::ALL.map(NetworkRules::empty).to_vec(),
            command: CommandRules::default(),
            counters: Arc::default(),
        }
    }
}

impl TryFrom<PolicyConfig> for EgressPolicy {
    type Error = PolicyError;

    fn try_from(config: PolicyConfig) -> Result<Self, PolicyError> {
        Self::new(config)
    }
}

impl From<EgressPolicy> for PolicyConfig {
    fn from(policy: EgressPolicy) -> Self {
        policy.config
    }
}

impl EgressPolicy {
    /// Compiles `config`, refusing any entry it cannot use (the error names the key).
    pub fn new(config: PolicyConfig) -> Result<Self, PolicyError> {
        config::check_file(&config.file)?;
        Ok(Self {
            network: config::compile_network(&config)?,
            command: config::compile_command(&config.command)?,
            config,
            counters: Arc::default(),
        })
    }

    /// The table as written.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Refusals counted so far.
    pub fn denials(&self) -> DenialCounts {
        DenialCounts {
            network: std::array::from_fn(|i| self.counters.network[i].load(Ordering::Relaxed)),
            command: self.counters.command.load(Ordering::Relaxed),
            file: self.counters.file.load(Ordering::Relaxed),
        }
    }

    /// Checks a target before resolution: its port and host-name rules, and for an IP
    /// literal its address rules too (nothing will resolve it later).
    pub fn check_host(&self, protocol: Protocol, host: &str, port: u16) -> Result<(), Denial> {
        let decided = self.decide_host(protocol, host, port, &mut Trace::off());
        self.count_network(protocol, decided.map(drop))
    }

    /// Checks one address a target is about to be reached at (after resolution): the
    /// port, the name's rules (when `name` is a host name), and the address rules.
    pub fn check_addr(
        &self,
        protocol: Protocol,
        name: &str,
        addr: SocketAddr,
    ) -> Result<(), Denial> {
        let decided = self
            .decide_host(protocol, name, addr.port(), &mut Trace::off())
            .and_then(|host| {
                let ip = addr.ip().to_canonical();
                let (target, literal) = match host {
                    // Normally the same address; if not, the one connected to decides too.
                    Host::Ip(_) => (SocketAddr::new(ip, addr.port()).to_string(), true),
                    Host::Name(name) => (format!("{name}:{} ({ip})", addr.port()), false),
                };
                self.rules(protocol)
                    .check_ip(ip, literal, &target, &mut Trace::off())
            });
        self.count_network(protocol, decided)
    }

    /// Checks one address alone, without a port (an ICMP echo, or each address of a
    /// scan whose ports are checked once with [`EgressPolicy::check_port`]): the
    /// address rules, as for an IP literal. A refusal counts once.
    pub fn check_ip(&self, protocol: Protocol, ip: IpAddr) -> Result<(), Denial> {
        let ip = ip.to_canonical();
        let target = ip.to_string();
        let decided = self
            .rules(protocol)
            .check_ip(ip, true, &target, &mut Trace::off());
        self.count_network(protocol, decided)
    }

    /// Checks one port alone (a scan checks each port once, each address once: the
    /// allow and deny lists of the two are independent, so every pair of an allowed
    /// address and an allowed port is allowed). A refusal counts once.
    pub fn check_port(&self, protocol: Protocol, port: u16) -> Result<(), Denial> {
        let target = format!("port {port}");
        let decided = self
            .rules(protocol)
            .check_port(port, &target, &mut Trace::off());
        self.count_network(protocol, decided)
    }

    /// Checks a URL before a request is sent or a redirect followed: host, port (the
    /// scheme's default when none is written) and, for an IP literal, the address.
    pub fn check_url(&self, protocol: Protocol, url: &url::Url) -> Result<(), Denial> {
        let decided = url_target(protocol, url)
            .and_then(|(host, port)| self.decide_host(protocol, &host, port, &mut Trace::off()));
        self.count_network(protocol, decided.map(drop))
    }

    /// Checks that a SQL job may open a writing session to `target` (`host:port`):
    /// only when `policy.sql.writes` is true. A refusal counts as a `sql` denial.
    pub fn check_sql_write(&self, target: &str) -> Result<(), Denial> {
        if self.config.sql.writes {
            return Ok(());
        }
        self.count_network(
            Protocol::Sql,
            Err(Denial::SqlWrite {
                target: target.to_string(),
            }),
        )
    }

    /// Checks a program run with `args`, optionally in `cwd`, with the environment
    /// variables `env_names` set, for `requested_timeout` (the entry's longest when
    /// `None`). Reads the file system to resolve `cwd`.
    pub fn check_command<A: AsRef<str>, E: AsRef<str>>(
        &self,
        program: &Path,
        args: &[A],
        cwd: Option<&Path>,
        env_names: &[E],
        requested_timeout: Option<Duration>,
    ) -> Result<Allowed, Denial> {
        self.count_command(self.command.check(
            &Run {
                program,
                args,
                cwd,
                env_names,
                timeout: requested_timeout,
                script: false,
            },
            &mut Trace::off(),
        ))
    }

    /// Like [`check_command`](Self::check_command) for a script body run by
    /// `interpreter`: it must also be in `policy.command.interpreters`. `args` are the
    /// interpreter's arguments as the job gives them; the probe adds the script (as a
    /// file it writes, or on standard input) after the check.
    pub fn check_script<A: AsRef<str>, E: AsRef<str>>(
        &self,
        interpreter: &Path,
        args: &[A],
        cwd: Option<&Path>,
        env_names: &[E],
        requested_timeout: Option<Duration>,
    ) -> Result<Allowed, Denial> {
        self.count_command(self.command.check(
            &Run {
                program: interpreter,
                args,
                cwd,
                env_names,
                timeout: requested_timeout,
                script: true,
            },
            &mut Trace::off(),
        ))
    }

    /// Checks that a job may read the local file `path` (`policy.file.allow_dirs`),
    /// resolving symbolic links and `..`: the resolved path, to open instead of the
    /// one asked for. Reads the file system. A refusal counts as a file denial.
    pub fn check_file(&self, path: &Path) -> Result<std::path::PathBuf, Denial> {
        let decided = file::check(&self.config.file.allow_dirs, path, &mut Trace::off());
        if decided.is_err() {
            self.counters.file.fetch_add(1, Ordering::Relaxed);
        }
        decided
    }

    fn rules(&self, protocol: Protocol) -> &NetworkRules {
        // Both constructors fill one entry per protocol, in `Protocol::ALL` order.
        &self.network[protocol.index()]
    }

    /// The shared path of host checks; returns the parsed host.
    fn decide_host(
        &self,
        protocol: Protocol,
        host: &str,
        port: u16,
        trace: &mut Trace,
    ) -> Result<Host, Denial> {
        let parsed = Host::parse(host).map_err(|reason| Denial::NoTarget {
            protocol,
            target: format!("{host:?}"),
            reason,
        })?;
        let target = format!("{parsed}:{port}");
        let rules = self.rules(protocol);
        rules.check_port(port, &target, trace)?;
        match &parsed {
            Host::Name(name) => rules.check_name(name, &target, trace)?,
            Host::Ip(ip) => rules.check_ip(*ip, true, &target, trace)?,
        }
        Ok(parsed)
    }

    fn count_network<T>(
        &self,
        protocol: Protocol,
        decided: Result<T, Denial>,
    ) -> Result<T, Denial> {
        if decided.is_err() {
            self.count_denial(Some(protocol));
        }
        decided
    }

    fn count_command<T>(&self, decided: Result<T, Denial>) -> Result<T, Denial> {
        if decided.is_err() {
            self.count_denial(None);
        }
        decided
    }

    /// Counts one refusal: of `protocol`'s rules, or of a command when `None`.
    fn count_denial(&self, protocol: Option<Protocol>) {
        let counter = match protocol {
            Some(p) => &self.counters.network[p.index()],
            None => &self.counters.command,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The host and port a URL connects to, shown without user, password, path or query.
fn url_target(protocol: Protocol, url: &url::Url) -> Result<(String, u16), Denial> {
    let shown = || format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Denial::NoTarget {
            protocol,
            target: shown(),
            reason: "the URL has no host",
        })?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| Denial::NoTarget {
            protocol,
            target: shown(),
            reason: "the URL has no port and its scheme has no default one",
        })?;
    Ok((host.to_string(), port))
}
