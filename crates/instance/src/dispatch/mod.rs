//! Dispatch: turns API requests into output records, hands them to MIDs by long-poll,
//! records results exactly once, and returns outputs whose lease lapsed.

pub mod payload;
pub mod signals;

use crate::config::InstanceConfig;
use crate::ecc::{Claim, MidKey, MidRow, Record, RecordedResult, Store, StoreError};
use openmid_proto::api::NewOutput;
use openmid_proto::ecc::{Agent, Priority, Queue, State};
use openmid_proto::mid::{
    Ack, AckOutcome, HeartbeatRequest, HeartbeatResponse, MidStatus, PollRequest, PollResponse,
    ResultsRequest, ResultsResponse, WorkItem,
};
use openmid_proto::time::now_ms;
use signals::Signals;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &str, message: impl Into<String>) -> DispatchError {
    DispatchError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// The dispatcher: shared by the API handlers and the lease sweeper.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    config: Arc<InstanceConfig>,
    /// "New work for agent X" (key: agent string).
    agents: Signals,
    /// "Output X finished" (key: output id).
    outputs: Signals,
}

impl Dispatcher {
    /// A dispatcher over `store`.
    pub fn new(store: Arc<dyn Store>, config: Arc<InstanceConfig>) -> Self {
        Self {
            store,
            config,
            agents: Signals::default(),
            outputs: Signals::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Checks and queues an output record, waking a MID that waits for it.
    pub async fn submit(&self, new: NewOutput) -> Result<Record, DispatchError> {
        let agent: Agent = new
            .agent
            .parse()
            .map_err(|e: openmid_proto::ecc::InvalidAgent| invalid("agent", e.to_string()))?;
        let Agent::Server(mid_name) = &agent else {
            return Err(invalid(
                "agent",
                format!(
                    "`{agent}`: clusters and mid.auto are not available in this release; address a MID as mid.server.NAME"
                ),
            ));
        };
        if self.store.get_mid(MidKey::Name(mid_name)).await?.is_none() {
            return Err(invalid(
                "agent",
                format!("no MID named `{mid_name}` is enrolled"),
            ));
        }
        payload::check(new.topic, &new.payload).map_err(|e| invalid(&e.field, e.message))?;
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
        ] {
            if value.is_some_and(|v| v.chars().count() > limit) {
                return Err(invalid(field, format!("longer than {limit} characters")));
            }
        }
        let record = Record {
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
        };
        self.store.insert_output(&record).await?;
        self.agents.signal(&record.agent);
        Ok(record)
    }

    /// Wakes a MID's long-poll (after validation or a status change).
    pub fn wake_mid(&self, name: &str) {
        self.agents.signal(&format!("mid.server.{name}"));
    }

    /// A MID's long-poll: claims work at once if there is some, else waits until work
    /// arrives for it, its status changes, the wait runs out or the instance stops.
    pub async fn poll(
        &self,
        mid: &MidRow,
        req: &PollRequest,
        shutdown: &CancellationToken,
    ) -> Result<PollResponse, DispatchError> {
        let wait = Duration::from_millis(req.wait_ms.min(self.config.max_poll_wait_ms));
        let deadline = Instant::now() + wait;
        let agents = [format!("mid.server.{}", mid.name)];
        let notify = self.agents.subscribe(&agents[0]);
        let mut status = mid.status;
        // The MID has not heard its current status yet: answer at once.
        let mut status_news = req.known_status.is_some_and(|known| known != status);
        let work = loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if status.takes_work() && req.capacity.total() > 0 {
                let now = now_ms();
                let claimed = self
                    .store
                    .claim_ready_outputs(&Claim {
                        agents: &agents,
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
            if status_news {
                break Vec::new();
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => break Vec::new(),
                _ = shutdown.cancelled() => break Vec::new(),
            }
            // A status change (validation, pause …) is news for the MID: answer now.
            if let Some(row) = self.store.get_mid(MidKey::Id(&mid.id)).await?
                && row.status != status
            {
                status = row.status;
                status_news = true;
            }
        };
        Ok(self.poll_answer(status, work))
    }

    fn poll_answer(&self, status: MidStatus, claimed: Vec<Record>) -> PollResponse {
        let work = claimed
            .into_iter()
            .map(|r| WorkItem {
                payload: serde_json::from_str(&r.payload).unwrap_or(serde_json::Value::Null),
                output_id: r.id,
                attempt: r.attempt,
                topic: r.topic,
                name: r.name,
                priority: r.priority,
            })
            .collect();
        PollResponse {
            status,
            lease_ms: self.config.lease_ms,
            heartbeat_ms: self.config.heartbeat_ms,
            work,
        }
    }

    /// Records a batch of results from a MID and wakes whoever waits on them.
    pub async fn accept_results(
        &self,
        mid: &MidRow,
        req: &ResultsRequest,
    ) -> Result<ResultsResponse, DispatchError> {
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
        for (result, RecordedResult { outcome, .. }) in req.results.iter().zip(recorded) {
            match outcome {
                AckOutcome::Recorded => self.outputs.signal(&result.output_id),
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

    /// A MID's heartbeat: marks it seen and renews the leases of what it runs.
    pub async fn heartbeat(
        &self,
        mid: &MidRow,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, DispatchError> {
        let now = now_ms();
        self.store.mark_mid_seen(&mid.id, now).await?;
        let lost = self
            .store
            .renew_leases(&mid.name, &req.running, now + self.lease_ms())
            .await?;
        Ok(HeartbeatResponse {
            status: mid.status,
            lease_ms: self.config.lease_ms,
            lost,
        })
    }

    /// Waits up to `wait` for an output to finish; returns it as it is then.
    pub async fn wait_finished(&self, id: &str, wait: Duration) -> Result<Record, DispatchError> {
        let deadline = Instant::now() + wait;
        let notify = self.outputs.subscribe(id);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let record =
                self.store.get_record(id).await?.ok_or_else(|| {
                    DispatchError::NotFound(format!("no ECC record with id `{id}`"))
                })?;
            if record.is_finished() || Instant::now() >= deadline {
                return Ok(record);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Returns lapsed leases to the queue (or ends them), waking MIDs and waiters.
    pub async fn sweep_leases(&self) -> Result<usize, DispatchError> {
        let changed = self.store.expire_leases(now_ms()).await?;
        for output in &changed {
            match output.state {
                State::Ready => {
                    tracing::warn!(output = %output.id, attempt = output.attempt, mid = ?output.claimed_by, "lease lapsed; output returned to the queue");
                    self.agents.signal(&output.agent);
                }
                _ => {
                    tracing::warn!(output = %output.id, error = ?output.error, "lease lapsed; output ended in error");
                    self.outputs.signal(&output.id);
                }
            }
        }
        Ok(changed.len())
    }

    /// Runs [`Dispatcher::sweep_leases`] until `shutdown`.
    pub async fn run_lease_sweeper(self: Arc<Self>, shutdown: CancellationToken) {
        let period = Duration::from_millis((self.config.lease_ms / 10).clamp(100, 1000));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.sweep_leases().await {
                        tracing::error!(error = %e, "lease sweep failed");
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.lease_ms).unwrap_or(i64::MAX)
    }
}
