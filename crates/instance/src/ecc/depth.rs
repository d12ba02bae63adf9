//! Queue depth: how many outputs wait and run, by state and topic, counted in one
//! grouped query so a `/metrics` scrape costs the database one index scan whatever
//! the number of topics.

use super::StoreError;
use async_trait::async_trait;
use openmid_proto::ecc::{State, Topic};

/// Outputs of one topic in one state (`ready` or `processing`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// `ready` (waiting for a MID) or `processing` (claimed under a lease).
    pub state: State,
    /// The probe.
    pub topic: Topic,
    /// How many.
    pub count: u64,
}

/// The queue's depth, for the instance's own metrics.
#[async_trait]
pub trait DepthStore: Send + Sync {
    /// Outputs waiting (`ready`) and running (`processing`), by state and topic; a
    /// combination with none is absent. Finished records are not counted: retention
    /// bounds them, and counting them would scan the whole table at every scrape.
    async fn queue_depth(&self) -> Result<Vec<QueueDepth>, StoreError>;
}

/// The one query both backends run.
pub(crate) const QUEUE_DEPTH_SQL: &str = "SELECT state, topic, COUNT(*) FROM ecc \
     WHERE queue = 'output' AND state IN ('ready', 'processing') GROUP BY state, topic";

/// Decodes `(state, topic, count)` rows of [`QUEUE_DEPTH_SQL`], sorted by state then
/// topic so a scrape renders in a stable order.
pub(crate) fn decode(rows: Vec<(String, String, i64)>) -> Result<Vec<QueueDepth>, StoreError> {
    let mut out = rows
        .into_iter()
        .map(|(state, topic, count)| {
            let corrupt = |detail: String| StoreError::Corrupt {
                id: "queue depth".to_string(),
                detail,
            };
            Ok(QueueDepth {
                state: state.parse().map_err(|e| corrupt(format!("{e}")))?,
                topic: topic.parse().map_err(|e| corrupt(format!("{e}")))?,
                count: u64::try_from(count).unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    out.sort_by(|a, b| {
        (a.state.as_str(), a.topic.as_str()).cmp(&(b.state.as_str(), b.topic.as_str()))
    });
    Ok(out)
}
