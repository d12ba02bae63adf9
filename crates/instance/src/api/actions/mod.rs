//! `/api/v1/actions`: run a probe through an alias (or at a URL on a named MID), wait
//! for its result up to `?wait=` seconds, or poll it later by output id.
//!
//! Each action is one file here implementing [`Action`] (its body type, how the body
//! becomes an output, its summary) and one line in [`ACTIONS`]. From that one
//! declaration come its route (`POST /api/v1/actions/{name}`), its OpenAPI entry
//! (generated from the body and response types, [`super::openapi`]) and its
//! `openmid ctl run NAME` subcommand (which reads the action list from the document).

mod command;
mod discovery;
mod file_import;
mod ldap;
mod registry;
mod rest;
mod snmp;
mod soap;
mod sql;
mod ssh;

pub use registry::{Documented, documented, run_action};

use super::AppState;
use super::error::ApiError;
use super::extract::ApiQuery;
use super::idempotency;
use crate::dispatch::{Idempotency, Watch};
use crate::ecc::Record;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use openmid_proto::api::{ActionPending, NewOutput};
use openmid_proto::ecc::Queue;
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitQuery {
    /// Seconds to wait for the result (default 0: answer 202 at once).
    wait: Option<f64>,
}

impl WaitQuery {
    fn duration(&self, state: &AppState) -> Result<Duration, ApiError> {
        let wait = self.wait.unwrap_or(0.0);
        let max = state.config.max_action_wait_secs as f64;
        if !(0.0..=max).contains(&wait) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("wait: must be 0–{max} seconds, got {wait}"),
            ));
        }
        Ok(Duration::from_secs_f64(wait))
    }
}

/// What every action does around its own part (`build`, which turns the request into
/// an output): the wait, the `Idempotency-Key` (a retry is answered from the first
/// output before `build` runs again), the submission and the answer.
pub(super) async fn act<A, F, E>(
    state: &AppState,
    headers: &HeaderMap,
    q: &WaitQuery,
    route: &str,
    action: A,
    build: impl FnOnce(A) -> F,
) -> Result<Response, ApiError>
where
    A: serde::Serialize,
    F: std::future::Future<Output = Result<NewOutput, E>>,
    ApiError: From<E>,
{
    let wait = q.duration(state)?;
    let key = idempotency::from_headers(headers, route, &action)?;
    if let Some(response) = replay(state, key.as_ref(), wait).await? {
        return Ok(response);
    }
    let span = super::trace::span_for(headers, format!("POST /api/v1/{route}"));
    let output = build(action).await?;
    // Boxed, as the futures under it are: each is large (the store's, the
    // dispatcher's and the answer's state machines nest), and an unboxed one is
    // copied into its parent's state on every level it is awaited from.
    Box::pin(submit_and_answer(state, output, key.as_ref(), span, wait)).await
}

/// A retry of an earlier submission (same `Idempotency-Key`) is answered with the
/// first output, before the alias is resolved again: a changed or deleted alias must
/// not turn a retry into an error or a second job.
async fn replay(
    state: &AppState,
    key: Option<&Idempotency>,
    wait: Duration,
) -> Result<Option<Response>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    match state.dispatcher.replayed(key).await? {
        Some(output) => Ok(Some(idempotency::mark(
            answer(state, output, wait, None, false).await?,
            true,
        ))),
        None => Ok(None),
    }
}

/// `GET /api/v1/actions/{id}`: the action's result (200) or where it stands (202).
pub(super) async fn get_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> Result<Response, ApiError> {
    let wait = q.duration(&state)?;
    let output = state
        .dispatcher
        .store()
        .get_record(&id)
        .await?
        .filter(|r| r.queue == Queue::Output)
        .ok_or_else(|| ApiError::not_found(format!("no action (output record) with id `{id}`")))?;
    answer(&state, output, wait, None, false).await
}

