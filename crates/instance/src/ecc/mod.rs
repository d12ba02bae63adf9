//! The durable ECC queue and the registry tables behind one [`Store`] trait.
//!
//! Every operation is one transaction with a meaning of its own (claim, record results,
//! expire leases …), never a generic "run this SQL": so SQLite (one writer) and
//! PostgreSQL (`FOR UPDATE SKIP LOCKED`, several instance nodes) can each implement it
//! the way that is right for them.

mod migrations;
mod rows;
pub mod sqlite;

use async_trait::async_trait;
use openmid_proto::api::{ClusterKind, MidHealth, ProfileUpdate};
use openmid_proto::ecc::{EccRecord, Priority, Queue, State, Topic};
use openmid_proto::mid::{AckOutcome, Capacity, JobRef, MidProfile, MidStatus, WorkResult};
use openmid_proto::time::rfc3339;
use std::collections::HashMap;

pub use sqlite::SqliteStore;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
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
}

impl Record {
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
        }
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

/// Instance settings (the store's own key–value table).
#[async_trait]
pub trait SettingsStore: Send + Sync + 'static {
    /// Reads an instance setting.
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Writes an instance setting.
    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
}

/// The MID registry: enrollment, MIDs, their status and health, clusters.
#[async_trait]
pub trait RegistryStore: Send + Sync + 'static {
    /// Stores a new enrollment token.
    async fn insert_enrollment_token(&self, token: &EnrollmentTokenRow) -> Result<(), StoreError>;
    /// Consumes the token and registers the MID, atomically. The MID's status is set
    /// from the token (`up` when it auto-validates).
    async fn enroll_mid(&self, token_hash: &str, mid: &MidRow) -> Result<MidRow, EnrollError>;
    /// Finds a MID.
    async fn get_mid(&self, key: MidKey<'_>) -> Result<Option<MidRow>, StoreError>;
    /// All MIDs, by name.
    async fn list_mids(&self) -> Result<Vec<MidRow>, StoreError>;
    /// Sets a MID's status (by name) and records the change in its history — only if
    /// the current status is one of `only_from` (any, when empty) and differs. Returns
    /// the row as it is afterwards, or `None` if there is no such MID.
    async fn set_mid_status(
        &self,
        name: &str,
        only_from: &[MidStatus],
        status: MidStatus,
        reason: &str,
        now: i64,
    ) -> Result<Option<MidRow>, StoreError>;
    /// A MID's status changes, newest first.
    async fn mid_history(&self, id: &str, limit: u32) -> Result<Vec<StatusChangeRow>, StoreError>;
    /// Removes a MID from the registry with its history; outputs addressed to it alone
    /// that still wait end in `error`. Returns how many outputs that ended.
    async fn delete_mid(&self, id: &str, name: &str, now: i64) -> Result<u64, StoreError>;
    /// Records contact from a MID.
    async fn mark_mid_seen(&self, id: &str, now: i64) -> Result<(), StoreError>;
    /// Records a heartbeat: contact, health, the profile its config declares and the
    /// MID process's session. Returns the session recorded before when this one differs
    /// (a new process of the MID: what the old one held must be released).
    async fn record_heartbeat(
        &self,
        id: &str,
        health: &MidHealth,
        declared: &MidProfile,
        session: Option<&str>,
        now: i64,
    ) -> Result<SessionChange, StoreError>;
    /// Sets (or with `None` drops) an admin's profile settings.
    async fn set_admin_profile(
        &self,
        name: &str,
        profile: Option<&ProfileUpdate>,
    ) -> Result<Option<MidRow>, StoreError>;
    /// Asks (or stops asking) a MID to rekey.
    async fn request_rekey(
        &self,
        name: &str,
        requested: bool,
    ) -> Result<Option<MidRow>, StoreError>;
    /// Stores a MID's new key and secret hash and clears the request.
    async fn rekey_mid(
        &self,
        id: &str,
        secret_hash: &str,
        public_key: &str,
    ) -> Result<(), StoreError>;

    /// Creates or replaces a cluster with its members in order.
    async fn put_cluster(
        &self,
        name: &str,
        kind: ClusterKind,
        members: &[String],
        now: i64,
    ) -> Result<(), StoreError>;
    /// One cluster.
    async fn get_cluster(&self, name: &str) -> Result<Option<ClusterRow>, StoreError>;
    /// All clusters, by name.
    async fn list_clusters(&self) -> Result<Vec<ClusterRow>, StoreError>;
    /// Deletes a cluster; returns whether it existed.
    async fn delete_cluster(&self, name: &str) -> Result<bool, StoreError>;
}

