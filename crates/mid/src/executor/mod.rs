//! The executor: one bounded worker pool per priority, so a slow scan never starves an
//! API call. A job's result reaches the outbox before its worker slot is freed, so the
//! capacity a MID advertises never hides an unsaved result.

use crate::keys::Identity;
use crate::outbox::Outbox;
use crate::probes::{self, ProbeContext, ProbeError};
use openmid_proto::credential::CredentialSpec;
use openmid_proto::ecc::Priority;
use openmid_proto::mid::{Capacity, JobRef, WorkItem, WorkResult};
use openmid_proto::payload::Payload;
use openmid_proto::time::now_ms;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::PoolSizes;
use openmid_proto::trace::TraceParent;
use tracing::Instrument;

/// The span every log line about a job is written in on this MID: its output id,
/// attempt and trace id (the instance's logs carry the same two ids).
fn job_span(job: &JobRef, trace: Option<&TraceParent>) -> tracing::Span {
    tracing::info_span!(
        "job",
        output = %job.output_id,
        attempt = job.attempt,
        trace_id = %trace.map(TraceParent::trace_id_hex).unwrap_or_default()
    )
}

/// Runs claimed work.
pub struct Executor {
    pools: [Arc<Semaphore>; 3],
    sizes: PoolSizes,
    /// Running jobs, each with the token that stops it.
    running: Mutex<HashMap<JobRef, CancellationToken>>,
    ctx: Arc<ProbeContext>,
    outbox: Arc<Outbox>,
    tasks: TaskTracker,
    /// Signalled when a worker slot frees up.
    pub slot_freed: Notify,
    /// Signalled when a result lands in the outbox.
    pub result_ready: Arc<Notify>,
    /// Opens the credentials sealed to this MID.
    identity: Arc<Mutex<Identity>>,
    /// Where each job's span goes (`[tracing] otlp_endpoint`), and this MID's name.
    spans: Option<(Arc<crate::otlp::SpanExport>, String)>,
    /// Jobs by topic and outcome, their durations.
    telemetry: Arc<crate::telemetry::Telemetry>,
}

fn pool_index(p: Priority) -> usize {
    match p {
        Priority::Interactive => 0,
        Priority::Expedited => 1,
        Priority::Standard => 2,
    }
}

impl Executor {
    /// An executor with the given pool sizes.
    pub fn new(
        sizes: PoolSizes,
        ctx: Arc<ProbeContext>,
        outbox: Arc<Outbox>,
        result_ready: Arc<Notify>,
        identity: Arc<Mutex<Identity>>,
        telemetry: Arc<crate::telemetry::Telemetry>,
    ) -> Self {
        let pool = |n: u32| Arc::new(Semaphore::new(n as usize));
        Self {
            sizes,
            pools: [
                pool(sizes.interactive),
                pool(sizes.expedited),
                pool(sizes.standard),
            ],
            running: Mutex::new(HashMap::new()),
            ctx,
            outbox,
            tasks: TaskTracker::new(),
            slot_freed: Notify::new(),
            result_ready,
            identity,
            spans: None,
            telemetry,
        }
    }

    /// Sends each job's span to `spans` (when set), naming this MID `mid`.
    pub fn with_spans(mut self, spans: Option<Arc<crate::otlp::SpanExport>>, mid: String) -> Self {
        self.spans = spans.map(|s| (s, mid));
        self
    }

    /// The MID's span of a job that ran from `start` (Unix ns) to now.
    fn export_span(
        &self,
        item: &WorkItem,
        trace: Option<&TraceParent>,
        start: u64,
        error: Option<&str>,
    ) {
        let (Some((spans, mid)), Some(trace)) = (&self.spans, trace) else {
            return;
        };
        if !trace.sampled() {
            return;
        }
        // The instance's span is the parent (absent when the job came without one).
        let parent = item
            .traceparent
            .as_deref()
            .and_then(|t| TraceParent::parse(t).ok())
            .map(|t| t.parent_id);
        spans.record(openmid_proto::otlp::FinishedSpan {
            trace_id: trace.trace_id,
            span_id: trace.parent_id,
            parent_span_id: parent,
            name: item.topic.to_string(),
            kind: openmid_proto::otlp::Kind::Internal,
            start_unix_nanos: start,
            end_unix_nanos: openmid_proto::otlp::now_unix_nanos(),
            attributes: vec![
                ("openmid.output_id".into(), item.output_id.clone()),
                ("openmid.attempt".into(), item.attempt.to_string()),
                ("openmid.mid".into(), mid.clone()),
                ("openmid.topic".into(), item.topic.to_string()),
            ],
            error: error.map(str::to_string),
        });
    }

