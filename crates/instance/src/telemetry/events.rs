//! What dispatch and the API report: each hook is one call at the place the event
//! happens, and the counting lives here.

use super::Telemetry;
use super::names::*;
use crate::ecc::{Finished, Record};
use openmid_proto::mid::AckOutcome;

/// Help texts, registered once per recorder.
pub(super) fn describe() {
    metrics::describe_gauge!(
        QUEUE_DEPTH,
        "Outputs waiting (ready) or running (processing), by state and topic"
    );
    metrics::describe_gauge!(MIDS, "Registered MIDs by status");
    metrics::describe_histogram!(
        PICKUP_SECONDS,
        metrics::Unit::Seconds,
        "Time from an output's creation to a MID claiming it"
    );
    metrics::describe_histogram!(
        EXECUTION_SECONDS,
        metrics::Unit::Seconds,
        "Time from a claim to the result being recorded"
    );
    metrics::describe_counter!(
        LEASE_EXPIRIES,
        "Leases that lapsed because the MID stopped renewing them"
    );
    metrics::describe_counter!(REASSIGNMENTS, "Outputs moved to another MID (or to none)");
    metrics::describe_counter!(
        HANDOFFS,
        "New outputs handed straight to a waiting long-poll"
    );
    metrics::describe_counter!(RESULTS, "Results posted by MIDs, by outcome");
    metrics::describe_counter!(
        SESSION_FRAMES,
        "Frames MIDs sent on their session streams, by kind"
    );
    metrics::describe_counter!(
        EXPRESS_CALLS,
        "Express calls by outcome (answered, lost, or taken by the durable path)"
    );
    metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by route template, method and status"
    );
    metrics::describe_histogram!(
        HTTP_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request durations by route template and method"
    );
    metrics::describe_counter!(AUTH_FAILURES, "Refused authentications");
}

/// Counters start at 0 for every topic and outcome, so `rate()` and `increase()`
/// see the first event rather than a series appearing from nothing.
pub(super) fn preregister() {
    for topic in openmid_proto::ecc::Topic::ALL {
        for name in [LEASE_EXPIRIES, REASSIGNMENTS, HANDOFFS] {
            metrics::counter!(name, "topic" => topic.as_str()).increment(0);
        }
    }
    for outcome in [
        AckOutcome::Recorded,
        AckOutcome::Duplicate,
        AckOutcome::Superseded,
        AckOutcome::Unknown,
    ] {
        metrics::counter!(RESULTS, "outcome" => outcome_label(outcome)).increment(0);
    }
    for kind in [
        "poll",
        "results",
        "heartbeat",
        "output",
        "express_done",
        "cancel",
    ] {
        metrics::counter!(SESSION_FRAMES, "kind" => kind).increment(0);
    }
    for outcome in ["answered", "lost", "durable"] {
        metrics::counter!(EXPRESS_CALLS, "outcome" => outcome).increment(0);
    }
}

/// Milliseconds between two store timestamps, as seconds (0 when the clock stepped
/// back).
fn seconds_between(from: i64, to: i64) -> f64 {
    (to.saturating_sub(from)).max(0) as f64 / 1000.0
}

/// The result outcome's label.
fn outcome_label(outcome: AckOutcome) -> &'static str {
    match outcome {
        AckOutcome::Recorded => "recorded",
        AckOutcome::Duplicate => "duplicate",
        AckOutcome::Superseded => "superseded",
        AckOutcome::Unknown => "unknown",
    }
}

impl Telemetry {
    /// Outputs handed to a MID by a poll answer: their pickup latency.
    pub fn claimed(&self, records: &[Record]) {
        self.with(|| {
            for r in records {
                if let Some(claimed_at) = r.claimed_at {
                    metrics::histogram!(PICKUP_SECONDS, "topic" => r.topic.as_str())
                        .record(seconds_between(r.created_at, claimed_at));
                }
            }
        });
    }

    /// A result posted by a MID, with what the store made of it; a recorded one
    /// gives its execution time (claim to result).
    pub fn result(&self, outcome: AckOutcome, finished: Option<&Finished>) {
        self.with(|| {
            metrics::counter!(RESULTS, "outcome" => outcome_label(outcome)).increment(1);
            if let Some(f) = finished
                && let (Some(claimed), Some(done)) = (f.output.claimed_at, f.output.processed_at)
            {
                metrics::histogram!(EXECUTION_SECONDS, "topic" => f.output.topic.as_str())
                    .record(seconds_between(claimed, done));
            }
        });
    }

    /// Leases the sweeper found lapsed.
    pub fn leases_lapsed(&self, records: &[Record]) {
        self.with(|| {
            for r in records {
                metrics::counter!(LEASE_EXPIRIES, "topic" => r.topic.as_str()).increment(1);
            }
        });
    }

    /// An output moved from one MID to another (or to none).
    pub fn reassigned(&self, record: &Record) {
        self.with(|| {
            metrics::counter!(REASSIGNMENTS, "topic" => record.topic.as_str()).increment(1);
        });
    }

    /// A frame a MID sent on its session stream.
    pub fn session_frame(&self, kind: &'static str) {
        self.with(|| {
            metrics::counter!(SESSION_FRAMES, "kind" => kind).increment(1);
        });
    }

    /// An express call ended: `answered` by its MID, `lost` with its MID's session,
    /// or sent the `durable` way.
    pub fn express(&self, outcome: &'static str) {
        self.with(|| {
            metrics::counter!(EXPRESS_CALLS, "outcome" => outcome).increment(1);
        });
    }

    /// A new output written already claimed by a parked long-poll.
    pub fn handed_off(&self, record: &Record) {
        self.with(|| {
            metrics::counter!(HANDOFFS, "topic" => record.topic.as_str()).increment(1);
        });
    }

    /// One HTTP request answered; `route` is its route template (see `api::edge`).
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.with(|| {
            metrics::histogram!(HTTP_SECONDS, "route" => route.to_string(), "method" => method.to_string())
                .record(seconds);
            metrics::counter!(HTTP_REQUESTS, "route" => route.to_string(), "method" => method.to_string(), "status" => status.to_string())
                .increment(1);
        });
    }
}
