//! Payloads of the discovery topics: `Ping` (which hosts of some ranges answer) and
//! `Shazzam` (which TCP ports of some ranges are open, with what their services say
//! first).
//!
//! Both take targets as addresses, CIDR networks or ranges, at most
//! [`MAX_ADDRESSES`] after expansion ([`expand_targets`]). The MID's egress policy
//! (`policy.scan`) decides which addresses and ports may be probed: each address is
//! checked before anything is sent to it, and one refused is reported in the result
//! rather than skipped silently.
//!
//! A scan can be long, so it reports as it goes: its open ports stream back in pages,
//! each one chunk of the output's `rows` stream holding one JSON line (a
//! [`ScanPage`]). Hosts are scanned in address order, so a page's `hosts_done` is a
//! resume point: a job re-run on another MID after some pages were stored continues
//! after them ([`ScanResume`]) and reports each host once. A large range is shared by
//! several jobs (and so several MIDs of a cluster) with [`ScanChunk`].

mod identify;
mod targets;
#[cfg(test)]
mod tests;

pub use identify::{
    HostIdentity, Identify, IdentifyHost, IdentifyRequest, IdentifyResponse, IdentifySnmp,
    MAX_IDENTIFY_HOSTS, MAX_IDENTIFY_PORTS, MAX_IDENTITY_TEXT, MAX_TLS_NAMES, SYS_DESCR, SYS_NAME,
    SYS_OBJECT_ID, SnmpIdentity, WebAnswer, parse_http_head, shown,
};

pub use targets::{
    MAX_ADDRESSES, PortSpec, chunk_range, count_targets, escape_banner, expand_ports,
    expand_targets,
};

use crate::credential::CredentialRef;
use crate::probe::{FieldError, Target, field_error};
use serde::{Deserialize, Serialize};

/// Most connection attempts a scan may make (addresses × ports, per job).
pub const MAX_CONNECTS: u64 = 1 << 24;
/// Most echo requests per host.
pub const MAX_PING_COUNT: u32 = 100;
/// Longest wait for one echo reply or one connection.
pub const MAX_PROBE_TIMEOUT_MS: u64 = 60_000;
/// Longest interval between two echo requests to one host.
pub const MAX_INTERVAL_MS: u64 = 60_000;
/// Most probes in flight at once in one job.
pub const MAX_CONCURRENCY: u32 = 4096;
/// Highest connection rate a scan may ask for.
pub const MAX_RATE_PER_SEC: u32 = 100_000;
/// Longest a whole job runs when the request gives no `max_run_ms`.
pub const DEFAULT_MAX_RUN_MS: u64 = 3_600_000;
/// Longest `max_run_ms`.
pub const MAX_RUN_MS: u64 = 24 * 3_600_000;
/// Most bytes of a banner kept.
pub const BANNER_BYTES: usize = 256;
/// How long a scan waits for a service to speak first.
pub const BANNER_WAIT_MS: u64 = 500;
/// A scan page is sent once it holds this many hosts…
pub const PAGE_HOSTS: usize = 256;
/// …or this long after the last one.
pub const PAGE_INTERVAL_MS: u64 = 200;
/// Most refused addresses listed in a response (all are counted).
pub const MAX_REFUSED_LISTED: usize = 1000;

fn default_count() -> u32 {
    3
}
fn default_interval_ms() -> u64 {
    200
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_ping_concurrency() -> u32 {
    256
}
fn default_scan_concurrency() -> u32 {
    512
}
fn default_tcp_ports() -> Vec<u16> {
    vec![22, 80, 443, 3389]
}
fn default_rate() -> u32 {
    1000
}
fn default_true() -> bool {
    true
}

/// How a ping reaches hosts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PingMode {
    /// ICMP echo when the MID may send it (a raw socket as root or with
    /// `CAP_NET_RAW`, or an ICMP datagram socket when its group is in
    /// `net.ipv4.ping_group_range`), else TCP connects.
    #[default]
    Auto,
    /// ICMP echo only: the job fails when the MID may not send it.
    Icmp,
    /// TCP connects to `tcp_ports` only (where ICMP is filtered).
    Tcp,
}

/// How a host was probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PingMethod {
    /// ICMP (or ICMPv6) echo.
    Icmp,
    /// A TCP connect to the fallback ports: an accepted or a refused connection
    /// both prove the host is up.
    Tcp,
}

