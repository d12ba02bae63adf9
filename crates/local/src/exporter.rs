//! An "internal" service exposing metrics in the Prometheus text format, as the
//! exporters a MID scrapes do: a counter of the scrapes it served (each sample
//! stamped with the time it was served, so every scrape is one distinct sample), a
//! gauge the caller sets, and any extra lines the caller adds (a malformed line, a
//! histogram …).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The counter of scrapes served.
pub const SCRAPES: &str = "openmid_exporter_scrapes_total";
/// The gauge the caller sets.
pub const GAUGE: &str = "openmid_exporter_gauge";

#[derive(Default)]
struct Exposed {
    scrapes: u64,
    gauge: f64,
    extra: String,
}

/// A running exporter.
pub struct Exporter {
    /// Bound address (127.0.0.1:port).
    pub addr: SocketAddr,
    exposed: Arc<Mutex<Exposed>>,
    shutdown: CancellationToken,
}

impl Exporter {
    /// Starts the exporter on 127.0.0.1 and a free port: `GET /metrics`.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let exposed = Arc::new(Mutex::new(Exposed::default()));
        let app = Router::new()
            .route("/metrics", get(metrics))
            .with_state(exposed.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "exporter failed");
            }
        });
        Ok(Self {
            addr,
            exposed,
            shutdown,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Exposed> {
        self.exposed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://127.0.0.1:PORT/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Scrapes served so far (the last value of [`SCRAPES`] served).
    pub fn scrapes(&self) -> u64 {
        self.lock().scrapes
    }

    /// Sets the gauge.
    pub fn set_gauge(&self, value: f64) {
        self.lock().gauge = value;
    }

    /// Lines served after the built-in ones.
    pub fn set_extra(&self, lines: &str) {
        self.lock().extra = lines.to_string();
    }

    /// Stops serving (scrapes then fail).
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn metrics(
    State(exposed): State<Arc<Mutex<Exposed>>>,
) -> ([(&'static str, &'static str); 1], String) {
    let mut e = exposed.lock().unwrap_or_else(|e| e.into_inner());
    e.scrapes += 1;
    let now = openmid_proto::time::now_ms();
    let body = format!(
        "# HELP {SCRAPES} Scrapes served.\n# TYPE {SCRAPES} counter\n{SCRAPES}{{path=\"/metrics\"}} {} {now}\n\
         # TYPE {GAUGE} gauge\n{GAUGE}{{kind=\"set by the caller\"}} {}\n{}",
        e.scrapes,
        openmid_proto::metrics::format_value(e.gauge),
        e.extra
    );
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}
