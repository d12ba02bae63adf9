//! Discovered devices by address, a page at a time (keyset on the address, the
//! table's unique index), of one class when asked.

use super::page::{DashError, Layout, query_string, render, time};
use super::session::Session;
use crate::api::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;

const PAGE_SIZE: u32 = 50;

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct DevicesQuery {
    #[serde(default)]
    class: String,
    #[serde(default)]
    after: String,
}

pub(super) struct DeviceView {
    pub address: String,
    pub name: String,
    pub class: String,
    pub open_ports: String,
    pub rtt: String,
    pub first_seen: String,
    pub last_seen: String,
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    layout: Layout,
    class: String,
    devices: Vec<DeviceView>,
    next: Option<String>,
}

/// `GET /ui/devices`.
pub(super) async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<DevicesQuery>,
) -> Result<Response, DashError> {
    let class = q.class.trim();
    let after = q.after.trim();
    let mut rows = state
        .dispatcher
        .store()
        .list_devices(
            (!class.is_empty()).then_some(class),
            (!after.is_empty()).then_some(after),
            PAGE_SIZE + 1,
        )
        .await?;
    let more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    let next = more.then(|| rows.last()).flatten().map(|last| {
        format!(
            "/ui/devices?{}",
            query_string(&[("class", Some(class)), ("after", Some(&last.address))])
        )
    });
    Ok(render(
        StatusCode::OK,
        &DevicesPage {
            layout: Layout::new("devices", Some(session.csrf)),
            class: class.to_string(),
            devices: rows
                .into_iter()
                .map(|d| DeviceView {
                    open_ports: serde_json::from_str::<Vec<serde_json::Value>>(&d.open_ports)
                        .map(|ports| {
                            ports
                                .iter()
                                .map(|p| match p {
                                    serde_json::Value::Object(o) => o
                                        .get("port")
                                        .map(ToString::to_string)
                                        .unwrap_or_else(|| p.to_string()),
                                    other => other.to_string(),
                                })
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or(d.open_ports),
                    rtt: d.rtt_ms.map_or_else(String::new, |r| format!("{r:.1} ms")),
                    first_seen: time(d.first_seen),
                    last_seen: time(d.last_seen),
                    name: d.name.unwrap_or_default(),
                    class: d.class,
                    address: d.address,
                })
                .collect(),
            next,
        },
    ))
}
