//! The express lane (`durability: relaxed`): a call goes straight down its MID's
//! session stream and its answer straight back to the caller, without waiting on the
//! store. Its output and input records are written afterwards by one task that
//! group-commits whatever has piled up, so the ECC queue and the audit still show
//! every call.
//!
//! What this trades, and why only when asked: a crash of this node between the answer
//! and the write loses the call's record (never the answer: the caller has it), and a
//! call is never leased, so when its MID's session ends before it answers, the caller
//! gets an error and the call is not run again anywhere. With no stream to the chosen
//! MID on this node (another node holds it, or the MID speaks the long-poll protocol)
//! the call takes the durable path, which promises more.

use super::*;
use crate::ecc::{NewAuditEntry, rules};
use bytes::Bytes;
use openmid_proto::mid::WorkResult;
use openmid_proto::session::{Frame, Kind};
use openmid_proto::trace::TraceParent;
use std::sync::atomic::AtomicU64;
use tokio::sync::{Notify, mpsc, oneshot};

/// Frames to one MID's session stream.
pub type FrameSender = mpsc::Sender<Bytes>;

/// Finished express calls waiting to be written, at most (past it, callers wait).
const RECORDS_QUEUED: usize = 16 * 1024;
/// Express records written per transaction, at most.
const RECORDS_PER_COMMIT: usize = 512;
/// How long the recorder lets more records arrive after the first of a batch. A
/// commit writes every page it touched to the WAL and syncs it, which costs about the
/// same for a few records as for many, and nobody waits on these: under load, a few
/// milliseconds more per batch make it several times fewer commits for the same calls
/// (the time a crash can lose them grows by as much).
const RECORDS_LINGER: Duration = Duration::from_millis(5);
/// Time an answer may take past the probe's own timeout.
const ANSWER_GRACE: Duration = Duration::from_secs(10);
/// About how long a work item's fields are beside its payload, as JSON.
const ITEM_FIELDS_BYTES: usize = 512;
/// The probe timeout when the payload does not say.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// How long a MID's row read for an express call is used again. Within it, calls to
/// that MID read nothing from the store; a status change made elsewhere (another
/// node, the sweeper) is seen at most this late, and one made here (an admin's, the
/// MID's own polls and heartbeats) at once.
const ROW_FRESH: Duration = Duration::from_secs(1);

/// An express call waiting: the stream it went down, and where its answer goes.
type Waiting = (u64, oneshot::Sender<Vec<u8>>);

/// A MID's open session streams (the newest last), and its row as last read.
#[derive(Default)]
struct Open {
    streams: Vec<(u64, FrameSender)>,
    row: Option<(MidRow, Instant)>,
}

/// The session streams open on this node, by MID, and the express calls waiting for
/// their answers.
#[derive(Default)]
pub struct Lanes {
    by_mid: std::sync::Mutex<HashMap<String, Open>>,
    /// Express calls waiting for their answers: the stream each went down, and who
    /// waits. A stream that ends drops its calls' senders, which answers them.
    calls: std::sync::Mutex<HashMap<u64, Waiting>>,
    next: AtomicU64,
}

/// A stream's place among the lanes, given up when dropped.
pub struct LaneGuard {
    lanes: Arc<Lanes>,
    mid: String,
    id: u64,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        // Locks in the order `expect` takes them: a call is either made before this
        // (and answered here as ended) or finds the stream gone.
        let mut by_mid = self.lanes.by_mid.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = by_mid.get_mut(&self.mid) {
            open.streams.retain(|(id, _)| *id != self.id);
            if open.streams.is_empty() {
                by_mid.remove(&self.mid);
            }
        }
        // The calls that went down this stream will get no answer.
        self.lanes
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (lane, _)| *lane != self.id);
    }
}

impl Lanes {
    /// Registers a MID's session stream.
    pub fn open(self: &Arc<Self>, mid: &str, frames: FrameSender) -> LaneGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.by_mid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(mid.to_string())
            .or_default()
            .streams
            .push((id, frames));
        LaneGuard {
            lanes: self.clone(),
            mid: mid.to_string(),
            id,
        }
    }

    /// The newest open stream of `mid` (an older one is on its way out), and its id.
    fn sender(&self, mid: &str) -> Option<(u64, FrameSender)> {
        self.by_mid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(mid)
            .and_then(|open| open.streams.last())
            .filter(|(_, tx)| !tx.is_closed())
            .cloned()
    }

    /// `mid`'s row, when read here within [`ROW_FRESH`] and a stream of it is open.
    fn row(&self, mid: &str) -> Option<MidRow> {
        self.by_mid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(mid)
            .and_then(|open| open.row.as_ref())
            .filter(|(_, read)| read.elapsed() < ROW_FRESH)
            .map(|(row, _)| row.clone())
    }

    /// Keeps `row` as its MID's row just read (when a stream of it is open here).
    pub fn refresh(&self, row: &MidRow) {
        if let Some(open) = self
            .by_mid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&row.name)
        {
            open.row = Some((row.clone(), Instant::now()));
        }
    }

    /// Hands an express answer to its caller; false when nobody waits for it (it
    /// timed out, or the id is not one of ours).
    pub fn deliver(&self, call: u64, body: Vec<u8>) -> bool {
        let waiting = self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&call);
        waiting.is_some_and(|(_, tx)| tx.send(body).is_ok())
    }

    /// A new call going down `mid`'s stream `lane`, and where its answer will come;
    /// `None` when that stream has ended meanwhile.
    fn expect(&self, mid: &str, lane: u64) -> Option<(u64, oneshot::Receiver<Vec<u8>>)> {
        let by_mid = self.by_mid.lock().unwrap_or_else(|e| e.into_inner());
        let open = by_mid
            .get(mid)
            .is_some_and(|open| open.streams.iter().any(|(id, _)| *id == lane));
        if !open {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (lane, tx));
        Some((id, rx))
    }

    fn forget(&self, call: u64) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&call);
    }
}

