//! An HTTP server on loopback that serves the files of one directory the way an
//! internal file share behind a web server does: `GET /{name}` with `Range: bytes=N-`
//! answered `206`, and a rate limit, so a test can kill a MID while a large file is
//! still on its way and see the next one continue from a byte offset.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// What the server does.
#[derive(Debug, Clone)]
pub struct FileServerOptions {
    /// The directory served.
    pub root: PathBuf,
    /// Bytes per second per request (0: as fast as it goes).
    pub bytes_per_sec: u64,
}

struct Shared {
    options: FileServerOptions,
    range_requests: AtomicU64,
}

/// A running server; stops when dropped.
pub struct FileServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    /// Serves `options.root` on a free loopback port.
    pub async fn start(options: FileServerOptions) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            options,
            range_requests: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/{name}", axum::routing::get(serve))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests that asked for a range (a resumed read).
    pub fn range_requests(&self) -> u64 {
        self.shared.range_requests.load(Ordering::SeqCst)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if name.contains('/') || name.starts_with('.') {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path = shared.options.root.join(&name);
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(meta) = file.metadata().await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let size = meta.len();
    let start = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.strip_suffix('-'))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(start) = start {
        shared.range_requests.fetch_add(1, Ordering::SeqCst);
        if start > size || file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
            return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        }
    }
    let from = start.unwrap_or(0);
    let rate = shared.options.bytes_per_sec;
    let body = futures::stream::unfold((file, 0u64), move |(mut file, sent)| async move {
        let mut buf = vec![0u8; 16 * 1024];
        match file.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                if rate > 0 {
                    let due =
                        std::time::Duration::from_secs_f64((sent + n as u64) as f64 / rate as f64);
                    tokio::time::sleep(due.saturating_sub(std::time::Duration::from_secs_f64(
                        sent as f64 / rate as f64,
                    )))
                    .await;
                }
                Some((
                    Ok::<_, std::io::Error>(bytes::Bytes::from(buf)),
                    (file, sent + n as u64),
                ))
            }
        }
    });
    let mut response = Response::builder()
        .header(header::CONTENT_LENGTH, (size - from).to_string())
        .header(header::ACCEPT_RANGES, "bytes");
    response = if start.is_some() {
        response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {from}-{}/{size}", size.saturating_sub(1)),
        )
    } else {
        response.status(StatusCode::OK)
    };
    response
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
