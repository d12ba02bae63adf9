//! Optional OTLP span export (`[tracing] otlp_endpoint`): each job's span — the MID's
//! own, a child of the instance's — is queued here and posted in batches as
//! OTLP/HTTP protobuf ([`openmid_proto::otlp`]). A collector that is slow or down
//! costs dropped spans (logged), never a job.

use openmid_proto::otlp::{self, FinishedSpan, MAX_BATCH_SPANS, MAX_QUEUED_SPANS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often a partial batch is sent.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Where finished spans go.
#[derive(Debug)]
pub struct SpanExport {
    tx: mpsc::Sender<FinishedSpan>,
    dropped: AtomicU64,
}

impl SpanExport {
    /// Starts the sender posting to `traces_url` as `service`, until `shutdown`
    /// (what is queued then is sent once more).
    pub fn start(
        traces_url: String,
        service: &'static str,
        shutdown: CancellationToken,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let (tx, rx) = mpsc::channel(MAX_QUEUED_SPANS);
        tokio::spawn(send_loop(http, traces_url, service, rx, shutdown));
        Ok(Self {
            tx,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues a span; drops it when the queue is full.
    pub fn record(&self, span: FinishedSpan) {
        if self.tx.try_send(span).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "OTLP export: spans dropped (the collector is slow or down)"
                );
            }
        }
    }
}

async fn send_loop(
    http: reqwest::Client,
    url: String,
    service: &'static str,
    mut rx: mpsc::Receiver<FinishedSpan>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        // (stop, flush)
        let (stop, due) = tokio::select! {
            span = rx.recv() => match span {
                Some(span) => {
                    batch.push(span);
                    (false, batch.len() >= MAX_BATCH_SPANS)
                }
                None => (true, true),
            },
            _ = tick.tick() => (false, true),
            _ = shutdown.cancelled() => (true, true),
        };
        if stop {
            while let Ok(span) = rx.try_recv() {
                batch.push(span);
            }
        }
        if due && !batch.is_empty() {
            for chunk in std::mem::take(&mut batch).chunks(MAX_BATCH_SPANS) {
                post(&http, &url, service, chunk).await;
            }
        }
        if stop {
            return;
        }
    }
}

async fn post(http: &reqwest::Client, url: &str, service: &str, spans: &[FinishedSpan]) {
    let body = otlp::encode(service, spans);
    match http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, otlp::CONTENT_TYPE)
        .body(body)
        .send()
        .await
    {
        Ok(resp) if resp.status().is_success() => {}
        Ok(resp) => {
            tracing::warn!(status = %resp.status(), spans = spans.len(), "OTLP export: the collector refused spans")
        }
        Err(e) => {
            tracing::warn!(error = %e, spans = spans.len(), "OTLP export: the collector could not be reached")
        }
    }
}