/// What the recorder writes.
enum Unwritten {
    /// An express call's records, shared with the caller's answer until it is sent
    /// (by then, most often, the recorder holds the only reference).
    Call(Arc<Finished>),
    /// The audit entry of the API call that made one.
    Audit(Box<NewAuditEntry>),
}

impl Unwritten {
    /// The output it belongs to.
    fn output_id(&self) -> &str {
        match self {
            Unwritten::Call(f) => &f.output.id,
            Unwritten::Audit(entry) => entry.output_id.as_deref().unwrap_or_default(),
        }
    }
}

/// The task writing express records, started with the first express call.
pub(super) struct Recorder {
    queue: mpsc::Sender<Unwritten>,
    /// Calls answered and not written yet.
    unwritten: Arc<AtomicU64>,
    written: Arc<Notify>,
}

impl Recorder {
    fn start(store: Arc<dyn Store>) -> Self {
        let (queue, mut rx) = mpsc::channel::<Unwritten>(RECORDS_QUEUED);
        let unwritten = Arc::new(AtomicU64::new(0));
        let written = Arc::new(Notify::new());
        let (count, done) = (unwritten.clone(), written.clone());
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(RECORDS_PER_COMMIT);
            while rx.recv_many(&mut batch, RECORDS_PER_COMMIT).await > 0 {
                let until = tokio::time::Instant::now() + RECORDS_LINGER;
                while batch.len() < RECORDS_PER_COMMIT {
                    let room = RECORDS_PER_COMMIT - batch.len();
                    match tokio::time::timeout_at(until, rx.recv_many(&mut batch, room)).await {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
                let taken = batch.len() as u64;
                write_batch(store.as_ref(), batch.drain(..)).await;
                count.fetch_sub(taken, Ordering::Relaxed);
                done.notify_waiters();
            }
        });
        Self {
            queue,
            unwritten,
            written,
        }
    }
}

/// One group commit of express records and their audit entries (the API calls', and
/// what a command or statement ran). A failed commit is retried once per record on
/// its own, so one bad record does not lose the rest.
async fn write_batch(store: &dyn Store, batch: impl Iterator<Item = Unwritten>) {
    let now = now_ms();
    let mut calls = Vec::new();
    let mut audit = Vec::new();
    for item in batch {
        match item {
            Unwritten::Call(f) => {
                let mid = f.output.claimed_by.as_deref().unwrap_or_default();
                audit.extend(crate::audit::jobs::entry(mid, &f, now));
                calls.push(Arc::try_unwrap(f).unwrap_or_else(|f| (*f).clone()));
            }
            Unwritten::Audit(entry) => audit.push(*entry),
        }
    }
    let (calls, audit): (Arc<[Finished]>, Arc<[NewAuditEntry]>) = (calls.into(), audit.into());
    if let Err(e) = store.record_express(calls.clone(), audit.clone()).await {
        tracing::warn!(calls = calls.len(), error = %e, "could not write a batch of express records; writing them one by one");
        for f in calls.iter() {
            if let Err(e) = store
                .record_express(Arc::from([f.clone()]), Arc::from([]))
                .await
            {
                tracing::error!(output = %f.output.id, error = %e, "lost the record of an express call that answered");
            }
        }
        for entry in audit.iter() {
            crate::audit::append(store, entry.clone()).await;
        }
    }
}

impl Dispatcher {
    /// The session streams on this node.
    pub fn lanes(&self) -> &Arc<Lanes> {
        &self.lanes
    }

