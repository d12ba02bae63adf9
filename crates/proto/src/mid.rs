//! Messages of the MID ↔ instance session (`/mid/v1/*`). The MID opens every connection.
//!
//! A session request carries `Authorization: Bearer MID_ID.SECRET` and the
//! [`crate::PROTOCOL_HEADER`] header.

use crate::ecc::{Priority, Topic};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// Status of a MID Server in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MidStatus {
    /// Enrolled, waiting for an admin to validate it. Gets no work.
    ValidationPending,
    /// Validated and in contact.
    Up,
    /// Validated, but has stopped contacting the instance.
    Down,
    /// An admin paused it: it stays connected and gets no new work.
    Paused,
    /// Finishing running work, taking no more.
    Draining,
    /// Drained: nothing running, nothing taken.
    Drained,
    /// Being upgraded.
    Upgrading,
    /// Refused everywhere; must re-enroll.
    Invalidated,
}

impl MidStatus {
    /// The snake_case name used in the API and store.
    pub fn as_str(self) -> &'static str {
        match self {
            MidStatus::ValidationPending => "validation_pending",
            MidStatus::Up => "up",
            MidStatus::Down => "down",
            MidStatus::Paused => "paused",
            MidStatus::Draining => "draining",
            MidStatus::Drained => "drained",
            MidStatus::Upgrading => "upgrading",
            MidStatus::Invalidated => "invalidated",
        }
    }

    /// Parses [`MidStatus::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        [
            MidStatus::ValidationPending,
            MidStatus::Up,
            MidStatus::Down,
            MidStatus::Paused,
            MidStatus::Draining,
            MidStatus::Drained,
            MidStatus::Upgrading,
            MidStatus::Invalidated,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }

    /// Whether a MID in this status may claim new work (a `down` MID that is heard
    /// from again is made `up` first).
    pub fn takes_work(self) -> bool {
        self == MidStatus::Up
    }
}

/// What a MID offers: capabilities (`REST`, `SOAP`, `SSH`, `JDBC`, `LDAP`, `SNMP`,
/// `Command`, `ALL`, or `name:value`), applications (`Discovery`, `Orchestration`, …,
/// or `ALL`) and IP ranges it serves (CIDR or `a-b`; a leading `!` excludes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MidProfile {
    /// Capabilities.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Applications.
    #[serde(default)]
    pub applications: Vec<String>,
    /// IP ranges.
    #[serde(default)]
    pub ip_ranges: Vec<String>,
    /// The topics it has a probe for. Empty from a MID that does not say (older than
    /// this field): it runs `RESTProbe` and `SOAPProbe` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<Topic>,
}

impl MidProfile {
    /// Whether the MID has a probe for `topic`.
    pub fn runs(&self, topic: Topic) -> bool {
        if self.topics.is_empty() {
            matches!(topic, Topic::RESTProbe | Topic::SOAPProbe)
        } else {
            self.topics.contains(&topic)
        }
    }
}

/// `POST /mid/v1/enroll`: a MID's first contact, made with a one-time enrollment token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The one-time token an admin created.
    pub token: Secret,
    /// The MID's chosen name (unique on the instance).
    pub name: String,
    /// The MID's X25519 public key, base64 (credentials are sealed to it).
    pub public_key: String,
    /// The MID's secret for later sessions; the instance keeps only its hash.
    pub secret: Secret,
    /// The protocol version the MID speaks.
    pub protocol_version: u32,
    /// The MID's build version.
    pub version: String,
    /// Host name the MID runs on, for people.
    pub hostname: String,
    /// What the MID's config declares it offers.
    #[serde(default)]
    pub profile: MidProfile,
}

/// Answer to [`EnrollRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The id to use in the session `Authorization` header.
    pub mid_id: String,
    /// The registered name.
    pub name: String,
    /// `validation_pending` unless the token auto-validates.
    pub status: MidStatus,
}

/// Free worker slots per priority pool: how much work a poll may return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Free slots in the interactive pool.
    pub interactive: u32,
    /// Free slots in the expedited pool.
    pub expedited: u32,
    /// Free slots in the standard pool.
    pub standard: u32,
}

impl Capacity {
    /// Free slots for one priority.
    pub fn get(&self, p: Priority) -> u32 {
        match p {
            Priority::Interactive => self.interactive,
            Priority::Expedited => self.expedited,
            Priority::Standard => self.standard,
        }
    }

    /// The free-slot count of one priority, to take or give back a slot.
    pub fn get_mut(&mut self, p: Priority) -> &mut u32 {
        match p {
            Priority::Interactive => &mut self.interactive,
            Priority::Expedited => &mut self.expedited,
            Priority::Standard => &mut self.standard,
        }
    }

    /// Whether some pool that has no slot in `before` has one here.
    pub fn opens_pool_of(&self, before: &Capacity) -> bool {
        Priority::ALL
            .into_iter()
            .any(|p| before.get(p) == 0 && self.get(p) > 0)
    }

    /// Total free slots.
    pub fn total(&self) -> u32 {
        self.interactive
            .saturating_add(self.expedited)
            .saturating_add(self.standard)
    }
}

/// The longest a MID waits between two attempts to reach the instance (its jittered
/// back-off's cap). The instance gives running work this much more lease at start, so
/// MIDs that retry slowly after an outage still reconnect before their leases end.
pub const MAX_RECONNECT_DELAY_MS: u64 = 30_000;

