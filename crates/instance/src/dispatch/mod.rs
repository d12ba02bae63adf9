//! Dispatch: turns API requests into output records and assigns each to a MID (directly,
//! through a cluster, or by `mid.auto` selection), hands them out by long-poll, records
//! results exactly once, notices MIDs that go away, and moves their work elsewhere.

pub mod handoff;
mod output;
pub mod payload;
pub mod presence;
pub mod selection;
pub mod signals;

use crate::blobs::BlobStore;
use crate::config::InstanceConfig;
use crate::connections::{self, Connections};
use crate::ecc::{
    Cancelled, Claim, Finished, IdempotencyKey, IdempotentHit, Load, MidKey, MidRow, Record,
    RecordedResult, SessionChange, Store, StoreError,
};
use crate::vault::Vault;
use handoff::ParkedPolls;
use openmid_proto::api::{MidHealth, NewOutput};
use openmid_proto::ecc::{Agent, Priority, Queue, State, Topic};
use openmid_proto::mid::{
    Ack, AckOutcome, HeartbeatRequest, HeartbeatResponse, JobRef, MidStatus, PollRequest,
    PollResponse, RekeyRequest, ResultsRequest, ResultsResponse, WorkItem,
};
use openmid_proto::time::{now_ms, rfc3339};
use presence::Presence;
use selection::{Choice, Needs};
use signals::Signals;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long an `Idempotency-Key` is remembered: a retry within it gets the first
/// output, a later one makes a new output.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

fn idempotency_window_ms() -> i64 {
    IDEMPOTENCY_WINDOW.as_millis() as i64
}

/// A client's `Idempotency-Key` and the hash of the request it came with.
#[derive(Debug, Clone)]
pub struct Idempotency {
    /// The key as the client sent it.
    pub key: String,
    /// SHA-256 (hex) of what the request asked for.
    pub request_hash: String,
}

/// A submitted output, and whether it was written by an earlier request with the
/// same idempotency key.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The output.
    pub record: Record,
    /// Written earlier; nothing new was queued.
    pub replayed: bool,
}

/// Writes an output, once per idempotency key when one is given.
async fn insert(
    store: &dyn Store,
    record: &Record,
    key: Option<&IdempotencyKey>,
) -> Result<Option<IdempotentHit>, StoreError> {
    match key {
        Some(key) => store.insert_output_once(record, key).await,
        None => store.insert_output(record).await.map(|()| None),
    }
}

/// Largest batch of results accepted in one post.
pub const MAX_RESULTS_PER_POST: usize = 1000;

/// Errors of dispatch operations.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// A request field is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob store failed.
    #[error("blob store: {0}")]
    Blob(String),
    /// A stored credential could not be encrypted or decrypted.
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    /// An `Idempotency-Key` already used for a different request.
    #[error(
        "Idempotency-Key `{0}` was used for a different request within the last 24 hours: use a new key for a new request"
    )]
    IdempotencyKeyReused(String),
}

/// A [`DispatchError::Invalid`] for `field`.
pub(crate) fn invalid(field: &str, message: impl Into<String>) -> DispatchError {
    DispatchError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// What an admin can do to a MID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// Let a pending MID take work.
    Validate,
    /// Take no new work; stay connected.
    Pause,
    /// Take work again after a pause or drain.
    Resume,
    /// Finish running work, take no more, then be `drained`.
    Drain,
    /// Refuse the MID everywhere, at once and for good.
    Invalidate,
}

impl AdminAction {
    /// Parses the URL word.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "validate" => AdminAction::Validate,
            "pause" => AdminAction::Pause,
            "resume" => AdminAction::Resume,
            "drain" => AdminAction::Drain,
            "invalidate" => AdminAction::Invalidate,
            _ => return None,
        })
    }

    fn transition(self) -> (&'static [MidStatus], MidStatus, &'static str) {
        use MidStatus::*;
        match self {
            AdminAction::Validate => (&[ValidationPending], Up, "validated by an admin"),
            AdminAction::Pause => (&[Up, Down, Draining, Drained], Paused, "paused by an admin"),
            AdminAction::Resume => (&[Paused, Draining, Drained], Up, "resumed by an admin"),
            AdminAction::Drain => (
                &[Up, Down, Paused],
                Draining,
                "draining: finishing running work",
            ),
            AdminAction::Invalidate => (
                &[
                    ValidationPending,
                    Up,
                    Down,
                    Paused,
                    Draining,
                    Drained,
                    Upgrading,
                ],
                Invalidated,
                "invalidated by an admin",
            ),
        }
    }
}