    /// Free slots per pool.
    pub fn capacity(&self) -> Capacity {
        let free = |p: Priority| self.pools[pool_index(p)].available_permits() as u32;
        Capacity {
            interactive: free(Priority::Interactive),
            expedited: free(Priority::Expedited),
            standard: free(Priority::Standard),
        }
    }

    /// Worker slots per pool.
    pub fn pool_sizes(&self) -> Capacity {
        Capacity {
            interactive: self.sizes.interactive,
            expedited: self.sizes.expedited,
            standard: self.sizes.standard,
        }
    }

    /// Slots in use per pool.
    pub fn busy(&self) -> Capacity {
        let sizes = self.pool_sizes();
        let free = self.capacity();
        Capacity {
            interactive: sizes.interactive.saturating_sub(free.interactive),
            expedited: sizes.expedited.saturating_sub(free.expedited),
            standard: sizes.standard.saturating_sub(free.standard),
        }
    }

    /// Jobs running now (their leases are renewed by heartbeat).
    pub fn running(&self) -> Vec<JobRef> {
        let mut jobs: Vec<JobRef> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        jobs.sort();
        jobs
    }

    /// Stops the running jobs among `jobs` (the instance cancelled them, or their
    /// leases went to another MID): their probes are stopped, a command with its whole
    /// process group. Returns how many were running here.
    pub fn stop(&self, jobs: &[JobRef], why: &str) -> usize {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut stopped = 0;
        for job in jobs {
            if let Some(token) = running.get(job) {
                tracing::warn!(output = %job.output_id, attempt = job.attempt, "{why}: stopping the job");
                token.cancel();
                stopped += 1;
            }
        }
        stopped
    }

    /// Starts a claimed job in its pool.
    pub fn spawn(self: &Arc<Self>, item: WorkItem) {
        let this = self.clone();
        let pool = self.pools[pool_index(item.priority)].clone();
        // Take the slot now, so the capacity the next poll advertises is already right;
        // the poll only asked for free slots, so this normally succeeds at once.
        let slot = pool.clone().try_acquire_owned().ok();
        self.tasks.spawn(async move {
            let permit = match slot {
                Some(permit) => permit,
                None => match pool.acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let job = JobRef {
                output_id: item.output_id.clone(),
                attempt: item.attempt,
            };
            let context = probes::JobContext::new(job.clone()).traced(item.traceparent.as_deref());
            let span = job_span(&job, context.trace.as_ref());
            this.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(job.clone(), context.cancel.clone());
            async {
                tracing::debug!(topic = %item.topic, "running a claimed job");
                let started = openmid_proto::otlp::now_unix_nanos();
                let trace = context.trace;
                let span_of = this.spans.as_ref().map(|_| item.clone());
                let result = this.run_probe(item, context).await;
                if let Some(item) = span_of {
                    this.export_span(&item, trace.as_ref(), started, result.error.as_deref());
                }
                if let Err(e) = this.outbox.put(result).await {
                    // The lease will lapse and the instance will re-run the job elsewhere.
                    tracing::error!(error = %e, "could not store a result in the outbox");
                }
            }
            .instrument(span)
            .await;
            this.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&job);
            drop(permit);
            this.result_ready.notify_one();
            this.slot_freed.notify_waiters();
        });
    }

