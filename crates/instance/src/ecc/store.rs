//! The store's interface, split by concern: settings, the MID registry, credentials
//! and aliases, the ECC queue. A backend implements all four.

use super::*;
use std::sync::Arc;

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
    /// One page of records, oldest first (newest first when the filter says so).
    async fn list_records(&self, filter: &RecordFilter) -> Result<Vec<Record>, StoreError>;
    /// Claims ready outputs for a MID: each claimed output becomes `processing` with a
    /// lease, `attempt + 1` and `claimed_by`, in the same transaction that selects it.
    /// Most urgent priority first, oldest first within a priority.
    async fn claim_ready_outputs(&self, claim: &Claim<'_>) -> Result<Vec<Record>, StoreError>;
    /// Records a batch of results from one MID in one transaction, exactly once each:
    /// a result for the current attempt becomes the output's input record and finishes
    /// the output; a repeat is `duplicate`; a superseded attempt is discarded.
    /// `audit`: the entries written in the same transaction (see [`ResultAudit`]).
    async fn record_results(
        &self,
        mid_name: &str,
        results: &[WorkResult],
        audit: ResultAudit,
        now: i64,
    ) -> Result<Vec<RecordedResult>, StoreError>;
    /// Writes the records of express calls (`durability: relaxed`) that already ran:
    /// each one's output, finished, and its input, all in one transaction. Calls
    /// already written (same output id) are left as they are. `audit` (the entries of
    /// the API calls that made them, and of what they ran) go in the same transaction:
    /// one write for the lot instead of one per entry. Shared rather than borrowed:
    /// a store that writes on a thread of its own takes them there without a copy.
    async fn record_express(
        &self,
        finished: Arc<[Finished]>,
        audit: Arc<[NewAuditEntry]>,
    ) -> Result<(), StoreError>;
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
    /// The last chunk `attempt` of `output_id` stored, if any.
    async fn last_output_chunk(
        &self,
        output_id: &str,
        attempt: u32,
    ) -> Result<Option<openmid_proto::command_output::DecodedChunk>, StoreError>;
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

/// Import Sets: data sources and the import sets their runs fill (their rows are the
/// `rows` chunks of each run's output, read through [`QueueStore::output_chunks`]).
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// Makes or replaces a data source (by name), `marker_value` as given; the
    /// `created_at` and `last_import_set` of one that exists stay.
    async fn put_data_source(&self, row: &DataSourceRow) -> Result<DataSourceRow, StoreError>;
    /// One data source.
    async fn get_data_source(&self, name: &str) -> Result<Option<DataSourceRow>, StoreError>;
    /// Every data source, by name.
    async fn list_data_sources(&self) -> Result<Vec<DataSourceRow>, StoreError>;
    /// Deletes a data source (its import sets stay until their retention).
    async fn delete_data_source(&self, name: &str) -> Result<bool, StoreError>;
    /// Data sources whose `next_run_at` is at or before `now`, soonest first.
    async fn due_data_sources(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<DataSourceRow>, StoreError>;
    /// Sets when a data source runs next, if its `next_run_at` is still `expected`
    /// (so two schedulers cannot both take one due run). Returns whether it changed.
    async fn reschedule_data_source(
        &self,
        name: &str,
        expected: Option<i64>,
        next_run_at: Option<i64>,
        anchor: Option<i64>,
    ) -> Result<bool, StoreError>;
    /// Records a new import set and makes it its source's last.
    async fn insert_import_set(&self, row: &ImportSetRow) -> Result<(), StoreError>;
    /// One import set.
    async fn get_import_set(&self, id: &str) -> Result<Option<ImportSetRow>, StoreError>;
    /// Import sets, newest first: of one source when given, in one state when given,
    /// started before `before` when given.
    async fn list_import_sets(
        &self,
        source: Option<&str>,
        state: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ImportSetRow>, StoreError>;
    /// Ends a running import set (state, counts, columns, markers, detail, expiry);
    /// with `marker_value`, the source's marker moves on in the same transaction.
    /// Returns false when it had already ended.
    async fn finish_import_set(
        &self,
        row: &ImportSetRow,
        marker_value: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Deletes up to `limit` import sets that expired before `now`, with their
    /// output's records and rows. Returns how many went.
    async fn purge_import_sets(&self, now: i64, limit: u32) -> Result<u64, StoreError>;
}

/// Discovery: its runs and the devices they file.
#[async_trait]
pub trait DiscoveryStore: Send + Sync {
    /// Records a new run.
    async fn insert_discovery_run(&self, row: &DiscoveryRunRow) -> Result<(), StoreError>;
    /// One run.
    async fn get_discovery_run(&self, id: &str) -> Result<Option<DiscoveryRunRow>, StoreError>;
    /// Runs, newest first; in one state, of one schedule, when given.
    async fn list_discovery_runs(
        &self,
        state: Option<&str>,
        schedule: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DiscoveryRunRow>, StoreError>;
    /// Moves a run on (state, outputs, counts, detail) if it is still in `from`.
    /// Returns whether it moved.
    async fn update_discovery_run(
        &self,
        row: &DiscoveryRunRow,
        from: &str,
    ) -> Result<bool, StoreError>;
    /// Files devices by address — a new address makes a device, a known one is
    /// updated in place (its id and `first_seen` kept) — and ends the run (`finish`,
    /// if it is still in state `from`), in one transaction, so a run's devices and its
    /// counts are never half-written. Returns (new, updated), or `None` when the run
    /// had already moved on.
    async fn file_devices(
        &self,
        devices: &[DeviceRow],
        finish: &DiscoveryRunRow,
        from: &str,
    ) -> Result<Option<(u64, u64)>, StoreError>;
    /// Devices by address, after `after` (an address), at most `limit`; of one class
    /// when given.
    async fn list_devices(
        &self,
        class: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeviceRow>, StoreError>;
    /// One device, by id or address.
    async fn get_device(&self, key: &str) -> Result<Option<DeviceRow>, StoreError>;
    /// Makes or replaces a discovery schedule (its `last_run` kept).
    async fn put_discovery_schedule(&self, row: &DiscoveryScheduleRow) -> Result<(), StoreError>;
    /// One discovery schedule.
    async fn get_discovery_schedule(
        &self,
        name: &str,
    ) -> Result<Option<DiscoveryScheduleRow>, StoreError>;
    /// Every discovery schedule, by name.
    async fn list_discovery_schedules(&self) -> Result<Vec<DiscoveryScheduleRow>, StoreError>;
    /// Deletes a discovery schedule (its runs stay). Returns whether it existed.
    async fn delete_discovery_schedule(&self, name: &str) -> Result<bool, StoreError>;
    /// Discovery schedules whose `next_run_at` is at or before `now`, soonest first.
    async fn due_discovery_schedules(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<DiscoveryScheduleRow>, StoreError>;
    /// Sets when a discovery schedule runs next, if its `next_run_at` is still
    /// `expected` — the compare-and-set data sources use, so two schedulers cannot
    /// both take one due run. Returns whether it changed.
    async fn reschedule_discovery_schedule(
        &self,
        name: &str,
        expected: Option<i64>,
        next_run_at: Option<i64>,
        anchor: Option<i64>,
    ) -> Result<bool, StoreError>;
}

/// The store as one thing: what belongs to no single concern.
#[async_trait]
pub trait Lifecycle: Send + Sync + 'static {
    /// Lets queued writes finish and releases the database; calls after it fail with
    /// an error rather than hang.
    async fn close(&self);
}

/// Metric collection: scrape targets, the assignments sent to MIDs, and samples.
#[async_trait]
pub trait MetricsStore: Send + Sync {
    /// Writes a target (replacing one of the same agent and name). Returns whether it
    /// is new.
    async fn put_metric_target(&self, row: &MetricTargetRow) -> Result<bool, StoreError>;
    /// Deletes a target. Returns whether there was one.
    async fn delete_metric_target(&self, agent: &str, name: &str) -> Result<bool, StoreError>;
    /// Targets by agent and name; of one agent when given.
    async fn list_metric_targets(
        &self,
        agent: Option<&str>,
    ) -> Result<Vec<MetricTargetRow>, StoreError>;
    /// The assignment last sent to each MID.
    async fn list_metric_assignments(&self) -> Result<Vec<MetricAssignmentRow>, StoreError>;
    /// Records the assignment sent to a MID.
    async fn put_metric_assignment(&self, row: &MetricAssignmentRow) -> Result<(), StoreError>;
    /// Stores a MID's batch once: returns `true` when (mid, seq) had been stored
    /// before (nothing is written again).
    async fn store_samples(
        &self,
        mid: &str,
        batch: &openmid_proto::metrics::SampleBatch,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Series of the metric `name` (every series when `None`), at most `limit`.
    async fn find_series(
        &self,
        name: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MetricSeriesRow>, StoreError>;
    /// Samples of `series` with `from <= t_ms <= to`, by time, at most `limit`.
    async fn read_samples(
        &self,
        series: i64,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<(i64, f64)>, StoreError>;
    /// Samples stored after the sample id `after`, in id order, at most `limit` (the
    /// remote-write forwarder's cursor).
    async fn samples_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<MetricSampleRow>, StoreError>;
    /// Deletes up to `limit` samples older than `before` (and batch keys received
    /// before it). Returns how many samples went.
    async fn purge_samples(&self, before: i64, limit: u32) -> Result<u64, StoreError>;
}

/// Several nodes on one database: their liveness, where each MID's long-poll is
/// attached, named leases one node holds at a time, and wake-ups between nodes.
#[async_trait]
pub trait CoordinationStore: Send + Sync {
    /// Writes that `node` is alive (inserting it the first time).
    async fn node_alive(&self, node: &NodeRow) -> Result<(), StoreError>;
    /// Nodes seen alive at or after `since`, by start time.
    async fn live_nodes(&self, since: i64) -> Result<Vec<NodeRow>, StoreError>;
    /// Removes a node that stops cleanly, with the presence rows and leases it holds.
    async fn remove_node(&self, id: &str) -> Result<(), StoreError>;
    /// Records that `mid`'s long-poll is attached to `node` from `now`.
    async fn set_presence(&self, mid: &str, node: &str, now: i64) -> Result<(), StoreError>;
    /// Where `mid`'s long-poll was last attached.
    async fn presence_of(&self, mid: &str) -> Result<Option<PresenceRow>, StoreError>;
    /// Forgets where `mid` was attached if it was `node` (a node that saw it go).
    async fn clear_presence(&self, mid: &str, node: &str) -> Result<(), StoreError>;
    /// Forgets every MID's presence (the first node to start after every node was
    /// down: nobody is attached anywhere).
    async fn clear_all_presence(&self) -> Result<(), StoreError>;
    /// MIDs that are `up` and attached to a node not seen alive since `since`: their
    /// node died and they have not come back through another.
    async fn orphaned_mids(&self, since: i64) -> Result<Vec<PresenceRow>, StoreError>;
    /// Takes or keeps the lease `name` for `holder` until `until`: true when `holder`
    /// holds it now (it was free, lapsed before `now`, or already `holder`'s).
    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError>;
    /// Who holds the lease `name` at `now` (none when it lapsed or was given up).
    async fn lease_holder(&self, name: &str, now: i64) -> Result<Option<String>, StoreError>;
    /// Gives the lease `name` up if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
    /// Whether other nodes may share this database (and hear [`announce`]).
    ///
    /// [`announce`]: CoordinationStore::announce
    fn is_shared(&self) -> bool {
        false
    }
    /// Tells the other nodes, after the writes these are about committed. A store no
    /// other node shares has no one to tell.
    async fn announce(&self, _from_node: &str, _batch: &[Announcement]) -> Result<(), StoreError> {
        Ok(())
    }
    /// Announcements from every node (this one's included: the receiver skips its
    /// own), until the store closes. `None` for a store nobody else shares. A lost
    /// connection is re-established by the backend, which then sends
    /// [`Heard::Reconnected`], since announcements made meanwhile are lost.
    async fn listen(&self) -> Result<Option<tokio::sync::mpsc::Receiver<Heard>>, StoreError> {
        Ok(None)
    }
}

/// What a node hears from the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// An announcement and the node that made it.
    Said(String, Announcement),
    /// The listening connection was lost and is back: anything may have been missed.
    Reconnected,
}

/// Dashboard sessions: kept in the store, so every instance node sharing it accepts a
/// session another node made. Only expired-or-not decides; the idle policy is the
/// dashboard's.
#[async_trait]
pub trait DashboardSessionStore: Send + Sync {
    /// Records a new session.
    async fn insert_dashboard_session(&self, row: &DashboardSessionRow) -> Result<(), StoreError>;
    /// The session with this id hash, if it has not expired by `now`.
    async fn get_dashboard_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<DashboardSessionRow>, StoreError>;
    /// Moves a session's expiry to `expires_at` (and its last use to `now`), if it
    /// has not expired by `now`. Returns whether it did.
    async fn touch_dashboard_session(
        &self,
        id_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError>;
    /// Ends a session (logout). Returns whether there was one.
    async fn delete_dashboard_session(&self, id_hash: &str) -> Result<bool, StoreError>;
    /// Deletes sessions that expired before `now`. Returns how many went.
    async fn purge_dashboard_sessions(&self, now: i64) -> Result<u64, StoreError>;
}

/// The whole store, split by concern. Implementations: [`SqliteStore`] (embedded
/// default) and `PgStore` (PostgreSQL), both held to the conformance suite in
/// `tests/conformance/`. Code that uses the store
/// imports the concern it needs (`use crate::ecc::QueueStore`), or all of them from
/// [`parts`].
pub trait Store:
    Lifecycle
    + SettingsStore
    + RegistryStore
    + ConnectionStore
    + QueueStore
    + ImportStore
    + DiscoveryStore
    + MetricsStore
    + CoordinationStore
    + AuditStore
    + super::DepthStore
    + DashboardSessionStore
{
}

impl<T> Store for T where
    T: Lifecycle
        + SettingsStore
        + RegistryStore
        + ConnectionStore
        + QueueStore
        + ImportStore
        + DiscoveryStore
        + MetricsStore
        + CoordinationStore
        + AuditStore
        + super::DepthStore
        + DashboardSessionStore
{
}

/// Every concern of the store, to import at once: `use crate::ecc::parts::*;`.
pub mod parts {
    pub use super::{
        super::DepthStore, ConnectionStore, CoordinationStore, DashboardSessionStore,
        DiscoveryStore, ImportStore, Lifecycle, MetricsStore, QueueStore, RegistryStore,
        SettingsStore,
    };
    pub use crate::ecc::AuditStore;
}
