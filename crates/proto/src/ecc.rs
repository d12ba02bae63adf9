//! The ECC queue's vocabulary: queues, states, priorities, topics, agents and the record.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which side of the queue a record sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Queue {
    /// Work for a MID.
    Output,
    /// A MID's result for an output (`response_to` names the output).
    Input,
}

/// Lifecycle state of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting to be claimed (output) or consumed (input).
    Ready,
    /// Claimed by a MID under a lease.
    Processing,
    /// Finished successfully.
    Processed,
    /// Finished with an error (probe failure, attempts exhausted, lease lapsed on an
    /// at-most-once output).
    Error,
    /// Withdrawn before it ran.
    Cancelled,
}

/// Priority of an output; each has its own worker pool on the MID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// API calls a person or flow waits on (0).
    Interactive,
    /// Work that should not queue behind bulk jobs (1).
    Expedited,
    /// Scans, imports and other bulk work (2).
    Standard,
}

impl Priority {
    /// All priorities, most urgent first.
    pub const ALL: [Priority; 3] = [
        Priority::Interactive,
        Priority::Expedited,
        Priority::Standard,
    ];

    /// The numeric rank stored in the queue (0 = most urgent).
    pub fn rank(self) -> i64 {
        match self {
            Priority::Interactive => 0,
            Priority::Expedited => 1,
            Priority::Standard => 2,
        }
    }

    /// Inverse of [`Priority::rank`].
    pub fn from_rank(rank: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.rank() == rank)
    }
}

/// The probe that runs an output. Names follow the MID Server vocabulary users know.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// An HTTP(S) request to an internal service.
    RESTProbe,
    /// A SOAP call.
    SOAPProbe,
    /// A shell command on the MID's host.
    Command,
    /// A command on an internal host over SSH.
    SSHCommand,
    /// A SQL query.
    JDBCProbe,
    /// An LDAP search.
    LDAPProbe,
    /// SNMP get/walk.
    SNMPProbe,
    /// ICMP echo.
    Ping,
    /// TCP port scan.
    Shazzam,
    /// What discovered hosts say about themselves (HTTP, TLS, SNMP).
    Identify,
    /// Read a file for an import.
    FileImport,
    /// Scrape metrics.
    MetricScrape,
    /// The instance asking a MID for its health.
    HeartbeatProbe,
    /// A built-in MID maintenance command.
    SystemCommand,
}

impl Topic {
    /// Every topic, in declaration order.
    pub const ALL: [Topic; 14] = [
        Topic::RESTProbe,
        Topic::SOAPProbe,
        Topic::Command,
        Topic::SSHCommand,
        Topic::JDBCProbe,
        Topic::LDAPProbe,
        Topic::SNMPProbe,
        Topic::Ping,
        Topic::Shazzam,
        Topic::Identify,
        Topic::FileImport,
        Topic::MetricScrape,
        Topic::HeartbeatProbe,
        Topic::SystemCommand,
    ];

    /// The MID capability a topic needs (`mid.auto` selects by it).
    pub fn capability(self) -> &'static str {
        match self {
            Topic::RESTProbe => "REST",
            Topic::SOAPProbe => "SOAP",
            Topic::Command | Topic::SystemCommand => "Command",
            Topic::SSHCommand => "SSH",
            Topic::JDBCProbe => "JDBC",
            Topic::LDAPProbe => "LDAP",
            Topic::SNMPProbe => "SNMP",
            Topic::Ping | Topic::Shazzam | Topic::Identify => "Discovery",
            Topic::FileImport => "FileImport",
            Topic::MetricScrape => "Metrics",
            Topic::HeartbeatProbe => "ALL",
        }
    }

    /// The topic's name as written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::RESTProbe => "RESTProbe",
            Topic::SOAPProbe => "SOAPProbe",
            Topic::Command => "Command",
            Topic::SSHCommand => "SSHCommand",
            Topic::JDBCProbe => "JDBCProbe",
            Topic::LDAPProbe => "LDAPProbe",
            Topic::SNMPProbe => "SNMPProbe",
            Topic::Ping => "Ping",
            Topic::Shazzam => "Shazzam",
            Topic::Identify => "Identify",
            Topic::FileImport => "FileImport",
            Topic::MetricScrape => "MetricScrape",
            Topic::HeartbeatProbe => "HeartbeatProbe",
            Topic::SystemCommand => "SystemCommand",
        }
    }
}

/// Error for parsing one of this module's names from a string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`, expected one of: {expected}")]
pub struct UnknownName {
    /// What was being parsed (`queue`, `state`, …).
    pub kind: &'static str,
    /// What was given.
    pub value: String,
    /// The accepted names.
    pub expected: String,
}

