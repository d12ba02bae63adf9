//! What every page shares: the layout's data (nav bar, session's CSRF token), the
//! error page, rendering, and how values are shown.

use super::assets::{CSS_PATH, HTMX_PATH};
use crate::api::error::ApiError;
use crate::dispatch::DispatchError;
use crate::ecc::StoreError;
use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use openmid_proto::time::rfc3339;

/// The layout's data: which nav entry is current, and the session's CSRF token for
/// the logout form (`None` on the login page, which has no session yet).
pub(super) struct Layout {
    pub active: &'static str,
    pub csrf: Option<String>,
    pub css: &'static str,
    pub htmx: &'static str,
}

impl Layout {
    pub fn new(active: &'static str, csrf: Option<String>) -> Self {
        Self {
            active,
            csrf,
            css: CSS_PATH,
            htmx: HTMX_PATH,
        }
    }

    /// Whether `key` is the current nav entry.
    pub fn is_active(&self, key: &str) -> bool {
        self.active == key
    }

    /// The nav bar's entries: (path, label, key).
    pub fn entries(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        &[
            ("/ui/mids", "MID Servers", "mids"),
            ("/ui/clusters", "Clusters", "clusters"),
            ("/ui/ecc", "ECC queue", "ecc"),
            ("/ui/connections", "Aliases & credentials", "connections"),
            ("/ui/imports", "Import sets", "imports"),
            ("/ui/devices", "Devices", "devices"),
        ]
    }
}

/// Renders a template as an HTML answer (a template that fails to render is a bug:
/// logged, and answered 500 without detail).
pub(super) fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>internal error; the instance log has the details</p>"),
            )
                .into_response()
        }
    }
}

/// A page that could not be shown: status and a message for people (the API's own
/// mapping of library errors, so both say the same).
#[derive(Debug)]
pub(super) enum DashError {
    /// 400.
    BadRequest(String),
    /// 403: CSRF or origin refused.
    Forbidden(String),
    /// 404.
    NotFound(String),
    /// Any other status, with the API's message.
    Other(StatusCode, String),
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    status: u16,
    title: String,
    message: String,
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            DashError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            DashError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            DashError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            DashError::Other(s, m) => (s, m),
        };
        render(
            status,
            &ErrorPage {
                layout: Layout::new("", None),
                status: status.as_u16(),
                title: status.canonical_reason().unwrap_or("Error").to_string(),
                message,
            },
        )
    }
}

impl From<ApiError> for DashError {
    fn from(e: ApiError) -> Self {
        DashError::Other(e.status, e.message)
    }
}

impl From<StoreError> for DashError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<DispatchError> for DashError {
    fn from(e: DispatchError) -> Self {
        ApiError::from(e).into()
    }
}

/// Epoch milliseconds as people read them (RFC 3339, UTC).
pub(super) fn time(ms: i64) -> String {
    rfc3339(ms)
}

/// An optional time, or a dash.
pub(super) fn maybe_time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "—".to_string(), time)
}

/// A span of milliseconds, short.
pub(super) fn span(ms: i64) -> String {
    match ms {
        ms if ms < 0 => "—".to_string(),
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
        ms => format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

/// `key=value` pairs as a query string (values percent-encoded), empty ones left out.
pub(super) fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            q.append_pair(k, v);
        }
    }
    q.finish()
}

/// A form body (`application/x-www-form-urlencoded`) read as pairs; the last of a
/// repeated key wins. Never fails: what is not there is `None` to the caller.
pub(super) fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}
