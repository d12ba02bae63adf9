//! The durable ECC queue and the registry tables behind one [`Store`] trait.
//!
//! Every operation is one transaction with a meaning of its own (claim, record results,
//! expire leases …), never a generic "run this SQL": so SQLite (one writer) and
//! PostgreSQL (`FOR UPDATE SKIP LOCKED`, several instance nodes) can each implement it
//! the way that is right for them.

pub mod audit;
pub mod coordination;
pub mod depth;
mod metric_rows;
mod migrations;
#[cfg(feature = "postgres")]
pub mod postgres;
mod rows;
pub mod rules;
mod session_rows;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod store;

use async_trait::async_trait;
use openmid_proto::api::{ClusterKind, MidHealth, ProfileUpdate};
use openmid_proto::ecc::{EccRecord, Priority, Queue, State, Topic};
use openmid_proto::mid::{AckOutcome, Capacity, JobRef, MidProfile, MidStatus, WorkResult};
use openmid_proto::time::rfc3339;
use std::collections::HashMap;

pub use audit::{AuditFilter, AuditRow, AuditStore, NewAuditEntry};
pub use coordination::{Announcement, NodeRow, PresenceRow};
pub use depth::{DepthStore, QueueDepth};
pub use metric_rows::{MetricAssignmentRow, MetricSampleRow, MetricSeriesRow, MetricTargetRow};
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
pub use session_rows::DashboardSessionRow;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{
    ConnectionStore, CoordinationStore, DashboardSessionStore, DiscoveryStore, Heard, ImportStore,
    Lifecycle, MetricsStore, QueueStore, RegistryStore, SettingsStore, Store, parts,
};

#[cfg(not(feature = "sqlite"))]
compile_error!("openmid-instance needs its embedded store: build it with the `sqlite` feature");

/// Which backend a `database` setting names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, one file in the data directory (no setting).
    Sqlite,
    /// PostgreSQL (`postgres://…` or `postgresql://…`).
    Postgres,
}

impl Backend {
    /// The backend of a `database` URL, or an error naming the setting (never the URL,
    /// which may hold a password).
    pub fn parse(url: &str) -> Result<Self, String> {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgres" | "postgresql") if cfg!(feature = "postgres") => Ok(Self::Postgres),
            Some("postgres" | "postgresql") => {
                Err("database: this build has no PostgreSQL store (cargo feature `postgres`)".into())
            }
            _ => Err(
                "database: must be a postgres://user:password@host:port/database URL (leave it unset for SQLite in data_dir)"
                    .into(),
            ),
        }
    }
}

