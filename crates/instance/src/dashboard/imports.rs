//! Import sets, newest first, with their row and error counts; a page at a time by
//! start time (the `(source, started_at)` index's order).

use super::page::{DashError, Layout, maybe_time, query_string, render, time};
use super::session::Session;
use crate::api::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

const PAGE_SIZE: u32 = 50;

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ImportsQuery {
    #[serde(default)]
    source: String,
    #[serde(default)]
    state: String,
    /// Started before this (epoch ms): the next page.
    before: Option<i64>,
}

pub(super) struct SetView {
    pub id: String,
    pub source: String,
    pub kind: String,
    pub trigger: String,
    pub state: String,
    pub started: String,
    pub finished: String,
    pub rows: u64,
    pub errors: u64,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "imports.html")]
struct ImportsPage {
    layout: Layout,
    source: String,
    state: String,
    sets: Vec<SetView>,
    next: Option<String>,
}

/// `GET /ui/imports`.
pub(super) async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ImportsQuery>,
) -> Result<Response, DashError> {
    let source = q.source.trim();
    let wanted = q.state.trim();
    let mut rows = state
        .dispatcher
        .store()
        .list_import_sets(
            (!source.is_empty()).then_some(source),
            (!wanted.is_empty()).then_some(wanted),
            q.before,
            PAGE_SIZE + 1,
        )
        .await?;
    let more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    let next = more.then(|| rows.last()).flatten().map(|last| {
        format!(
            "/ui/imports?{}",
            query_string(&[
                ("source", Some(source)),
                ("state", Some(wanted)),
                ("before", Some(&last.started_at.to_string())),
            ])
        )
    });
    Ok(render(
        StatusCode::OK,
        &ImportsPage {
            layout: Layout::new("imports", Some(session.csrf)),
            source: source.to_string(),
            state: wanted.to_string(),
            sets: rows
                .into_iter()
                .map(|r| SetView {
                    started: time(r.started_at),
                    finished: maybe_time(r.finished_at),
                    id: r.id,
                    source: r.source,
                    kind: r.kind,
                    trigger: r.trigger,
                    state: r.state,
                    rows: r.rows,
                    errors: r.errors,
                    detail: r.detail.unwrap_or_default(),
                })
                .collect(),
            next,
        },
    ))
}
