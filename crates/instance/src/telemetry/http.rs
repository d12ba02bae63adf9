//! Counts every HTTP request by its route template (axum's [`MatchedPath`], e.g.
//! `/api/v1/ecc/{id}`): raw paths hold ids and names, which would make a series per
//! record and leak them into the metrics. A request no route matched is `unmatched`.

use crate::api::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;

/// The middleware (see [`crate::api::router`]).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    state.dispatcher.telemetry().request(
        route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