    /// Runs `new` on the express lane and returns the finished output and input, or
    /// `None` when it must take the durable path (no session stream to its MID here,
    /// the MID is not up, or the stream closed before the call went down it).
    pub async fn express(
        &self,
        new: NewOutput,
        trace: Option<TraceParent>,
    ) -> Result<Option<Arc<Finished>>, DispatchError> {
        let topic = new.topic;
        let named = match new.agent.parse::<Agent>() {
            Ok(Agent::Server(name)) => self.lane_row(&name).await?,
            _ => None,
        };
        let mut record = self.prepare(new, trace, named.clone()).await?;
        let Some(mid_name) = record.assigned_to.clone() else {
            return Ok(None);
        };
        let Some((lane, frames)) = self.lanes.sender(&mid_name) else {
            return Ok(None);
        };
        let mid = match named.filter(|row| row.name == mid_name) {
            Some(row) => Some(row),
            None => self.lane_row(&mid_name).await?,
        };
        let Some(mid) = mid.filter(|m| m.status == MidStatus::Up) else {
            return Ok(None);
        };
        let now = now_ms();
        record.state = State::Processing;
        record.attempt = 1;
        // Never leased and never run again: one attempt is all it gets.
        record.max_attempts = 1;
        record.at_most_once = true;
        record.claimed_by = Some(mid_name.clone());
        record.claimed_at = Some(now);
        let item = self.work_item(&mid, record.clone()).await;
        let timeout = Duration::from_millis(
            item.payload
                .field::<u64>("timeout_ms")
                .unwrap_or(DEFAULT_TIMEOUT_MS),
        ) + ANSWER_GRACE;
        let Some((call, answer)) = self.lanes.expect(&mid_name, lane) else {
            return Ok(None);
        };
        let hint = item.payload.as_str().len() + ITEM_FIELDS_BYTES;
        let frame = match Frame::encode_json(Kind::Express, call, &item, hint) {
            Ok(frame) => Bytes::from(frame),
            Err(e) => {
                self.lanes.forget(call);
                return Err(invalid("payload", e.to_string()));
            }
        };
        if frames.send(frame).await.is_err() {
            self.lanes.forget(call);
            return Ok(None);
        }
        self.telemetry.claimed(std::slice::from_ref(&record));
        let started = now_ms();
        let answered = tokio::time::timeout(timeout, answer).await;
        self.telemetry.express(match &answered {
            Ok(Ok(_)) => "answered",
            _ => "lost",
        });
        let result = match answered {
            Ok(Ok(body)) => serde_json::from_slice::<WorkResult>(&body).unwrap_or_else(|e| {
                lost(
                    &record,
                    started,
                    format!("the MID's answer does not read: {e}"),
                )
            }),
            Ok(Err(_)) => lost(
                &record,
                started,
                "the MID's session ended before it answered; an express call is not run again"
                    .into(),
            ),
            Err(_) => {
                self.lanes.forget(call);
                lost(
                    &record,
                    started,
                    format!(
                        "the MID did not answer within {} s; an express call is not run again",
                        timeout.as_secs()
                    ),
                )
            }
        };
        let finished = rules::finish(
            record,
            &mid_name,
            rules::ResultToRecord {
                attempt: 1,
                payload: result.payload.into_string(),
                error: result.error,
                duration_ms: i64::try_from(result.duration_ms).unwrap_or(i64::MAX),
            },
            None,
            uuid::Uuid::now_v7().to_string(),
            now_ms(),
        );
        tracing::debug!(output = %finished.output.id, mid = %mid_name, %topic, "express call answered");
        self.telemetry.result(AckOutcome::Recorded, Some(&finished));
        let finished = Arc::new(finished);
        self.write_later(Unwritten::Call(finished.clone())).await;
        Ok(Some(finished))
    }

    /// `mid`'s row as its session stream here keeps it while fresh (see [`ROW_FRESH`]), else
    /// read from the store (and kept).
    pub(super) async fn lane_row(&self, mid: &str) -> Result<Option<MidRow>, DispatchError> {
        if let Some(row) = self.lanes.row(mid) {
            return Ok(Some(row));
        }
        let row = self.store.get_mid(MidKey::Name(mid)).await?;
        if let Some(row) = &row {
            self.lanes.refresh(row);
        }
        Ok(row)
    }

    /// Writes the audit entry of the API call that made an express call beside its
    /// records: off the caller's path, and lost with them in a crash.
    pub async fn audit_express(&self, entry: NewAuditEntry) {
        self.write_later(Unwritten::Audit(Box::new(entry))).await;
    }

    async fn write_later(&self, item: Unwritten) {
        let recorder = self
            .recorder
            .get_or_init(|| Recorder::start(self.store.clone()));
        recorder.unwritten.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(item)) = recorder.queue.send(item).await {
            recorder.unwritten.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(output = %item.output_id(), "lost the record of an express call that answered: its writer stopped");
        }
    }

    /// Waits (up to `limit`) until the express records answered so far are written:
    /// at a clean stop, so only a crash loses them.
    pub async fn flush_express(&self, limit: Duration) {
        let Some(recorder) = self.recorder.get() else {
            return;
        };
        let deadline = Instant::now() + limit;
        loop {
            let written = recorder.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            let left = recorder.unwritten.load(Ordering::Relaxed);
            if left == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, written).await.is_err() {
                tracing::warn!(
                    calls = left,
                    "stopping before the records of some express calls were written"
                );
                return;
            }
        }
    }
}

/// The result of an express call that got no answer.
fn lost(record: &Record, started_at_ms: i64, error: String) -> WorkResult {
    WorkResult {
        output_id: record.id.clone(),
        attempt: 1,
        payload: openmid_proto::payload::Payload::null(),
        error: Some(error),
        started_at_ms,
        duration_ms: u64::try_from(now_ms().saturating_sub(started_at_ms)).unwrap_or(0),
    }
}
