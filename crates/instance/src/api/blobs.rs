//! Blob routes: large request and response bodies travel here as raw streams, beside
//! the JSON API, so neither side holds a whole body in memory. Admins upload and
//! download blobs; a MID downloads the request body of an output it holds and uploads
//! the response body of the attempt it runs.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiPath as Path, ApiQuery as Query};
use super::mid_session::MidSession;
use crate::ecc::Record;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use openmid_proto::blob::BlobRef;
use openmid_proto::ecc::{Queue, State as RecordState};
use std::collections::HashMap;

/// Bytes read from the file per chunk served.
const READ_CHUNK: usize = 256 * 1024;

/// `POST /api/v1/blobs`: stores the raw body; 201 with its [`BlobRef`].
pub(super) async fn upload(
    State(state): State<AppState>,
    body: Body,
) -> Result<(StatusCode, Json<BlobRef>), ApiError> {
    let blob = state
        .dispatcher
        .blobs()
        .write(body.into_data_stream(), None)
        .await?;
    tracing::info!(blob = %blob.id, bytes = blob.size, "blob uploaded");
    Ok((StatusCode::CREATED, Json(blob)))
}

/// `GET /api/v1/blobs/{id}`: the bytes.
pub(super) async fn download(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    serve(&state, &id).await
}

async fn serve(state: &AppState, id: &str) -> Result<Response, ApiError> {
    let Some((blob, file)) = state.dispatcher.blobs().open(id).await? else {
        return Err(ApiError::not_found(format!("no blob `{id}`")));
    };
    let stream = tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, blob.size.to_string()),
            (
                header::HeaderName::from_static("x-openmid-sha256"),
                blob.sha256,
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The output `output_id` if `mid` holds it now (claimed, processing).
async fn held_output(state: &AppState, mid: &str, output_id: &str) -> Result<Record, ApiError> {
    let record = state.dispatcher.store().get_record(output_id).await?;
    match record {
        Some(r)
            if r.queue == Queue::Output
                && r.state == RecordState::Processing
                && r.claimed_by.as_deref() == Some(mid) =>
        {
            Ok(r)
        }
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_held",
            format!(
                "this MID does not hold output `{output_id}` (finished, or re-assigned after a lapsed lease)"
            ),
        )),
    }
}

/// `GET /mid/v1/blobs/{id}?output=OUTPUT_ID`: the request body of an output the MID
/// holds. The id alone is not enough: the output must name it and be this MID's.
pub(super) async fn mid_download(
    State(state): State<AppState>,
    MidSession(mid): MidSession,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let Some(output_id) = query.get("output") else {
        return Err(ApiError::invalid_field(
            "output",
            "name the output whose body this is (?output=ID)",
        ));
    };
    let output = held_output(&state, &mid.name, output_id).await?;
    let named = serde_json::from_str::<serde_json::Value>(&output.payload)
        .ok()
        .and_then(|p| p.get("body_blob")?.as_str().map(str::to_string));
    if named.as_deref() != Some(id.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("output `{output_id}` does not send blob `{id}`"),
        ));
    }
    serve(&state, &id).await
}

/// The parameters of the response-body route, by name so a bad one is named.
#[derive(serde::Deserialize)]
pub(super) struct BodyPath {
    output_id: String,
    attempt: u32,
}

/// `PUT /mid/v1/results/{output_id}/{attempt}/body`: the response body of the attempt
/// the MID runs, stored as a blob before the result naming it is posted. A repeat
/// (a MID that restarted before posting the result) stores it again.
pub(super) async fn mid_upload_body(
    State(state): State<AppState>,
    MidSession(mid): MidSession,
    Path(BodyPath { output_id, attempt }): Path<BodyPath>,
    body: Body,
) -> Result<Json<BlobRef>, ApiError> {
    let output = held_output(&state, &mid.name, &output_id).await?;
    if output.attempt != attempt {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_held",
            format!(
                "attempt {attempt} of output `{output_id}` was superseded (now attempt {})",
                output.attempt
            ),
        ));
    }
    let blob = state
        .dispatcher
        .blobs()
        .write(body.into_data_stream(), Some(output_id.clone()))
        .await?;
    tracing::debug!(output = %output_id, attempt, blob = %blob.id, bytes = blob.size, "response body stored");
    Ok(Json(blob))
}