/// Opens the store (creating it and applying migrations when needed) behind the trait
/// the rest of the instance uses: SQLite in `data_dir` unless `database` names
/// PostgreSQL.
pub async fn open(
    data_dir: &std::path::Path,
    database: Option<&openmid_proto::secret::Secret>,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let backend = match database {
        None => Backend::Sqlite,
        Some(url) => Backend::parse(url.expose()).map_err(StoreError::Config)?,
    };
    Ok(match (backend, database) {
        #[cfg(feature = "postgres")]
        (Backend::Postgres, Some(url)) => std::sync::Arc::new(PgStore::open(url.expose()).await?),
        _ => std::sync::Arc::new(SqliteStore::open(&data_dir.join("openmid.db")).await?),
    })
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (the backend's own error, kept as the source).
    #[error("database: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored value could not be read back (a bug or a hand-edited database).
    #[error("corrupt record {id}: {detail}")]
    Corrupt {
        /// The record.
        id: String,
        /// What was wrong.
        detail: String,
    },
    /// A batched write failed (the message of the database error).
    #[error("database: {0}")]
    Batch(String),
    /// The store's setting is wrong: the message names it.
    #[error("{0}")]
    Config(String),
    /// The thing is still used: the message says by what.
    #[error("{0}")]
    InUse(String),
    /// An alias names a credential that does not exist.
    #[error("no credential named `{0}`")]
    MissingCredential(String),
    /// Creating the data directory or the database file failed.
    #[error("opening {path}: {source}")]
    Open {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Why an enrollment was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The token is unknown, expired or used (one message for all three: a caller
    /// guessing tokens learns nothing).
    #[error("enrollment token is unknown, expired or already used: ask an admin for a new one")]
    TokenInvalid,
    /// A MID with this name exists.
    #[error("a MID named `{0}` is already enrolled: pick another name or invalidate the old MID")]
    NameTaken(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One ECC record as stored: times are epoch milliseconds, the payload is JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Time-ordered UUID.
    pub id: String,
    /// Output or input.
    pub queue: Queue,
    /// Agent string.
    pub agent: String,
    /// Probe.
    pub topic: Topic,
    /// Label.
    pub name: String,
    /// Who asked / who answered.
    pub source: String,
    /// JSON text.
    pub payload: String,
    /// State.
    pub state: State,
    /// Priority.
    pub priority: Priority,
    /// For inputs, the output answered.
    pub response_to: Option<String>,
    /// Caller's correlator.
    pub correlator: Option<String>,
    /// Claims so far (outputs) or attempt answered (inputs).
    pub attempt: u32,
    /// Claims allowed.
    pub max_attempts: u32,
    /// Never re-run after a lapsed lease.
    pub at_most_once: bool,
    /// Error text.
    pub error: Option<String>,
    /// MID holding or last holding the lease.
    pub claimed_by: Option<String>,
    /// Lease end while processing.
    pub lease_expires_at: Option<i64>,
    /// Written at.
    pub created_at: i64,
    /// Last claimed at.
    pub claimed_at: Option<i64>,
    /// Finished at.
    pub processed_at: Option<i64>,
    /// Inputs: how long the probe ran.
    pub duration_ms: Option<i64>,
    /// Outputs: the MID that may claim it now.
    pub assigned_to: Option<String>,
    /// Outputs: why that MID (or why none yet).
    pub selection: Option<String>,
    /// Application (for `mid.auto`).
    pub application: Option<String>,
    /// The W3C `traceparent` of the instance's span of this job (its trace id is the
    /// caller's): what the MID continues.
    pub traceparent: Option<String>,
}

impl Record {
    /// A REST output claimed by MID `a`, for unit tests to change what they need of.
    #[cfg(test)]
    pub(crate) fn sample(id: &str) -> Record {
        Record {
            id: id.into(),
            queue: openmid_proto::ecc::Queue::Output,
            agent: "mid.server.a".into(),
            topic: openmid_proto::ecc::Topic::RESTProbe,
            name: "n".into(),
            source: "s".into(),
            payload: "{}".into(),
            state: openmid_proto::ecc::State::Processing,
            priority: openmid_proto::ecc::Priority::Interactive,
            response_to: None,
            correlator: None,
            attempt: 1,
            max_attempts: 3,
            at_most_once: false,
            error: None,
            claimed_by: Some("a".into()),
            lease_expires_at: None,
            created_at: 0,
            claimed_at: None,
            processed_at: None,
            duration_ms: None,
            assigned_to: Some("a".into()),
            selection: None,
            application: None,
            traceparent: None,
        }
    }

    /// The record as the API shows it.
    pub fn to_api(&self) -> EccRecord {
        EccRecord {
            id: self.id.clone(),
            queue: self.queue,
            agent: self.agent.clone(),
            topic: self.topic,
            name: self.name.clone(),
            source: self.source.clone(),
            payload: serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null),
            state: self.state,
            priority: self.priority,
            response_to: self.response_to.clone(),
            correlator: self.correlator.clone(),
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            at_most_once: self.at_most_once,
            error: self.error.clone(),
            claimed_by: self.claimed_by.clone(),
            assigned_to: self.assigned_to.clone(),
            selection: self.selection.clone(),
            application: self.application.clone(),
            lease_expires_at: self.lease_expires_at.map(rfc3339),
            created_at: rfc3339(self.created_at),
            claimed_at: self.claimed_at.map(rfc3339),
            processed_at: self.processed_at.map(rfc3339),
            trace_id: self.trace_id(),
        }
    }

    /// The trace id of its `traceparent` (32 hex digits), when it has one.
    pub fn trace_id(&self) -> Option<String> {
        self.traceparent
            .as_deref()
            .and_then(|t| openmid_proto::trace::TraceParent::parse(t).ok())
            .map(|t| t.trace_id_hex())
    }

    /// The span every log line about this job is written in: its output id and trace
    /// id, and what happens to it (`claim`, `result` …).
    pub fn span(&self, stage: &'static str) -> tracing::Span {
        let output = self.response_to.as_deref().unwrap_or(&self.id);
        tracing::info_span!(
            "job",
            stage,
            output = %output,
            trace_id = %self.trace_id().unwrap_or_default()
        )
    }

    /// Whether the record reached a final state.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.state,
            State::Processed | State::Error | State::Cancelled
        )
    }
}

/// Filters for [`Store::list_records`]; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    /// Queue.
    pub queue: Option<Queue>,
    /// State.
    pub state: Option<State>,
    /// Exact agent.
    pub agent: Option<String>,
    /// Topic.
    pub topic: Option<Topic>,
    /// Exact correlator.
    pub correlator: Option<String>,
    /// Only records with an id greater than this (ids are time-ordered).
    pub after: Option<String>,
    /// Only records with an id less than this (the next page when newest first).
    pub before: Option<String>,
    /// Newest first (descending id) instead of oldest first.
    pub newest_first: bool,
    /// Page size.
    pub limit: u32,
}

