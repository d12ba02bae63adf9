//! Metric collection on the MID: the scrape assignment the instance sent (kept in
//! `state_dir/metrics/assignment.json`, so scraping goes on while the instance is
//! unreachable and after a restart), one scrape loop per target, the on-disk sample
//! buffer ([`buffer`]) and the forwarder that posts its batches to the instance and
//! deletes each only once acknowledged.
//!
//! Back-pressure: when the buffer is full a loop skips its scrape, logs it and counts
//! it; the count travels as `openmid_scrape_skipped_total{job=…}` with the next
//! scrape that fits, so a gap in the data is always explained by a series.

pub mod buffer;
pub mod scrape;

use crate::config::MetricsSettings;
use crate::policy::{EgressPolicy, Protocol};
use crate::session::backoff::Backoff;
use crate::session::client::InstanceClient;
use buffer::{BufferError, SampleBuffer};
use openmid_proto::metrics::{
    MAX_BATCH_SAMPLES, RefusedTarget, SKIPPED_SERIES, ScrapeAccepted, ScrapeAssignment,
    ScrapeTarget, SeriesSamples,
};
use openmid_proto::time::now_ms;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why the assignment could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The buffer.
    #[error(transparent)]
    Buffer(#[from] BufferError),
    /// The assignment file.
    #[error("scrape assignment {path}: {message}")]
    Assignment {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

struct Running {
    assignment: ScrapeAssignment,
    refused: Vec<RefusedTarget>,
    loops: CancellationToken,
}

/// The MID's scraping: assignment, loops, buffer.
pub struct Scraper {
    dir: PathBuf,
    buffer: Arc<SampleBuffer>,
    http: reqwest::Client,
    policy: Arc<EgressPolicy>,
    running: Mutex<Running>,
    shutdown: CancellationToken,
    appended: Notify,
    /// Scrapes skipped while the buffer was full, per target (cumulative).
    skipped: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

const ASSIGNMENT: &str = "assignment.json";

impl Scraper {
    /// Opens the buffer and the kept assignment under `dir` and starts scraping it.
    pub fn start(
        dir: &Path,
        settings: &MetricsSettings,
        http: reqwest::Client,
        policy: Arc<EgressPolicy>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, MetricsError> {
        let buffer = Arc::new(SampleBuffer::open(
            &dir.join("buffer"),
            settings.buffer_max_bytes,
        )?);
        let path = dir.join(ASSIGNMENT);
        let assignment = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| MetricsError::Assignment {
                path: path.display().to_string(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ScrapeAssignment {
                version: 0,
                targets: Vec::new(),
            },
            Err(e) => {
                return Err(MetricsError::Assignment {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        let this = Arc::new(Self {
            dir: dir.to_path_buf(),
            buffer,
            http,
            policy,
            running: Mutex::new(Running {
                assignment: ScrapeAssignment {
                    version: 0,
                    targets: Vec::new(),
                },
                refused: Vec::new(),
                loops: CancellationToken::new(),
            }),
            shutdown,
            appended: Notify::new(),
            skipped: Mutex::new(HashMap::new()),
        });
        if !this.buffer.is_empty() {
            this.appended.notify_one();
        }
        this.install(assignment);
        Ok(this)
    }

    /// The buffer (for its size in tests and health).
    pub fn buffer(&self) -> &SampleBuffer {
        &self.buffer
    }

    /// Takes a new assignment from the instance: an older version than the one held
    /// changes nothing; otherwise it is written to disk, then its loops replace the
    /// old ones. Targets the egress policy refuses are named in the answer.
    pub fn accept(
        self: &Arc<Self>,
        assignment: ScrapeAssignment,
    ) -> Result<ScrapeAccepted, MetricsError> {
        {
            let running = self.lock();
            if assignment.version < running.assignment.version {
                tracing::info!(
                    held = running.assignment.version,
                    sent = assignment.version,
                    "an older scrape assignment arrived; keeping the newer one"
                );
                return Ok(accepted(&running));
            }
        }
        let path = self.dir.join(ASSIGNMENT);
        let bytes = serde_json::to_vec(&assignment).map_err(|e| MetricsError::Assignment {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        write_file(&self.dir, ASSIGNMENT, &bytes).map_err(|e| MetricsError::Assignment {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        self.install(assignment);
        Ok(accepted(&self.lock()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the old loops and starts one per allowed target of `assignment`.
    fn install(self: &Arc<Self>, assignment: ScrapeAssignment) {
        let loops = self.shutdown.child_token();
        let mut refused = Vec::new();
        for target in &assignment.targets {
            let allowed = url::Url::parse(&target.url)
                .map_err(|e| e.to_string())
                .and_then(|url| {
                    self.policy
                        .check_url(Protocol::Http, &url)
                        .map_err(|d| d.to_string())
                });
            match allowed {
                Ok(()) => {
                    tokio::spawn(self.clone().scrape_loop(target.clone(), loops.clone()));
                }
                Err(reason) => {
                    tracing::warn!(target = %target.name, %reason, "scrape target refused by the egress policy");
                    refused.push(RefusedTarget {
                        name: target.name.clone(),
                        reason,
                    });
                }
            }
        }
        tracing::info!(
            version = assignment.version,
            targets = assignment.targets.len(),
            refused = refused.len(),
            "scrape assignment in force"
        );
        let mut running = self.lock();
        running.loops.cancel();
        *running = Running {
            assignment,
            refused,
            loops,
        };
    }

    fn skipped_counter(&self, target: &str) -> Arc<AtomicU64> {
        self.skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(target.to_string())
            .or_default()
            .clone()
    }

    async fn scrape_loop(self: Arc<Self>, target: ScrapeTarget, stop: CancellationToken) {
        let skipped = self.skipped_counter(&target.name);
        let mut every = tokio::time::interval(Duration::from_millis(target.interval_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A batch's size is about the last one's; at first, any room at all.
        let mut expected: u64 = 1;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            // An empty buffer always tries: the estimate may be stale.
            if !self.buffer.is_empty() && !self.buffer.has_room(expected) {
                self.skip(&target, &skipped);
                continue;
            }
            let t_ms = now_ms();
            let scraped = scrape::scrape(&self.http, &target, t_ms).await;
            if let Some(error) = &scraped.error {
                tracing::warn!(target = %target.name, %error, "scrape failed");
            }
            if let Some(first) = scraped.bad_lines.first() {
                tracing::warn!(target = %target.name, lines = scraped.bad_lines.len(), first = %first, "scrape had lines that are not the text format; they were skipped");
            }
            let mut series = scraped.series;
            series.push(scrape::single(
                SKIPPED_SERIES,
                &scrape::target_labels(&target),
                t_ms,
                skipped.load(Ordering::Relaxed) as f64,
            ));
            match self.append(series) {
                Ok(bytes) => expected = bytes.max(1),
                Err(BufferError::Full { size, .. }) => {
                    expected = size;
                    self.skip(&target, &skipped);
                }
                Err(e) => {
                    tracing::error!(target = %target.name, error = %e, "samples could not be buffered; counted as a skipped scrape");
                    skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn skip(&self, target: &ScrapeTarget, skipped: &AtomicU64) {
        let n = skipped.fetch_add(1, Ordering::Relaxed) + 1;
        if self.buffer.is_empty() {
            tracing::error!(
                target = %target.name,
                skipped = n,
                "one scrape of this target is larger than the whole sample buffer: raise [metrics] buffer_max_bytes (scrape skipped, counted in openmid_scrape_skipped_total)"
            );
            return;
        }
        tracing::warn!(
            target = %target.name,
            skipped = n,
            used = self.buffer.used_bytes(),
            "sample buffer full: scrape skipped (counted in openmid_scrape_skipped_total)"
        );
    }

    /// Buffers `series` in batches of at most [`MAX_BATCH_SAMPLES`]; returns the bytes
    /// written. A batch refused as too big for the room left refuses the rest too.
    fn append(&self, series: Vec<SeriesSamples>) -> Result<u64, BufferError> {
        let before = self.buffer.used_bytes();
        let mut batch = Vec::new();
        let mut count = 0;
        for s in split(series) {
            if count + s.samples.len() > MAX_BATCH_SAMPLES && !batch.is_empty() {
                self.buffer.append(std::mem::take(&mut batch))?;
                count = 0;
            }
            count += s.samples.len();
            batch.push(s);
        }
        if !batch.is_empty() {
            self.buffer.append(batch)?;
        }
        self.appended.notify_one();
        Ok(self.buffer.used_bytes().saturating_sub(before))
    }

    /// Posts buffered batches to the instance, oldest first, deleting each once
    /// acknowledged; retried with jittered back-off while the instance is away.
    pub async fn forward(self: Arc<Self>, client: Arc<InstanceClient>) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        loop {
            let batch = match self.buffer.oldest() {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = self.appended.notified() => continue,
                        () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    }
                }
                Err(e) => {
                    // A segment set aside or a disk error: not in a tight loop.
                    tracing::error!(error = %e, "sample buffer");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff.next_delay()) => continue,
                    }
                }
            };
            let seq = batch.seq;
            let posted = tokio::select! {
                () = self.shutdown.cancelled() => return,
                r = client.post_samples(&batch) => r,
            };
            match posted {
                Ok(ack) if ack.seq == seq => {
                    backoff.reset();
                    if let Err(e) = self.buffer.remove(seq) {
                        tracing::error!(error = %e, "acknowledged batch not deleted");
                    }
                }
                Ok(ack) => {
                    tracing::warn!(
                        sent = seq,
                        acked = ack.seq,
                        "the instance acknowledged another batch; sending again"
                    );
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::debug!(error = %e, ?delay, batches = self.buffer.len(), "samples not forwarded; kept on disk");
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

fn accepted(running: &Running) -> ScrapeAccepted {
    ScrapeAccepted {
        version: running.assignment.version,
        scraping: running
            .assignment
            .targets
            .iter()
            .filter(|t| !running.refused.iter().any(|r| r.name == t.name))
            .map(|t| t.name.clone())
            .collect(),
        refused: running.refused.clone(),
    }
}

/// Series cut so none holds more than [`MAX_BATCH_SAMPLES`] samples.
fn split(series: Vec<SeriesSamples>) -> Vec<SeriesSamples> {
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        if s.samples.len() <= MAX_BATCH_SAMPLES {
            out.push(s);
            continue;
        }
        for chunk in s.samples.chunks(MAX_BATCH_SAMPLES) {
            out.push(SeriesSamples {
                labels: s.labels.clone(),
                samples: chunk.to_vec(),
            });
        }
    }
    out
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(tmp, dir.join(name))
}
