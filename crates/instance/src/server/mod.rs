//! The HTTPS listener: accepts TCP connections, runs the TLS handshake and serves the
//! router over HTTP/1.1 or HTTP/2, with the deadlines a server on the open internet
//! needs.
//!
//! Without them a client that connects and says nothing holds a file handle for ever:
//! a few hundred such connections exhausted the process's handles and `/healthz`
//! stopped answering. So every connection has a TLS-handshake deadline, HTTP/1.1
//! headers must arrive within `header_read_timeout_ms`, and a connection with no
//! request in progress is closed after `idle_timeout_ms`. "In progress" is counted
//! per connection from the moment hyper hands a request to the router until its
//! response body is sent, so a MID's long-poll (a request waiting for work) is never
//! taken for idleness. Past `max_connections` a new connection gets one
//! `503 too_many_connections` answer in the API's JSON error format instead of
//! hanging, from a small separate allowance that is itself capped. The refusals
//! hyper writes by itself (an unparsable request head) are given the API's JSON error
//! body too ([`refusals`]).

mod refusals;

use crate::api::error::ApiError;
use crate::config::InstanceConfig;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections beyond `max_connections` that are answered 503 at the same time; past
/// this they are closed at once (answering them would itself cost unbounded handles).
const OVERFLOW_ANSWERS: usize = 64;

/// Time given to requests in flight at shutdown before connections are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The connection deadlines and cap, from [`InstanceConfig`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// TLS handshake deadline.
    pub handshake: Duration,
    /// HTTP/1.1 header deadline.
    pub header_read: Duration,
    /// Idle (no request in progress) deadline.
    pub idle: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

/// File handles kept free of connections: the database, its WAL, readers, blobs being
/// streamed, the listener, logs.
const RESERVED_FILES: usize = 128;

/// `max_connections` when the open-file limit cannot be read.
const FALLBACK_MAX_CONNECTIONS: usize = 1024;

impl ConnectionLimits {
    /// The limits a config asks for; `max_connections = 0` is worked out from the
    /// process's open-file limit.
    pub fn of(config: &InstanceConfig) -> Self {
        let max_connections = match config.max_connections {
            0 => open_file_limit().map_or(FALLBACK_MAX_CONNECTIONS, |limit| {
                limit
                    .saturating_sub(RESERVED_FILES + OVERFLOW_ANSWERS)
                    .max(64)
            }),
            n => {
                warn_if_file_limit_low(n);
                n
            }
        };
        Self {
            handshake: Duration::from_millis(config.tls_handshake_timeout_ms),
            header_read: Duration::from_millis(config.header_read_timeout_ms),
            idle: Duration::from_millis(config.idle_timeout_ms),
            max_connections,
        }
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then lets requests in flight
/// finish for a few seconds and closes every connection.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    tracing::debug!(max_connections = limits.max_connections, "serving");
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_ANSWERS));
    let refused = Arc::new(AtomicU64::new(0));
    let connections = TaskTracker::new();
    let force = CancellationToken::new();
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        // Room to count headers ourselves and answer "too many" in JSON; hyper's own
        // refusal (past this) has no body.
        .max_headers(crate::api::HEADER_PARSE_LIMIT);
    http.http2().timer(TokioTimer::new());
    let http = Arc::new(http);
    let mut refused_http = auto::Builder::new(TokioExecutor::new());
    refused_http
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(false);
    let refused_http = Arc::new(refused_http);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file handles (EMFILE) or a connection reset before
                    // accept: pause instead of spinning, and keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Small TLS records (a poll answer, an ack) must not wait for Nagle's
        // algorithm and the peer's delayed ACK, which costs ~40 ms per exchange.
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            let app = app.clone();
            let http = http.clone();
            let stop = stop.clone();
            let force = force.clone();
            connections.spawn(async move {
                serve_connection(tcp, peer, acceptor, app, &http, limits, stop, force).await;
                drop(slot);
            });
        } else if let Ok(permit) = overflow.clone().try_acquire_owned() {
            let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_power_of_two() {
                tracing::warn!(
                    %peer,
                    max_connections = limits.max_connections,
                    refused_so_far = n,
                    "connection refused with 503: max_connections reached"
                );
            }
            let http = refused_http.clone();
            let stop = stop.clone();
            connections.spawn(async move {
                refuse_connection(tcp, acceptor, &http, limits, stop).await;
                drop(permit);
            });
        } else {
            drop(tcp);
        }
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the shutdown grace: closing them");
        force.cancel();
        connections.wait().await;
    }
}

