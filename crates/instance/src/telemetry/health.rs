//! `GET /readyz`: whether this node should get traffic — its store answers and it is
//! not shutting down. `/healthz` stays the liveness check (the process answers).

use crate::api::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Longest the store may take to answer the readiness query.
const STORE_DEADLINE: Duration = Duration::from_secs(2);

fn not_ready(reason: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({"status": "not_ready", "reason": reason})),
    )
        .into_response()
}

/// The handler: 200 `{status: "ready"}`, or 503 `{status: "not_ready", reason}`.
pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        return not_ready("the instance is shutting down".into());
    }
    let store = state.dispatcher.store();
    match tokio::time::timeout(STORE_DEADLINE, store.get_setting("readyz")).await {
        Err(_) => not_ready(format!(
            "the store did not answer within {}s",
            STORE_DEADLINE.as_secs()
        )),
        Ok(Err(e)) => not_ready(format!("the store failed: {e}")),
        Ok(Ok(_)) => Json(serde_json::json!({"status": "ready"})).into_response(),
    }
}