/// The dispatcher: shared by the API handlers and the background sweeper.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    config: Arc<InstanceConfig>,
    /// "New work for MID X" (key: `mid.server.X`).
    agents: Signals,
    /// "Output X finished" (key: output id).
    outputs: Signals,
    /// "Output X has new streamed output, or finished" (key: output id).
    progress: Signals,
    presence: Arc<Presence>,
    /// Long-polls waiting for work, for hand-off.
    parked: Arc<ParkedPolls>,
    /// Outputs just finished that an API call waits for: it takes them from here
    /// instead of reading them back from the store.
    finished: std::sync::Mutex<HashMap<String, Finished>>,
    rebalance_wanted: AtomicBool,
    /// Cancelled jobs to tell their MID about in its next poll answer, by MID name
    /// (its heartbeat tells it again from the store, should this be lost).
    cancels: std::sync::Mutex<HashMap<String, Vec<JobRef>>>,
    vault: Arc<Vault>,
    blobs: Arc<BlobStore>,
}

fn mid_key(name: &str) -> String {
    format!("mid.server.{name}")
}

/// The target IP of a payload, when it names one literally (for `mid.auto` IP ranges).
fn target_ip(topic: Topic, payload: &serde_json::Value) -> Option<IpAddr> {
    match topic {
        Topic::RESTProbe | Topic::SOAPProbe => {
            let url = reqwest::Url::parse(payload.get("url")?.as_str()?).ok()?;
            match url.host()? {
                url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
                url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
                url::Host::Domain(_) => None,
            }
        }
        _ => None,
    }
}

