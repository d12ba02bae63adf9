//! `/api/v1/credentials` and `/api/v1/aliases`. Secret fields are write-only: every
//! answer carries the redacted form.

use super::AppState;
use super::error::ApiError;
use super::extract::ApiJson;
use crate::connections::parse_credential_body;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use openmid_proto::alias::{Alias, AliasInfo, CredentialInfo};

pub(super) async fn create_credential(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, Json<CredentialInfo>), ApiError> {
    let (name, description, spec) = parse_credential_body(body)?;
    let name = name.ok_or_else(|| ApiError::invalid_field("name", "is required"))?;
    let info = state
        .dispatcher
        .connections()
        .put_credential(&name, description, spec, true)
        .await?;
    tracing::info!(credential = %info.name, kind = %info.spec.type_name(), "credential created");
    Ok((StatusCode::CREATED, Json(info)))
}

pub(super) async fn put_credential(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Json<CredentialInfo>, ApiError> {
    let (given, description, spec) = parse_credential_body(body)?;
    if given.as_ref().is_some_and(|g| g != &name) {
        return Err(ApiError::invalid_field(
            "name",
            "differs from the name in the path (renaming is not supported)",
        ));
    }
    let info = state
        .dispatcher
        .connections()
        .put_credential(&name, description, spec, false)
        .await?;
    tracing::info!(credential = %info.name, kind = %info.spec.type_name(), "credential changed");
    Ok(Json(info))
}

pub(super) async fn list_credentials(
    State(state): State<AppState>,
) -> Result<Json<Vec<CredentialInfo>>, ApiError> {
    Ok(Json(
        state.dispatcher.connections().list_credentials().await?,
    ))
}

pub(super) async fn get_credential(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<CredentialInfo>, ApiError> {
    Ok(Json(
        state.dispatcher.connections().get_credential(&name).await?,
    ))
}

pub(super) async fn delete_credential(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .dispatcher
        .connections()
        .delete_credential(&name)
        .await?;
    tracing::info!(credential = %name, "credential deleted");
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn create_alias(
    State(state): State<AppState>,
    ApiJson(alias): ApiJson<Alias>,
) -> Result<(StatusCode, Json<AliasInfo>), ApiError> {
    let info = state
        .dispatcher
        .connections()
        .put_alias(alias, true)
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

pub(super) async fn put_alias(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(alias): ApiJson<Alias>,
) -> Result<Json<AliasInfo>, ApiError> {
    if alias.name != name {
        return Err(ApiError::invalid_field(
            "name",
            "differs from the name in the path (renaming is not supported)",
        ));
    }
    Ok(Json(
        state
            .dispatcher
            .connections()
            .put_alias(alias, false)
            .await?,
    ))
}

pub(super) async fn list_aliases(
    State(state): State<AppState>,
) -> Result<Json<Vec<AliasInfo>>, ApiError> {
    Ok(Json(state.dispatcher.connections().list_aliases().await?))
}

pub(super) async fn get_alias(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AliasInfo>, ApiError> {
    Ok(Json(state.dispatcher.connections().get_alias(&name).await?))
}

pub(super) async fn delete_alias(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.dispatcher.connections().delete_alias(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
