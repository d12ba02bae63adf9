//! Metric collection on the instance: scrape targets per agent ([`targets`]), the
//! assignment each MID is sent as a `MetricScrape` job ([`assign`]), the samples MIDs
//! forward (stored once per MID and batch), range queries over them ([`query`]),
//! and forwarding to a time-series store with Prometheus remote write
//! ([`remote_write`]).

pub mod assign;
pub mod query;
pub mod remote_write;
pub mod targets;

use crate::dispatch::{DispatchError, Dispatcher, invalid};
use openmid_proto::metrics::{MAX_BATCH_SAMPLES, NAME_LABEL, SampleBatch, SampleBatchAck, text};
use openmid_proto::time::now_ms;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Metric collection, over the dispatcher's store.
pub struct Metrics<'a> {
    dispatcher: &'a Dispatcher,
}

impl Dispatcher {
    /// Metric collection.
    pub fn metrics(&self) -> Metrics<'_> {
        Metrics { dispatcher: self }
    }
}

/// How often assignments are brought in line with targets and MIDs' status.
pub const TICK: Duration = Duration::from_millis(500);

/// Samples deleted per purge transaction (small, so the writer is never held long).
const PURGE_BATCH: u32 = 5_000;

impl Metrics<'_> {
    /// Stores a MID's batch once per (MID, seq); a re-sent batch is acknowledged
    /// without being stored again.
    pub async fn ingest(
        &self,
        mid: &str,
        batch: &SampleBatch,
    ) -> Result<SampleBatchAck, DispatchError> {
        if batch.len() > MAX_BATCH_SAMPLES {
            return Err(invalid(
                "series",
                format!("at most {MAX_BATCH_SAMPLES} samples per batch"),
            ));
        }
        for (i, s) in batch.series.iter().enumerate() {
            match s.labels.get(NAME_LABEL) {
                Some(name) if text::is_metric_name(name) => {}
                _ => {
                    return Err(invalid(
                        &format!("series[{i}].labels"),
                        "needs __name__ with a metric name",
                    ));
                }
            }
            if let Some(bad) = s
                .labels
                .keys()
                .find(|k| *k != NAME_LABEL && !text::is_label_name(k))
            {
                return Err(invalid(
                    &format!("series[{i}].labels"),
                    format!("`{bad}` is not a label name"),
                ));
            }
        }
        let duplicate = self
            .dispatcher
            .store()
            .store_samples(mid, batch, now_ms())
            .await?;
        if duplicate {
            tracing::debug!(
                mid,
                seq = batch.seq,
                "sample batch received again; stored once"
            );
        }
        Ok(SampleBatchAck {
            seq: batch.seq,
            duplicate,
        })
    }

    /// Deletes samples past `metrics.retention_hours`, in small batches.
    pub async fn purge(&self) -> Result<u64, DispatchError> {
        let hours = self.dispatcher.config().metrics.retention_hours;
        let age = i64::try_from(hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(age);
        let mut total = 0;
        loop {
            let deleted = self
                .dispatcher
                .store()
                .purge_samples(before, PURGE_BATCH)
                .await?;
            total += deleted;
            if deleted < u64::from(PURGE_BATCH) {
                break;
            }
            tokio::task::yield_now().await;
        }
        if total > 0 {
            tracing::info!(samples = total, "purged samples past the metrics retention");
        }
        Ok(total)
    }
}

/// Keeps MIDs' assignments in line every [`TICK`], and purges old samples every ten
/// minutes, until `shutdown`.
pub async fn run_assigner(dispatcher: Arc<Dispatcher>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_purge = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {
                // One node deals the targets out, or two would deal them differently.
                if !dispatcher.is_leader() {
                    continue;
                }
                if let Err(e) = dispatcher.metrics().assign().await {
                    tracing::warn!(error = %e, "bringing scrape assignments up to date failed");
                }
                if tokio::time::Instant::now() >= next_purge {
                    next_purge = tokio::time::Instant::now() + Duration::from_secs(600);
                    if let Err(e) = dispatcher.metrics().purge().await {
                        tracing::warn!(error = %e, "purging old samples failed");
                    }
                }
            }
        }
    }
}
