//! `/api/v1/discovery/runs`, `/api/v1/discovery/schedules` and `/api/v1/devices`:
//! discovery runs (a ping of some ranges through a MID, a scan of what answered, an
//! identification of what the hosts are), the schedules that start them, and the
//! devices they file.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use openmid_proto::devices::{
    Device, DiscoveryRun, DiscoverySchedule, DiscoveryScheduleInfo, NewDiscoveryRun,
};
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

/// `GET /api/v1/discovery/runs` query: `?schedule=&limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunQuery {
    /// Runs of this schedule only.
    schedule: Option<String>,
    limit: Option<u32>,
}

pub(super) async fn list_runs(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> Result<Json<Vec<DiscoveryRun>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
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
            .runs(q.schedule.as_deref(), limit)
            .await?,
    ))
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

pub(super) async fn create_schedule(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DiscoverySchedule>,
) -> Result<(StatusCode, Json<DiscoveryScheduleInfo>), ApiError> {
    let info = state
        .dispatcher
        .discovery()
        .put_schedule(body, true)
        .await?;
    tracing::info!(schedule = %info.name, "discovery schedule created");
    Ok((StatusCode::CREATED, Json(info)))
}

pub(super) async fn put_schedule(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<DiscoverySchedule>,
) -> Result<Json<DiscoveryScheduleInfo>, ApiError> {
    if body.name != name {
        return Err(ApiError::invalid_field(
            "name",
            "differs from the name in the path (renaming is not supported)",
        ));
    }
    let info = state
        .dispatcher
        .discovery()
        .put_schedule(body, false)
        .await?;
    tracing::info!(schedule = %info.name, "discovery schedule changed");
    Ok(Json(info))
}

pub(super) async fn list_schedules(
    State(state): State<AppState>,
) -> Result<Json<Vec<DiscoveryScheduleInfo>>, ApiError> {
    Ok(Json(state.dispatcher.discovery().schedules().await?))
}

pub(super) async fn get_schedule(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DiscoveryScheduleInfo>, ApiError> {
    Ok(Json(state.dispatcher.discovery().schedule(&name).await?))
}

pub(super) async fn delete_schedule(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.dispatcher.discovery().delete_schedule(&name).await?;
    tracing::info!(schedule = %name, "discovery schedule deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn run_schedule(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<DiscoveryRun>), ApiError> {
    let run = state.dispatcher.discovery().run_schedule(&name).await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}
