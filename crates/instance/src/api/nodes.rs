//! `GET /api/v1/nodes`: the instance nodes sharing the store, which are alive, and
//! which one does the housekeeping — what an operator checks behind a load balancer.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::State;

/// The nodes seen within the last hour.
pub async fn list_nodes(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let nodes = state.dispatcher.list_nodes().await?;
    Ok(Json(serde_json::json!({ "nodes": nodes })))
}
