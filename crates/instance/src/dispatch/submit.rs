//! Submitting work: checks an output, picks its MID, and writes it — already claimed
//! and handed to that MID's waiting poll when one is parked (hand-off), else `ready`
//! with a wake-up — once per `Idempotency-Key`.

use super::*;
use openmid_proto::trace::TraceParent;

/// How long an `Idempotency-Key` is remembered: a retry within it gets the first
/// output, a later one makes a new output.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

pub(super) fn idempotency_window_ms() -> i64 {
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
#[derive(Debug)]
pub struct Submitted {
    /// The output.
    pub record: Record,
    /// Written earlier; nothing new was queued.
    pub replayed: bool,
    /// When asked for (a caller who will wait): wakes once the output may have
    /// finished, for [`Dispatcher::wait_finished`].
    pub watch: Option<Watch>,
}

/// A wake-up for one output, armed before the output was written, so whatever
/// finishes it wakes this however soon that comes: a caller holding one need not
/// read the record back to learn it is still running.
pub struct Watch {
    notified: std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watch")
    }
}

impl Watch {
    /// Waits for the wake-up.
    pub(super) async fn woken(mut self) {
        self.notified.as_mut().await;
    }
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

impl Dispatcher {
    /// Checks and queues an output record, assigns it to a MID and wakes that MID.
    pub async fn submit(&self, new: NewOutput) -> Result<Record, DispatchError> {
        Ok(self.submit_once(new, None, None, false).await?.record)
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

    pub(super) async fn replay(
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
    /// output (`replayed`). `trace` is the instance's span of the job (see
    /// [`openmid_proto::trace::TraceParent::continue_or_start`]); without one the job
    /// starts a trace of its own. `watch`: the caller will wait for the output to
    /// finish (see [`Submitted::watch`]).
    pub async fn submit_once(
        &self,
        new: NewOutput,
        key: Option<&Idempotency>,
        trace: Option<TraceParent>,
        watch: bool,
    ) -> Result<Submitted, DispatchError> {
        if let Some(key) = key
            && let Some(record) = self.replayed(key).await?
        {
            return Ok(Submitted {
                record,
                replayed: true,
                watch: None,
            });
        }
        let mut record = self.prepare(new, trace, None).await?;
        let watch = watch.then(|| {
            let mut notified = Box::pin(self.outputs.subscribe(&record.id).notified_owned());
            notified.as_mut().enable();
            Watch { notified }
        });
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
                self.wake_mid(mid);
            }
            return Ok(Submitted {
                record,
                replayed: false,
                watch,
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
        self.telemetry.handed_off(&record);
        Ok(Submitted {
            record,
            replayed: false,
            watch,
        })
    }

    /// Checks a new output and picks its MID: the record as it would be written,
    /// `ready` and assigned (or waiting for a MID of its cluster).
    pub(super) async fn prepare(
        &self,
        new: NewOutput,
        trace: Option<TraceParent>,
        named: Option<MidRow>,
    ) -> Result<Record, DispatchError> {
        let agent: Agent = new
            .agent
            .parse()
            .map_err(|e: openmid_proto::ecc::InvalidAgent| invalid("agent", e.to_string()))?;
        if let Agent::Server(mid_name) = &agent {
            // `named`: the MID's row as the caller just read it, when it has; else the
            // one its session stream on this node keeps fresh (an invalidation made
            // on another node is then seen up to a second late, as the express lane
            // sees it), else the store's.
            let row = match named.filter(|row| row.name == *mid_name) {
                Some(row) => Some(row),
                None => self.lane_row(mid_name).await?,
            };
            match row {
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
        let checked = crate::topics::check(new.topic, &new.payload)
            .map_err(|e| invalid(&e.field, e.message))?;
        if let Some(id) = checked.body_blob.as_deref() {
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
            target_ip: checked.target_ip,
            avoid: None,
            more_capabilities: more_capabilities(&new.payload),
            topic: Some(new.topic),
        };
        let (assigned_to, selection) = match self.choose(&agent, &needs, &mids, &load).await? {
            Choice::Mid { name, why, .. } => (Some(name), why),
            Choice::Nobody { why } if agent == Agent::Auto => return Err(invalid("agent", why)),
            Choice::Nobody { why } => (None, why),
        };
        let record = Record {
            id: uuid::Uuid::now_v7().to_string(),
            queue: Queue::Output,
            agent: agent.to_string(),
            topic: new.topic,
            name: new.name.unwrap_or_else(|| new.topic.to_string()),
            source: new.source.unwrap_or_else(|| "api".to_string()),
            payload: new.payload.into_string(),
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
            traceparent: Some(trace.unwrap_or_else(TraceParent::new_root).to_string()),
        };
        Ok(record)
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
            watch: None,
        })
    }
}
