//! Clusters with their members, in rank order, and each member's status.

use super::page::{DashError, Layout, render};
use super::session::Session;
use crate::api::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

pub(super) struct ClusterView {
    pub name: String,
    pub kind: &'static str,
    /// (rank, name, status).
    pub members: Vec<(usize, String, &'static str)>,
}

#[derive(Template)]
#[template(path = "clusters.html")]
struct ClustersPage {
    layout: Layout,
    clusters: Vec<ClusterView>,
}

/// `GET /ui/clusters`.
pub(super) async fn list(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, DashError> {
    let store = state.dispatcher.store();
    let mids = store.list_mids().await?;
    let clusters = store
        .list_clusters()
        .await?
        .into_iter()
        .map(|c| ClusterView {
            kind: c.kind.as_str(),
            members: c
                .members
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let status = mids
                        .iter()
                        .find(|r| &r.name == m)
                        .map_or("not enrolled", |r| r.status.as_str());
                    (i + 1, m.clone(), status)
                })
                .collect(),
            name: c.name,
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &ClustersPage {
            layout: Layout::new("clusters", Some(session.csrf)),
            clusters,
        },
    ))
}