/// Requests in progress on one connection, and a wake-up whenever that changes.
#[derive(Default)]
struct Activity {
    /// Shared with the connection's [`refusals::JsonRefusals`].
    in_flight: Arc<AtomicUsize>,
    changes: AtomicU64,
    changed: Notify,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// Resolves once the connection has had no request in progress for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                let seen = self.changes.load(Ordering::SeqCst);
                tokio::select! {
                    _ = tokio::time::sleep(idle) => {
                        if self.changes.load(Ordering::SeqCst) == seen
                            && self.in_flight.load(Ordering::SeqCst) == 0
                        {
                            return;
                        }
                    }
                    _ = self.changed.notified() => {}
                }
            } else {
                // `notify_one` keeps a permit when nobody waits, so an end between the
                // load and this await is not missed.
                self.changed.notified().await;
            }
        }
    }
}

/// One request in progress; dropped with its response body (sent, or abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changes.fetch_add(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its request counted as in progress until it is done:
/// a blob download streaming for minutes is not an idle connection.
struct CountedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    http: &auto::Builder<TokioExecutor>,
    limits: ConnectionLimits,
    stop: CancellationToken,
    force: CancellationToken,
) {
    let tls = tokio::select! {
        _ = stop.cancelled() => return,
        tls = tokio::time::timeout(limits.handshake, acceptor.accept(tcp)) => match tls {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
    };
    let activity = Arc::new(Activity::default());
    let counted = activity.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let in_flight = counted.begin();
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move {
            let response = tower_service::Service::call(&mut app, req.map(Body::new)).await?;
            Ok::<_, Infallible>(response.map(|inner| {
                Body::new(CountedBody {
                    inner,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = refusals::JsonRefusals::new(tls, (!http2).then(|| activity.in_flight.clone()));
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let closing = tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        _ = activity.idle_for(limits.idle) => "idle",
        _ = stop.cancelled() => "shutdown",
    };
    tracing::debug!(%peer, reason = closing, "closing connection");
    conn.as_mut().graceful_shutdown();
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = force.cancelled() => {}
    }
}

/// Answers every request on an over-the-cap connection with 503 and closes it.
async fn refuse_connection(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    http: &auto::Builder<TokioExecutor>,
    limits: ConnectionLimits,
    stop: CancellationToken,
) {
    let tls = tokio::select! {
        _ = stop.cancelled() => return,
        tls = tokio::time::timeout(limits.handshake, acceptor.accept(tcp)) => tls,
    };
    let Ok(Ok(tls)) = tls else {
        return;
    };
    let service = hyper::service::service_fn(|_req: Request<Incoming>| async move {
        let mut response: Response<Body> = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "the instance serves as many connections as max_connections allows; retry shortly",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        Ok::<_, Infallible>(response)
    });
    let conn = http.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    // One answer, then the connection goes: an HTTP/2 client gets GOAWAY after the
    // first exchange, an HTTP/1.1 one `Connection: close`; either way within the
    // header deadline.
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = tokio::time::sleep(limits.header_read) => {}
        _ = stop.cancelled() => {}
    }
}

/// The soft limit on open files (Linux: /proc/self/limits), if it can be read.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok())
}

/// Says so at start when a configured `max_connections` cannot be reached before the
/// process runs out of file handles.
fn warn_if_file_limit_low(max_connections: usize) {
    if let Some(soft) = open_file_limit()
        && soft < max_connections.saturating_add(RESERVED_FILES + OVERFLOW_ANSWERS)
    {
        tracing::warn!(
            open_file_limit = soft,
            max_connections,
            "the open-file limit is below max_connections (plus room for the database and blobs): raise `ulimit -n` or lower max_connections"
        );
    }
}
