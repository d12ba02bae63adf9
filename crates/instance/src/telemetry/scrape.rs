//! `GET /metrics`: the instance's series, with the gauges that describe the store read
//! at scrape time (one grouped count for the queue, one list of MIDs), so they are
//! right on every node of a shared database, not only the one that changed them.

use super::Telemetry;
use super::names::{AUTH_FAILURES, MIDS, QUEUE_DEPTH};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::auth::{hash_token, token_matches};
use crate::ecc::QueueDepth;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use openmid_proto::ecc::{State as RecordState, Topic};
use openmid_proto::mid::MidStatus;

/// Every status a MID can have, so a status nobody has reads 0 instead of vanishing.
const STATUSES: [MidStatus; 8] = [
    MidStatus::ValidationPending,
    MidStatus::Up,
    MidStatus::Down,
    MidStatus::Paused,
    MidStatus::Draining,
    MidStatus::Drained,
    MidStatus::Upgrading,
    MidStatus::Invalidated,
];

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Telemetry {
    /// Sets the scrape-time gauges: every (state, topic) pair and every status is set,
    /// to 0 when absent, so a queue that drained reads 0 rather than its last value.
    pub fn set_store_gauges(&self, depth: &[QueueDepth], mids: &[MidStatus], auth_failures: u64) {
        self.with(|| {
            for state in [RecordState::Ready, RecordState::Processing] {
                for topic in Topic::ALL {
                    let count = depth
                        .iter()
                        .find(|d| d.state == state && d.topic == topic)
                        .map_or(0, |d| d.count);
                    metrics::gauge!(QUEUE_DEPTH, "state" => state.as_str(), "topic" => topic.as_str())
                        .set(count as f64);
                }
            }
            for status in STATUSES {
                let count = mids.iter().filter(|m| **m == status).count();
                metrics::gauge!(MIDS, "status" => status.as_str()).set(count as f64);
            }
            metrics::counter!(AUTH_FAILURES).absolute(auth_failures);
        });
    }
}

/// The handler. Open like `/healthz` unless the config sets `metrics_token`; then it
/// wants `Authorization: Bearer <metrics_token>` (a refusal counts as an auth failure).
pub async fn serve(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    if let Some(expected) = &state.config.metrics_token {
        let given = crate::api::bearer_of(req.headers());
        if !given.is_some_and(|t| token_matches(t, &hash_token(expected.expose()))) {
            crate::api::count_auth_failure(&state, &req, "invalid metrics token");
            return Err(ApiError::unauthorized(
                "/metrics needs `Authorization: Bearer <metrics_token>` (the instance config sets metrics_token)",
            ));
        }
    }
    let store = state.dispatcher.store();
    let depth = store.queue_depth().await?;
    let mids: Vec<MidStatus> = store
        .list_mids()
        .await?
        .into_iter()
        .map(|m| m.status)
        .collect();
    let telemetry = state.dispatcher.telemetry();
    telemetry.set_store_gauges(&depth, &mids, state.auth_failures.total());
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], telemetry.render()).into_response())
}
