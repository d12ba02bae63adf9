//! Aliases and credentials: names, types, who uses what and where calls run. Never a
//! secret's value: the page shows a credential's name, type and users, none of its
//! fields (not even redacted ones).

use super::page::{DashError, Layout, render};
use super::session::Session;
use crate::api::AppState;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

pub(super) struct CredentialView {
    pub name: String,
    pub kind: String,
    pub description: String,
    pub used_by: String,
    pub updated: String,
}

pub(super) struct AliasView {
    pub name: String,
    pub kind: String,
    pub base_url: String,
    pub credential: String,
    pub runs_on: String,
    pub agent: String,
}

#[derive(Template)]
#[template(path = "connections.html")]
struct ConnectionsPage {
    layout: Layout,
    credentials: Vec<CredentialView>,
    aliases: Vec<AliasView>,
}

/// `GET /ui/connections`.
pub(super) async fn page(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, DashError> {
    let connections = state.dispatcher.connections();
    let credentials = connections
        .list_credentials()
        .await?
        .into_iter()
        .map(|c| CredentialView {
            kind: c.spec.type_name().to_string(),
            description: c.description.unwrap_or_default(),
            used_by: c.used_by.join(", "),
            updated: c.updated_at,
            name: c.name,
        })
        .collect();
    let aliases = connections
        .list_aliases()
        .await?
        .into_iter()
        .map(|a| {
            let e = &a.alias.execution;
            let mut runs_on = Vec::new();
            if let Some(mid) = &e.mid {
                runs_on.push(format!("MID {mid}"));
            }
            if let Some(cluster) = &e.cluster {
                runs_on.push(format!("cluster {cluster}"));
            }
            if let Some(app) = &e.application {
                runs_on.push(format!("application {app}"));
            }
            if !e.capabilities.is_empty() {
                runs_on.push(format!("capabilities {}", e.capabilities.join(", ")));
            }
            if runs_on.is_empty() {
                runs_on.push("any eligible MID".into());
            }
            AliasView {
                kind: serde_json::to_value(a.alias.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                base_url: a.alias.base_url.clone(),
                credential: a.alias.credential.clone().unwrap_or_default(),
                runs_on: runs_on.join("; "),
                agent: a.agent.clone(),
                name: a.alias.name,
            }
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &ConnectionsPage {
            layout: Layout::new("connections", Some(session.csrf)),
            credentials,
            aliases,
        },
    ))
}
