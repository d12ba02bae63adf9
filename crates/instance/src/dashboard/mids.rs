//! MID Servers: the list, one MID with its status history, and the admin actions
//! (validate, pause, resume, drain, invalidate, rekey), each behind a confirmation
//! page and the session's CSRF token. An action is the dispatcher's call the JSON
//! API's `POST /api/v1/mids/{name}/{action}` makes.

use super::csrf;
use super::page::{DashError, Layout, form, maybe_time, render, time};
use super::session::Session;
use crate::api::AppState;
use crate::dispatch::AdminAction;
use crate::ecc::{ClusterRow, Load, MidKey, MidRow};
use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use openmid_proto::mid::MidStatus;

/// One MID as the list and the detail page show it.
pub(super) struct MidView {
    pub name: String,
    pub status: &'static str,
    pub status_reason: String,
    pub version: String,
    pub hostname: String,
    pub last_heartbeat: String,
    pub last_seen: String,
    /// Per pool: (pool, running, size).
    pub pools: Vec<(&'static str, u32, u32)>,
    pub ready: u64,
    pub processing: u64,
    pub queued: String,
    pub outbox: String,
    pub policy_denials: String,
    pub clusters: Vec<String>,
}

impl MidView {
    fn of(row: &MidRow, load: Load, clusters: &[ClusterRow]) -> Self {
        let health = row.health.as_ref();
        let pools = health
            .map(|h| {
                vec![
                    (
                        "interactive",
                        h.running_by_pool.interactive,
                        h.pool_sizes.interactive,
                    ),
                    (
                        "expedited",
                        h.running_by_pool.expedited,
                        h.pool_sizes.expedited,
                    ),
                    (
                        "standard",
                        h.running_by_pool.standard,
                        h.pool_sizes.standard,
                    ),
                ]
            })
            .unwrap_or_default();
        let dash = || "—".to_string();
        Self {
            name: row.name.clone(),
            status: row.status.as_str(),
            status_reason: row.status_reason.clone().unwrap_or_default(),
            version: row.version.clone(),
            hostname: row.hostname.clone(),
            last_heartbeat: health.map_or_else(dash, |h| h.reported_at.clone()),
            last_seen: maybe_time(row.last_seen_at),
            pools,
            ready: load.ready,
            processing: load.processing,
            queued: health.map_or_else(dash, |h| h.queued.to_string()),
            outbox: health.map_or_else(dash, |h| {
                format!("{} results, {} bytes", h.outbox_len, h.outbox_bytes)
            }),
            policy_denials: health.map_or_else(dash, |h| h.policy_denials.to_string()),
            clusters: clusters
                .iter()
                .filter(|c| c.members.contains(&row.name))
                .map(|c| c.name.clone())
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "mids.html")]
struct MidsPage {
    layout: Layout,
    mids: Vec<MidView>,
}

/// `GET /ui/mids`.
pub(super) async fn list(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, DashError> {
    let store = state.dispatcher.store();
    let rows = store.list_mids().await?;
    let load = store.load_by_mid().await?;
    let clusters = store.list_clusters().await?;
    let mids = rows
        .iter()
        .map(|r| MidView::of(r, load.get(&r.name).copied().unwrap_or_default(), &clusters))
        .collect();
    Ok(render(
        StatusCode::OK,
        &MidsPage {
            layout: Layout::new("mids", Some(session.csrf)),
            mids,
        },
    ))
}

/// One status change as shown.
pub(super) struct ChangeView {
    pub at: String,
    pub from: &'static str,
    pub to: &'static str,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "mid.html")]
struct MidPage {
    layout: Layout,
    mid: MidView,
    enrolled: String,
    validated: String,
    protocol_version: u32,
    capabilities: String,
    applications: String,
    ip_ranges: String,
    topics: String,
    rekey_pending: bool,
    history: Vec<ChangeView>,
    /// The actions the MID's status allows: (action, label).
    actions: Vec<(&'static str, &'static str)>,
    done: Option<String>,
}

/// The actions that make sense from a status (the dispatcher decides; this only
/// leaves out buttons that would certainly be refused).
fn actions_for(status: MidStatus) -> Vec<(&'static str, &'static str)> {
    use MidStatus::*;
    let mut out = Vec::new();
    if status == ValidationPending {
        out.push(("validate", "Validate"));
    }
    if matches!(status, Up | Down | Draining | Drained) {
        out.push(("pause", "Pause"));
    }
    if matches!(status, Paused | Draining | Drained) {
        out.push(("resume", "Resume"));
    }
    if matches!(status, Up | Down | Paused) {
        out.push(("drain", "Drain"));
    }
    if status != Invalidated {
        out.push(("rekey", "Rekey"));
        out.push(("invalidate", "Invalidate"));
    }
    out
}

#[derive(serde::Deserialize)]
pub(super) struct DoneQuery {
    done: Option<String>,
}

async fn mid_row(state: &AppState, name: &str) -> Result<MidRow, DashError> {
    state
        .dispatcher
        .store()
        .get_mid(MidKey::Name(name))
        .await?
        .ok_or_else(|| DashError::NotFound(format!("no MID named `{name}`")))
}

/// `GET /ui/mids/{name}`.
pub(super) async fn detail(
    State(state): State<AppState>,
    session: Session,
    Path(name): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Result<Response, DashError> {
    let store = state.dispatcher.store();
    let row = mid_row(&state, &name).await?;
    let load = store.load_by_mid().await?;
    let clusters = store.list_clusters().await?;
    let history = store
        .mid_history(&row.id, 200)
        .await?
        .into_iter()
        .map(|c| ChangeView {
            at: time(c.at),
            from: c.from.map_or("—", MidStatus::as_str),
            to: c.to.as_str(),
            reason: c.reason,
        })
        .collect();
    let profile = row.profile();
    let done = q
        .done
        .as_deref()
        .and_then(|d| action_label(d).map(|l| format!("{l}: done.")));
    Ok(render(
        StatusCode::OK,
        &MidPage {
            layout: Layout::new("mids", Some(session.csrf)),
            mid: MidView::of(
                &row,
                load.get(&row.name).copied().unwrap_or_default(),
                &clusters,
            ),
            enrolled: time(row.enrolled_at),
            validated: maybe_time(row.validated_at),
            protocol_version: row.protocol_version,
            capabilities: profile.capabilities.join(", "),
            applications: profile.applications.join(", "),
            ip_ranges: profile.ip_ranges.join(", "),
            topics: profile
                .topics
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            rekey_pending: row.rekey_requested,
            history,
            actions: actions_for(row.status),
            done,
        },
    ))
}

/// What an action is called on the page, and what it does (for the confirmation).
fn action_label(action: &str) -> Option<&'static str> {
    Some(match action {
        "validate" => "Validate",
        "pause" => "Pause",
        "resume" => "Resume",
        "drain" => "Drain",
        "invalidate" => "Invalidate",
        "rekey" => "Rekey",
        _ => return None,
    })
}

fn action_effect(action: &str) -> &'static str {
    match action {
        "validate" => "The MID may take work from now on.",
        "pause" => "The MID takes no new work; it stays connected and finishes nothing new.",
        "resume" => "The MID takes work again.",
        "drain" => "The MID finishes what it runs, takes no more, then is drained.",
        "invalidate" => {
            "The MID is refused everywhere, at once and for good: it must enroll again."
        }
        "rekey" => "The MID is asked to make a new key and secret at its next contact.",
        _ => "",
    }
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    layout: Layout,
    name: String,
    action: String,
    label: &'static str,
    effect: &'static str,
    status: &'static str,
    csrf: String,
}

/// `GET /ui/mids/{name}/{action}`: the confirmation step.
pub(super) async fn confirm(
    State(state): State<AppState>,
    session: Session,
    Path((name, action)): Path<(String, String)>,
) -> Result<Response, DashError> {
    let label = action_label(&action).ok_or_else(|| unknown_action(&action))?;
    let row = mid_row(&state, &name).await?;
    Ok(render(
        StatusCode::OK,
        &ConfirmPage {
            layout: Layout::new("mids", Some(session.csrf.clone())),
            effect: action_effect(&action),
            name: row.name,
            action,
            label,
            status: row.status.as_str(),
            csrf: session.csrf,
        },
    ))
}

fn unknown_action(action: &str) -> DashError {
    DashError::NotFound(format!(
        "no MID action `{action}`: use validate, pause, resume, drain, invalidate or rekey"
    ))
}

/// What a path segment keeps unencoded: letters, digits and the other characters a
/// MID name may hold.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.');

/// `POST /ui/mids/{name}/{action}`: the confirmed action, then back to the MID.
pub(super) async fn act(
    State(state): State<AppState>,
    session: Session,
    Path((name, action)): Path<(String, String)>,
    parts: Parts,
    body: Bytes,
) -> Result<Response, DashError> {
    csrf::check(&session, &parts.headers, &parts.uri, &form(&body))?;
    if action == "rekey" {
        state.dispatcher.request_rekey(&name).await?;
    } else {
        let parsed = AdminAction::parse(&action).ok_or_else(|| unknown_action(&action))?;
        state.dispatcher.admin_action(&name, parsed).await?;
    }
    tracing::info!(mid = %name, action = %action, "MID action from the dashboard");
    let to = format!(
        "/ui/mids/{}?done={action}",
        percent_encoding::utf8_percent_encode(&name, PATH_SEGMENT)
    );
    Ok(Redirect::to(&to).into_response())
}
