//! `/api/v1/discovery/runs` and `/api/v1/devices`: discovery runs (a ping of some
//! ranges through a MID, then a scan of what answered) and the devices they file.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use openmid_proto::devices::{Device, DiscoveryRun, NewDiscoveryRun};
use serde::Deserialize;

/// Most records one list answer holds.
const MAX_LIST: u32 = 1000;

pub(super) async fn start_run(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewDiscoveryRun>,
) -> Result<(StatusCode, Json<DiscoveryRun>), ApiError> {
    let run = state.dispatcher.discovery().start(body).await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

/// `?limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Limit {
    limit: Option<u32>,
}

pub(super) async fn list_runs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<Limit>,
) -> Result<Json<Vec<DiscoveryRun>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("must be 1–{MAX_LIST}"),
        ));
    }
    Ok(Json(state.dispatcher.discovery().runs(limit).await?))
}

pub(super) async fn get_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DiscoveryRun>, ApiError> {
    Ok(Json(state.dispatcher.discovery().run(&id).await?))
}

/// `GET /api/v1/devices` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeviceQuery {
    class: Option<String>,
    /// Devices after this address (the last of the previous page).
    after: Option<String>,
    limit: Option<u32>,
}

pub(super) async fn list_devices(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DeviceQuery>,
) -> Result<Json<Vec<Device>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("must be 1–{MAX_LIST}"),
        ));
    }
    Ok(Json(
        state
            .dispatcher
            .discovery()
            .devices(q.class.as_deref(), q.after.as_deref(), limit)
            .await?,
    ))
}

pub(super) async fn get_device(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Device>, ApiError> {
    Ok(Json(state.dispatcher.discovery().device(&id).await?))
}
