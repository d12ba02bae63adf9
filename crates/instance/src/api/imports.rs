//! `/api/v1/data-sources` and `/api/v1/import-sets`: the sources Import Sets read, their
//! runs, and the rows the runs brought in.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use crate::imports::{DownloadFormat, Trigger, download as download_set};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use openmid_proto::import::{
    DEFAULT_ROWS_PER_PAGE, DataSource, DataSourceInfo, ImportErrorsPage, ImportRowsPage, ImportSet,
    ImportState,
};
use serde::Deserialize;

/// Most import sets one list answer holds.
const MAX_LIST: u32 = 1000;

pub(super) async fn create_source(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DataSource>,
) -> Result<(StatusCode, Json<DataSourceInfo>), ApiError> {
    let info = state
        .dispatcher
        .imports()
        .put_data_source(body, true)
        .await?;
    tracing::info!(source = %info.source.name, kind = info.source.read.kind(), "data source created");
    Ok((StatusCode::CREATED, Json(info)))
}

pub(super) async fn put_source(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<DataSource>,
) -> Result<Json<DataSourceInfo>, ApiError> {
    if body.name != name {
        return Err(ApiError::invalid_field(
            "name",
            "differs from the name in the path (renaming is not supported)",
        ));
    }
    let info = state
        .dispatcher
        .imports()
        .put_data_source(body, false)
        .await?;
    tracing::info!(source = %info.source.name, "data source changed");
    Ok(Json(info))
}

pub(super) async fn list_sources(
    State(state): State<AppState>,
) -> Result<Json<Vec<DataSourceInfo>>, ApiError> {
    Ok(Json(state.dispatcher.imports().list_data_sources().await?))
}

pub(super) async fn get_source(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DataSourceInfo>, ApiError> {
    Ok(Json(
        state.dispatcher.imports().get_data_source(&name).await?,
    ))
}

pub(super) async fn delete_source(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.dispatcher.imports().delete_data_source(&name).await?;
    tracing::info!(source = %name, "data source deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn run_source(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<ImportSet>), ApiError> {
    let set = state
        .dispatcher
        .imports()
        .run(&name, Trigger::Manual)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(set)))
}

/// `GET /api/v1/import-sets` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    source: Option<String>,
    state: Option<ImportState>,
    /// RFC 3339: import sets started before it (the next page of a long list).
    before: Option<String>,
    limit: Option<u32>,
}

pub(super) async fn list_sets(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Vec<ImportSet>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("must be 1–{MAX_LIST}"),
        ));
    }
    let before = match &q.before {
        Some(text) => Some(openmid_proto::time::parse_rfc3339(text).ok_or_else(|| {
            ApiError::invalid_field(
                "before",
                "must be an RFC 3339 time (2026-12-01T10:00:00.000Z)",
            )
        })?),
        None => None,
    };
    Ok(Json(
        state
            .dispatcher
            .imports()
            .import_sets(q.source.as_deref(), q.state, before, limit)
            .await?,
    ))
}

pub(super) async fn get_set(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ImportSet>, ApiError> {
    Ok(Json(state.dispatcher.imports().import_set(&id).await?))
}

/// `GET /api/v1/import-sets/{id}/rows` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RowsQuery {
    /// Rows after this row number (default 0: from the first).
    after: Option<u64>,
    limit: Option<u32>,
}

pub(super) async fn rows(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RowsQuery>,
) -> Result<Json<ImportRowsPage>, ApiError> {
    Ok(Json(
        state
            .dispatcher
            .imports()
            .rows(
                &id,
                q.after.unwrap_or(0),
                q.limit.unwrap_or(DEFAULT_ROWS_PER_PAGE),
            )
            .await?,
    ))
}

pub(super) async fn errors(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ImportErrorsPage>, ApiError> {
    Ok(Json(state.dispatcher.imports().errors(&id).await?))
}

/// `GET /api/v1/import-sets/{id}/download` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DownloadQuery {
    /// `csv` (default) or `jsonl`.
    format: Option<String>,
}

pub(super) async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
) -> Result<Response, ApiError> {
    let format = match q.format.as_deref() {
        None | Some("csv") => DownloadFormat::Csv,
        Some("jsonl" | "ndjson") => DownloadFormat::Jsonl,
        Some(other) => {
            return Err(ApiError::invalid_field(
                "format",
                format!("`{other}`: csv or jsonl"),
            ));
        }
    };
    let file = download_set(state.dispatcher.clone(), &id, format).await?;
    Ok((
        [
            (header::CONTENT_TYPE, file.content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", file.file_name),
            ),
        ],
        Body::from_stream(file.body),
    )
        .into_response())
}
