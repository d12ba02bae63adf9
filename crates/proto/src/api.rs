//! Bodies of the admin API (`/api/v1/*`), shared by the instance and its clients.

use crate::credential::CredentialSpec;
use crate::ecc::{EccRecord, Priority, State, Topic};
use crate::mid::{Capacity, MidProfile, MidStatus};
use crate::rest::{Body, RestResponse};
use crate::soap::{SoapResponse, SoapVersion};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every API error: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A machine-readable code and a message for people that names the problem.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable code, e.g. `invalid_body`, `not_found`, `unauthorized`.
    pub code: String,
    /// What went wrong, naming the field or value at fault.
    pub message: String,
}

/// `POST /api/v1/enrollment-tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEnrollmentToken {
    /// Lifetime in seconds (default 3600, at most 30 days).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// When true, a MID enrolling with this token is validated at once.
    #[serde(default)]
    pub auto_validate: bool,
    /// Free text for people (who it is for).
    #[serde(default)]
    pub note: Option<String>,
}

/// A newly made enrollment token. The token is shown once; the instance keeps its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollmentToken {
    /// The token to put in the MID's config.
    pub token: String,
    /// RFC 3339 expiry.
    pub expires_at: String,
    /// Whether MIDs enrolling with it skip validation.
    pub auto_validate: bool,
}

/// A MID Server as the registry shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MidInfo {
    /// Registry id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Current status.
    pub status: MidStatus,
    /// Why it has that status.
    pub status_reason: Option<String>,
    /// Build version.
    pub version: String,
    /// Protocol version it speaks.
    pub protocol_version: u32,
    /// Host it runs on.
    pub hostname: String,
    /// X25519 public key, base64.
    pub public_key: String,
    /// RFC 3339.
    pub enrolled_at: String,
    /// RFC 3339.
    pub validated_at: Option<String>,
    /// RFC 3339, last contact.
    pub last_seen_at: Option<String>,
    /// What the MID offers (the admin's settings where given, else its config's).
    pub profile: MidProfile,
    /// What the MID's own config declares.
    pub declared_profile: MidProfile,
    /// Health from the last heartbeat.
    pub health: Option<MidHealth>,
    /// A rekey was asked for and the MID has not done it yet.
    pub rekey_pending: bool,
    /// Outputs assigned to it and not yet claimed.
    pub ready: u64,
    /// Outputs it runs now.
    pub processing: u64,
}

/// A MID's health as its last heartbeat reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MidHealth {
    /// Build version.
    pub version: String,
    /// Milliseconds since it started.
    pub uptime_ms: u64,
    /// Jobs running per pool.
    pub running_by_pool: Capacity,
    /// Worker slots per pool.
    pub pool_sizes: Capacity,
    /// Jobs waiting for a slot.
    pub queued: u32,
    /// Results waiting in its outbox.
    pub outbox_len: u64,
    /// Bytes in its outbox.
    pub outbox_bytes: u64,
    /// CPU use, percent of one core.
    pub cpu_percent: Option<f32>,
    /// Resident memory in bytes.
    pub rss_bytes: Option<u64>,
    /// Jobs its egress policy refused since it started.
    #[serde(default)]
    pub policy_denials: u64,
    /// RFC 3339, when it was reported.
    pub reported_at: String,
}

/// One instance node sharing the store (`GET /api/v1/nodes`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstanceNode {
    /// Random per process start.
    pub id: String,
    /// Host, listen address and process id.
    pub name: String,
    /// RFC 3339.
    pub started_at: String,
    /// When it last said it was alive (RFC 3339).
    pub last_seen: String,
    /// Seen within the node timeout.
    pub alive: bool,
    /// Holds the sweeper lease: does the housekeeping done once for all nodes.
    pub leader: bool,
    /// The node that answered this request.
    pub answering: bool,
}

/// One status change of a MID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusChange {
    /// RFC 3339.
    pub at: String,
    /// Status before (absent at enrollment).
    pub from: Option<MidStatus>,
    /// Status after.
    pub to: MidStatus,
    /// Why.
    pub reason: String,
}

/// `PATCH /api/v1/mids/{name}`: an admin's settings for what a MID offers. A field given
/// replaces the MID's declared value; `reset` returns to what the MID declares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// Capabilities.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// Applications.
    #[serde(default)]
    pub applications: Option<Vec<String>>,
    /// IP ranges.
    #[serde(default)]
    pub ip_ranges: Option<Vec<String>>,
    /// Drop the admin's settings.
    #[serde(default)]
    pub reset: bool,
}

/// How a cluster shares work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterKind {
    /// Members share work by current load.
    LoadBalance,
    /// The first `up` member in order takes the work.
    Failover,
}

impl ClusterKind {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterKind::LoadBalance => "load_balance",
            ClusterKind::Failover => "failover",
        }
    }

    /// Parses [`ClusterKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "load_balance" => Some(ClusterKind::LoadBalance),
            "failover" => Some(ClusterKind::Failover),
            _ => None,
        }
    }
}

