//! The MID's local HTTP listener (`[telemetry]`): `GET /metrics`, `GET /healthz` (the
//! process answers) and `GET /readyz` (enrolled and the instance answering; 503 with
//! a JSON reason otherwise). Opened only when configured, on loopback unless
//! `allow_remote = true`: the MID sits inside a private network and otherwise
//! accepts no connection at all.

use super::{Telemetry, names};
use crate::executor::Executor;
use crate::outbox::Outbox;
use crate::policy::{EgressPolicy, Protocol};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use openmid_proto::mid::Capacity;
use openmid_proto::time::now_ms;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The content type of the Prometheus text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the scrape-time gauges read.
#[derive(Clone)]
pub struct Sources {
    /// The series and readiness.
    pub telemetry: Arc<Telemetry>,
    /// Pool slots.
    pub executor: Arc<Executor>,
    /// Results waiting.
    pub outbox: Arc<Outbox>,
    /// Denial counters (clones share them).
    pub policy: EgressPolicy,
    /// Cancelled when the MID stops.
    pub shutdown: CancellationToken,
}

impl Sources {
    fn set_gauges(&self) {
        let sizes = self.executor.pool_sizes();
        let busy = self.executor.busy();
        let pools = |c: Capacity| {
            [
                ("interactive", c.interactive),
                ("expedited", c.expedited),
                ("standard", c.standard),
            ]
        };
        let now = now_ms();
        let oldest = self
            .outbox
            .pending(usize::MAX, u64::MAX)
            .iter()
            .map(|r| r.started_at_ms.saturating_add(r.duration_ms as i64))
            .min()
            .map_or(0.0, |done| {
                (now.saturating_sub(done)).max(0) as f64 / 1000.0
            });
        let denials = self.policy.denials();
        self.telemetry.with(|| {
            for (pool, n) in pools(sizes) {
                metrics::gauge!(names::POOL_SIZE, "pool" => pool).set(f64::from(n));
            }
            for (pool, n) in pools(busy) {
                metrics::gauge!(names::POOL_BUSY, "pool" => pool).set(f64::from(n));
            }
            metrics::gauge!(names::OUTBOX_RESULTS).set(self.outbox.len() as f64);
            metrics::gauge!(names::OUTBOX_BYTES).set(self.outbox.bytes() as f64);
            metrics::gauge!(names::OUTBOX_OLDEST).set(oldest);
            for protocol in Protocol::ALL {
                metrics::counter!(names::POLICY_DENIALS, "kind" => protocol.key())
                    .absolute(denials.of(protocol));
            }
            metrics::counter!(names::POLICY_DENIALS, "kind" => "command").absolute(denials.command);
            metrics::counter!(names::POLICY_DENIALS, "kind" => "file").absolute(denials.file);
            // Present from the first scrape, before any reconnect.
            metrics::counter!(names::RECONNECTS).increment(0);
        });
    }
}

async fn serve_metrics(State(sources): State<Sources>) -> Response {
    sources.set_gauges();
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        sources.telemetry.render(),
    )
        .into_response()
}

async fn healthz() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(sources): State<Sources>) -> Response {
    let readiness = if sources.shutdown.is_cancelled() {
        super::readiness::Readiness::Stopping
    } else {
        sources.telemetry.readiness()
    };
    match readiness.reason() {
        None => {
            let status = match readiness {
                super::readiness::Readiness::Up(Some(s)) => Some(s.as_str()),
                _ => None,
            };
            axum::Json(serde_json::json!({"status": "ready", "mid_status": status})).into_response()
        }
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not_ready", "reason": reason})),
        )
            .into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "error": "not_found",
            "message": "this listener serves GET /metrics, /healthz and /readyz"
        })),
    )
        .into_response()
}

/// Binds `addr` (so a taken port fails the MID's start, naming the setting) and serves
/// until `sources.shutdown` is cancelled. Returns the bound address.
pub async fn start(addr: SocketAddr, sources: Sources) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let shutdown = sources.shutdown.clone();
    let app = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(sources);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "telemetry listener failed");
        }
    });
    tracing::info!(addr = %bound, "telemetry listener: /metrics, /healthz, /readyz");
    Ok(bound)
}
