//! `/api/v1/metrics/…`: scrape targets per agent, range queries and series in
//! Prometheus' answer format; and `POST /mid/v1/metrics`, where MIDs forward samples.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::mid_session::MidSession;
use crate::dispatch::DispatchError;
use crate::metrics::query::{parse_step, parse_time};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use openmid_proto::metrics::{
    NewScrapeTarget, QueryRangeResponse, SampleBatch, SampleBatchAck, ScrapeTargetView,
    SeriesResponse,
};
use serde::Deserialize;

pub(super) async fn put_target(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewScrapeTarget>,
) -> Result<(StatusCode, Json<ScrapeTargetView>), ApiError> {
    let (view, created) = state.dispatcher.metrics().put_target(body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// `?agent=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentQuery {
    agent: Option<String>,
}

pub(super) async fn list_targets(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AgentQuery>,
) -> Result<Json<Vec<ScrapeTargetView>>, ApiError> {
    Ok(Json(
        state
            .dispatcher
            .metrics()
            .targets(q.agent.as_deref())
            .await?,
    ))
}

pub(super) async fn get_target(
    State(state): State<AppState>,
    ApiPath((agent, name)): ApiPath<(String, String)>,
) -> Result<Json<ScrapeTargetView>, ApiError> {
    Ok(Json(
        state.dispatcher.metrics().target(&agent, &name).await?,
    ))
}

pub(super) async fn delete_target(
    State(state): State<AppState>,
    ApiPath((agent, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .dispatcher
        .metrics()
        .delete_target(&agent, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `query_range`'s parameters, as Prometheus names them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RangeQuery {
    query: Option<String>,
    start: Option<String>,
    end: Option<String>,
    step: Option<String>,
}

/// A bad query parameter: 400 naming it (the query string is not a body).
fn bad_param(e: DispatchError) -> ApiError {
    match e {
        DispatchError::Invalid { field, message } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{field}: {message}"),
        ),
        other => other.into(),
    }
}

fn required<'a>(name: &str, v: &'a Option<String>) -> Result<&'a str, ApiError> {
    v.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{name}: required"),
        )
    })
}

pub(super) async fn query_range(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<QueryRangeResponse>, ApiError> {
    let query = required("query", &q.query)?;
    let start = parse_time("start", required("start", &q.start)?).map_err(bad_param)?;
    let end = parse_time("end", required("end", &q.end)?).map_err(bad_param)?;
    let step = parse_step(required("step", &q.step)?).map_err(bad_param)?;
    Ok(Json(
        state
            .dispatcher
            .metrics()
            .query_range(query, start, end, step)
            .await
            .map_err(bad_param)?,
    ))
}

/// `query`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InstantQuery {
    query: Option<String>,
    time: Option<String>,
}

pub(super) async fn query(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<InstantQuery>,
) -> Result<Json<QueryRangeResponse>, ApiError> {
    let query = required("query", &q.query)?;
    let time = match q.time.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => parse_time("time", t).map_err(bad_param)?,
        None => openmid_proto::time::now_ms(),
    };
    Ok(Json(
        state
            .dispatcher
            .metrics()
            .query_samples(query, time)
            .await
            .map_err(bad_param)?,
    ))
}

/// `series`' parameter, as Prometheus names it (one selector).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SeriesQuery {
    #[serde(rename = "match[]")]
    matcher: Option<String>,
}

pub(super) async fn series(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<SeriesQuery>,
) -> Result<Json<SeriesResponse>, ApiError> {
    let query = required("match[]", &q.matcher)?;
    Ok(Json(
        state
            .dispatcher
            .metrics()
            .series(query)
            .await
            .map_err(bad_param)?,
    ))
}

pub(super) async fn mid_post_samples(
    State(state): State<AppState>,
    MidSession(mid): MidSession,
    ApiJson(batch): ApiJson<SampleBatch>,
) -> Result<Json<SampleBatchAck>, ApiError> {
    Ok(Json(
        state.dispatcher.metrics().ingest(&mid.name, &batch).await?,
    ))
}
