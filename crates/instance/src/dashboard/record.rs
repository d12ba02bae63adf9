//! One ECC record: its payload (as the API shows it, with anything named like a
//! secret masked besides), the output linked to its input and back, its timings,
//! attempts, which MID and why, and a running command's output as it streams in
//! (htmx refreshes [`output`] every two seconds until the record finishes).

use super::page::{DashError, Layout, maybe_time, render, span, time};
use super::session::Session;
use crate::api::AppState;
use crate::ecc::Record;
use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use openmid_proto::command_output::ChunkContent;
use openmid_proto::ecc::Queue;

/// Most chunks and bytes of streamed output a page shows (the API's
/// `/api/v1/actions/{id}/output` pages through all of it).
const MAX_CHUNKS: u32 = 2_000;
const MAX_OUTPUT_BYTES: usize = 512 * 1024;

/// Keys whose values a page never shows. Payloads hold credential references, not
/// credentials (a MID gets those sealed to its key, outside the payload), so this is
/// a second line: a caller who put a secret in a payload by hand still does not see
/// it on a screen.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passphrase",
    "secret",
    "token",
    "private_key",
    "api_key",
    "apikey",
    "authorization",
    "community",
    "sealed",
];

/// Masks the values of secret-named keys, at any depth.
pub(super) fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let key = key.to_ascii_lowercase();
                if SECRET_KEYS.iter().any(|s| key.contains(s)) && !v.is_null() {
                    *v = serde_json::Value::String("***".into());
                } else {
                    redact(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// A payload as shown: pretty JSON, redacted.
fn payload(record: &Record) -> String {
    let mut value = record.to_api().payload;
    redact(&mut value);
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

/// A linked record: (id, label).
type Link = Option<(String, String)>;

#[derive(Template)]
#[template(path = "record.html")]
struct RecordPage {
    layout: Layout,
    id: String,
    queue: &'static str,
    state: &'static str,
    topic: &'static str,
    name: String,
    agent: String,
    source: String,
    priority: &'static str,
    correlator: String,
    application: String,
    attempts: String,
    at_most_once: bool,
    error: String,
    claimed_by: String,
    assigned_to: String,
    selection: String,
    created: String,
    claimed: String,
    finished: String,
    lease: String,
    waited: String,
    ran: String,
    probe_ran: String,
    input: Link,
    output: Link,
    payload: String,
    streams_output: bool,
    stream: StreamView,
}

/// The streamed output alone (the template the record page includes).
#[derive(Template)]
#[template(path = "record_output.html")]
struct OutputFragment {
    stream: StreamView,
}

/// A record's streamed output as shown.
struct StreamView {
    id: String,
    /// Still running: the fragment keeps polling.
    live: bool,
    /// (stream, text) runs in order.
    parts: Vec<(&'static str, String)>,
    truncated: bool,
}

async fn record(state: &AppState, id: &str) -> Result<Record, DashError> {
    state
        .dispatcher
        .store()
        .get_record(id)
        .await?
        .ok_or_else(|| DashError::NotFound(format!("no ECC record with id `{id}`")))
}

async fn stream(state: &AppState, r: &Record) -> Result<StreamView, DashError> {
    let chunks = if r.queue == Queue::Output && r.attempt > 0 {
        state
            .dispatcher
            .store()
            .output_chunks(&r.id, r.attempt, None, MAX_CHUNKS, MAX_OUTPUT_BYTES)
            .await?
    } else {
        Vec::new()
    };
    let truncated = chunks.len() >= MAX_CHUNKS as usize
        || chunks
            .iter()
            .any(|c| matches!(c.content, ChunkContent::Truncated(_)));
    let mut parts: Vec<(&'static str, String)> = Vec::new();
    for chunk in &chunks {
        let ChunkContent::Data(data) = &chunk.content else {
            continue;
        };
        let text = String::from_utf8_lossy(data);
        let stream = chunk.stream.as_str();
        match parts.last_mut() {
            Some((s, t)) if *s == stream => t.push_str(&text),
            _ => parts.push((stream, text.into_owned())),
        }
    }
    Ok(StreamView {
        id: r.id.clone(),
        live: r.queue == Queue::Output && !r.is_finished(),
        parts,
        truncated,
    })
}

/// `GET /ui/ecc/{id}`.
pub(super) async fn page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, DashError> {
    let r = record(&state, &id).await?;
    let store = state.dispatcher.store();
    let (input, output) = match r.queue {
        Queue::Output => (
            store
                .input_for(&r.id)
                .await?
                .map(|i| (i.id.clone(), format!("{} ({})", i.id, i.state.as_str()))),
            None,
        ),
        Queue::Input => (None, r.response_to.clone().map(|o| (o.clone(), o))),
    };
    let stream = stream(&state, &r).await?;
    let dash = || "—".to_string();
    let or_dash = |v: &Option<String>| v.clone().filter(|s| !s.is_empty()).unwrap_or_else(dash);
    Ok(render(
        StatusCode::OK,
        &RecordPage {
            layout: Layout::new("ecc", Some(session.csrf)),
            queue: r.queue.as_str(),
            state: r.state.as_str(),
            topic: r.topic.as_str(),
            name: r.name.clone(),
            agent: r.agent.clone(),
            source: r.source.clone(),
            priority: r.priority.as_str(),
            correlator: or_dash(&r.correlator),
            application: or_dash(&r.application),
            attempts: format!("{} of {}", r.attempt, r.max_attempts),
            at_most_once: r.at_most_once,
            error: r.error.clone().unwrap_or_default(),
            claimed_by: or_dash(&r.claimed_by),
            assigned_to: or_dash(&r.assigned_to),
            selection: or_dash(&r.selection),
            created: time(r.created_at),
            claimed: maybe_time(r.claimed_at),
            finished: maybe_time(r.processed_at),
            lease: maybe_time(r.lease_expires_at),
            waited: r.claimed_at.map_or_else(dash, |c| span(c - r.created_at)),
            ran: match (r.claimed_at, r.processed_at) {
                (Some(c), Some(p)) => span(p - c),
                _ => dash(),
            },
            probe_ran: r.duration_ms.map_or_else(dash, span),
            input,
            output,
            payload: payload(&r),
            streams_output: r.queue == Queue::Output && (!stream.parts.is_empty() || stream.live),
            stream,
            id: r.id,
        },
    ))
}

/// `GET /ui/ecc/{id}/output`: the streamed output alone, for htmx to swap in.
pub(super) async fn output(
    State(state): State<AppState>,
    _session: Session,
    Path(id): Path<String>,
) -> Result<Response, DashError> {
    let r = record(&state, &id).await?;
    Ok(render(
        StatusCode::OK,
        &OutputFragment {
            stream: stream(&state, &r).await?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_named_values_are_masked_at_any_depth() {
        let mut v = json!({
            "url": "https://svc",
            "credential": {"id": "c1", "name": "svc"},
            "headers": [{"Authorization": "Bearer abc"}],
            "auth": {"Password": "hunter2", "client_secret": "s", "user": "u"},
            "token": null
        });
        redact(&mut v);
        assert_eq!(
            v,
            json!({
                "url": "https://svc",
                "credential": {"id": "c1", "name": "svc"},
                "headers": [{"Authorization": "***"}],
                "auth": {"Password": "***", "client_secret": "***", "user": "u"},
                "token": null
            })
        );
    }
}
