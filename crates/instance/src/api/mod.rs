//! The HTTP surface: the admin API under `/api/v1` (admin bearer token) and the MID
//! session under `/mid/v1` (per-MID credentials). Handlers stay thin: they parse, call
//! the registry or the dispatcher, and shape the answer.

mod actions;

/// The answer header saying a call took the express lane (`relaxed`).
pub(crate) const DURABILITY_HEADER: &str = "openmid-durability";
mod admin;
mod audit;
mod blobs;
mod command_output;
mod connections;
mod discovery;
mod edge;
pub mod error;
mod extract;
mod idempotency;
mod imports;
mod metrics;
mod mid_session;
mod mid_stream;
mod nodes;
mod openapi;
mod trace;

use crate::audit::Actor;
use crate::auth::{AuthFailures, token_matches};
use crate::config::InstanceConfig;
use crate::dispatch::Dispatcher;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use error::ApiError;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Most request headers (counting repeats) a request may carry; more are answered
/// `431 too_many_headers`.
pub const MAX_HEADERS: usize = 100;

/// How many headers hyper parses before refusing a request itself (with an empty
/// body). Above [`MAX_HEADERS`], so the usual "too many" case reaches
/// the API's edge ([`edge`]) and gets the API's JSON error.
pub const HEADER_PARSE_LIMIT: usize = 256;

/// Largest body of the one unauthenticated route that reads a body (enrollment):
/// an enrollment request is a few hundred bytes, and anyone on the network can send
/// one, so it must not cost the instance `max_request_bytes` of memory.
pub const ENROLL_BODY_LIMIT: usize = 64 * 1024;

/// What every handler can reach: one `Arc`, because every middleware layer and
/// handler of every request clones it (six reference counts, bumped and dropped on
/// cache lines the workers share, showed in the profile).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The state handlers get.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    /// Queue and registry operations.
    pub dispatcher: Arc<Dispatcher>,
    /// Hash of the admin API token.
    pub admin_token_hash: Arc<String>,
    /// Settings.
    pub config: Arc<InstanceConfig>,
    /// Cancelled when the instance stops (ends long-polls at once).
    pub shutdown: CancellationToken,
    /// Failed authentications, counted and logged (rate-limited) per peer.
    pub auth_failures: Arc<AuthFailures>,
    /// Where the instance's spans of jobs go (`[tracing] otlp_endpoint`; none: off).
    pub spans: Option<Arc<crate::otlp::SpanExport>>,
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/enrollment-tokens", post(admin::create_enrollment_token))
        .route("/mids", get(admin::list_mids))
        .route("/nodes", get(nodes::list_nodes))
        .route(
            "/mids/{name}",
            get(admin::get_mid)
                .patch(admin::update_mid_profile)
                .delete(admin::delete_mid),
        )
        .route("/mids/{name}/history", get(admin::mid_history))
        .route("/mids/{name}/{action}", post(admin::mid_action))
        .route(
            "/clusters",
            post(admin::create_cluster).get(admin::list_clusters),
        )
        .route(
            "/clusters/{name}",
            get(admin::get_cluster)
                .put(admin::put_cluster)
                .delete(admin::delete_cluster),
        )
        .route("/ecc", post(admin::insert_output).get(admin::list_records))
        .route("/ecc/{id}", get(admin::get_record))
        .route("/ecc/{id}/cancel", post(admin::cancel_record))
        // `{id}`: an output id to GET, an action's name to POST (one parameter name,
        // as the router wants).
        .route(
            "/actions/{id}",
            get(actions::get_action).post(actions::run_action),
        )
        .route("/actions/{id}/output", get(command_output::follow_output))
        // Blobs stream past the JSON body limit; the blob store enforces max_blob_bytes.
        .route(
            "/blobs",
            post(blobs::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/blobs/{id}", get(blobs::download))
        .route(
            "/credentials",
            post(connections::create_credential).get(connections::list_credentials),
        )
        .route(
            "/credentials/{name}",
            get(connections::get_credential)
                .put(connections::put_credential)
                .delete(connections::delete_credential),
        )
        .route(
            "/aliases",
            post(connections::create_alias).get(connections::list_aliases),
        )
        .route(
            "/aliases/{name}",
            get(connections::get_alias)
                .put(connections::put_alias)
                .delete(connections::delete_alias),
        )
        .route(
            "/data-sources",
            post(imports::create_source).get(imports::list_sources),
        )
        .route(
            "/data-sources/{name}",
            get(imports::get_source)
                .put(imports::put_source)
                .delete(imports::delete_source),
        )
        .route("/data-sources/{name}/run", post(imports::run_source))
        .route(
            "/discovery/runs",
            post(discovery::start_run).get(discovery::list_runs),
        )
        .route("/discovery/runs/{id}", get(discovery::get_run))
        .route(
            "/discovery/schedules",
            post(discovery::create_schedule).get(discovery::list_schedules),
        )
        .route(
            "/discovery/schedules/{name}",
            get(discovery::get_schedule)
                .put(discovery::put_schedule)
                .delete(discovery::delete_schedule),
        )
        .route(
            "/discovery/schedules/{name}/run",
            post(discovery::run_schedule),
        )
        .route("/devices", get(discovery::list_devices))
        .route("/devices/{id}", get(discovery::get_device))
        .route(
            "/metrics/targets",
            post(metrics::put_target).get(metrics::list_targets),
        )
        .route(
            "/metrics/targets/{agent}/{name}",
            get(metrics::get_target).delete(metrics::delete_target),
        )
        .route("/metrics/query_range", get(metrics::query_range))
        .route("/metrics/query", get(metrics::query))
        .route("/metrics/series", get(metrics::series))
        .route("/import-sets", get(imports::list_sets))
        .route("/import-sets/{id}", get(imports::get_set))
        .route("/import-sets/{id}/rows", get(imports::rows))
        .route("/import-sets/{id}/errors", get(imports::errors))
        .route("/import-sets/{id}/download", get(imports::download))
        .route("/audit", get(audit::list))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin_gate,
        ));
    let mid = Router::new()
        // The only body read before authentication: capped small, refused from its
        // Content-Length before a byte of it is read, and given as long as headers.
        .route(
            "/enroll",
            post(mid_session::enroll)
                .layer(DefaultBodyLimit::max(ENROLL_BODY_LIMIT))
                .layer(axum::middleware::from_fn_with_state(
                    extract::BodyCap {
                        limit: ENROLL_BODY_LIMIT,
                        deadline: std::time::Duration::from_millis(
                            state.config.header_read_timeout_ms,
                        ),
                    },
                    extract::cap_body,
                )),
        )
        .route("/session", post(mid_stream::session))
        .route("/poll", post(mid_session::poll))
        .route("/results", post(mid_session::results))
        .route("/heartbeat", post(mid_session::heartbeat))
        .route("/rekey", post(mid_session::rekey))
        .route("/metrics", post(metrics::mid_post_samples))
        .route("/blobs/{id}", get(blobs::mid_download))
        .route(
            "/results/{output_id}/{attempt}/body",
            put(blobs::mid_upload_body).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/results/{output_id}/{attempt}/output",
            post(command_output::mid_post_output),
        );
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(crate::telemetry::health::readyz))
        .route("/metrics", get(crate::telemetry::scrape::serve))
        .route("/api/v1/openapi.json", get(openapi::serve))
        .nest("/api/v1", admin)
        .nest("/mid/v1", mid)
        .merge(crate::dashboard::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_request_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::edge,
        ))
        .with_state(state)
}