/// `POST /api/v1/clusters` and `PUT /api/v1/clusters/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCluster {
    /// Unique name (`mid.cluster.NAME`).
    pub name: String,
    /// Load balancing or failover.
    pub kind: ClusterKind,
    /// Member MID names, in order (the order matters for failover).
    pub members: Vec<String>,
}

/// A cluster as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: ClusterKind,
    /// Members in order.
    pub members: Vec<ClusterMember>,
}

/// One member of a cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterMember {
    /// MID name.
    pub name: String,
    /// Position, from 1.
    pub rank: u32,
    /// The MID's status now (absent if no such MID is enrolled yet).
    pub status: Option<MidStatus>,
}

/// `POST /api/v1/ecc`: insert an output record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOutput {
    /// `mid.server.NAME`, `mid.cluster.NAME` or `mid.auto`.
    pub agent: String,
    /// The probe.
    pub topic: Topic,
    /// Label (defaults to the topic).
    #[serde(default)]
    pub name: Option<String>,
    /// Who asks (defaults to `api`).
    #[serde(default)]
    pub source: Option<String>,
    /// Probe input; checked against the topic's schema, then stored as it is.
    pub payload: crate::payload::Payload,
    /// Priority (default `interactive`).
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Caller's id for grouping records.
    #[serde(default)]
    pub correlator: Option<String>,
    /// Claims allowed (1–10, default 3).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Never run twice: a lapsed lease ends it in `error`.
    #[serde(default)]
    pub at_most_once: bool,
    /// Application (for `mid.auto` selection).
    #[serde(default)]
    pub application: Option<String>,
    /// Whether the call may skip its durable record before it runs (set by the
    /// actions from their body or alias; a plain ECC insert is always durable).
    #[serde(skip)]
    pub durability: Durability,
}

/// Whether an action waits for its durable record before it runs.
///
/// `durable` (the default): the output is committed to the ECC queue before a MID
/// gets it, it is leased and run again elsewhere if its MID is lost, and its result is
/// in the MID's outbox before the MID acknowledges it.
///
/// `relaxed` (the express lane): for calls safe to lose the record of — idempotent
/// reads, health checks, interactive lookups. The call goes straight down the MID's
/// session stream and its answer straight back; its output and input records are
/// written afterwards, group-committed, so the queue and the audit still show it. A
/// crash of the instance between the answer and that write loses the record (never
/// the answer the caller got), and a call whose MID is lost is answered with an
/// error and never run again. With no session stream to its MID on this instance
/// node the call takes the durable path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Recorded before it runs (the default).
    #[default]
    Durable,
    /// The express lane: recorded after it answers.
    Relaxed,
}

impl Durability {
    /// Whether this is the express lane.
    pub fn is_relaxed(self) -> bool {
        self == Durability::Relaxed
    }
}

/// `GET /api/v1/ecc` answer: one page of records, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordPage {
    /// The records.
    pub records: Vec<EccRecord>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<String>,
}

/// Filters of `GET /api/v1/ecc` (all optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordQuery {
    /// `output` or `input`.
    pub queue: Option<String>,
    /// A state name.
    pub state: Option<String>,
    /// Exact agent string.
    pub agent: Option<String>,
    /// A topic name.
    pub topic: Option<String>,
    /// Exact correlator.
    pub correlator: Option<String>,
    /// Page size (1–1000, default 100).
    pub limit: Option<u32>,
    /// Return records after this id.
    pub after: Option<String>,
}

/// `POST /api/v1/actions/rest`: one HTTP request made by a MID, either through an alias
/// (`alias` + `path`) or to a URL with the MID named (`url` + `mid` or `agent`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestAction {
    /// The Connection & Credential alias to call through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Path appended to the alias's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Query parameters added to the URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Without an alias: name of the MID to run it (or give `agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    /// Without an alias: `mid.server.NAME`, `mid.cluster.NAME` or `mid.auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Application, for `mid.auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// Leave the call in `error` rather than run it again after a lost MID.
    #[serde(default)]
    pub at_most_once: bool,
    /// HTTP method (default `GET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Without an alias: absolute URL as the MID sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Request headers (over the alias's).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    /// Id of an uploaded blob (`POST /api/v1/blobs`) to send as the body instead of
    /// `body`, for large bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_blob: Option<String>,
    /// Timeout of one attempt on the MID (default: the alias's, else 30 000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Caller's correlator for the output record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlator: Option<String>,
    /// `relaxed` takes the express lane (see [`Durability`]); default: the alias's,
    /// else `durable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<Durability>,
}

