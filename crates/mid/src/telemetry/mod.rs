//! The MID's own Prometheus series (`openmid_mid_*`) and its readiness, served by a
//! local listener only when the config has a `[telemetry]` table ([`listener`]).
//! Not to be confused with [`crate::metrics`], which scrapes *other* systems.
//!
//! The recorder belongs to this [`Telemetry`], not to the process: a MID and an
//! instance in one process (`openmid demo`, tests) keep their series apart. Hooks in
//! the executor and the session are one-line calls; the pool, outbox and policy
//! gauges are read when scraped.

pub mod listener;
pub mod readiness;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use openmid_proto::ecc::Topic;
use readiness::Readiness;
use std::sync::Mutex;

/// Series names, in one place so the dashboard test and the code agree.
pub mod names {
    /// Jobs finished, by `topic` and `outcome` (ok, error, denied, crashed).
    pub const JOBS: &str = "openmid_mid_jobs_total";
    /// Seconds a job ran, by `topic`.
    pub const JOB_SECONDS: &str = "openmid_mid_job_seconds";
    /// Worker slots in use, by `pool` (gauge, read at scrape).
    pub const POOL_BUSY: &str = "openmid_mid_pool_busy";
    /// Worker slots, by `pool` (gauge).
    pub const POOL_SIZE: &str = "openmid_mid_pool_size";
    /// Results in the outbox waiting for the instance's acknowledgement (gauge).
    pub const OUTBOX_RESULTS: &str = "openmid_mid_outbox_results";
    /// Bytes those results take (gauge).
    pub const OUTBOX_BYTES: &str = "openmid_mid_outbox_bytes";
    /// Age of the oldest result waiting, in seconds; 0 when none waits (gauge).
    pub const OUTBOX_OLDEST: &str = "openmid_mid_outbox_oldest_age_seconds";
    /// Egress policy refusals, by `kind` (a network protocol, `command` or `file`).
    pub const POLICY_DENIALS: &str = "openmid_mid_policy_denials_total";
    /// Times the session came back after requests to the instance failed.
    pub const RECONNECTS: &str = "openmid_mid_session_reconnects_total";
    /// 1 while the last request to the instance was answered, else 0 (gauge).
    pub const SESSION_UP: &str = "openmid_mid_session_up";
}

/// Job durations, in seconds: from a local HTTP call to a long scan.
const BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// How a job ended, as its `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// The probe answered.
    Ok,
    /// The probe failed.
    Error,
    /// The egress policy refused it.
    Denied,
    /// The probe panicked.
    Crashed,
}

impl JobOutcome {
    fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Ok => "ok",
            JobOutcome::Error => "error",
            JobOutcome::Denied => "denied",
            JobOutcome::Crashed => "crashed",
        }
    }
}

/// One MID's series and readiness.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    readiness: Mutex<Readiness>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// Empty series; not ready until the instance first answers.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            // Only an empty bucket list is refused, and BUCKETS is not empty.
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let telemetry = Self {
            recorder,
            handle,
            readiness: Mutex::new(Readiness::default()),
        };
        telemetry.with(describe);
        telemetry
    }

    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// A job finished after `seconds`.
    pub fn job_finished(&self, topic: Topic, outcome: JobOutcome, seconds: f64) {
        self.with(|| {
            metrics::counter!(names::JOBS, "topic" => topic.as_str(), "outcome" => outcome.as_str())
                .increment(1);
            metrics::histogram!(names::JOB_SECONDS, "topic" => topic.as_str()).record(seconds);
        });
    }

    /// The series in the Prometheus text format (0.0.4).
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram values into their buckets. A scrape does it too, but
    /// without scrapes the values would pile up in memory, so this runs on a timer.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// How often [`run_upkeep`] folds histogram values.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs [`Telemetry::run_upkeep`] every few seconds until `stop` is cancelled.
pub async fn run_upkeep(
    telemetry: impl std::ops::Deref<Target = Telemetry>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(UPKEEP_EVERY) => telemetry.run_upkeep(),
            _ = stop.cancelled() => return,
        }
    }
}

fn describe() {
    use names::*;
    metrics::describe_counter!(JOBS, "Jobs finished, by topic and outcome");
    metrics::describe_histogram!(
        JOB_SECONDS,
        metrics::Unit::Seconds,
        "Time a job ran, by topic"
    );
    metrics::describe_gauge!(POOL_BUSY, "Worker slots in use, by pool");
    metrics::describe_gauge!(POOL_SIZE, "Worker slots, by pool");
    metrics::describe_gauge!(
        OUTBOX_RESULTS,
        "Results waiting for the instance's acknowledgement"
    );
    metrics::describe_gauge!(OUTBOX_BYTES, "Bytes of results waiting");
    metrics::describe_gauge!(
        OUTBOX_OLDEST,
        metrics::Unit::Seconds,
        "Age of the oldest result waiting"
    );
    metrics::describe_counter!(POLICY_DENIALS, "Egress policy refusals, by kind");
    metrics::describe_counter!(
        RECONNECTS,
        "Times the session came back after requests to the instance failed"
    );
    metrics::describe_gauge!(SESSION_UP, "1 while the instance answers, else 0");
}
