//! The instance's own Prometheus series (`openmid_*`), served at `/metrics` on the main
//! listener. Not to be confused with [`crate::metrics`], which collects *other*
//! systems' metrics through MIDs.
//!
//! Each [`Telemetry`] owns its recorder instead of installing a process-global one:
//! an instance and a MID in one process (`openmid demo`, the tests) keep their series
//! apart, and two instances in one test process do not add up. Hooks in dispatch and
//! the API are one-line calls to the methods in [`events`]; gauges that describe the
//! store (queue depth, MIDs by status) are computed when scraped ([`scrape`]).

pub mod events;
pub mod health;
pub mod scrape;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// Series names, in one place so the dashboard test and the code agree.
pub mod names {
    /// Outputs waiting or running, by `state` and `topic` (gauge, read at scrape).
    pub const QUEUE_DEPTH: &str = "openmid_queue_depth";
    /// Registered MIDs by `status` (gauge, read at scrape).
    pub const MIDS: &str = "openmid_mids";
    /// Seconds from an output's creation to a MID claiming it, by `topic`.
    pub const PICKUP_SECONDS: &str = "openmid_pickup_latency_seconds";
    /// Seconds from a claim to its result being recorded, by `topic`.
    pub const EXECUTION_SECONDS: &str = "openmid_execution_seconds";
    /// Leases that lapsed (the MID stopped renewing them), by `topic`.
    pub const LEASE_EXPIRIES: &str = "openmid_lease_expiries_total";
    /// Outputs moved from one MID to another (or to none), by `topic`.
    pub const REASSIGNMENTS: &str = "openmid_reassignments_total";
    /// New outputs handed straight to a waiting long-poll, by `topic`.
    pub const HANDOFFS: &str = "openmid_handoffs_total";
    /// Frames MIDs sent on their session streams, by `kind` (poll, results,
    /// heartbeat, output, express_done, cancel).
    pub const SESSION_FRAMES: &str = "openmid_session_frames_total";
    /// Express calls (`durability: relaxed`), by `outcome` (answered, lost, durable:
    /// taken by the durable path for want of a stream).
    pub const EXPRESS_CALLS: &str = "openmid_express_calls_total";
    /// Results posted by MIDs, by `outcome` (recorded, duplicate, superseded, unknown).
    pub const RESULTS: &str = "openmid_results_total";
    /// HTTP requests by `route` (the route template, never the raw path), `method`
    /// and `status`.
    pub const HTTP_REQUESTS: &str = "openmid_http_requests_total";
    /// HTTP request durations by `route` and `method`.
    pub const HTTP_SECONDS: &str = "openmid_http_request_duration_seconds";
    /// Refused authentications (admin token, MID credentials, metrics token).
    pub const AUTH_FAILURES: &str = "openmid_auth_failures_total";
}

/// Histogram buckets, in seconds: from a hand-off on loopback (milliseconds) to a
/// slow scan or a long-poll held open (minutes).
const BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// One instance's series.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// An empty set of series with the instance's histogram buckets.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            // Only an empty bucket list is refused, and BUCKETS is not empty.
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let telemetry = Self { recorder, handle };
        telemetry.with(|| {
            events::describe();
            events::preregister();
        });
        telemetry
    }

    /// Runs `f` with this instance's recorder as the `metrics` macros' target.
    fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        metrics::with_local_recorder(&self.recorder, f)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_start_at_zero_and_instances_keep_their_own_series() {
        let a = Telemetry::new();
        let b = Telemetry::new();
        let text = a.render();
        assert!(
            text.contains("openmid_lease_expiries_total{topic=\"RESTProbe\"} 0\n"),
            "{text}"
        );
        a.request("/healthz", "GET", 200, 0.002);
        assert!(a.render().contains(
            "openmid_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1\n"
        ));
        assert!(
            !b.render().contains("openmid_http_requests_total"),
            "another instance's recorder is untouched"
        );
    }
}
