//! `/api/v1`: what admins, scripts and `openmid ctl` call.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath as Path, ApiQuery, check_text};
use crate::dispatch::AdminAction;
use crate::ecc::{ClusterRow, MidKey, MidRow, Record, RecordFilter};
use crate::registry;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use openmid_proto::api::{
    ClusterInfo, ClusterMember, EnrollmentToken, MidInfo, NewCluster, NewEnrollmentToken,
    NewOutput, ProfileUpdate, RecordPage, RecordQuery, StatusChange,
};
use openmid_proto::ecc::{EccRecord, Topic};
use openmid_proto::time::{now_ms, rfc3339};

/// Longest enrollment-token note, in characters: a line for people saying who the
/// token is for, not a document store.
const MAX_NOTE_CHARS: usize = 500;

pub(super) async fn create_enrollment_token(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NewEnrollmentToken>,
) -> Result<(StatusCode, Json<EnrollmentToken>), ApiError> {
    if let Some(note) = &req.note {
        check_text("note", note, true, Some(MAX_NOTE_CHARS))?;
    }
    let token = registry::create_enrollment_token(state.dispatcher.store(), &req).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

#[derive(serde::Serialize)]
pub(super) struct MidList {
    mids: Vec<MidInfo>,
}

pub(super) async fn list_mids(State(state): State<AppState>) -> Result<Json<MidList>, ApiError> {
    let store = state.dispatcher.store();
    let rows = store.list_mids().await?;
    let load = store.load_by_mid().await?;
    Ok(Json(MidList {
        mids: rows
            .iter()
            .map(|r| registry::mid_info(r, load.get(&r.name).copied().unwrap_or_default()))
            .collect(),
    }))
}

async fn mid_row(state: &AppState, name: &str) -> Result<MidRow, ApiError> {
    state
        .dispatcher
        .store()
        .get_mid(MidKey::Name(name))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no MID named `{name}`")))
}

async fn info(state: &AppState, row: &MidRow) -> Result<MidInfo, ApiError> {
    let load = state.dispatcher.store().load_by_mid().await?;
    Ok(registry::mid_info(
        row,
        load.get(&row.name).copied().unwrap_or_default(),
    ))
}

pub(super) async fn get_mid(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<MidInfo>, ApiError> {
    let row = mid_row(&state, &name).await?;
    Ok(Json(info(&state, &row).await?))
}

pub(super) async fn delete_mid(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.dispatcher.delete_mid(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn mid_action(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<MidInfo>, ApiError> {
    let row = if action == "rekey" {
        state.dispatcher.request_rekey(&name).await?
    } else {
        let action = AdminAction::parse(&action).ok_or_else(|| {
            ApiError::not_found(format!(
                "no MID action `{action}`: use validate, pause, resume, drain, invalidate or rekey"
            ))
        })?;
        state.dispatcher.admin_action(&name, action).await?
    };
    Ok(Json(info(&state, &row).await?))
}

#[derive(serde::Serialize)]
pub(super) struct History {
    changes: Vec<StatusChange>,
}

pub(super) async fn mid_history(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<History>, ApiError> {
    let row = mid_row(&state, &name).await?;
    let changes = state.dispatcher.store().mid_history(&row.id, 200).await?;
    Ok(Json(History {
        changes: changes
            .into_iter()
            .map(|c| StatusChange {
                at: rfc3339(c.at),
                from: c.from,
                to: c.to,
                reason: c.reason,
            })
            .collect(),
    }))
}

pub(super) async fn update_mid_profile(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(update): ApiJson<ProfileUpdate>,
) -> Result<Json<MidInfo>, ApiError> {
    let mut current = mid_row(&state, &name).await?;
    let admin = if update.reset {
        None
    } else {
        let mut merged = current.admin_profile.take().unwrap_or_default();
        merged.capabilities = update.capabilities.or(merged.capabilities);
        merged.applications = update.applications.or(merged.applications);
        merged.ip_ranges = update.ip_ranges.or(merged.ip_ranges);
        Some(merged)
    };
    if let Some(admin) = &admin {
        let candidate = MidRow {
            admin_profile: Some(admin.clone()),
            ..current.clone()
        };
        registry::check_profile(&candidate.profile())?;
    }
    let row = state
        .dispatcher
        .store()
        .set_admin_profile(&name, admin.as_ref())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no MID named `{name}`")))?;
    state.dispatcher.want_rebalance();
    Ok(Json(info(&state, &row).await?))
}

async fn cluster_info(state: &AppState, cluster: ClusterRow) -> Result<ClusterInfo, ApiError> {
    let mids = state.dispatcher.store().list_mids().await?;
    Ok(ClusterInfo {
        members: cluster
            .members
            .iter()
            .enumerate()
            .map(|(i, name)| ClusterMember {
                name: name.clone(),
                rank: i as u32 + 1,
                status: mids.iter().find(|m| &m.name == name).map(|m| m.status),
            })
            .collect(),
        name: cluster.name,
        kind: cluster.kind,
    })
}

fn check_cluster(c: &NewCluster) -> Result<(), ApiError> {
    if !openmid_proto::is_valid_name(&c.name) {
        return Err(ApiError::invalid_field(
            "name",
            format!("`{}` is not a valid cluster name", c.name),
        ));
    }
    if c.members.is_empty() || c.members.len() > 100 {
        return Err(ApiError::invalid_field(
            "members",
            "give 1–100 member MID names",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for m in &c.members {
        if !openmid_proto::is_valid_name(m) {
            return Err(ApiError::invalid_field(
                "members",
                format!("`{m}` is not a valid MID name"),
            ));
        }
        if !seen.insert(m) {
            return Err(ApiError::invalid_field(
                "members",
                format!("`{m}` is listed twice"),
            ));
        }
    }
    Ok(())
}

pub(super) async fn create_cluster(
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewCluster>,
) -> Result<(StatusCode, Json<ClusterInfo>), ApiError> {
    check_cluster(&new)?;
    let store = state.dispatcher.store();
    if store.get_cluster(&new.name).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "a cluster named `{}` exists: PUT /api/v1/clusters/{} to change it",
                new.name, new.name
            ),
        ));
    }
    store
        .put_cluster(&new.name, new.kind, &new.members, now_ms())
        .await?;
    state.dispatcher.want_rebalance();
    let row = store
        .get_cluster(&new.name)
        .await?
        .ok_or_else(|| ApiError::not_found("cluster vanished"))?;
    Ok((StatusCode::CREATED, Json(cluster_info(&state, row).await?)))
}

pub(super) async fn put_cluster(
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(new): ApiJson<NewCluster>,
) -> Result<Json<ClusterInfo>, ApiError> {
    check_cluster(&new)?;
    if new.name != name {
        return Err(ApiError::invalid_field(
            "name",
            format!("must match the path (`{name}`)"),
        ));
    }
    let store = state.dispatcher.store();
    store
        .put_cluster(&new.name, new.kind, &new.members, now_ms())
        .await?;
    state.dispatcher.want_rebalance();
    let row = store
        .get_cluster(&name)
        .await?
        .ok_or_else(|| ApiError::not_found("cluster vanished"))?;
    Ok(Json(cluster_info(&state, row).await?))
}

#[derive(serde::Serialize)]
pub(super) struct ClusterList {
    clusters: Vec<ClusterInfo>,
}

pub(super) async fn list_clusters(
    State(state): State<AppState>,
) -> Result<Json<ClusterList>, ApiError> {
    let rows = state.dispatcher.store().list_clusters().await?;
    let mut clusters = Vec::with_capacity(rows.len());
    for row in rows {
        clusters.push(cluster_info(&state, row).await?);
    }
    Ok(Json(ClusterList { clusters }))
}

pub(super) async fn get_cluster(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ClusterInfo>, ApiError> {
    let row = state
        .dispatcher
        .store()
        .get_cluster(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no cluster named `{name}`")))?;
    Ok(Json(cluster_info(&state, row).await?))
}

pub(super) async fn delete_cluster(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.dispatcher.store().delete_cluster(&name).await? {
        state.dispatcher.want_rebalance();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no cluster named `{name}`")))
    }
}

/// `POST /api/v1/ecc`: 201 with the new output, or 200 with the first one when the
/// `Idempotency-Key` was used before for the same request.
pub(super) async fn insert_output(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(new): ApiJson<NewOutput>,
) -> Result<Response, ApiError> {
    let key = super::idempotency::from_headers(&headers, "ecc", &new)?;
    let span = super::trace::span_for(&headers, "POST /api/v1/ecc".into());
    let submitted = state
        .dispatcher
        .submit_once(new, key.as_ref(), Some(span.trace), false)
        .await?;
    span.finish(&state, &submitted.record.id, None);
    let status = if submitted.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let response = (status, Json(submitted.record.to_api())).into_response();
    let response = super::trace::answer_with(response, submitted.record.traceparent.as_deref());
    Ok(super::idempotency::mark(response, submitted.replayed))
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

/// `POST /api/v1/ecc/{id}/cancel`: 200 with the output `cancelled` when it had not
/// started; 202 with it still `processing` when its MID was told to stop (it ends
/// `cancelled`, keeping what it produced so far); 409 when it had already finished.
pub(super) async fn cancel_record(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(match state.dispatcher.cancel(&id).await? {
        crate::ecc::Cancelled::Now(record) => Json(record.to_api()).into_response(),
        crate::ecc::Cancelled::Stopping(record) => {
            (StatusCode::ACCEPTED, Json(record.to_api())).into_response()
        }
        crate::ecc::Cancelled::AlreadyFinished(record) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "finished",
                format!(
                    "output `{}` is already {}: there is nothing to cancel",
                    record.id,
                    record.state.as_str()
                ),
            ));
        }
    })
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
        ..RecordFilter::default()
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