/// Input of a `Ping` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingRequest {
    /// Addresses, CIDR networks (`198.18.0.0/27`) and ranges
    /// (`198.18.0.10-198.18.0.20`), IPv4 or IPv6, at most 65 536 addresses in all.
    pub targets: Vec<String>,
    /// Echo requests per host (default 3, at most 100).
    #[serde(default = "default_count")]
    pub count: u32,
    /// Between two echo requests to one host (default 200).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// How long a reply may take (default 1000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Hosts probed at once (default 256).
    #[serde(default = "default_ping_concurrency")]
    pub concurrency: u32,
    /// Ports of the TCP fallback (default 22, 80, 443, 3389).
    #[serde(default = "default_tcp_ports")]
    pub tcp_ports: Vec<u16>,
    /// ICMP, TCP, or ICMP when possible (default).
    #[serde(default)]
    pub mode: PingMode,
    /// Longest the whole job may take (default one hour, at most 24 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_ms: Option<u64>,
}

/// One host's answer to a ping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PingHost {
    /// The address.
    pub address: String,
    /// How it was probed.
    pub method: PingMethod,
    /// Whether it answered at least once.
    pub alive: bool,
    /// Probes sent.
    pub sent: u32,
    /// Answers received in time.
    pub received: u32,
    /// Share of probes unanswered, 0–1.
    pub loss: f64,
    /// Fastest answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_min_ms: Option<f64>,
    /// Mean answer time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_avg_ms: Option<f64>,
    /// Slowest answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_max_ms: Option<f64>,
}

/// Result of a `Ping` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PingResponse {
    /// Every address probed, in address order (refused ones are in `refused`).
    pub hosts: Vec<PingHost>,
    /// How the hosts were probed.
    pub method_used: PingMethod,
    /// The ICMP socket used: `raw` or `datagram` (none for TCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_socket: Option<String>,
    /// Hosts that answered.
    pub alive: u64,
    /// Addresses the MID's policy refused (the first 1000), not probed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// How many addresses were refused.
    pub refused_count: u64,
    /// How long it ran.
    pub duration_ms: u64,
}

impl PingRequest {
    /// The whole job's time limit.
    pub fn max_run_ms(&self) -> u64 {
        self.max_run_ms.unwrap_or(DEFAULT_MAX_RUN_MS)
    }

    /// Checks what can be checked without the network; errors name the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        count_targets("targets", &self.targets)?;
        in_range("count", u64::from(self.count), 1, u64::from(MAX_PING_COUNT))?;
        in_range("interval_ms", self.interval_ms, 0, MAX_INTERVAL_MS)?;
        in_range("timeout_ms", self.timeout_ms, 1, MAX_PROBE_TIMEOUT_MS)?;
        in_range(
            "concurrency",
            u64::from(self.concurrency),
            1,
            u64::from(MAX_CONCURRENCY),
        )?;
        if self.mode != PingMode::Icmp && self.tcp_ports.is_empty() {
            return Err(field_error(
                "tcp_ports",
                "needs at least one port for the TCP fallback",
            ));
        }
        if let Some(i) = self.tcp_ports.iter().position(|p| *p == 0) {
            return Err(field_error(&format!("tcp_ports[{i}]"), "0 is not a port"));
        }
        if self.tcp_ports.len() > 64 {
            return Err(field_error("tcp_ports", "at most 64 ports"));
        }
        if let Some(t) = self.max_run_ms {
            in_range("max_run_ms", t, 1, MAX_RUN_MS)?;
        }
        Ok(())
    }
}

pub(crate) fn in_range(field: &str, value: u64, lo: u64, hi: u64) -> Result<(), FieldError> {
    if value < lo || value > hi {
        return Err(field_error(
            field,
            format!("must be {lo}–{hi}, got {value}"),
        ));
    }
    Ok(())
}

/// Which part of the expanded host list a job scans: chunk `index` (from 0) of `of`
/// contiguous, near-equal parts. The instance splits a large range into `of` jobs
/// that the members of a cluster share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanChunk {
    /// This job's chunk, from 0.
    pub index: u32,
    /// How many chunks there are.
    pub of: u32,
}

/// Where a re-run continues: what its earlier attempts stored (from the last page).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanResume {
    /// The number of the first page this attempt sends.
    pub next_page: u64,
    /// Hosts of this job (its chunk) finished, in address order: this attempt
    /// starts at the next one.
    pub hosts_done: u64,
    /// Hosts found up so far.
    #[serde(default)]
    pub hosts_up: u64,
    /// Open ports found so far.
    #[serde(default)]
    pub open_ports: u64,
}