    /// Runs an express job in its pool and returns its result, which goes straight
    /// back on the session stream: no outbox, no lease to renew, never run again.
    pub async fn run_express(self: &Arc<Self>, item: WorkItem) -> WorkResult {
        let pool = self.pools[pool_index(item.priority)].clone();
        let Ok(permit) = pool.acquire_owned().await else {
            return WorkResult {
                output_id: item.output_id,
                attempt: item.attempt,
                payload: Payload::null(),
                error: Some("the MID is stopping".into()),
                started_at_ms: now_ms(),
                duration_ms: 0,
            };
        };
        let job = JobRef {
            output_id: item.output_id.clone(),
            attempt: item.attempt,
        };
        let context = probes::JobContext::new(job.clone()).traced(item.traceparent.as_deref());
        let span = job_span(&job, context.trace.as_ref());
        let result = async {
            tracing::debug!(topic = %item.topic, "running an express job");
            let started = openmid_proto::otlp::now_unix_nanos();
            let trace = context.trace;
            let span_of = self.spans.as_ref().map(|_| item.clone());
            let result = self.run_probe(item, context).await;
            if let Some(item) = span_of {
                self.export_span(&item, trace.as_ref(), started, result.error.as_deref());
            }
            result
        }
        .instrument(span)
        .await;
        drop(permit);
        self.slot_freed.notify_waiters();
        result
    }

    async fn run_probe(&self, item: WorkItem, job: probes::JobContext) -> WorkResult {
        let started_at_ms = now_ms();
        let started = Instant::now();
        let ctx = self.ctx.clone();
        let topic = item.topic;
        let mut outcome_label = crate::telemetry::JobOutcome::Error;
        let (payload, error) = match self.credential_of(&item) {
            Err(e) => (Payload::null(), Some(e.to_string())),
            Ok(credential) => {
                let input = item.payload.clone();
                // A panicking probe must not take the MID down or lose the job's answer.
                let outcome = tokio::spawn(
                    async move { probes::run(topic, input, credential, &job, &ctx).await }
                        .in_current_span(),
                )
                .await;
                match outcome {
                    Ok(Ok(payload)) => {
                        outcome_label = crate::telemetry::JobOutcome::Ok;
                        (payload, None)
                    }
                    Ok(Err(e)) => {
                        if matches!(e, ProbeError::Policy(_))
                            || crate::policy::find_denial(&e).is_some()
                        {
                            outcome_label = crate::telemetry::JobOutcome::Denied;
                        }
                        let message = e.to_string();
                        (e.into_response(), Some(message))
                    }
                    Err(e) => {
                        outcome_label = crate::telemetry::JobOutcome::Crashed;
                        (
                            Payload::null(),
                            Some(format!("the {topic} probe crashed: {e}")),
                        )
                    }
                }
            }
        };
        tracing::debug!(output = %item.output_id, attempt = item.attempt, %topic, error = ?error, "job finished");
        self.telemetry
            .job_finished(topic, outcome_label, started.elapsed().as_secs_f64());
        WorkResult {
            output_id: item.output_id,
            attempt: item.attempt,
            payload,
            error,
            started_at_ms,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// The credential a job's payload names, opened with this MID's key. The payload
    /// holds only a reference; the secret came sealed beside it.
    fn credential_of(&self, item: &WorkItem) -> Result<Option<CredentialSpec>, ProbeError> {
        let Some(wanted) = item
            .payload
            .field::<serde_json::Value>("credential")
            .filter(|c| !c.is_null())
        else {
            return Ok(None);
        };
        let name = wanted
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("?")
            .to_string();
        let Some(sealed) = &item.credential else {
            return Err(ProbeError::Credential(format!(
                "`{name}` did not come with the job: it was deleted, or the instance could not seal it (see the instance log)"
            )));
        };
        if wanted.get("id").and_then(|i| i.as_str()) != Some(sealed.credential_id.as_str()) {
            return Err(ProbeError::Credential(format!(
                "the sealed credential is not `{name}`, the one the job names"
            )));
        }
        let plain = self
            .identity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open_sealed(&item.output_id, item.attempt, sealed)
            .map_err(|e| ProbeError::Credential(format!("`{name}`: {e}")))?;
        serde_json::from_slice(&plain).map(Some).map_err(|_| {
            ProbeError::Credential(format!(
                "`{name}` is of a type this MID ({}) does not know",
                openmid_proto::BUILD_VERSION
            ))
        })
    }

    /// Waits for running jobs to finish and store their results.
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}
