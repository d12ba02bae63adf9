//! Discovered devices and the discovery runs that find them.
//!
//! A **discovery run** pings the ranges it is given from a MID, then scans the hosts
//! that answered for the ports it names, and files what it found as **devices**: one
//! record per address, classified from what the host answered, made on the first run
//! that sees it and updated — never duplicated — by every later one.

use crate::discovery::PortSpec;
use crate::probe::{FieldError, field_error};
use serde::{Deserialize, Serialize};

/// `POST /api/v1/discovery/runs`: what to discover, from where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDiscoveryRun {
    /// Who runs it: `mid.server.NAME`, `mid.cluster.NAME` or `mid.auto`.
    pub agent: String,
    /// Addresses, CIDRs and ranges.
    pub targets: Vec<String>,
    /// Ports scanned on the hosts that answer (default: a common set — SSH, telnet,
    /// HTTP(S), SMB and RPC, RDP, printing, databases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Connection attempts per second of the scan (default the probe's, 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<u32>,
    /// How long a connect or an echo may take, in milliseconds (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// snmp aliases whose credentials ask every live host's SNMP agent for its
    /// `sysDescr`, `sysObjectID` and `sysName` (each tried; the first that answers
    /// is kept). The aliases lend their credential, version and port only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snmp_aliases: Vec<String>,
    /// Most addresses per job (default 256): a larger range becomes several ping,
    /// scan and identify jobs, which the members of a cluster share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u32>,
}

/// Addresses per job when a run names no `chunk_size`.
pub const DEFAULT_CHUNK_SIZE: u32 = 256;
/// Most identify jobs' SNMP aliases.
pub const MAX_SNMP_ALIASES: usize = 8;

/// Ports scanned when a run names none.
pub const DEFAULT_PORTS: [u16; 16] = [
    21, 22, 23, 80, 135, 443, 445, 515, 631, 1433, 1521, 3306, 3389, 5432, 8080, 9100,
];

impl NewDiscoveryRun {
    /// Checks what can be checked here; the probes check the rest.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.agent.trim().is_empty() {
            return Err(field_error(
                "agent",
                "is required: mid.server.NAME, mid.cluster.NAME or mid.auto",
            ));
        }
        if self.targets.is_empty() {
            return Err(field_error(
                "targets",
                "name at least one address, CIDR or range",
            ));
        }
        crate::discovery::count_targets("targets", &self.targets)?;
        if let Some(size) = self.chunk_size
            && !(1..=crate::discovery::MAX_IDENTIFY_HOSTS as u32).contains(&size)
        {
            return Err(field_error(
                "chunk_size",
                format!(
                    "must be 1–{}, got {size}",
                    crate::discovery::MAX_IDENTIFY_HOSTS
                ),
            ));
        }
        if self.snmp_aliases.len() > MAX_SNMP_ALIASES {
            return Err(field_error(
                "snmp_aliases",
                format!("at most {MAX_SNMP_ALIASES} aliases"),
            ));
        }
        if let Some(i) = self.snmp_aliases.iter().position(|a| a.trim().is_empty()) {
            return Err(field_error(&format!("snmp_aliases[{i}]"), "is empty"));
        }
        Ok(())
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryState {
    /// Pinging the ranges.
    Pinging,
    /// Scanning the hosts that answered.
    Scanning,
    /// Asking the hosts what they are (HTTP, TLS, SNMP).
    Identifying,
    /// Done: devices filed.
    Complete,
    /// A stage failed (its error in `detail`).
    Error,
}

impl DiscoveryState {
    /// The name written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pinging => "pinging",
            Self::Scanning => "scanning",
            Self::Identifying => "identifying",
            Self::Complete => "complete",
            Self::Error => "error",
        }
    }

    /// Parses [`DiscoveryState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pinging,
            Self::Scanning,
            Self::Identifying,
            Self::Complete,
            Self::Error,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

/// One discovery run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DiscoveryRun {
    /// Its id (`dsc_…`).
    pub id: String,
    /// What it was asked.
    pub request: NewDiscoveryRun,
    /// Where it is.
    pub state: DiscoveryState,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Its ping's ECC output.
    pub ping_output: String,
    /// Its scan's ECC output, once it scans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_output: Option<String>,
    /// Hosts that answered.
    pub hosts_alive: u64,
    /// Devices seen for the first time.
    pub devices_new: u64,
    /// Devices seen before, updated.
    pub devices_updated: u64,
    /// Jobs of the run that failed (each in `jobs`).
    #[serde(default)]
    pub errors: u64,
    /// Every job of the run, by stage, with the failed ones' errors.
    #[serde(default)]
    pub jobs: Vec<RunJob>,
    /// The schedule that started it (none when started by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One ECC job of a discovery run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunJob {
    /// `ping`, `scan` or `identify`.
    pub stage: String,
    /// Its chunk, from 0, of the stage's jobs.
    pub chunk: u32,
    /// Its ECC output.
    pub output: String,
    /// Why it failed, once it failed (its hosts are missing from the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An open port of a device, and what it said first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DevicePort {
    /// The port.
    pub port: u16,
    /// Its banner, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
}

/// A discovered device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Device {
    /// Its id.
    pub id: String,
    /// Its address (one record per address).
    pub address: String,
    /// Its name, from what it said: SNMP `sysName`, else its TLS certificate's
    /// first name (no DNS is asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its class: `linux_server`, `windows_server`, `network_device`, `printer`,
    /// `web_server`, `database` or `unknown`.
    pub class: String,
    /// Why it is of that class, strongest reason first.
    pub evidence: Vec<String>,
    /// Its open ports as last seen.
    pub open_ports: Vec<DevicePort>,
    /// What it said about itself when last identified: web servers, TLS names,
    /// its SNMP identity, and what could not be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<crate::discovery::HostIdentity>,
    /// Round-trip time of its last ping, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// When a run first saw it.
    pub first_seen: String,
    /// When a run last saw it.
    pub last_seen: String,
    /// The run that last saw it.
    pub last_run: String,
}

/// `POST /api/v1/discovery/schedules`: a discovery run that runs by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySchedule {
    /// Its name: letters, digits, `.`, `_`, `-`.
    pub name: String,
    /// What each run does: agent, targets, ports, snmp aliases, chunk size.
    pub run: NewDiscoveryRun,
    /// When: a cron expression in a time zone, or an interval (as a data source's).
    pub schedule: crate::import::Schedule,
    /// Whether the schedule is followed (default true); a paused schedule still runs
    /// by hand.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_enabled() -> bool {
    true
}

impl DiscoverySchedule {
    /// Checks what can be checked here; errors name the field (`run.targets`).
    pub fn validate(&self) -> Result<(), FieldError> {
        crate::import::check_name(&self.name)?;
        self.run.validate().map_err(|e| FieldError {
            field: format!("run.{}", e.field),
            message: e.message,
        })
    }
}

/// A discovery schedule as the instance shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DiscoveryScheduleInfo {
    /// Its name.
    pub name: String,
    /// What each run does.
    pub run: NewDiscoveryRun,
    /// When.
    pub schedule: crate::import::Schedule,
    /// Whether the schedule is followed.
    pub enabled: bool,
    /// When it was made, RFC 3339.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When it runs next (none while paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<String>,
    /// Its newest run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
}