/// Input of a `Shazzam` output: a TCP connect scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// Addresses, CIDR networks and ranges, as for a ping.
    pub targets: Vec<String>,
    /// Ports and ranges (`22`, `"1-1024"`).
    pub ports: Vec<PortSpec>,
    /// Connection attempts per second, at most (default 1000).
    #[serde(default = "default_rate")]
    pub rate_per_sec: u32,
    /// Connections open at once, at most (default 512).
    #[serde(default = "default_scan_concurrency")]
    pub concurrency: u32,
    /// How long a connect may take (default 1000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Scan only this part of the expanded host list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ScanChunk>,
    /// Read what a service sends first (up to 256 bytes within 500 ms), such as an
    /// SSH banner (default true).
    #[serde(default = "default_true")]
    pub banner: bool,
    /// Longest the whole job may take (default one hour, at most 24 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_ms: Option<u64>,
    /// Where a re-run continues (filled by the instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ScanResume>,
}

impl ScanRequest {
    /// The whole job's time limit.
    pub fn max_run_ms(&self) -> u64 {
        self.max_run_ms.unwrap_or(DEFAULT_MAX_RUN_MS)
    }

    /// Checks what can be checked without the network; errors name the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        let hosts = count_targets("targets", &self.targets)?;
        let ports = expand_ports("ports", &self.ports)?;
        if hosts.saturating_mul(ports.len() as u64) > MAX_CONNECTS {
            return Err(field_error(
                "ports",
                format!(
                    "{hosts} addresses × {} ports is more than {MAX_CONNECTS} connects: split the job",
                    ports.len()
                ),
            ));
        }
        in_range(
            "rate_per_sec",
            u64::from(self.rate_per_sec),
            1,
            u64::from(MAX_RATE_PER_SEC),
        )?;
        in_range(
            "concurrency",
            u64::from(self.concurrency),
            1,
            u64::from(MAX_CONCURRENCY),
        )?;
        in_range("timeout_ms", self.timeout_ms, 1, MAX_PROBE_TIMEOUT_MS)?;
        if let Some(chunk) = self.chunk {
            in_range("chunk.of", u64::from(chunk.of), 1, MAX_ADDRESSES)?;
            if chunk.index >= chunk.of {
                return Err(field_error(
                    "chunk.index",
                    format!("must be below chunk.of ({}), got {}", chunk.of, chunk.index),
                ));
            }
        }
        if let Some(t) = self.max_run_ms {
            in_range("max_run_ms", t, 1, MAX_RUN_MS)?;
        }
        if let Some(resume) = self.resume
            && resume.hosts_done > hosts
        {
            return Err(field_error(
                "resume.hosts_done",
                format!("is {} but the job has {hosts} addresses", resume.hosts_done),
            ));
        }
        Ok(())
    }
}

/// An open port, and what its service said first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenPort {
    /// The port.
    pub port: u16,
    /// Up to 256 bytes the service sent unasked within 500 ms, lossy UTF-8 with
    /// control characters escaped ([`escape_banner`]); none when it sent nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
}

/// A host with at least one open port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanHost {
    /// The address.
    pub address: String,
    /// Its open ports, ascending.
    pub open: Vec<OpenPort>,
}

/// One page of a scan: the data of one chunk of the `rows` stream, as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanPage {
    /// Its number, from 0, continued across attempts.
    pub page: u64,
    /// Hosts with open ports finished since the previous page, in address order.
    pub hosts: Vec<ScanHost>,
    /// Hosts of this job finished so far, in address order, over all attempts (a
    /// re-run starts after them).
    pub hosts_done: u64,
    /// Hosts found up so far (an open port or a refused connection), over all
    /// attempts.
    #[serde(default)]
    pub hosts_up: u64,
    /// Open ports found so far, over all attempts.
    #[serde(default)]
    pub open_ports: u64,
}

/// Result of a `Shazzam` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScanResponse {
    /// Hosts of this job finished, over all attempts (refused ones included).
    pub hosts_scanned: u64,
    /// Hosts found up: an open port, or a refused connection (which a host sends).
    pub hosts_up: u64,
    /// Open ports found.
    pub open_ports: u64,
    /// Pages sent, over all attempts (the next page number).
    pub pages: u64,
    /// Addresses the MID's policy refused (the first 1000), not scanned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// How many addresses were refused.
    pub refused_count: u64,
    /// Ports the MID's policy refused, not scanned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_ports: Vec<u16>,
    /// How long this attempt ran.
    pub duration_ms: u64,
    /// Connection attempts per second this attempt made.
    pub rate_per_sec_achieved: f64,
}