/// Credentials (sealed by the vault) and aliases.
#[async_trait]
pub trait ConnectionStore: Send + Sync + 'static {
    /// Creates or replaces a credential by name (the id and creation time of an existing
    /// one are kept).
    async fn put_credential(&self, row: &CredentialRow) -> Result<CredentialRow, StoreError>;
    /// One credential.
    async fn get_credential(
        &self,
        key: CredentialKey<'_>,
    ) -> Result<Option<CredentialRow>, StoreError>;
    /// All credentials, by name.
    async fn list_credentials(&self) -> Result<Vec<CredentialRow>, StoreError>;
    /// Deletes a credential unless an alias uses it ([`StoreError::InUse`]); returns
    /// whether it existed.
    async fn delete_credential(&self, name: &str) -> Result<bool, StoreError>;
    /// Creates or replaces an alias by name (id and creation time are kept). Fails
    /// with [`StoreError::MissingCredential`] when its credential does not exist
    /// (checked in the same transaction, so a concurrent delete cannot slip in).
    async fn put_alias(&self, row: &AliasRow) -> Result<AliasRow, StoreError>;
    /// One alias by name.
    async fn get_alias(&self, name: &str) -> Result<Option<AliasRow>, StoreError>;
    /// All aliases, by name.
    async fn list_aliases(&self) -> Result<Vec<AliasRow>, StoreError>;
    /// Deletes an alias; returns whether it existed.
    async fn delete_alias(&self, name: &str) -> Result<bool, StoreError>;
}

