//! `GET /api/v1/audit` (the log, newest first; there is no route that changes or
//! deletes an entry) and the middleware that records every admin call that acts —
//! refused ones too, with their status.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, Origin};
use crate::audit::{self, Actor};
use crate::ecc::{AuditFilter, NewAuditEntry};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use openmid_proto::audit::{AuditPage, DEFAULT_AUDIT_PAGE, MAX_AUDIT_PAGE};
use openmid_proto::time::now_ms;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Largest error body read back for its message.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// Longest error message kept in an entry.
const ERROR_CHARS: usize = 500;

/// The audit entry of the admin call a task serves, for a handler that can have it
/// written with its action's result rather than after it (a durable action a caller
/// waits on: see `dispatch::caller_audit`).
struct CallEntry {
    /// The entry as it reads when the call answers 200.
    if_ok: NewAuditEntry,
    /// Set when it was written with the result: the call answers 200, and the entry
    /// is not written again.
    written: AtomicBool,
}

tokio::task_local! {
    static CALL_ENTRY: Arc<CallEntry>;
}

/// The entry of the admin call this task serves, as it reads when the call answers
/// 200 (`None` outside an audited call).
pub(super) fn entry_if_ok() -> Option<NewAuditEntry> {
    CALL_ENTRY.try_with(|c| c.if_ok.clone()).ok()
}

/// Says the entry of the call this task serves was written with its action's
/// result: the call answers 200 and its entry is not written again.
pub(super) fn entry_written() {
    let _ = CALL_ENTRY.try_with(|c| c.written.store(true, Ordering::Relaxed));
}

/// Runs an admin call (`run`: the admin check, then the handler) and records it after
/// it ran, with its status: a call refused for its token is recorded (as
/// `unauthenticated`) too. `actor`: who the call's token says it is.
pub(super) async fn record_admin<F, Fut>(
    state: &AppState,
    req: Request,
    actor: Actor,
    run: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let origin = Origin::of(req.extensions(), req.uri());
    let Some((action, target)) =
        audit::admin::describe(req.method(), &origin.route, req.uri().path())
    else {
        return run(req).await;
    };
    let call = Arc::new(CallEntry {
        if_ok: NewAuditEntry {
            at: now_ms(),
            actor: actor.to_string(),
            action,
            target,
            peer: origin.peer.map(|p| p.ip().to_string()),
            outcome: audit::outcome_of_status(200).to_string(),
            status: Some(200),
            ..NewAuditEntry::default()
        },
        written: AtomicBool::new(false),
    });
    let response = CALL_ENTRY.scope(call.clone(), run(req)).await;
    if call.written.load(Ordering::Relaxed) {
        return response;
    }
    let status = response.status();
    let (response, error) = if status.is_client_error() || status.is_server_error() {
        error_message(response).await
    } else {
        (response, None)
    };
    let entry = NewAuditEntry {
        at: now_ms(),
        outcome: audit::outcome_of_status(status.as_u16()).to_string(),
        status: Some(i64::from(status.as_u16())),
        error,
        ..call.if_ok.clone()
    };
    // An express call (`durability: relaxed`) does not wait on the store, its audit
    // entry included: it is written beside the call's records, and a crash can lose
    // it as it can lose them (see the README). Everything else is in the audit log
    // before its caller hears back.
    let express = response
        .headers()
        .get(crate::api::DURABILITY_HEADER)
        .is_some_and(|v| v == "relaxed");
    if express {
        state.dispatcher.audit_express(entry).await;
    } else {
        audit::append(state.dispatcher.store(), entry).await;
    }
    response
}

/// The message of an API error answer (`{"error": {"message": …}}`), and the answer
/// rebuilt from the bytes read.
async fn error_message(response: Response) -> (Response, Option<String>) {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, ERROR_BODY_LIMIT).await else {
        // Too long or broken: the status says enough.
        return (Response::from_parts(parts, axum::body::Body::empty()), None);
    };
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .map(|m| m.chars().take(ERROR_CHARS).collect());
    (
        Response::from_parts(parts, axum::body::Body::from(bytes)),
        message,
    )
}

/// The query of `GET /api/v1/audit`, every parameter text so each is checked by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    mid: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

fn bad(param: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        format!("{param}: {message}"),
    )
}

/// A time as RFC 3339 or epoch milliseconds.
fn time(param: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(value) = value else { return Ok(None) };
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(Some(ms));
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|_| {
            bad(
                param,
                format!(
                    "`{value}` is neither RFC 3339 (2026-01-31T12:00:00Z) nor epoch milliseconds"
                ),
            )
        })
}

fn text(param: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > 200 => {
            Err(bad(param, "must be 1–200 characters"))
        }
        v => Ok(v),
    }
}

impl AuditQuery {
    fn filter(self) -> Result<AuditFilter, ApiError> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_AUDIT_PAGE,
            Some(l) => match l.parse::<u32>() {
                Ok(n) if (1..=MAX_AUDIT_PAGE).contains(&n) => n,
                _ => {
                    return Err(bad(
                        "limit",
                        format!("must be 1–{MAX_AUDIT_PAGE}, got `{l}`"),
                    ));
                }
            },
        };
        let before = match self.before.as_deref() {
            None => None,
            Some(b) => match b.parse::<i64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(bad(
                        "before",
                        format!("must be an entry id (a positive integer), got `{b}`"),
                    ));
                }
            },
        };
        let since = time("since", self.since.as_deref())?;
        let until = time("until", self.until.as_deref())?;
        if let (Some(s), Some(u)) = (since, until)
            && s > u
        {
            return Err(bad("until", "is before `since`"));
        }
        Ok(AuditFilter {
            actor: text("actor", self.actor)?,
            action: text("action", self.action)?,
            mid: text("mid", self.mid)?,
            since,
            until,
            before,
            limit,
        })
    }
}

/// `GET /api/v1/audit`.
pub(super) async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let filter = q.filter()?;
    let rows = state.dispatcher.store().list_audit(&filter).await?;
    let next_before = if rows.len() == filter.limit as usize {
        rows.last().map(|r| r.id)
    } else {
        None
    };
    Ok(Json(AuditPage {
        entries: rows.into_iter().map(audit::to_api).collect(),
        next_before,
    }))
}