macro_rules! names {
    ($ty:ty, $kind:literal, [$($variant:path => $name:literal),+ $(,)?]) => {
        impl $ty {
            /// The lowercase name used in records, URLs and JSON.
            pub fn as_str(self) -> &'static str {
                match self { $($variant => $name),+ }
            }
        }
        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($name => Ok($variant),)+
                    _ => Err(UnknownName {
                        kind: $kind,
                        value: s.to_string(),
                        expected: [$($name),+].join(", "),
                    }),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(Queue, "queue", [Queue::Output => "output", Queue::Input => "input"]);
names!(State, "state", [
    State::Ready => "ready",
    State::Processing => "processing",
    State::Processed => "processed",
    State::Error => "error",
    State::Cancelled => "cancelled",
]);
names!(Priority, "priority", [
    Priority::Interactive => "interactive",
    Priority::Expedited => "expedited",
    Priority::Standard => "standard",
]);

impl FromStr for Topic {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        Topic::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownName {
                kind: "topic",
                value: s.to_string(),
                expected: Topic::ALL.map(Topic::as_str).join(", "),
            })
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may take an output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Agent {
    /// `mid.server.NAME`: exactly this MID.
    Server(String),
    /// `mid.cluster.NAME`: a member of this cluster.
    Cluster(String),
    /// `mid.auto`: the instance picks.
    Auto,
}

/// Error for a malformed agent string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid agent `{0}`: expected mid.server.NAME, mid.cluster.NAME or mid.auto")]
pub struct InvalidAgent(pub String);

impl FromStr for Agent {
    type Err = InvalidAgent;
    fn from_str(s: &str) -> Result<Self, InvalidAgent> {
        let named = |rest: &str| crate::is_valid_name(rest).then(|| rest.to_string());
        if s == "mid.auto" {
            return Ok(Agent::Auto);
        }
        if let Some(name) = s.strip_prefix("mid.server.").and_then(named) {
            return Ok(Agent::Server(name));
        }
        if let Some(name) = s.strip_prefix("mid.cluster.").and_then(named) {
            return Ok(Agent::Cluster(name));
        }
        Err(InvalidAgent(s.to_string()))
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Agent::Server(n) => write!(f, "mid.server.{n}"),
            Agent::Cluster(n) => write!(f, "mid.cluster.{n}"),
            Agent::Auto => f.write_str("mid.auto"),
        }
    }
}

/// One record of the ECC queue as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EccRecord {
    /// Record id (a time-ordered UUID).
    pub id: String,
    /// Output (work) or input (result).
    pub queue: Queue,
    /// Who may take it (outputs) or who produced it (inputs).
    pub agent: String,
    /// The probe.
    pub topic: Topic,
    /// A short label, e.g. the URL of a REST call.
    pub name: String,
    /// Who asked for it (outputs) or which MID answered (inputs).
    pub source: String,
    /// Probe input (outputs) or result (inputs).
    pub payload: serde_json::Value,
    /// Lifecycle state.
    pub state: State,
    /// Priority (and thereby the MID worker pool).
    pub priority: Priority,
    /// For inputs: the output this answers.
    pub response_to: Option<String>,
    /// Caller-chosen id tying related records together.
    pub correlator: Option<String>,
    /// Outputs: how many times it has been claimed. Inputs: the attempt they answer.
    pub attempt: u32,
    /// Claims allowed before the output ends in `error`.
    pub max_attempts: u32,
    /// When true a lapsed lease ends the output in `error` instead of re-running it.
    pub at_most_once: bool,
    /// Why it ended in `error`.
    pub error: Option<String>,
    /// The MID holding (or that last held) the lease.
    pub claimed_by: Option<String>,
    /// The MID that may claim it now (clusters and `mid.auto` choose one).
    pub assigned_to: Option<String>,
    /// Why that MID, or why none yet.
    pub selection: Option<String>,
    /// Application the output belongs to (`mid.auto` selects by it).
    pub application: Option<String>,
    /// When the current lease lapses (RFC 3339), while `processing`.
    pub lease_expires_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, last claim.
    pub claimed_at: Option<String>,
    /// RFC 3339, when it reached `processed`, `error` or `cancelled`.
    pub processed_at: Option<String>,
    /// The W3C trace the output belongs to (32 hex digits): the caller's, from the
    /// `traceparent` it sent, or one made for it. Absent on records written before
    /// traces were kept.
    #[serde(default)]
    pub trace_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn agents_round_trip() {
        for s in ["mid.server.a1", "mid.cluster.east-1", "mid.auto"] {
            assert_eq!(s.parse::<Agent>().map(|a| a.to_string()), Ok(s.to_string()));
        }
        for s in [
            "mid.server.",
            "mid.server.a b",
            "server.a",
            "mid.cluster",
            "",
        ] {
            assert!(s.parse::<Agent>().is_err(), "{s}");
        }
    }

    #[test]
    fn names_round_trip() {
        for t in Topic::ALL {
            assert_eq!(t.as_str().parse::<Topic>(), Ok(t));
            let json = serde_json::to_string(&t).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        for p in Priority::ALL {
            assert_eq!(Priority::from_rank(p.rank()), Some(p));
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
        }
        let err = "Nope"
            .parse::<Topic>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("unknown topic `Nope`") && err.contains("RESTProbe"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn agent_parser_never_panics(s in ".{0,80}") {
            if let Ok(agent) = s.parse::<Agent>() {
                prop_assert_eq!(agent.to_string(), s);
            }
        }
    }
}