async fn submit_and_answer(
    state: &AppState,
    new: NewOutput,
    key: Option<&Idempotency>,
    span: super::trace::ApiSpan,
    wait: Duration,
) -> Result<Response, ApiError> {
    // The express lane answers a caller who waits; one who gives an Idempotency-Key
    // asks for a stored record to replay, which only the durable path has first.
    if new.durability.is_relaxed() && key.is_none() && !wait.is_zero() {
        return Box::pin(express(state, new, span, wait)).await;
    }
    let submitted = Box::pin(state.dispatcher.submit_once(
        new,
        key,
        Some(span.trace),
        !wait.is_zero(),
    ))
    .await?;
    let id = submitted.record.id.clone();
    // A caller who waits has its audit entry written with the result, when it comes
    // in time, instead of in a commit of its own after it.
    let left = (!wait.is_zero() && !submitted.replayed && !submitted.record.is_finished())
        .then(super::audit::entry_if_ok)
        .flatten()
        .map(|entry| {
            state.dispatcher.leave_caller_audit(&id, entry);
            Left { state, id: &id }
        });
    let response = Box::pin(answer(
        state,
        submitted.record,
        wait,
        submitted.watch,
        left.is_some(),
    ))
    .await?;
    drop(left);
    span.finish(state, &id, None);
    Ok(idempotency::mark(response, submitted.replayed))
}

/// The audit entry a waiting caller left with the dispatcher: dropped with the call
/// when the caller goes away before it settled it (see `answer_body`).
struct Left<'a> {
    state: &'a AppState,
    id: &'a str,
}

impl Drop for Left<'_> {
    fn drop(&mut self) {
        self.state.dispatcher.forget_caller_audit(self.id);
    }
}

/// An express call: answered from the MID's answer, its records written afterwards;
/// the durable path when the express lane cannot take it.
async fn express(
    state: &AppState,
    new: NewOutput,
    span: super::trace::ApiSpan,
    wait: Duration,
) -> Result<Response, ApiError> {
    let fallback = new.clone();
    match Box::pin(state.dispatcher.express(new, Some(span.trace))).await? {
        Some(finished) => {
            let id = finished.output.id.clone();
            let traceparent = finished.output.traceparent.clone();
            let body = json_answer(crate::topics::show(&finished.output, Some(&finished.input)));
            let response = super::trace::answer_with(
                (
                    [(
                        axum::http::HeaderName::from_static(super::DURABILITY_HEADER),
                        "relaxed",
                    )],
                    body,
                )
                    .into_response(),
                traceparent.as_deref(),
            );
            span.finish(state, &id, None);
            Ok(response)
        }
        None => {
            state.dispatcher.telemetry().express("durable");
            let mut durable = fallback;
            durable.durability = Default::default();
            Box::pin(submit_and_answer(state, durable, None, span, wait)).await
        }
    }
}

/// The action's answer, with its `traceparent` header. `watch`: the one armed when
/// this call submitted the output; `left`: this call left its audit entry to be
/// written with the output's result.
async fn answer(
    state: &AppState,
    output: Record,
    wait: Duration,
    watch: Option<Watch>,
    left: bool,
) -> Result<Response, ApiError> {
    let traceparent = output.traceparent.clone();
    let response = answer_body(state, output, wait, watch, left).await?;
    Ok(super::trace::answer_with(response, traceparent.as_deref()))
}

async fn answer_body(
    state: &AppState,
    output: Record,
    wait: Duration,
    watch: Option<Watch>,
    left: bool,
) -> Result<Response, ApiError> {
    let (output, input) = if output.is_finished() || wait.is_zero() {
        (output, None)
    } else {
        let waited = state
            .dispatcher
            .wait_finished(&output.id, wait, watch)
            .await;
        if left && state.dispatcher.caller_audit_written(&output.id).await {
            // The entry went in with the result, as a 200: answer that.
            super::audit::entry_written();
            match waited {
                Ok((o, i)) if o.is_finished() => (o, i),
                // Its result was being written as the wait ran out: finished now.
                _ => {
                    state
                        .dispatcher
                        .wait_finished(&output.id, Duration::ZERO, None)
                        .await?
                }
            }
        } else {
            waited?
        }
    };
    if !output.is_finished() {
        let pending = ActionPending {
            poll: format!("/api/v1/actions/{}", output.id),
            output_id: output.id,
            state: output.state,
        };
        return Ok((StatusCode::ACCEPTED, Json(pending)).into_response());
    }
    let input = match input {
        Some(input) => Some(input),
        None => state.dispatcher.store().input_for(&output.id).await?,
    };
    Ok(json_answer(crate::topics::show(&output, input.as_ref())))
}

/// A 200 answer of JSON text already encoded.
fn json_answer(body: Vec<u8>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