/// A claim: ready outputs assigned to `mid_name`, up to `capacity` per priority.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// The claiming MID's name (recorded as `claimed_by`).
    pub mid_name: &'a str,
    /// Free slots per priority.
    pub capacity: Capacity,
    /// Claim time.
    pub now: i64,
    /// Lease end.
    pub lease_until: i64,
}

/// A MID Server's registry row.
#[derive(Debug, Clone, PartialEq)]
pub struct MidRow {
    /// Registry id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Hash of the MID's session secret.
    pub secret_hash: String,
    /// X25519 public key, base64.
    pub public_key: String,
    /// Status.
    pub status: MidStatus,
    /// Why.
    pub status_reason: Option<String>,
    /// Build version.
    pub version: String,
    /// Host name.
    pub hostname: String,
    /// Protocol version.
    pub protocol_version: u32,
    /// Enrolled at.
    pub enrolled_at: i64,
    /// Validated at.
    pub validated_at: Option<i64>,
    /// Last contact.
    pub last_seen_at: Option<i64>,
    /// What its config declares it offers.
    pub declared_profile: MidProfile,
    /// What an admin set instead.
    pub admin_profile: Option<ProfileUpdate>,
    /// Health from the last heartbeat.
    pub health: Option<MidHealth>,
    /// An admin asked for a rekey that has not happened yet.
    pub rekey_requested: bool,
}

impl MidRow {
    /// What the MID offers: the admin's settings where given, else its declared ones.
    pub fn profile(&self) -> MidProfile {
        let admin = self.admin_profile.clone().unwrap_or_default();
        MidProfile {
            capabilities: admin
                .capabilities
                .unwrap_or_else(|| self.declared_profile.capabilities.clone()),
            applications: admin
                .applications
                .unwrap_or_else(|| self.declared_profile.applications.clone()),
            ip_ranges: admin
                .ip_ranges
                .unwrap_or_else(|| self.declared_profile.ip_ranges.clone()),
            // What it has probes for is a fact of its build, not a setting.
            topics: self.declared_profile.topics.clone(),
        }
    }
}

/// One recorded status change.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusChangeRow {
    /// When.
    pub at: i64,
    /// Before.
    pub from: Option<MidStatus>,
    /// After.
    pub to: MidStatus,
    /// Why.
    pub reason: String,
}

/// A cluster and its members in order.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRow {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: ClusterKind,
    /// Member MID names, best-ranked first.
    pub members: Vec<String>,
}

/// Outputs a MID has: assigned and waiting, and running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Assigned to it, still `ready`.
    pub ready: u64,
    /// Claimed by it, `processing`.
    pub processing: u64,
}

impl Load {
    /// Everything it has.
    pub fn total(&self) -> u64 {
        self.ready + self.processing
    }
}

/// An enrollment token as stored (hash only).
#[derive(Debug, Clone)]
pub struct EnrollmentTokenRow {
    /// Hash of the token.
    pub token_hash: String,
    /// Expiry.
    pub expires_at: i64,
    /// Validate MIDs enrolling with it at once.
    pub auto_validate: bool,
    /// Free text.
    pub note: Option<String>,
    /// Created at.
    pub created_at: i64,
}

