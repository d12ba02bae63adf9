//! `/mid/v1`: the MID session. Every request but enrollment carries the MID's
//! credentials and protocol version.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Origin, bearer};
use crate::ecc::{EnrollError, MidRow};
use crate::registry::{self, RegistryError};
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use openmid_proto::PROTOCOL_HEADER;
use openmid_proto::mid::{
    EnrollRequest, EnrollResponse, HeartbeatRequest, HeartbeatResponse, PollRequest, PollResponse,
    RekeyRequest, ResultsRequest, ResultsResponse,
};

/// An authenticated MID.
pub struct MidSession(pub MidRow);

impl FromRequestParts<AppState> for MidSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let version = parts
            .headers
            .get(PROTOCOL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "missing_protocol",
                    format!("send the `{PROTOCOL_HEADER}` header with the protocol version"),
                )
            })?;
        registry::check_protocol(version)?;
        let failed = |reason: &str| {
            let origin = Origin::of(&parts.extensions, &parts.uri);
            state
                .auth_failures
                .record(origin.peer, &origin.route, reason);
        };
        let Some(token) = bearer(&parts.headers) else {
            failed("no MID credential");
            return Err(ApiError::unauthorized("missing MID credential"));
        };
        match registry::authenticate(state.dispatcher.store(), token).await {
            Ok(row) => Ok(MidSession(row)),
            Err(e @ (RegistryError::Unauthorized(_) | RegistryError::Invalidated)) => {
                failed(&e.to_string());
                Err(e.into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

pub(super) async fn enroll(
    State(state): State<AppState>,
    origin: Origin,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<(StatusCode, Json<EnrollResponse>), ApiError> {
    let row = match registry::enroll(state.dispatcher.store(), &req).await {
        Ok(row) => row,
        Err(e @ RegistryError::Enroll(EnrollError::TokenInvalid)) => {
            state
                .auth_failures
                .record(origin.peer, &origin.route, "enrollment token not valid");
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(mid = %row.name, status = row.status.as_str(), "MID enrolled");
    Ok((StatusCode::CREATED, Json(registry::enroll_response(&row))))
}

pub(super) async fn poll(
    State(state): State<AppState>,
    MidSession(mid): MidSession,
    ApiJson(req): ApiJson<PollRequest>,
) -> Result<Json<PollResponse>, ApiError> {
    Ok(Json(
        state.dispatcher.poll(&mid, &req, &state.shutdown).await?,
    ))
}

pub(super) async fn results(
    State(state): State<AppState>,
    MidSession(mid): MidSession,
    ApiJson(req): ApiJson<ResultsRequest>,
) -> Result<Json<ResultsResponse>, ApiError> {
    Ok(Json(state.dispatcher.accept_results(&mid, &req).await?))
}

pub(super) async fn heartbeat(
    State(state): State<AppState>,
    MidSession(mid): MidSession,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    Ok(Json(state.dispatcher.heartbeat(&mid, &req).await?))
}

pub(super) async fn rekey(
    State(state): State<AppState>,
    MidSession(mid): MidSession,
    ApiJson(req): ApiJson<RekeyRequest>,
) -> Result<StatusCode, ApiError> {
    state.dispatcher.rekey(&mid, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}