/// The ECC queue: outputs and inputs, claims and leases, results, cancels, streamed
/// output, purging.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Writes a new output record (state `ready`).
    async fn insert_output(&self, record: &Record) -> Result<(), StoreError>;
    /// Writes a new output record unless `key` was used by a submission since
    /// `key.not_before`: then nothing is written and the earlier one is returned. The
    /// check and the write are one transaction, so two concurrent retries make one
    /// output.
    async fn insert_output_once(
        &self,
        record: &Record,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotentHit>, StoreError>;
    /// The submission made with `key` since `not_before`, if any.
    async fn find_idempotent(
        &self,
        key: &str,
        not_before: i64,
    ) -> Result<Option<IdempotentHit>, StoreError>;
    /// Reads one record.
    async fn get_record(&self, id: &str) -> Result<Option<Record>, StoreError>;
    /// The input record answering an output, if any.
    async fn input_for(&self, output_id: &str) -> Result<Option<Record>, StoreError>;
    /// One page of records, oldest first.
    async fn list_records(&self, filter: &RecordFilter) -> Result<Vec<Record>, StoreError>;
    /// Claims ready outputs for a MID: each claimed output becomes `processing` with a
    /// lease, `attempt + 1` and `claimed_by`, in the same transaction that selects it.
    /// Most urgent priority first, oldest first within a priority.
    async fn claim_ready_outputs(&self, claim: &Claim<'_>) -> Result<Vec<Record>, StoreError>;
    /// Records a batch of results from one MID in one transaction, exactly once each:
    /// a result for the current attempt becomes the output's input record and finishes
    /// the output; a repeat is `duplicate`; a superseded attempt is discarded.
    async fn record_results(
        &self,
        mid_name: &str,
        results: &[WorkResult],
        now: i64,
    ) -> Result<Vec<RecordedResult>, StoreError>;
    /// Extends the leases of jobs a MID still runs; returns the jobs it no longer holds.
    async fn renew_leases(
        &self,
        mid_name: &str,
        jobs: &[JobRef],
        lease_until: i64,
    ) -> Result<Vec<JobRef>, StoreError>;
    /// Returns outputs whose lease lapsed to `ready` (or ends them in `error` when
    /// attempts are used up or they are at-most-once). Returns the changed outputs.
    async fn expire_leases(&self, now: i64) -> Result<Vec<Record>, StoreError>;
    /// Ends the leases of everything `mid_name` runs at once (it is down or
    /// invalidated, or a new process of it holds only `keep`), with the same rules as
    /// [`Store::expire_leases`].
    async fn release_leases_of(
        &self,
        mid_name: &str,
        keep: &[JobRef],
        reason: &str,
        now: i64,
    ) -> Result<Vec<Record>, StoreError>;
    /// Gives every running output a lease of at least `lease_until` (at instance start:
    /// the time the instance was down must not count against the MIDs' leases).
    async fn extend_all_leases(&self, lease_until: i64) -> Result<u64, StoreError>;
    /// Deletes up to `limit` finished outputs (with their inputs) that finished before
    /// `before`. Returns how many records went.
    async fn purge_finished(&self, before: i64, limit: u32) -> Result<u64, StoreError>;
    /// Cancels an output: a `ready` one ends `cancelled` at once; a `processing` one
    /// is marked, so its MID is told to stop and whatever ends it (its result, a
    /// lapsed lease) ends it `cancelled`. `None` when there is no such output.
    async fn cancel_output(
        &self,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Option<Cancelled>, StoreError>;
    /// Running outputs of `mid_name` that were cancelled and are not finished yet.
    async fn cancelled_running(&self, mid_name: &str) -> Result<Vec<JobRef>, StoreError>;
    /// Forgets idempotency keys made before `before`; returns how many went.
    async fn purge_idempotency_keys(&self, before: i64) -> Result<u64, StoreError>;
    /// Ready and running outputs per MID.
    async fn load_by_mid(&self) -> Result<HashMap<String, Load>, StoreError>;
    /// Ready outputs addressed to a cluster or `mid.auto` (the ones the instance may
    /// move between MIDs), oldest first.
    async fn movable_outputs(&self, limit: u32) -> Result<Vec<Record>, StoreError>;
    /// Stores chunks of a running command's output, if `mid_name` holds `attempt` of
    /// `output_id` now (checked in the same transaction); a chunk already stored under
    /// the same `(output, attempt, seq)` is left as it is.
    async fn store_output_chunks(
        &self,
        mid_name: &str,
        output_id: &str,
        attempt: u32,
        chunks: Vec<openmid_proto::command_output::DecodedChunk>,
    ) -> Result<ChunksStored, StoreError>;
    /// Moves the chunks of earlier attempts of `output_id` onto `attempt` (for a topic
    /// that resumes) and returns the data of the last one.
    async fn carry_output_chunks(
        &self,
        output_id: &str,
        attempt: u32,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// Chunks of `attempt` of `output_id` with `seq` above `after` (all with `None`),
    /// ascending, at most `limit` of them and about `max_bytes` of data (at least one).
    async fn output_chunks(
        &self,
        output_id: &str,
        attempt: u32,
        after: Option<u64>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<openmid_proto::command_output::DecodedChunk>, StoreError>;
    /// Assigns a ready output to `to` (None: nobody yet), if it is still ready and
    /// assigned to `from`. Returns whether it changed.
    async fn assign_output(
        &self,
        id: &str,
        from: Option<&str>,
        to: Option<&str>,
        selection: &str,
    ) -> Result<bool, StoreError>;
}

/// The whole store, split by concern. Implementations: [`SqliteStore`] (embedded
/// default); PostgreSQL follows with the scale-out work. Code that uses the store
/// imports the concern it needs (`use crate::ecc::QueueStore`), or all of them from
/// [`parts`].
pub trait Store: SettingsStore + RegistryStore + ConnectionStore + QueueStore {}

impl<T: SettingsStore + RegistryStore + ConnectionStore + QueueStore> Store for T {}

/// Every concern of the store, to import at once: `use crate::ecc::parts::*;`.
pub mod parts {
    pub use super::{ConnectionStore, QueueStore, RegistryStore, SettingsStore};
}