/// A stored credential: the redacted form to show and the encrypted whole.
#[derive(Debug, Clone)]
pub struct CredentialRow {
    /// Id (stays the same across updates; sealing binds it).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Type name (`basic`, `oauth2_client_credentials` …).
    pub kind: String,
    /// The redacted spec, JSON.
    pub shown: String,
    /// The whole spec, JSON, encrypted by the vault.
    pub sealed: Vec<u8>,
    /// Id of the master key it was encrypted with.
    pub key_id: String,
    /// Created at.
    pub created_at: i64,
    /// Last changed at.
    pub updated_at: i64,
}

/// A stored alias.
#[derive(Debug, Clone)]
pub struct AliasRow {
    /// Id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Name of the credential it uses.
    pub credential: Option<String>,
    /// The alias, JSON.
    pub spec: String,
    /// Created at.
    pub created_at: i64,
    /// Last changed at.
    pub updated_at: i64,
}

/// A data source of Import Sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSourceRow {
    /// Unique name.
    pub name: String,
    /// The source as written, JSON.
    pub spec: String,
    /// Created at.
    pub created_at: i64,
    /// Last changed at.
    pub updated_at: i64,
    /// When the schedule runs it next.
    pub next_run_at: Option<i64>,
    /// What an interval counts from (the last scheduled run's start).
    pub schedule_anchor: Option<i64>,
    /// The highest change marker of the last complete run.
    pub marker_value: Option<String>,
    /// The newest import set's id.
    pub last_import_set: Option<String>,
}

/// One import set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSetRow {
    /// Id.
    pub id: String,
    /// The data source's name.
    pub source: String,
    /// `file`, `ldap` or `sql`.
    pub kind: String,
    /// `manual` or `schedule`.
    pub trigger: String,
    /// The run's ECC output.
    pub output_id: String,
    /// `running`, `complete`, `complete_with_errors`, `error`, `cancelled`.
    pub state: String,
    /// Started at.
    pub started_at: i64,
    /// Finished at.
    pub finished_at: Option<i64>,
    /// When retention deletes it.
    pub expires_at: Option<i64>,
    /// Rows stored.
    pub rows: u64,
    /// Source rows refused.
    pub errors: u64,
    /// The columns, JSON.
    pub columns: Option<String>,
    /// The marker it read from.
    pub marker_from: Option<String>,
    /// The highest marker it saw.
    pub marker_to: Option<String>,
    /// Why it failed, or more to know.
    pub detail: Option<String>,
}

/// A discovery run.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryRunRow {
    /// Id.
    pub id: String,
    /// What it was asked, JSON.
    pub request: String,
    /// `pinging`, `scanning`, `complete`, `error`.
    pub state: String,
    /// Started at.
    pub started_at: i64,
    /// Finished at.
    pub finished_at: Option<i64>,
    /// Its ping's output.
    pub ping_output: String,
    /// Its scan's output.
    pub scan_output: Option<String>,
    /// Every job of the run by stage, JSON ([`crate::discovery::runs::RunJobs`]).
    pub jobs: Option<String>,
    /// The schedule that started it.
    pub schedule: Option<String>,
    /// Hosts that answered.
    pub hosts_alive: u64,
    /// Devices made.
    pub devices_new: u64,
    /// Devices updated.
    pub devices_updated: u64,
    /// Why it failed.
    pub detail: Option<String>,
}

/// A discovered device.
/// A discovery schedule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryScheduleRow {
    /// Name, unique.
    pub name: String,
    /// The [`openmid_proto::devices::DiscoverySchedule`], JSON.
    pub spec: String,
    /// Made at.
    pub created_at: i64,
    /// Changed at.
    pub updated_at: i64,
    /// When it runs next (none while paused).
    pub next_run_at: Option<i64>,
    /// Where its interval counts from.
    pub schedule_anchor: Option<i64>,
    /// Its newest run.
    pub last_run: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    /// Id.
    pub id: String,
    /// Address, unique.
    pub address: String,
    /// Class.
    pub class: String,
    /// Reasons, JSON array.
    pub evidence: String,
    /// Open ports, JSON array.
    pub open_ports: String,
    /// Its name, from what it said (TLS, SNMP sysName, SSH).
    pub name: Option<String>,
    /// What it said about itself, JSON.
    pub identity: Option<String>,
    /// Last ping's round trip.
    pub rtt_ms: Option<f64>,
    /// First seen at.
    pub first_seen: i64,
    /// Last seen at.
    pub last_seen: i64,
    /// The run that last saw it.
    pub last_run: String,
}

