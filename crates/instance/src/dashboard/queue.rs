//! The ECC queue: newest first, filtered by state, topic, agent and queue, a page at a
//! time by keyset (`before` an id: the primary key, or the `(queue, state, id)`,
//! `(topic, id)` and `(agent, id)` indexes when filtered), so a page costs the same
//! with a hundred thousand records as with ten. The first page refreshes itself
//! (htmx polls [`rows`] every two seconds); later pages hold still.

use super::page::{DashError, Layout, query_string, render, span, time};
use super::session::Session;
use crate::api::AppState;
use crate::ecc::{Record, RecordFilter};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use openmid_proto::ecc::{Queue, State as RecordState, Topic};

/// Records on one page.
pub(super) const PAGE_SIZE: u32 = 50;

/// The filters, as the form sends them (empty means any).
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct QueueQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    before: String,
}

impl QueueQuery {
    fn filter(&self) -> Result<RecordFilter, DashError> {
        fn parse<T: std::str::FromStr>(field: &str, v: &str) -> Result<Option<T>, DashError>
        where
            T::Err: std::fmt::Display,
        {
            if v.is_empty() {
                return Ok(None);
            }
            v.parse()
                .map(Some)
                .map_err(|e| DashError::BadRequest(format!("{field}: {e}")))
        }
        let text = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_string());
        Ok(RecordFilter {
            queue: parse::<Queue>("queue", &self.queue)?,
            state: parse::<RecordState>("state", &self.state)?,
            topic: parse::<Topic>("topic", &self.topic)?,
            agent: text(&self.agent),
            before: text(&self.before),
            newest_first: true,
            // One more than shown: whether there is a next page.
            limit: PAGE_SIZE + 1,
            ..RecordFilter::default()
        })
    }

    /// The filters as a query string, without the page position.
    fn filters(&self) -> String {
        query_string(&[
            ("state", Some(&self.state)),
            ("topic", Some(&self.topic)),
            ("agent", Some(self.agent.trim())),
            ("queue", Some(&self.queue)),
        ])
    }
}

/// One record as a row of the table.
pub(super) struct RowView {
    pub id: String,
    pub queue: &'static str,
    pub state: &'static str,
    pub topic: &'static str,
    pub name: String,
    pub agent: String,
    pub mid: String,
    pub created: String,
    pub took: String,
}

impl RowView {
    pub fn of(r: &Record) -> Self {
        Self {
            id: r.id.clone(),
            queue: r.queue.as_str(),
            state: r.state.as_str(),
            topic: r.topic.as_str(),
            name: r.name.clone(),
            agent: r.agent.clone(),
            mid: r
                .claimed_by
                .clone()
                .or_else(|| r.assigned_to.clone())
                .unwrap_or_default(),
            created: time(r.created_at),
            took: match (r.claimed_at, r.processed_at, r.duration_ms) {
                (_, _, Some(d)) => span(d),
                (Some(c), Some(p), None) => span(p - c),
                _ => String::new(),
            },
        }
    }
}

/// One page of rows and the link to the next.
struct Rows {
    rows: Vec<RowView>,
    next: Option<String>,
}

async fn load(state: &AppState, q: &QueueQuery) -> Result<Rows, DashError> {
    let mut records = state.dispatcher.store().list_records(&q.filter()?).await?;
    let more = records.len() > PAGE_SIZE as usize;
    records.truncate(PAGE_SIZE as usize);
    let next = more.then(|| records.last()).flatten().map(|last| {
        let filters = q.filters();
        let before = query_string(&[("before", Some(&last.id))]);
        if filters.is_empty() {
            format!("/ui/ecc?{before}")
        } else {
            format!("/ui/ecc?{filters}&{before}")
        }
    });
    Ok(Rows {
        rows: records.iter().map(RowView::of).collect(),
        next,
    })
}

/// A select's options, the one chosen marked.
fn choices<const N: usize>(options: [&'static str; N], chosen: &str) -> Vec<(&'static str, bool)> {
    options.into_iter().map(|o| (o, o == chosen)).collect()
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    layout: Layout,
    agent: String,
    /// Choices of each select: (value, selected).
    states: Vec<(&'static str, bool)>,
    topics: Vec<(&'static str, bool)>,
    queues: Vec<(&'static str, bool)>,
    /// The fragment URL polled while on the first page.
    live: Option<String>,
    rows: Vec<RowView>,
    next: Option<String>,
    page_size: u32,
}

/// `GET /ui/ecc`.
pub(super) async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<QueueQuery>,
) -> Result<Response, DashError> {
    let Rows { rows, next } = load(&state, &q).await?;
    let live = q.before.trim().is_empty().then(|| {
        let filters = q.filters();
        if filters.is_empty() {
            "/ui/ecc/rows".to_string()
        } else {
            format!("/ui/ecc/rows?{filters}")
        }
    });
    Ok(render(
        StatusCode::OK,
        &QueuePage {
            layout: Layout::new("ecc", Some(session.csrf)),
            states: choices(
                ["ready", "processing", "processed", "error", "cancelled"],
                &q.state,
            ),
            topics: choices(Topic::ALL.map(Topic::as_str), &q.topic),
            queues: choices(["output", "input"], &q.queue),
            agent: q.agent,
            live,
            rows,
            next,
            page_size: PAGE_SIZE,
        },
    ))
}

#[derive(Template)]
#[template(path = "queue_rows.html")]
struct RowsFragment {
    rows: Vec<RowView>,
    next: Option<String>,
}

/// `GET /ui/ecc/rows`: the first page's rows alone, for htmx to swap in.
pub(super) async fn rows(
    State(state): State<AppState>,
    _session: Session,
    Query(q): Query<QueueQuery>,
) -> Result<Response, DashError> {
    let Rows { rows, next } = load(&state, &q).await?;
    Ok(render(StatusCode::OK, &RowsFragment { rows, next }))
}