/// The first address of a request's targets, for the instance's choice of a MID by
/// IP range (the MID checks every address itself).
fn first_target(targets: &[String]) -> Option<Target> {
    let first = targets.first()?;
    let host = first
        .split(['/', '-'])
        .next()
        .map(str::trim)
        .filter(|h| h.parse::<std::net::IpAddr>().is_ok())?;
    Some(Target {
        host: host.to_string(),
        port: None,
    })
}

/// The `Ping` topic.
pub struct Ping;

impl crate::probe::Contract for Ping {
    const TOPIC: crate::ecc::Topic = crate::ecc::Topic::Ping;
    type Request = PingRequest;
    type Response = PingResponse;

    fn validate(req: &PingRequest) -> Result<(), FieldError> {
        req.validate()
    }

    fn target(req: &PingRequest) -> Option<Target> {
        first_target(&req.targets)
    }

    fn credential(_req: &PingRequest) -> Option<&CredentialRef> {
        None
    }

    fn timeout(req: &PingRequest) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(req.max_run_ms()))
    }
}

/// The `Shazzam` topic (a port scan).
pub struct Shazzam;

impl crate::probe::Contract for Shazzam {
    const TOPIC: crate::ecc::Topic = crate::ecc::Topic::Shazzam;
    type Request = ScanRequest;
    type Response = ScanResponse;

    fn validate(req: &ScanRequest) -> Result<(), FieldError> {
        req.validate()
    }

    fn target(req: &ScanRequest) -> Option<Target> {
        first_target(&req.targets)
    }

    fn credential(_req: &ScanRequest) -> Option<&CredentialRef> {
        None
    }

    fn timeout(req: &ScanRequest) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(req.max_run_ms()))
    }

    /// A scan whose MID died continues after the hosts its stored pages finished.
    const RESUMES: bool = true;

    fn resume(req: &mut ScanRequest, last: &[u8]) -> Result<(), FieldError> {
        let page: ScanPage = serde_json::from_slice(last).map_err(|e| {
            field_error(
                "resume",
                format!("the last stored page does not parse: {e}"),
            )
        })?;
        req.resume = Some(ScanResume {
            next_page: page.page + 1,
            hosts_done: page.hosts_done,
            hosts_up: page.hosts_up,
            open_ports: page.open_ports,
        });
        Ok(())
    }
}

/// `POST /api/v1/actions/ping`: which hosts of some ranges answer, asked of a MID.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PingAction {
    /// Who runs it: `mid.server.<name>`, `mid.cluster.<name>` or `mid.auto` (by the
    /// targets' IP ranges).
    pub agent: String,
    /// Addresses, CIDR networks and ranges (at most 65 536 addresses).
    pub targets: Vec<String>,
    /// Echo requests per host (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Between two echo requests to one host (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// How long a reply may take (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Hosts probed at once (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Ports of the TCP fallback (default 22, 80, 443, 3389).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_ports: Option<Vec<u16>>,
    /// `auto` (default), `icmp` or `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PingMode>,
    /// Longest run (default one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_ms: Option<u64>,
    /// Never run it twice: after a lost MID it ends in `error` instead.
    #[serde(default)]
    pub at_most_once: bool,
    /// Caller's correlator for the output record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlator: Option<String>,
}

/// `POST /api/v1/actions/scan`: a TCP port scan of some ranges by a MID, its open
/// ports streamed back in pages (`GET /api/v1/actions/{id}/output`, stream `rows`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanAction {
    /// Who runs it: `mid.server.<name>`, `mid.cluster.<name>` or `mid.auto`.
    pub agent: String,
    /// Addresses, CIDR networks and ranges (at most 65 536 addresses).
    pub targets: Vec<String>,
    /// Ports and ranges (`22`, `"1-1024"`).
    pub ports: Vec<PortSpec>,
    /// Connection attempts per second (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<u32>,
    /// Connections open at once (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// How long a connect may take (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Scan only this part of the expanded host list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ScanChunk>,
    /// Read what services send first (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<bool>,
    /// Longest run (default one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_ms: Option<u64>,
    /// Never run it twice: after a lost MID it ends in `error` instead.
    #[serde(default)]
    pub at_most_once: bool,
    /// Caller's correlator for the output record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlator: Option<String>,
}
