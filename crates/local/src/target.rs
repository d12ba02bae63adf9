//! An "internal" HTTP service on loopback: what a MID reaches on behalf of the instance.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::{any, get};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A running target service.
pub struct TargetService {
    /// Bound address (127.0.0.1:port).
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
    shutdown: CancellationToken,
}

impl TargetService {
    /// Starts the service on 127.0.0.1 and a free port. Routes:
    /// `GET /hello` → `{"hello":"world"}`; `ANY /echo` → the request as JSON;
    /// `GET /slow?ms=N` → answers after N ms; `GET /status/{code}`; `GET /bytes/{n}` →
    /// `n` bytes of [`crate::bodies::pattern`], streamed (`?delay_ms=N` first waits); `POST /sink` → the request
    /// body's `{"bytes": n, "sha256": "…"}`, read as a stream (nothing kept).
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route(
                "/hello",
                get(|| async { axum::Json(json!({"hello": "world"})) }),
            )
            .route("/echo", any(echo))
            .route("/slow", get(slow))
            .route("/status/{code}", get(status))
            .route("/bytes/{n}", get(bytes))
            .route("/sink", axum::routing::post(sink))
            .layer(axum::middleware::from_fn_with_state(hits.clone(), count))
            .with_state(());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "target service failed");
            }
        });
        Ok(Self {
            addr,
            hits,
            shutdown,
        })
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests served so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops the service.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for TargetService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn count(
    State(hits): State<Arc<AtomicU64>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    hits.fetch_add(1, Ordering::SeqCst);
    next.run(req).await
}

async fn echo(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> axum::Json<Value> {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    axum::Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    }))
}

async fn slow(Query(q): Query<HashMap<String, u64>>) -> axum::Json<Value> {
    let ms = q.get("ms").copied().unwrap_or(100).min(60_000);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    axum::Json(json!({"slept_ms": ms}))
}

async fn status(Path(code): Path<u16>) -> (StatusCode, String) {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (code, format!("status {}", code.as_u16()))
}

/// Streams the bytes, so a large answer costs this process no memory; `?delay_ms=N`
/// answers after N ms (to catch a job in flight).
async fn bytes(
    Path(n): Path<u64>,
    Query(q): Query<HashMap<String, u64>>,
) -> axum::response::Response {
    if let Some(ms) = q.get("delay_ms") {
        tokio::time::sleep(Duration::from_millis((*ms).min(60_000))).await;
    }
    let n = n.min(4 * 1024 * 1024 * 1024);
    axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_LENGTH, n.to_string())],
        axum::body::Body::from_stream(crate::bodies::pattern(n)),
    ))
}

/// Counts and hashes the body as it streams in.
async fn sink(body: axum::body::Body) -> (StatusCode, axum::Json<Value>) {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                n += chunk.len() as u64;
                digest.update(&chunk);
            }
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": e.to_string(), "bytes": n})),
                );
            }
        }
    }
    (
        StatusCode::OK,
        axum::Json(json!({"bytes": n, "sha256": hex::encode(digest.finish().as_ref())})),
    )
}
