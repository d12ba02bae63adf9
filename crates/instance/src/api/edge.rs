//! What every request goes through on its way in and out, as one middleware: the
//! header count checked, an error answer made the API's JSON error, the request
//! counted by route template, and a log line.
//!
//! Why one and not a layer each: every layer clones the route's service, boxes a
//! future, and moves the request and response through its state; under load the four
//! layers this replaces cost more of the instance's request handling than the express
//! lane's own handler does.

use super::AppState;
use super::MAX_HEADERS;
use super::error::{self, ApiError};
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

/// The middleware (see [`super::router`]).
pub(super) async fn edge(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // The route template (`/api/v1/ecc/{id}`), never the raw path: paths hold ids and
    // names, which would make a series per record and leak them into metrics and logs.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let count = req.headers().len();
    let response = if count > MAX_HEADERS {
        ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too_many_headers",
            format!("the request has {count} headers; at most {MAX_HEADERS} are accepted"),
        )
        .into_response()
    } else {
        next.run(req).await
    };
    let response = error::json_errors(response).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status();
    let elapsed = started.elapsed();
    state.dispatcher.telemetry().request(
        route,
        method.as_str(),
        status.as_u16(),
        elapsed.as_secs_f64(),
    );
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::error!(%method, route, status = status.as_u16(), latency_ms, "request failed");
    } else {
        tracing::debug!(%method, route, status = status.as_u16(), latency_ms, "request answered");
    }
    response
}