/// Capabilities a payload asks of its MID beyond its topic's (`mid_capabilities`).
fn more_capabilities(payload: &serde_json::Value) -> Vec<String> {
    payload
        .get("mid_capabilities")
        .and_then(|c| c.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Dispatcher {
    /// A dispatcher over `store`.
    pub fn new(store: Arc<dyn Store>, config: Arc<InstanceConfig>, vault: Arc<Vault>) -> Self {
        Self {
            blobs: Arc::new(BlobStore::new(
                config.data_dir.join("blobs"),
                config.max_blob_bytes,
            )),
            store,
            config,
            vault,
            agents: Signals::default(),
            outputs: Signals::default(),
            progress: Signals::default(),
            presence: Arc::new(Presence::default()),
            parked: Arc::new(ParkedPolls::default()),
            finished: std::sync::Mutex::new(HashMap::new()),
            rebalance_wanted: AtomicBool::new(true),
            cancels: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Large request and response bodies.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Credentials and aliases.
    pub fn connections(&self) -> Connections<'_> {
        Connections {
            store: self.store.as_ref(),
            vault: &self.vault,
        }
    }

    /// At instance start: nobody is connected yet, whatever the registry said before
    /// the stop. MIDs that were `up` become `down` until their first poll restores them,
    /// so no new work is assigned to a MID that may never come back; presence starts
    /// empty. Running work keeps its lease for one more `lease_ms` from now, plus the
    /// MIDs' longest reconnect back-off — the time the instance was down is not the
    /// MIDs' fault — so a MID that reconnects and heartbeats keeps its jobs, and one
    /// that does not loses them then.
    pub async fn start_fresh(&self) -> Result<(), DispatchError> {
        let now = now_ms();
        for mid in self.store.list_mids().await? {
            if mid.status == MidStatus::Up {
                self.store
                    .set_mid_status(
                        &mid.name,
                        &[MidStatus::Up],
                        MidStatus::Down,
                        "instance restarted: not reconnected yet",
                        now,
                    )
                    .await?;
            }
        }
        let reconnect = i64::try_from(openmid_proto::mid::MAX_RECONNECT_DELAY_MS).unwrap_or(0);
        let extended = self
            .store
            .extend_all_leases(now + self.lease_ms().saturating_add(reconnect))
            .await?;
        if extended > 0 {
            tracing::info!(
                outputs = extended,
                "running work keeps its lease while its MIDs reconnect"
            );
        }
        self.rebalance_wanted.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn choose(
        &self,
        agent: &Agent,
        needs: &Needs<'_>,
        mids: &[MidRow],
        load: &HashMap<String, Load>,
    ) -> Result<Choice, DispatchError> {
        Ok(match agent {
            Agent::Server(name) => Choice::Mid {
                name: name.clone(),
                why: format!("addressed to mid.server.{name}"),
                by_rank: false,
            },
            Agent::Cluster(name) => {
                let cluster = self
                    .store
                    .get_cluster(name)
                    .await?
                    .ok_or_else(|| invalid("agent", format!("no cluster named `{name}`")))?;
                selection::in_cluster(&cluster, mids, load, needs.avoid)
            }
            Agent::Auto => selection::auto(needs, mids, load),
        })
    }

    /// Checks and queues an output record, assigns it to a MID and wakes that MID.
    pub async fn submit(&self, new: NewOutput) -> Result<Record, DispatchError> {
        Ok(self.submit_once(new, None).await?.record)
    }

    /// The output an `Idempotency-Key` was first used for within
    /// [`IDEMPOTENCY_WINDOW`], if any; a key used for a different request is refused.
    pub async fn replayed(&self, key: &Idempotency) -> Result<Option<Record>, DispatchError> {
        let not_before = now_ms().saturating_sub(idempotency_window_ms());
        let Some(hit) = self.store.find_idempotent(&key.key, not_before).await? else {
            return Ok(None);
        };
        self.replay(key, hit).await
    }

    async fn replay(
        &self,
        key: &Idempotency,
        hit: IdempotentHit,
    ) -> Result<Option<Record>, DispatchError> {
        if hit.request_hash != key.request_hash {
            return Err(DispatchError::IdempotencyKeyReused(key.key.clone()));
        }
        // Gone only when purged by retention: then the key starts afresh.
        Ok(self.store.get_record(&hit.output_id).await?)
    }

    /// [`Dispatcher::submit`] with an optional `Idempotency-Key`: a submission whose key
    /// was used within [`IDEMPOTENCY_WINDOW`] writes nothing and returns the first
    /// output (`replayed`).
    pub async fn submit_once(
        &self,
        new: NewOutput,
        key: Option<&Idempotency>,
    ) -> Result<Submitted, DispatchError> {
        if let Some(key) = key
            && let Some(record) = self.replayed(key).await?
        {
            return Ok(Submitted {
                record,
                replayed: true,
            });
        }
        let agent: Agent = new
            .agent
            .parse()
            .map_err(|e: openmid_proto::ecc::InvalidAgent| invalid("agent", e.to_string()))?;
        if let Agent::Server(mid_name) = &agent {
            match self.store.get_mid(MidKey::Name(mid_name)).await? {
                None => {
                    return Err(invalid(
                        "agent",
                        format!("no MID named `{mid_name}` is enrolled"),
                    ));
                }
                Some(mid) if mid.status == MidStatus::Invalidated => {
                    return Err(invalid(
                        "agent",
                        format!("MID `{mid_name}` is invalidated: it will never run this"),
                    ));
                }
                Some(_) => {}
            }
        }
        payload::check(new.topic, &new.payload).map_err(|e| invalid(&e.field, e.message))?;
        if let Some(id) = new.payload.get("body_blob").and_then(|b| b.as_str())
            && new.topic == Topic::RESTProbe
        {
            let found = self
                .blobs
                .meta(id)
                .await
                .map_err(|e| DispatchError::Blob(e.to_string()))?;
            if found.is_none() {
                return Err(invalid(
                    "body_blob",
                    format!("no blob `{id}`: upload the body first (POST /api/v1/blobs)"),
                ));
            }
        }
        let max_attempts = new.max_attempts.unwrap_or(self.config.max_attempts);
        if !(1..=10).contains(&max_attempts) {
            return Err(invalid(
                "max_attempts",
                format!("must be 1–10, got {max_attempts}"),
            ));
        }
        for (field, value, limit) in [
            ("name", new.name.as_deref(), 1000),
            ("source", new.source.as_deref(), 200),
            ("correlator", new.correlator.as_deref(), 200),
            ("application", new.application.as_deref(), 100),
        ] {
            if value.is_some_and(|v| v.chars().count() > limit) {
                return Err(invalid(field, format!("longer than {limit} characters")));
            }
        }
        let (mids, load) = match agent {
            Agent::Server(_) => (Vec::new(), HashMap::new()),
            _ => (
                self.store.list_mids().await?,
                self.store.load_by_mid().await?,
            ),
        };
        let needs = Needs {
            capability: new.topic.capability(),
            application: new.application.as_deref(),
            target_ip: target_ip(new.topic, &new.payload),
            avoid: None,
            more_capabilities: more_capabilities(&new.payload),
            topic: Some(new.topic),
        };
        let (assigned_to, selection) = match self.choose(&agent, &needs, &mids, &load).await? {
            Choice::Mid { name, why, .. } => (Some(name), why),
            Choice::Nobody { why } if agent == Agent::Auto => return Err(invalid("agent", why)),
            Choice::Nobody { why } => (None, why),
        };
        let mut record = Record {
            id: uuid::Uuid::now_v7().to_string(),
            queue: Queue::Output,
            agent: agent.to_string(),
            topic: new.topic,
            name: new.name.unwrap_or_else(|| new.topic.to_string()),
            source: new.source.unwrap_or_else(|| "api".to_string()),
            payload: new.payload.to_string(),
            state: State::Ready,
            priority: new.priority.unwrap_or(Priority::Interactive),
            response_to: None,
            correlator: new.correlator,
            attempt: 0,
            max_attempts,
            at_most_once: new.at_most_once,
            error: None,
            claimed_by: None,
            lease_expires_at: None,
            created_at: now_ms(),
            claimed_at: None,
            processed_at: None,
            duration_ms: None,
            assigned_to,
            selection: Some(selection),
            application: new.application,
        };
        let reservation = record
            .assigned_to
            .as_deref()
            .and_then(|mid| self.parked.reserve(mid, record.priority));
        let stored_key = key.map(|k| {
            let now = now_ms();
            IdempotencyKey {
                key: k.key.clone(),
                request_hash: k.request_hash.clone(),
                not_before: now.saturating_sub(idempotency_window_ms()),
                now,
            }
        });
        let Some(reservation) = reservation else {
            if let Some(hit) = insert(self.store.as_ref(), &record, stored_key.as_ref()).await? {
                return self.raced(key, hit).await;
            }
            if let Some(mid) = &record.assigned_to {
                self.agents.signal(&mid_key(mid));
            }
            return Ok(Submitted {
                record,
                replayed: false,
            });
        };
        // Its MID is waiting in a poll with a free slot: write it claimed, hand it over.
        let now = now_ms();
        record.state = State::Processing;
        record.attempt = 1;
        record.claimed_by = record.assigned_to.clone();
        record.claimed_at = Some(now);
        record.lease_expires_at = Some(now + self.lease_ms());
        // On a task of its own: a caller that hangs up must not leave a record written
        // as claimed but never handed over (the poll waits for the reservation).
        let store = self.store.clone();
        let written = record.clone();
        let hit = tokio::spawn(async move {
            let hit = insert(store.as_ref(), &written, stored_key.as_ref()).await?;
            if hit.is_none() {
                reservation.hand_over(written);
            }
            Ok::<_, StoreError>(hit)
        })
        .await
        .map_err(|e| StoreError::Batch(format!("hand-off task: {e}")))??;
        if let Some(hit) = hit {
            return self.raced(key, hit).await;
        }
        Ok(Submitted {
            record,
            replayed: false,
        })
    }

    /// A concurrent submission with the same key won: answer with its output.
    async fn raced(
        &self,
        key: Option<&Idempotency>,
        hit: IdempotentHit,
    ) -> Result<Submitted, DispatchError> {
        let id = hit.output_id.clone();
        let record = match key {
            Some(key) => self.replay(key, hit).await?,
            None => None,
        };
        let record = record.ok_or_else(|| {
            DispatchError::Store(StoreError::Corrupt {
                id,
                detail: "idempotency key names a missing output".into(),
            })
        })?;
        Ok(Submitted {
            record,
            replayed: true,
        })
    }

    /// Cancels an output: a waiting one at once; a running one is stopped on its MID
    /// (told through its open poll at once, and by every heartbeat until it ends) and
    /// recorded `cancelled` with what it produced so far.
    pub async fn cancel(&self, id: &str) -> Result<Cancelled, DispatchError> {
        let cancelled = self
            .store
            .cancel_output(id, "cancelled by an admin", now_ms())
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no output record with id `{id}`")))?;
        match &cancelled {
            Cancelled::Now(output) => {
                tracing::info!(output = %output.id, "output cancelled before it ran");
                self.signal_finished(&output.id);
            }
            Cancelled::Stopping(output) => {
                if let Some(mid) = &output.claimed_by {
                    tracing::info!(output = %output.id, %mid, "output cancelled while running: telling its MID");
                    self.cancels
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(mid.clone())
                        .or_default()
                        .push(JobRef {
                            output_id: output.id.clone(),
                            attempt: output.attempt,
                        });
                    self.wake_mid(mid);
                }
            }
            Cancelled::AlreadyFinished(_) => {}
        }
        Ok(cancelled)
    }

    fn has_cancels(&self, mid: &str) -> bool {
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(mid)
            .is_some_and(|c| !c.is_empty())
    }

    fn take_cancels(&self, mid: &str) -> Vec<JobRef> {
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(mid)
            .unwrap_or_default()
    }

    /// Wakes a MID's long-poll (after validation or a status change).
    pub fn wake_mid(&self, name: &str) {
        self.agents.signal(&mid_key(name));
    }

    /// A MID back in touch after being `down` is `up` again.
    async fn restore_contact(&self, mid: &mut MidRow) -> Result<(), DispatchError> {
        if mid.status == MidStatus::Down
            && let Some(row) = self
                .store
                .set_mid_status(
                    &mid.name,
                    &[MidStatus::Down],
                    MidStatus::Up,
                    "contact restored",
                    now_ms(),
                )
                .await?
        {
            tracing::info!(mid = %mid.name, "MID back in touch: up");
            *mid = row;
            self.rebalance_wanted.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A MID's long-poll: claims work at once if there is some, else waits until work
    /// is assigned to it, its status changes, the wait runs out or the instance stops.
    /// The poll also tells the instance the MID is alive: a poll whose connection drops
    /// starts the disconnect grace.
    pub async fn poll(
        &self,
        mid: &MidRow,
        req: &PollRequest,
        shutdown: &CancellationToken,
    ) -> Result<PollResponse, DispatchError> {
        let guard = self.presence.poll_started(&mid.name);
        let mut mid = mid.clone();
        self.restore_contact(&mut mid).await?;
        let wait = Duration::from_millis(req.wait_ms.min(self.config.max_poll_wait_ms));
        let deadline = Instant::now() + wait;
        let notify = self.agents.subscribe(&mid_key(&mid.name));
        // The MID has not heard its current status yet: answer at once.
        let mut news =
            req.known_status.is_some_and(|known| known != mid.status) || mid.rekey_requested;
        let work = loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if mid.status.takes_work() && req.capacity.total() > 0 {
                let now = now_ms();
                let claimed = self
                    .store
                    .claim_ready_outputs(&Claim {
                        mid_name: &mid.name,
                        capacity: req.capacity,
                        now,
                        lease_until: now + self.lease_ms(),
                    })
                    .await?;
                if !claimed.is_empty() {
                    break claimed;
                }
            }
            if news || self.has_cancels(&mid.name) {
                break Vec::new();
            }
            let parking = (mid.status.takes_work() && req.capacity.total() > 0)
                .then(|| self.parked.park(&mid.name, req.capacity));
            let handed = async {
                match &parking {
                    Some(p) => p.handed().await,
                    None => std::future::pending().await,
                }
            };
            let timed_out = tokio::select! {
                _ = &mut notified => false,
                _ = handed => false,
                _ = tokio::time::sleep_until(deadline) => true,
                _ = shutdown.cancelled() => true,
            };
            if let Some(parking) = parking {
                let handed = parking.close().await;
                if !handed.is_empty() {
                    break handed;
                }
            }
            if timed_out {
                break Vec::new();
            }
            // A status change (validation, pause …) or a rekey request is news: answer now.
            if let Some(row) = self.store.get_mid(MidKey::Id(&mid.id)).await? {
                news = row.status != mid.status || (row.rekey_requested && !mid.rekey_requested);
                mid = row;
            }
        };
        guard.finish();
        Ok(self.poll_answer(&mid, work).await)
    }

    async fn poll_answer(&self, mid: &MidRow, claimed: Vec<Record>) -> PollResponse {
        let mut work = Vec::with_capacity(claimed.len());
        for r in claimed {
            let payload: serde_json::Value =
                serde_json::from_str(&r.payload).unwrap_or(serde_json::Value::Null);
            let credential = match payload
                .get("credential")
                .and_then(|c| c.get("id"))
                .and_then(|id| id.as_str())
            {
                None => None,
                Some(credential_id) => {
                    // A failure here leaves the item without its credential: the MID
                    // then reports "credential not delivered" as the job's error,
                    // which names the problem where the caller looks.
                    match connections::seal_for_mid(
                        self.store.as_ref(),
                        &self.vault,
                        mid,
                        &r.id,
                        r.attempt,
                        credential_id,
                    )
                    .await
                    {
                        Ok(sealed) => sealed,
                        Err(e) => {
                            tracing::error!(output = %r.id, error = %e, "could not seal a credential for a MID");
                            None
                        }
                    }
                }
            };
            work.push(WorkItem {
                payload,
                output_id: r.id,
                attempt: r.attempt,
                topic: r.topic,
                name: r.name,
                priority: r.priority,
                credential,
            });
        }
        PollResponse {
            status: mid.status,
            lease_ms: self.config.lease_ms,
            heartbeat_ms: self.config.heartbeat_ms,
            work,
            rekey: mid.rekey_requested,
            cancel: self.take_cancels(&mid.name),
        }
    }

    /// Records a batch of results from a MID and wakes whoever waits on them.
    pub async fn accept_results(
        &self,
        mid: &MidRow,
        req: &ResultsRequest,
    ) -> Result<ResultsResponse, DispatchError> {
        self.presence.contact(&mid.name);
        if req.results.len() > MAX_RESULTS_PER_POST {
            return Err(invalid(
                "results",
                format!("at most {MAX_RESULTS_PER_POST} results per post"),
            ));
        }
        let recorded = self
            .store
            .record_results(&mid.name, &req.results, now_ms())
            .await?;
        let mut acks = Vec::with_capacity(recorded.len());
        for (result, RecordedResult { outcome, finished }) in req.results.iter().zip(recorded) {
            match outcome {
                AckOutcome::Recorded => {
                    if let Some(finished) = finished
                        && self.outputs.is_awaited(&result.output_id)
                    {
                        self.keep_finished(finished);
                    }
                    self.signal_finished(&result.output_id);
                }
                AckOutcome::Superseded => tracing::info!(
                    output = %result.output_id,
                    attempt = result.attempt,
                    mid = %mid.name,
                    "discarded a result of a superseded attempt"
                ),
                AckOutcome::Duplicate | AckOutcome::Unknown => {}
            }
            acks.push(Ack {
                output_id: result.output_id.clone(),
                attempt: result.attempt,
                outcome,
            });
        }
        Ok(ResultsResponse { acks })
    }

    /// A MID's heartbeat: records its health and profile, renews the leases of what it
    /// runs, and tells it its status.
    pub async fn heartbeat(
        &self,
        mid: &MidRow,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, DispatchError> {
        self.presence.contact(&mid.name);
        let mut mid = mid.clone();
        self.restore_contact(&mut mid).await?;
        for range in &req.profile.ip_ranges {
            openmid_proto::iprange::IpRanges::parse(std::slice::from_ref(range))
                .map_err(|e| invalid("profile.ip_ranges", e.to_string()))?;
        }
        let now = now_ms();
        let health = MidHealth {
            version: req.version.chars().take(64).collect(),
            uptime_ms: req.uptime_ms,
            running_by_pool: req.running_by_pool,
            pool_sizes: req.pool_sizes,
            queued: req.queued,
            outbox_len: req.outbox_len,
            outbox_bytes: req.outbox_bytes,
            cpu_percent: req.cpu_percent,
            rss_bytes: req.rss_bytes,
            policy_denials: req.policy_denials,
            reported_at: rfc3339(now),
        };
        if mid.declared_profile != req.profile {
            self.rebalance_wanted.store(true, Ordering::Relaxed);
        }
        let session = self
            .store
            .record_heartbeat(&mid.id, &health, &req.profile, req.session.as_deref(), now)
            .await?;
        if let SessionChange::New { previous } = session {
            // A new process of this MID: whatever the old one held and this one does not
            // list (running or waiting in its outbox) will never be answered. Release
            // it now rather than after the lease.
            let reason = match previous {
                Some(_) => format!("MID {} restarted (new process session)", mid.name),
                None => format!("MID {} started a new session", mid.name),
            };
            let released = self
                .store
                .release_leases_of(&mid.name, &req.running, &reason, now)
                .await?;
            if !released.is_empty() {
                tracing::warn!(mid = %mid.name, outputs = released.len(), "{reason}: work the previous process held is released");
            }
            self.after_lapse(released).await?;
        }
        let lost = self
            .store
            .renew_leases(&mid.name, &req.running, now + self.lease_ms())
            .await?;
        let cancel = self.store.cancelled_running(&mid.name).await?;
        Ok(HeartbeatResponse {
            cancel,
            status: mid.status,
            lease_ms: self.config.lease_ms,
            lost,
            rekey: mid.rekey_requested,
        })
    }

    /// An admin changes a MID's status.
    pub async fn admin_action(
        &self,
        name: &str,
        action: AdminAction,
    ) -> Result<MidRow, DispatchError> {
        let (from, to, reason) = action.transition();
        let row = self
            .store
            .set_mid_status(name, from, to, reason, now_ms())
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no MID named `{name}`")))?;
        if row.status != to {
            return Err(DispatchError::Conflict(format!(
                "MID `{name}` is {}: it cannot be made {} from there",
                row.status.as_str(),
                to.as_str()
            )));
        }
        tracing::info!(mid = %name, status = to.as_str(), "admin changed MID status");
        if to == MidStatus::Invalidated {
            self.presence.forget(name);
            self.release_leases(name, "MID was invalidated").await?;
        }
        if to == MidStatus::Up {
            self.presence.contact(name);
        }
        self.rebalance_wanted.store(true, Ordering::Relaxed);
        self.wake_mid(name);
        Ok(row)
    }

    /// An admin removes a MID that is invalidated or was never validated, so its name
    /// can enroll again. Work addressed to it alone ends in `error`; cluster and auto
    /// work moves on.
    pub async fn delete_mid(&self, name: &str) -> Result<u64, DispatchError> {
        let row = self
            .store
            .get_mid(MidKey::Name(name))
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no MID named `{name}`")))?;
        if !matches!(
            row.status,
            MidStatus::Invalidated | MidStatus::ValidationPending
        ) {
            return Err(DispatchError::Conflict(format!(
                "MID `{name}` is {}: invalidate it first",
                row.status.as_str()
            )));
        }
        let ended = self.store.delete_mid(&row.id, name, now_ms()).await?;
        self.presence.forget(name);
        self.rebalance_wanted.store(true, Ordering::Relaxed);
        tracing::info!(mid = %name, ended, "MID deleted");
        Ok(ended)
    }

    /// An admin asks a MID to make a new key pair and secret.
    pub async fn request_rekey(&self, name: &str) -> Result<MidRow, DispatchError> {
        let row = self
            .store
            .request_rekey(name, true)
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no MID named `{name}`")))?;
        if row.status == MidStatus::Invalidated {
            return Err(DispatchError::Conflict(format!(
                "MID `{name}` is invalidated"
            )));
        }
        self.wake_mid(name);
        Ok(row)
    }

    /// A MID sends its new key and secret.
    pub async fn rekey(&self, mid: &MidRow, req: &RekeyRequest) -> Result<(), DispatchError> {
        crate::registry::check_key_and_secret(&req.public_key, &req.secret)
            .map_err(|e| invalid("rekey", e.to_string()))?;
        self.store
            .rekey_mid(
                &mid.id,
                &crate::auth::hash_token(req.secret.expose()),
                &req.public_key,
            )
            .await?;
        tracing::info!(mid = %mid.name, "MID rekeyed");
        Ok(())
    }

    /// Waits up to `wait` for an output to finish; returns it as it is then, with its
    /// input when that is already at hand (else the caller reads it).
    pub async fn wait_finished(
        &self,
        id: &str,
        wait: Duration,
    ) -> Result<(Record, Option<Record>), DispatchError> {
        let deadline = Instant::now() + wait;
        let notify = self.outputs.subscribe(id);
        let outcome = loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(Finished { output, input }) = self.take_finished(id) {
                break Ok((output, Some(input)));
            }
            let record = match self.store.get_record(id).await {
                Ok(Some(record)) => record,
                Ok(None) => {
                    break Err(DispatchError::NotFound(format!(
                        "no ECC record with id `{id}`"
                    )));
                }
                Err(e) => break Err(e.into()),
            };
            if record.is_finished() || Instant::now() >= deadline {
                break Ok((record, None));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        };
        // Whatever was kept for this call and not used must not stay behind.
        drop(notify);
        if !self.outputs.is_awaited(id) {
            self.take_finished(id);
        }
        outcome
    }

    /// Keeps a finished output for the API call waiting on it.
    fn keep_finished(&self, finished: Finished) {
        let mut kept = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        // Entries whose waiter left between the check and the insert would stay:
        // sweep them when the map grows.
        if kept.len() >= 1024 {
            kept.retain(|id, _| self.outputs.is_awaited(id));
        }
        kept.insert(finished.output.id.clone(), finished);
    }

    fn take_finished(&self, id: &str) -> Option<Finished> {
        self.finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }

    /// Ends the leases of everything a MID runs, so the work runs elsewhere.
    async fn release_leases(&self, name: &str, reason: &str) -> Result<(), DispatchError> {
        let changed = self
            .store
            .release_leases_of(name, &[], reason, now_ms())
            .await?;
        if !changed.is_empty() {
            tracing::warn!(mid = %name, outputs = changed.len(), "{reason}: its running work is released");
        }
        self.after_lapse(changed).await
    }

    /// Outputs whose lease ended: wake waiters of those that ended in error, and move
    /// the others (addressed to a cluster or `mid.auto`) to another eligible MID.
    async fn after_lapse(&self, changed: Vec<Record>) -> Result<(), DispatchError> {
        if changed.is_empty() {
            return Ok(());
        }
        let mids = self.store.list_mids().await?;
        let mut load = self.store.load_by_mid().await?;
        for output in changed {
            match output.state {
                State::Ready => {
                    self.reassign(&output, &mids, &mut load, output.claimed_by.as_deref())
                        .await?;
                }
                _ => self.signal_finished(&output.id),
            }
        }
        Ok(())
    }

    /// Re-chooses the MID of one ready output; `avoid` is a MID not to pick again when
    /// another is eligible.
    async fn reassign(
        &self,
        output: &Record,
        mids: &[MidRow],
        load: &mut HashMap<String, Load>,
        avoid: Option<&str>,
    ) -> Result<(), DispatchError> {
        let Ok(agent) = output.agent.parse::<Agent>() else {
            return Ok(());
        };
        if let Agent::Server(name) = &agent {
            // Addressed to one MID: it waits for that MID.
            self.wake_mid(name);
            return Ok(());
        }
        let current = output.assigned_to.as_deref();
        let eligible = |name: &str| {
            mids.iter()
                .any(|m| m.name == name && m.status == MidStatus::Up)
        };
        let payload: serde_json::Value = serde_json::from_str(&output.payload).unwrap_or_default();
        let needs = Needs {
            capability: output.topic.capability(),
            application: output.application.as_deref(),
            target_ip: target_ip(output.topic, &payload),
            avoid,
            more_capabilities: more_capabilities(&payload),
            topic: Some(output.topic),
        };
        let choice = match self.choose(&agent, &needs, mids, load).await {
            Ok(c) => c,
            Err(DispatchError::Invalid { message, .. }) => Choice::Nobody { why: message },
            Err(e) => return Err(e),
        };
        let by_rank = matches!(choice, Choice::Mid { by_rank: true, .. });
        let (to, why) = match choice {
            // Load-balanced and auto work stays where it is while that MID is eligible;
            // failover work follows the first up member.
            _ if avoid.is_none() && !by_rank && current.is_some_and(eligible) => return Ok(()),
            Choice::Mid { name, .. } if Some(name.as_str()) == current => return Ok(()),
            Choice::Mid { name, why, .. } => (Some(name), why),
            Choice::Nobody { why } => (None, why),
        };
        if current.is_none() && to.is_none() {
            return Ok(());
        }
        if self
            .store
            .assign_output(&output.id, current, to.as_deref(), &why)
            .await?
        {
            if let Some(old) = current.and_then(|c| load.get_mut(c)) {
                old.ready = old.ready.saturating_sub(1);
            }
            if let Some(new) = &to {
                load.entry(new.clone()).or_default().ready += 1;
                self.wake_mid(new);
            }
            tracing::info!(output = %output.id, from = ?current, to = ?to, "{why}");
        }
        Ok(())
    }

    /// Re-checks where every movable ready output is assigned.
    pub async fn rebalance(&self) -> Result<(), DispatchError> {
        let outputs = self.store.movable_outputs(1000).await?;
        if outputs.is_empty() {
            return Ok(());
        }
        let mids = self.store.list_mids().await?;
        let mut load = self.store.load_by_mid().await?;
        for output in &outputs {
            self.reassign(output, &mids, &mut load, None).await?;
        }
        Ok(())
    }

    /// One round of housekeeping: MIDs that went away become `down` and their work
    /// moves; lapsed leases return to the queue; drained MIDs are marked; assignments
    /// are re-checked when something changed.
    pub async fn sweep(&self) -> Result<(), DispatchError> {
        let grace = Duration::from_millis(self.config.disconnect_grace_ms);
        let down_after = Duration::from_millis(self.config.down_after_ms);
        for gone in self.presence.gone(grace, down_after) {
            self.presence.forget(&gone.name);
            let row = self
                .store
                .set_mid_status(
                    &gone.name,
                    &[MidStatus::Up],
                    MidStatus::Down,
                    &gone.reason,
                    now_ms(),
                )
                .await?;
            if row.is_some_and(|r| r.status == MidStatus::Down) {
                tracing::warn!(mid = %gone.name, reason = %gone.reason, "MID is down");
            }
            self.release_leases(&gone.name, &format!("MID {} went away", gone.name))
                .await?;
            self.rebalance_wanted.store(true, Ordering::Relaxed);
        }
        let lapsed = self.store.expire_leases(now_ms()).await?;
        for output in &lapsed {
            tracing::warn!(output = %output.id, attempt = output.attempt, mid = ?output.claimed_by, state = output.state.as_str(), "lease lapsed");
        }
        self.after_lapse(lapsed).await?;
        let mids = self.store.list_mids().await?;
        if mids.iter().any(|m| m.status == MidStatus::Draining) {
            let load = self.store.load_by_mid().await?;
            for mid in mids.iter().filter(|m| m.status == MidStatus::Draining) {
                if load.get(&mid.name).is_none_or(|l| l.processing == 0) {
                    self.store
                        .set_mid_status(
                            &mid.name,
                            &[MidStatus::Draining],
                            MidStatus::Drained,
                            "drained: no running work left",
                            now_ms(),
                        )
                        .await?;
                    tracing::info!(mid = %mid.name, "MID drained");
                }
            }
        }
        if self.rebalance_wanted.swap(false, Ordering::Relaxed) {
            self.rebalance().await?;
        }
        Ok(())
    }

    /// Deletes finished records older than the retention, a thousand per transaction so
    /// the writer is never held long. Returns how many went.
    pub async fn purge_old_records(&self) -> Result<u64, DispatchError> {
        let keys = self
            .store
            .purge_idempotency_keys(now_ms().saturating_sub(idempotency_window_ms()))
            .await?;
        if keys > 0 {
            tracing::debug!(keys, "forgot idempotency keys past their window");
        }
        if self.config.retention_hours == 0 {
            return Ok(0);
        }
        let age = i64::try_from(self.config.retention_hours.saturating_mul(3_600_000))
            .unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(age);
        let mut total = 0;
        loop {
            let deleted = self.store.purge_finished(before, 1000).await?;
            total += deleted;
            if deleted == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        if total > 0 {
            tracing::info!(
                records = total,
                "purged finished records past the retention"
            );
        }
        // Blobs go by the same age: the records naming them are gone by now.
        let age = Duration::from_secs(self.config.retention_hours.saturating_mul(3_600));
        match self.blobs.purge_older_than(age).await {
            Ok(0) => {}
            Ok(files) => tracing::info!(files, "purged blob files past the retention"),
            Err(e) => tracing::error!(error = %e, "purging blobs failed"),
        }
        Ok(total)
    }

    /// Runs [`Dispatcher::sweep`] until `shutdown`; every few seconds it also re-checks
    /// assignments, so work waiting for a cluster member is picked up, and every ten
    /// minutes it purges records past the retention.
    pub async fn run_sweeper(self: Arc<Self>, shutdown: CancellationToken) {
        let period = Duration::from_millis((self.config.disconnect_grace_ms / 5).clamp(50, 250));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rounds = 0u64;
        let started = Instant::now();
        let mut next_purge = Duration::ZERO;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    rounds += 1;
                    if rounds.is_multiple_of(20) {
                        self.rebalance_wanted.store(true, Ordering::Relaxed);
                    }
                    if rounds == 1 || started.elapsed() >= next_purge {
                        next_purge = started.elapsed() + Duration::from_secs(600);
                        if let Err(e) = self.purge_old_records().await {
                            tracing::error!(error = %e, "purge failed");
                        }
                    }
                    if let Err(e) = self.sweep().await {
                        tracing::error!(error = %e, "sweep failed");
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Marks that assignments should be re-checked at the next sweep (after a cluster
    /// or profile change).
    pub fn want_rebalance(&self) {
        self.rebalance_wanted.store(true, Ordering::Relaxed);
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.lease_ms).unwrap_or(i64::MAX)
    }
}