/// The admin API's gate: the admin token checked once, the call run (or refused) and
/// recorded in the audit log — refused calls too, with their status.
async fn admin_gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (actor, refusal) = match extract::bearer(req.headers()) {
        None => (
            Actor::Unauthenticated,
            Some((
                "no admin token",
                "missing admin token: send `Authorization: Bearer <admin token>`",
            )),
        ),
        Some(token) if !token_matches(token, &state.admin_token_hash) => (
            Actor::Unauthenticated,
            Some(("invalid admin token", "the admin token is not valid")),
        ),
        Some(token) => (Actor::token(token), None),
    };
    let run = |req: Request| async {
        match refusal {
            None => next.run(req).await,
            Some((reason, message)) => {
                auth_failed(&state, &req, reason);
                ApiError::unauthorized(message).into_response()
            }
        }
    };
    audit::record_admin(&state, req, actor, run).await
}

/// The bearer token of a request, if it sends one.
pub(crate) fn bearer_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    extract::bearer(headers)
}

/// [`auth_failed`], for routes outside this module (`/metrics`).
pub(crate) fn count_auth_failure<B>(state: &AppState, req: &axum::http::Request<B>, reason: &str) {
    auth_failed(state, req, reason);
}

/// Counts and logs a refused request: the peer and the route, never the token.
fn auth_failed<B>(state: &AppState, req: &axum::http::Request<B>, reason: &str) {
    record_auth_failure(state, req.extensions(), req.uri(), reason);
}

/// [`auth_failed`] from a request's parts (the dashboard's login counts its refusals
/// with the API's).
pub(crate) fn record_auth_failure(
    state: &AppState,
    extensions: &axum::http::Extensions,
    uri: &axum::http::Uri,
    reason: &str,
) {
    let origin = extract::Origin::of(extensions, uri);
    state
        .auth_failures
        .record(origin.peer, &origin.route, reason);
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}
