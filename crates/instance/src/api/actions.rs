//! `/api/v1/actions`: run a probe through an alias (or at a URL on a named MID), wait
//! for its result up to `?wait=` seconds, or poll it later by output id.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery};
use super::idempotency;
use crate::dispatch::Idempotency;
use crate::ecc::Record;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use openmid_proto::api::{ActionPending, CommandAction, NewOutput, RestAction, SoapAction};
use openmid_proto::ecc::{Queue, Topic};
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
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

pub(super) async fn rest_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(action): ApiJson<RestAction>,
) -> Result<Response, ApiError> {
    act(&state, &headers, &q, "actions/rest", action, |a| async {
        state.dispatcher.connections().rest_output(a).await
    })
    .await
}

pub(super) async fn soap_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(action): ApiJson<SoapAction>,
) -> Result<Response, ApiError> {
    act(&state, &headers, &q, "actions/soap", action, |a| async {
        state.dispatcher.connections().soap_output(a).await
    })
    .await
}

pub(super) async fn command_action(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(action): ApiJson<CommandAction>,
) -> Result<Response, ApiError> {
    act(&state, &headers, &q, "actions/command", action, |a| async {
        command_output(a)
    })
    .await
}

/// What every action does around its own part (`build`, which turns the request into
/// an output): the wait, the `Idempotency-Key` (a retry is answered from the first
/// output before `build` runs again), the submission and the answer.
async fn act<A, F, E>(
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
    let output = build(action).await?;
    submit_and_answer(state, output, key.as_ref(), wait).await
}

/// The output a command action asks for.
fn command_output(action: CommandAction) -> Result<NewOutput, ApiError> {
    let agent = match (&action.mid, &action.agent) {
        (Some(mid), None) => format!("mid.server.{mid}"),
        (None, Some(agent)) => agent.clone(),
        _ => {
            return Err(ApiError::invalid_field(
                "mid",
                "give `mid` (a MID's name) or `agent` (mid.server.NAME, mid.cluster.NAME, mid.auto), one of them",
            ));
        }
    };
    let payload = serde_json::to_value(action.request())
        .map_err(|e| ApiError::invalid_field("payload", e))?;
    Ok(NewOutput {
        agent,
        topic: Topic::Command,
        name: Some(
            format!("{} {}", action.program, action.args.join(" "))
                .chars()
                .take(200)
                .collect(),
        ),
        source: Some("api".into()),
        payload,
        priority: None,
        correlator: action.correlator,
        max_attempts: None,
        at_most_once: action.at_most_once,
        application: action.application,
    })
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
            answer(state, output, wait).await?,
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
    answer(&state, output, wait).await
}

async fn submit_and_answer(
    state: &AppState,
    new: NewOutput,
    key: Option<&Idempotency>,
    wait: Duration,
) -> Result<Response, ApiError> {
    let submitted = state.dispatcher.submit_once(new, key).await?;
    let response = answer(state, submitted.record, wait).await?;
    Ok(idempotency::mark(response, submitted.replayed))
}

async fn answer(state: &AppState, output: Record, wait: Duration) -> Result<Response, ApiError> {
    let (output, input) = if output.is_finished() || wait.is_zero() {
        (output, None)
    } else {
        state.dispatcher.wait_finished(&output.id, wait).await?
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
    Ok(Json(crate::topics::show(output, input)).into_response())
}