/// `POST /mid/v1/poll`: a long-poll for work.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollRequest {
    /// How much work the MID can start now.
    pub capacity: Capacity,
    /// How long the instance may hold the request when there is no work (capped by the
    /// instance).
    pub wait_ms: u64,
    /// The status the MID last heard; when the registry says otherwise, the poll answers
    /// at once so the MID learns it (e.g. that it was validated).
    #[serde(default)]
    pub known_status: Option<MidStatus>,
}

/// Answer to [`PollRequest`]: zero or more claimed outputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollResponse {
    /// The MID's registry status (a pending MID learns here that it was validated).
    pub status: MidStatus,
    /// Length of a lease; the MID heartbeats well inside it.
    pub lease_ms: u64,
    /// How often the MID should heartbeat.
    pub heartbeat_ms: u64,
    /// Claimed work.
    pub work: Vec<WorkItem>,
    /// An admin asked this MID to make a new key pair and secret (`/mid/v1/rekey`).
    #[serde(default)]
    pub rekey: bool,
    /// Jobs this MID runs that were cancelled: stop them (the result of what they did
    /// so far is still posted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancel: Vec<JobRef>,
}

/// One claimed output, leased to the polling MID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkItem {
    /// The output record id.
    pub output_id: String,
    /// Attempt number of this claim; the result must carry it.
    pub attempt: u32,
    /// The probe to run.
    pub topic: Topic,
    /// The record's label.
    pub name: String,
    /// The pool to run in.
    pub priority: Priority,
    /// Probe input, as the JSON text it was stored as.
    pub payload: crate::payload::Payload,
    /// The credential the payload names, sealed to this MID for this attempt: only
    /// this MID's private key opens it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<SealedCredential>,
    /// The job's W3C `traceparent` (the instance's span of it), which the MID carries
    /// on into the requests it makes. Absent from older instances, ignored by older
    /// MIDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A credential sealed to one MID for one attempt at one output (the AAD binds all
/// three, see [`crate::seal::credential_aad`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedCredential {
    /// The credential's id.
    pub credential_id: String,
    /// The sealed JSON of its [`crate::credential::CredentialSpec`].
    pub sealed: crate::seal::Sealed,
}

/// Identifies one attempt at one output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobRef {
    /// Output record id.
    pub output_id: String,
    /// Attempt number.
    pub attempt: u32,
}

/// The outcome of one attempt, as the MID reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkResult {
    /// Output record id.
    pub output_id: String,
    /// The attempt this result belongs to.
    pub attempt: u32,
    /// Probe output (on success) or whatever partial detail the probe had (on error),
    /// as the JSON text the probe wrote: stored as it is.
    pub payload: crate::payload::Payload,
    /// Set when the probe failed; the output then ends in `error`.
    pub error: Option<String>,
    /// When the probe started (epoch ms, MID clock).
    pub started_at_ms: i64,
    /// How long the probe ran.
    pub duration_ms: u64,
}

/// `POST /mid/v1/results`: a batch of results.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultsRequest {
    /// The results, in any order.
    pub results: Vec<WorkResult>,
}

/// What the instance did with one posted result. Every outcome is final: the MID drops
/// the result from its outbox on any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckOutcome {
    /// Stored as the output's input record.
    Recorded,
    /// This exact result was recorded before (a repeated post).
    Duplicate,
    /// The attempt was superseded (lease lapsed, re-run elsewhere); discarded.
    Superseded,
    /// No such output; discarded.
    Unknown,
}

/// Acknowledgement of one result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Output record id.
    pub output_id: String,
    /// Attempt number.
    pub attempt: u32,
    /// What happened to it.
    pub outcome: AckOutcome,
}

/// Answer to [`ResultsRequest`], one ack per result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultsResponse {
    /// Acks in request order.
    pub acks: Vec<Ack>,
}

/// `POST /mid/v1/heartbeat`: liveness, health and lease renewal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// Jobs running now; their leases are renewed.
    pub running: Vec<JobRef>,
    /// Build version.
    pub version: String,
    /// Milliseconds since the MID started.
    pub uptime_ms: u64,
    /// Results waiting in the outbox.
    pub outbox_len: u64,
    /// Bytes held by the outbox.
    pub outbox_bytes: u64,
    /// Jobs running per pool.
    #[serde(default)]
    pub running_by_pool: Capacity,
    /// Worker slots per pool.
    #[serde(default)]
    pub pool_sizes: Capacity,
    /// Jobs waiting for a slot.
    #[serde(default)]
    pub queued: u32,
    /// CPU use of the MID process since the last heartbeat, in percent of one core.
    #[serde(default)]
    pub cpu_percent: Option<f32>,
    /// Resident memory of the MID process.
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// What the MID's config declares it offers.
    #[serde(default)]
    pub profile: MidProfile,
    /// Targets and commands its egress policy refused since it started.
    #[serde(default)]
    pub policy_denials: u64,
    /// This MID process's session id, new at every start. When it changes, the
    /// instance knows the previous process is gone and at once releases the jobs it
    /// held that this process does not list in `running` — instead of waiting for
    /// their leases to lapse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// Answer to [`HeartbeatRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The MID's registry status.
    pub status: MidStatus,
    /// Length of a renewed lease.
    pub lease_ms: u64,
    /// Running jobs whose lease could not be renewed (superseded or cancelled): their
    /// results will be discarded.
    pub lost: Vec<JobRef>,
    /// An admin asked this MID to make a new key pair and secret.
    #[serde(default)]
    pub rekey: bool,
    /// Running jobs that were cancelled: stop them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancel: Vec<JobRef>,
}

/// `POST /mid/v1/rekey`: the MID's new key pair and secret, sent with its old credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RekeyRequest {
    /// New X25519 public key, base64.
    pub public_key: String,
    /// New session secret.
    pub secret: Secret,
}