/// Look a credential up by id or by name.
#[derive(Debug, Clone, Copy)]
pub enum CredentialKey<'a> {
    /// Id.
    Id(&'a str),
    /// Name.
    Name(&'a str),
}

/// Look a MID up by registry id or by name.
#[derive(Debug, Clone, Copy)]
pub enum MidKey<'a> {
    /// Registry id.
    Id(&'a str),
    /// Name.
    Name(&'a str),
}

/// What [`Store::record_results`] did with one result.
#[derive(Debug, Clone)]
pub struct RecordedResult {
    /// The outcome acknowledged to the MID.
    pub outcome: AckOutcome,
    /// When recorded: the output as finished and the input written for it.
    pub finished: Option<Finished>,
    /// Whether the entry of the API call waiting on the output
    /// ([`ResultAudit::callers`]) was written with it.
    pub caller_audited: bool,
}

/// The audit entry of a finished job, if it gets one: given the MID's name, the
/// finished records and the time.
pub type JobAudit = fn(&str, &Finished, i64) -> Option<NewAuditEntry>;

/// Audit entries [`Store::record_results`] writes in the transaction of the results
/// they belong to, so that none of them costs a commit of its own (nor the MID's
/// acknowledgement, nor the waiting caller's answer, a wait for one).
#[derive(Debug, Clone, Default)]
pub struct ResultAudit {
    /// The entry a finished job gets for what it ran (a command, a statement), if
    /// any.
    pub job: Option<JobAudit>,
    /// Per result, in order: the entry of the API call waiting on its output,
    /// written only when that result finishes the output.
    pub callers: Vec<Option<NewAuditEntry>>,
}

impl ResultAudit {
    /// The entries to write beside the `index`th result, recorded as `recorded`.
    pub(crate) fn entries(
        &mut self,
        index: usize,
        mid_name: &str,
        recorded: &mut RecordedResult,
        now: i64,
    ) -> Vec<NewAuditEntry> {
        let Some(finished) = &recorded.finished else {
            return Vec::new();
        };
        let mut entries: Vec<NewAuditEntry> = self
            .job
            .and_then(|job| job(mid_name, finished, now))
            .into_iter()
            .collect();
        if let Some(caller) = self.callers.get_mut(index).and_then(Option::take) {
            entries.push(caller);
            recorded.caller_audited = true;
        }
        entries
    }
}

/// An output that has just finished, and its input.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The output, as updated.
    pub output: Record,
    /// The input record answering it.
    pub input: Record,
}

/// What [`Store::cancel_output`] did.
#[derive(Debug, Clone)]
pub enum Cancelled {
    /// It was waiting: it is `cancelled` now.
    Now(Record),
    /// It runs: its MID must stop it; it ends `cancelled` when it ends.
    Stopping(Record),
    /// It had already finished: nothing changed.
    AlreadyFinished(Record),
}

/// What a heartbeat's session says about the MID process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    /// The same process as before (or a MID that sends no session).
    Same,
    /// A process this instance has not heard from before: `previous` is the session it
    /// replaces (`None` when the registry had none).
    New {
        /// The session recorded before.
        previous: Option<String>,
    },
}

/// An `Idempotency-Key` with the submission it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// The client's key.
    pub key: String,
    /// SHA-256 of the request, so a key reused for another request is refused.
    pub request_hash: String,
    /// Keys used before this time are forgotten (the documented window).
    pub not_before: i64,
    /// Now.
    pub now: i64,
}

/// The submission an idempotency key was first used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentHit {
    /// Its output.
    pub output_id: String,
    /// Its request's hash.
    pub request_hash: String,
}

/// What [`Store::store_output_chunks`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunksStored {
    /// The MID holds that attempt: `stored` chunks are new, `duplicate` were there.
    Stored {
        /// Chunks written now.
        stored: u64,
        /// Chunks already stored (a retried post), left as they were.
        duplicate: u64,
    },
    /// The MID does not hold that attempt (now: the output's current attempt, or
    /// `None` when the output is finished, someone else's or unknown): nothing stored.
    NotHeld {
        /// The output's attempt now, while it runs.
        current_attempt: Option<u32>,
    },
}
