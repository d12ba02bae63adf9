//! The instance's web dashboard: server-rendered pages (askama templates under
//! `templates/`) at `/` and `/ui/...`, with htmx (vendored, see [`assets`]) for the
//! few parts that refresh themselves. No JavaScript build, no CDN.
//!
//! Access is by the admin token, exchanged at `/ui/login` for a session kept in the
//! store ([`session`]), so every instance node sharing one database accepts it. Every
//! state-changing form carries the session's CSRF token ([`csrf`]). Pages reuse the
//! calls the JSON API makes (the dispatcher, the registry, the store's paged
//! queries): the dashboard shows and asks, it decides nothing of its own.

mod assets;
mod clusters;
mod connections;
mod csrf;
mod devices;
mod imports;
mod mids;
mod page;
mod queue;
mod record;
mod session;

use crate::api::AppState;
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};

/// The dashboard's routes (merged into the instance's router beside `/api/v1`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/mids") }))
        .route("/ui", get(|| async { Redirect::to("/ui/mids") }))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/mids", get(mids::list))
        .route("/ui/mids/{name}", get(mids::detail))
        .route(
            "/ui/mids/{name}/{action}",
            get(mids::confirm).post(mids::act),
        )
        .route("/ui/clusters", get(clusters::list))
        .route("/ui/ecc", get(queue::page))
        .route("/ui/ecc/rows", get(queue::rows))
        .route("/ui/ecc/{id}", get(record::page))
        .route("/ui/ecc/{id}/output", get(record::output))
        .route("/ui/connections", get(connections::page))
        .route("/ui/imports", get(imports::page))
        .route("/ui/devices", get(devices::page))
        .route("/ui/assets/{file}", get(assets::serve))
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers every dashboard answer gets: scripts and styles only from the instance
/// itself, no framing, no caching of pages (they show live state and carry the CSRF
/// token); assets set their own cache header.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
