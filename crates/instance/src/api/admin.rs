//! `/api/v1`: what admins, scripts and `openmid ctl` call.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use crate::ecc::{MidKey, Record, RecordFilter};
use crate::registry;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use openmid_proto::api::{
    ActionPending, ActionTimings, EnrollmentToken, MidInfo, NewEnrollmentToken, NewOutput,
    RecordPage, RecordQuery, RestAction, RestActionResult,
};
use openmid_proto::ecc::{EccRecord, Priority, State as RecordState, Topic};
use openmid_proto::rest::{RestRequest, RestResponse};
use serde::Deserialize;
use std::time::Duration;

pub(super) async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

pub(super) async fn create_enrollment_token(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NewEnrollmentToken>,
) -> Result<(StatusCode, Json<EnrollmentToken>), ApiError> {
    let token = registry::create_enrollment_token(state.dispatcher.store(), &req).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[derive(serde::Serialize)]
pub(super) struct MidList {
    mids: Vec<MidInfo>,
}

pub(super) async fn list_mids(State(state): State<AppState>) -> Result<Json<MidList>, ApiError> {
    let rows = state.dispatcher.store().list_mids().await?;
    Ok(Json(MidList {
        mids: rows.iter().map(registry::mid_info).collect(),
    }))
}

pub(super) async fn get_mid(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<MidInfo>, ApiError> {
    let row = state
        .dispatcher
        .store()
        .get_mid(MidKey::Name(&name))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no MID named `{name}`")))?;
    Ok(Json(registry::mid_info(&row)))
}

pub(super) async fn validate_mid(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<MidInfo>, ApiError> {
    let row = registry::validate(state.dispatcher.store(), &name).await?;
    state.dispatcher.wake_mid(&row.name);
    tracing::info!(mid = %row.name, "MID validated");
    Ok(Json(registry::mid_info(&row)))
}

pub(super) async fn insert_output(
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewOutput>,
) -> Result<(StatusCode, Json<EccRecord>), ApiError> {
    let record = state.dispatcher.submit(new).await?;
    Ok((StatusCode::CREATED, Json(record.to_api())))
}

pub(super) async fn get_record(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EccRecord>, ApiError> {
    let record = state
        .dispatcher
        .store()
        .get_record(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no ECC record with id `{id}`")))?;
    Ok(Json(record.to_api()))
}

fn parse_opt<T: std::str::FromStr>(
    field: &str,
    value: &Option<String>,
) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    value
        .as_deref()
        .map(|v| {
            v.parse::<T>().map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!("{field}: {e}"),
                )
            })
        })
        .transpose()
}

pub(super) async fn list_records(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RecordQuery>,
) -> Result<Json<RecordPage>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit: must be 1–1000, got {limit}"),
        ));
    }
    let filter = RecordFilter {
        queue: parse_opt("queue", &q.queue)?,
        state: parse_opt("state", &q.state)?,
        agent: q.agent.clone(),
        topic: parse_opt::<Topic>("topic", &q.topic)?,
        correlator: q.correlator.clone(),
        after: q.after.clone(),
        limit,
    };
    let records = state.dispatcher.store().list_records(&filter).await?;
    let next_after = (records.len() == limit as usize)
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(RecordPage {
        records: records.iter().map(Record::to_api).collect(),
        next_after,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
    /// Seconds to wait for the result (default 0: answer 202 at once).
    wait: Option<f64>,
}

pub(super) async fn rest_action(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(action): ApiJson<RestAction>,
) -> Result<Response, ApiError> {
    let wait = q.wait.unwrap_or(0.0);
    let max = state.config.max_action_wait_secs as f64;
    if !(0.0..=max).contains(&wait) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("wait: must be 0–{max} seconds, got {wait}"),
        ));
    }
    if !openmid_proto::is_valid_name(&action.mid) {
        return Err(ApiError::invalid_field(
            "mid",
            format!("`{}` is not a valid MID name", action.mid),
        ));
    }
    let request = RestRequest {
        method: action.method.unwrap_or_else(|| "GET".into()).to_uppercase(),
        url: action.url,
        headers: action.headers,
        body: action.body,
        timeout_ms: action.timeout_ms,
    };
    let name = format!("{} {}", request.method, request.url);
    let payload = serde_json::to_value(&request).map_err(|e| ApiError::invalid_field("body", e))?;
    let output = state
        .dispatcher
        .submit(NewOutput {
            agent: format!("mid.server.{}", action.mid),
            topic: Topic::RESTProbe,
            name: Some(name),
            source: Some("api:actions/rest".into()),
            payload,
            priority: Some(Priority::Interactive),
            correlator: action.correlator,
            max_attempts: None,
            at_most_once: false,
        })
        .await?;
    let output = state
        .dispatcher
        .wait_finished(&output.id, Duration::from_secs_f64(wait))
        .await?;
    if !output.is_finished() {
        let pending = ActionPending {
            poll: format!("/api/v1/ecc/{}", output.id),
            output_id: output.id,
            state: output.state,
        };
        return Ok((StatusCode::ACCEPTED, Json(pending)).into_response());
    }
    let input = state.dispatcher.store().input_for(&output.id).await?;
    let response = input
        .as_ref()
        .filter(|i| i.state == RecordState::Processed)
        .and_then(|i| serde_json::from_str::<RestResponse>(&i.payload).ok());
    let result = RestActionResult {
        state: output.state,
        input_id: input.as_ref().map(|i| i.id.clone()),
        mid: input
            .as_ref()
            .map(|i| i.source.clone())
            .or(output.claimed_by.clone()),
        attempt: output.attempt,
        error: output.error.clone(),
        response,
        timings: ActionTimings {
            queued_ms: output.claimed_at.map_or(0, |c| c - output.created_at),
            run_ms: input
                .as_ref()
                .and_then(|i| i.duration_ms)
                .map_or(0, |d| d.max(0) as u64),
            total_ms: output.processed_at.map_or(0, |p| p - output.created_at),
        },
        output_id: output.id,
    };
    Ok(Json(result).into_response())
}