impl RestAction {
    /// A GET of `url` run by `agent` (`mid.server.NAME`, `mid.cluster.NAME` or
    /// `mid.auto`), everything else default.
    pub fn new(agent: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            agent: Some(agent.into()),
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// A GET of `path` through `alias`, everything else default.
    pub fn via(alias: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            alias: Some(alias.into()),
            path: Some(path.into()),
            ..Self::default()
        }
    }
}

/// `POST /api/v1/actions/soap`: one SOAP call made by a MID through an alias. Give the
/// Body's XML in `body`, or `operation` (+ `namespace`, `params`) for the MID to build it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SoapAction {
    /// The Connection & Credential alias (kind `soap`).
    pub alias: String,
    /// Path appended to the alias's base URL (default: none, the base URL is the
    /// endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `1.1` or `1.2` (default: the alias's, else 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<SoapVersion>,
    /// The SOAP action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap_action: Option<String>,
    /// The Body's XML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Operation element name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Namespace of the operation element.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Operation parameters.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// `qualified` (default): parameter elements in `namespace`, like the operation;
    /// `unqualified`: in no namespace (`<tns:Op xmlns:tns="…"><a>1</a></tns:Op>`), as a
    /// schema with `elementFormDefault="unqualified"` wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element_form: Option<crate::soap::ElementForm>,
    /// Extra HTTP headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one attempt on the MID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Leave the call in `error` rather than run it again after a lost MID.
    #[serde(default)]
    pub at_most_once: bool,
    /// Caller's correlator for the output record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlator: Option<String>,
}

/// `POST /api/v1/actions/command`: a program (or a script for an interpreter) run on a
/// MID's own host, as its egress policy allows. Give the MID (`mid`) or an agent
/// (`mid.server.NAME`, `mid.cluster.NAME`, `mid.auto`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandAction {
    /// Name of the MID to run it (or give `agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    /// `mid.server.NAME`, `mid.cluster.NAME` or `mid.auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Application, for `mid.auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// Never run it twice: after a lost MID it ends in `error` instead.
    #[serde(default)]
    pub at_most_once: bool,
    /// Caller's correlator for the output record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlator: Option<String>,
    /// Absolute path of the program (with `script`: of the interpreter).
    pub program: String,
    /// Arguments, as they are (no shell).
    #[serde(default)]
    pub args: Vec<String>,
    /// The process's whole environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Standard input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Longest run in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A script body for the interpreter `program`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// Bytes of each stream kept in the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
}

impl CommandAction {
    /// Runs `program` with `args` on the MID `mid`.
    pub fn on(mid: impl Into<String>, program: impl Into<String>, args: &[&str]) -> Self {
        Self {
            mid: Some(mid.into()),
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Self::default()
        }
    }

    /// The probe's request.
    pub fn request(&self) -> crate::command::CommandRequest {
        crate::command::CommandRequest {
            program: self.program.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            stdin: self.stdin.clone(),
            cwd: self.cwd.clone(),
            timeout_ms: self.timeout_ms,
            script: self.script.clone(),
            max_output_bytes: self.max_output_bytes,
        }
    }
}

/// The result of an action that finished (HTTP 200); `R` is the probe's response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActionResult<R> {
    /// `processed` or `error`.
    pub state: State,
    /// The output record.
    pub output_id: String,
    /// The input record holding the result.
    pub input_id: Option<String>,
    /// The MID that ran it.
    pub mid: Option<String>,
    /// The attempt that produced the result.
    pub attempt: u32,
    /// Why it failed, when `state` is `error`.
    pub error: Option<String>,
    /// The target's response: absent when the call itself failed, unless the probe kept
    /// what the target answered (a SOAP call answered with an HTML error page).
    pub response: Option<R>,
    /// Where the time went.
    pub timings: ActionTimings,
}

/// The result of a finished REST action.
pub type RestActionResult = ActionResult<RestResponse>;
/// The result of a finished SOAP action.
pub type SoapActionResult = ActionResult<SoapResponse>;
/// The result of a finished command.
pub type CommandActionResult = ActionResult<crate::command::CommandResponse>;

/// `POST /api/v1/credentials` and `PUT /api/v1/credentials/{name}`: a name, a
/// description and the typed fields, side by side:
/// `{"name":"crm","type":"basic","username":"svc","password":"..."}`.
#[derive(Debug, Clone, Serialize)]
pub struct NewCredential {
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Type and fields.
    #[serde(flatten)]
    pub spec: CredentialSpec,
}

/// Where an action's time went, from the instance's point of view.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionTimings {
    /// Output written → claimed by a MID.
    pub queued_ms: i64,
    /// Probe run time reported by the MID.
    pub run_ms: u64,
    /// Output written → result recorded.
    pub total_ms: i64,
}

/// An action that had not finished when the wait ran out (HTTP 202).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActionPending {
    /// The output record to poll.
    pub output_id: String,
    /// Its state now.
    pub state: State,
    /// Where to poll: `GET` this path.
    pub poll: String,
}
