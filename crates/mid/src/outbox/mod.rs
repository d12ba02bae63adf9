//! The durable outbox: every result is on disk before the MID posts it, and leaves only
//! when the instance has acknowledged it. A MID that restarts finds its unacknowledged
//! results here and posts them again; the instance's exactly-once recording turns a
//! repeat into a harmless `duplicate`.
//!
//! # Why a log
//!
//! Results arrive by the thousand per second under load. A file per result cost an
//! open, a write, an fdatasync, a rename and later an unlink for each one, plus a
//! blocking-pool thread per write. Instead the outbox is an append-only log under
//! `log/`: segment files `<16-digit sequence>.seg`, each a header and then frames
//! ([`frame`] has the format). [`Outbox::put`] appends a result frame — one `write(2)`
//! into the page cache, which already survives a crash of the *process* — and
//! [`Outbox::make_durable`] issues one fdatasync for everything appended so far
//! (group commit: callers that arrive while a sync runs share the next one, and a
//! caller whose frames a finished sync covered issues none). The sender calls it once
//! per batch before posting, so a batch of 256 results costs one fsync, not 256.
//!
//! # Acknowledgements and space
//!
//! [`Outbox::remove`] appends ack frames (not synced: an ack lost in a power cut only
//! brings a result back, and posting it again is answered `duplicate`). Replay applies
//! frames in order, so acknowledged results stay gone. The current segment rolls over
//! past [`SEGMENT_BYTES`]; older segments are deleted oldest first once nothing in
//! them is live. Only a prefix is deleted because a segment's acks may cancel results
//! in older ones: dropping a middle segment could bring those back. So that one
//! long-unacknowledged result cannot pin every segment behind it, the oldest segment's
//! few live results are copied to the current one and made durable before it goes
//! (compaction). A segment whose live results were replaced by a newer frame
//! elsewhere is kept until that frame is durable.
//!
//! # Damage
//!
//! Replay ([`Outbox::open`]) stops a segment at its first bad frame. At the end of the
//! last segment that is a crash mid-append: the tail is cut off with a warning (a
//! complete frame that fails its checksum is kept beside it as `*.corrupt` first). In
//! an older segment it is damage: every live result is written again to a fresh
//! segment and the damaged file is renamed `*.corrupt`, never silently dropped.
//! Results in the old one-file-per-result layout (`<hex>.<attempt>.json`) are moved
//! into the log at open, so an upgraded MID loses nothing.
//!
//! # Response bodies
//!
//! A response body too large to sit inside a result is kept beside it, in `bodies/`
//! ([`body_path`]), and the result's payload says so under [`BODY_FILE_KEY`]; the
//! sender uploads the file before posting the result, and the file leaves with the
//! result once the instance has acknowledged it.

mod frame;
mod replay;
mod state;
mod sync;

use state::{Entry, Segment, State, create_segment};
use sync::{Shared, delete_files};

use frame::{FrameError, SEGMENT_MAGIC, ack_frame, result_frame};
use openmid_proto::mid::{JobRef, WorkResult};
use replay::{Fold, SegmentRead};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// The current segment rolls over once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// The oldest segment is compacted (its live results copied forward) when they take
/// at most this share of a segment and at least one more segment waits behind it:
/// copying an eighth of a segment to free a whole one (or more) is worth it, copying
/// results that will be acknowledged in a moment is not.
const COMPACT_LIVE_SHARE: u64 = 8;
/// Frames up to this size are appended on the calling task (a `write(2)` of a few
/// kilobytes into the page cache); larger ones go to the blocking pool.
const INLINE_APPEND_BYTES: usize = 64 * 1024;

/// Errors of the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// File access failed.
    #[error("outbox {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A result could not be encoded.
    #[error("encoding a result: {0}")]
    Encode(#[from] serde_json::Error),
    /// A result is larger than one log frame can hold (4 GiB).
    #[error("a result of {0} bytes is larger than the outbox can store")]
    TooLarge(usize),
}

impl From<FrameError> for OutboxError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Encode(e) => Self::Encode(e),
            FrameError::TooLarge(n) => Self::TooLarge(n),
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` so that the file is either the old or the new content after
/// a crash: temp file, fsync, rename, fsync the directory. `private` makes it 0600.
pub fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = private_options(private).truncate(true).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Options to create a file for writing; `private` makes it 0600 (results and keys are
/// nobody else's business).
fn private_options(private: bool) -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    options
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Key of a result payload whose response body waits in a file under `bodies/`
/// instead of inside the payload; its value is `{"size": N, "sha256": "…"}`. The MID
/// replaces it by `body_blob` once the file is uploaded; it never reaches the instance.
pub const BODY_FILE_KEY: &str = "body_file";

/// Where the response body of `job` is kept while it waits for upload.
pub fn body_path(outbox_dir: &Path, job: &JobRef) -> PathBuf {
    outbox_dir.join("bodies").join(format!(
        "{}.{}",
        hex::encode(job.output_id.as_bytes()),
        job.attempt
    ))
}

/// Bytes of a result's body file, from its payload marker (they count against the
/// outbox limit like the result itself).
fn body_file_bytes(result: &WorkResult) -> u64 {
    result
        .payload
        .field::<serde_json::Value>(BODY_FILE_KEY)
        .and_then(|m| m.get("size").and_then(|s| s.as_u64()))
        .unwrap_or(0)
}

/// Results waiting in the outbox at `dir`, read from disk without opening it for
/// writing (nothing is cut off, set aside or migrated). For tests and tools that
/// watch a running MID from outside; a frame being appended right now is not counted.
pub fn pending_on_disk(dir: &Path) -> Result<usize, OutboxError> {
    if !dir.is_dir() {
        return Ok(0);
    }
    let log_dir = dir.join("log");
    let mut fold = Fold::default();
    if log_dir.is_dir() {
        let (segments, _) = replay::list_segments(&log_dir).map_err(io_at(&log_dir))?;
        for segment in segments {
            match std::fs::read(&segment.path) {
                Ok(bytes) => {
                    if let SegmentRead::Frames(decoded) = replay::read_segment(&bytes) {
                        fold.apply(segment.seq, decoded.frames);
                    }
                }
                // Deleted since it was listed: nothing in it was live any more.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&segment.path)(e)),
            }
        }
    }
    let mut jobs: std::collections::BTreeSet<JobRef> = fold.live.into_keys().collect();
    for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
        let path = entry.map_err(io_at(dir))?.path();
        if replay::is_legacy_result(&path)
            && let Ok(bytes) = std::fs::read(&path)
            && let Ok(result) = serde_json::from_slice::<WorkResult>(&bytes)
        {
            jobs.insert(JobRef {
                output_id: result.output_id,
                attempt: result.attempt,
            });
        }
    }
    Ok(jobs.len())
}

/// The outbox.
pub struct Outbox {
    shared: Arc<Shared>,
}

impl Outbox {
    /// Opens the outbox in `dir`, loading every result left from earlier runs (and
    /// moving results of the old one-file-per-result layout into the log). Damaged
    /// files are set aside as `*.corrupt` and reported, never silently dropped.
    pub fn open(dir: &Path, limit_bytes: u64) -> Result<Self, OutboxError> {
        Self::open_with(dir, limit_bytes, SEGMENT_BYTES)
    }

    fn open_with(dir: &Path, limit_bytes: u64, segment_bytes: u64) -> Result<Self, OutboxError> {
        let log_dir = dir.join("log");
        std::fs::create_dir_all(&log_dir).map_err(io_at(&log_dir))?;
        let (files, highest) = replay::list_segments(&log_dir).map_err(io_at(&log_dir))?;

        let mut fold = Fold::default();
        let mut kept = Vec::new();
        let mut set_aside = Vec::new();
        let count = files.len();
        for (i, segment) in files.into_iter().enumerate() {
            let last = i + 1 == count;
            let bytes = std::fs::read(&segment.path).map_err(io_at(&segment.path))?;
            let decoded = match replay::read_segment(&bytes) {
                SegmentRead::Frames(decoded) => decoded,
                SegmentRead::Unstarted if last => {
                    // Created, then a crash before its header was whole: nothing in it.
                    tracing::warn!(file = %segment.path.display(), bytes = bytes.len(), "outbox segment without a whole header (a crash right after creating it): removed");
                    std::fs::remove_file(&segment.path).map_err(io_at(&segment.path))?;
                    continue;
                }
                SegmentRead::Unstarted | SegmentRead::Foreign => {
                    tracing::error!(file = %segment.path.display(), "not an outbox segment this MID can read: set aside as .corrupt");
                    set_aside.push(segment);
                    continue;
                }
            };
            let offset = SEGMENT_MAGIC.len() as u64 + decoded.good_len;
            fold.apply(segment.seq, decoded.frames);
            match decoded.stop {
                frame::Stop::End => kept.push(segment),
                stop if !last => {
                    // Only the segment being appended to can be cut short by a crash.
                    tracing::warn!(file = %segment.path.display(), offset, problem = ?stop, "damaged frame in an older outbox segment: frames after it are not replayed; the file is kept as .corrupt");
                    set_aside.push(segment);
                }
                frame::Stop::Torn => {
                    let cut = bytes.len() as u64 - offset;
                    tracing::warn!(file = %segment.path.display(), offset, bytes_cut = cut, "torn frame at the end of the outbox log (a crash mid-append): cut off there");
                    truncate(&segment.path, offset)?;
                    kept.push(segment);
                }
                frame::Stop::Corrupt(problem) => {
                    let tail_path = segment.path.with_extension(format!("seg.{offset}.corrupt"));
                    let tail = bytes.get(offset as usize..).unwrap_or_default();
                    tracing::warn!(file = %segment.path.display(), offset, problem, kept_in = %tail_path.display(), "corrupt frame at the end of the outbox log: its bytes are kept aside and the log is cut there");
                    std::fs::write(&tail_path, tail).map_err(io_at(&tail_path))?;
                    truncate(&segment.path, offset)?;
                    kept.push(segment);
                }
            }
        }

        // Appends never go to a file an earlier run was writing when it stopped.
        let mut state = State::new(create_segment(&log_dir, highest + 1)?);
        for segment in &kept {
            state
                .segments
                .insert(segment.seq, Segment::new(segment.path.clone()));
        }
        for (job, live) in fold.live {
            state.place(
                job,
                Arc::new(live.result),
                live.frame_len,
                live.json_len,
                live.seq,
            );
        }
        let migrated = migrate_legacy(dir, &log_dir, segment_bytes, &mut state)?;
        if !set_aside.is_empty() {
            // The set-aside files leave the log, and with them acks that later
            // segments rely on; so every live result is written again to the new
            // segment, after which no older segment is needed.
            let jobs = state.entries.keys().cloned().collect();
            state.reappend(&log_dir, segment_bytes, jobs)?;
        }

        // What was replayed may sit only in the page cache (the process crashed, not
        // the machine): make it durable before any of it is posted or deleted.
        for segment in &kept {
            File::open(&segment.path)
                .and_then(|f| f.sync_data())
                .map_err(io_at(&segment.path))?;
        }
        state
            .current
            .file
            .sync_data()
            .map_err(io_at(&state.current.path))?;
        sync_dir(&log_dir).map_err(io_at(&log_dir))?;
        sync_dir(dir).map_err(io_at(dir))?;
        state.log_dir_dirty = false;
        state.durable = state.end;

        for segment in set_aside {
            let aside = segment.path.with_extension("seg.corrupt");
            if let Err(e) = std::fs::rename(&segment.path, &aside) {
                tracing::error!(file = %segment.path.display(), error = %e, "could not set a damaged outbox segment aside");
            }
        }
        delete_files(&migrated, "a migrated outbox file");
        delete_files(
            &state.collect_garbage(),
            "an outbox segment with nothing left to post",
        );
        remove_stray_bodies(dir, &state.entries).map_err(io_at(dir))?;
        if !state.entries.is_empty() {
            tracing::info!(
                results = state.entries.len(),
                "outbox holds results from an earlier run; they will be posted"
            );
        }
        Ok(Self {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                log_dir,
                limit_bytes,
                segment_bytes,
                state: Mutex::new(state),
                sync_turn: tokio::sync::Mutex::new(()),
                syncs: AtomicU64::new(0),
            }),
        })
    }

    /// Stores a result (replacing any earlier one of the same job): appended to the
    /// log, so it survives a crash of the MID's process when this returns. Call
    /// [`Outbox::make_durable`] before posting it to make it survive a power loss too.
    pub async fn put(&self, result: WorkResult) -> Result<(), OutboxError> {
        let (frame, json_len) = result_frame(&result)?;
        if frame.len() <= INLINE_APPEND_BYTES {
            return self.shared.store(result, frame, json_len);
        }
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.store(result, frame, json_len))
            .await
            .map_err(|e| OutboxError::Io {
                path: self.shared.log_dir.clone(),
                source: std::io::Error::other(e),
            })?
    }

    /// Makes every result stored before this call survive a power loss: one
    /// fdatasync for all of them, shared with concurrent callers, none if a sync that
    /// started after they were stored has finished.
    pub async fn make_durable(&self) -> Result<(), OutboxError> {
        let target = self.shared.lock().end;
        self.shared.sync_to(target).await
    }

    /// Results waiting to be acknowledged, oldest output first: up to `max` of them and,
    /// past the first, no more than `max_bytes` together (so a batch fits the instance's
    /// request limit).
    pub fn pending(&self, max: usize, max_bytes: u64) -> Vec<Arc<WorkResult>> {
        let state = self.shared.lock();
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        for entry in state.entries.values().take(max) {
            if !batch.is_empty() && bytes + entry.bytes > max_bytes {
                break;
            }
            bytes += entry.bytes;
            batch.push(entry.result.clone());
        }
        batch
    }

    /// Drops acknowledged results: ack frames go to the log (not synced — a lost one
    /// only means a repeat post, answered `duplicate`), their body files are deleted,
    /// and so are segments left with nothing to post.
    pub async fn remove(&self, jobs: Vec<JobRef>) {
        let shared = &self.shared;
        let mut bodies = Vec::new();
        let (garbage, compacted_to) = {
            let mut state = shared.lock();
            let mut acks = Vec::new();
            for job in jobs {
                let Some(old) = state.entries.remove(&job) else {
                    continue;
                };
                state.forget(&old);
                // Only a result that spilled its body has a body file to remove.
                let payload = &old.result.payload;
                if payload.has_field(BODY_FILE_KEY) || payload.has_field("body_blob") {
                    bodies.push(body_path(&shared.dir, &job));
                }
                match ack_frame(&job) {
                    Ok(frame) => acks.extend(frame),
                    Err(e) => {
                        tracing::warn!(output = %job.output_id, error = %e, "could not encode an acknowledgement")
                    }
                }
            }
            if !acks.is_empty()
                && let Err(e) = state.append(&shared.log_dir, shared.segment_bytes, &acks)
            {
                tracing::warn!(error = %e, "could not log acknowledgements; after a restart those results are posted again (and answered duplicate)");
            }
            let compacted_to = state.compaction_candidate(shared.segment_bytes).and_then(|seq| {
                match state.compact(&shared.log_dir, shared.segment_bytes, seq) {
                    Ok(()) => Some(state.end),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not compact the outbox log; its oldest segment stays");
                        None
                    }
                }
            });
            (state.collect_garbage(), compacted_to)
        };
        if let Some(target) = compacted_to
            && let Err(e) = shared.sync_to(target).await
        {
            // The copies are not durable, so the segment they came from stays.
            tracing::warn!(error = %e, "could not make compacted results durable");
        }
        if garbage.is_empty() && bodies.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            delete_files(&garbage, "an outbox segment with nothing left to post");
            delete_files(&bodies, "an acknowledged result's body");
        })
        .await;
    }

    /// The jobs whose results wait here. Their leases are renewed like running jobs':
    /// a result that waits for an unreachable instance, or for a large body upload,
    /// is finished work, and a lapsed lease would have it run again and the genuine
    /// result discarded.
    pub fn held(&self) -> Vec<JobRef> {
        self.shared.lock().entries.keys().cloned().collect()
    }

    /// The directory results are kept in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Results waiting.
    pub fn len(&self) -> usize {
        self.shared.lock().entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes waiting: results' JSON and their body files.
    pub fn bytes(&self) -> u64 {
        self.shared.lock().bytes
    }

    /// Whether the outbox is past its limit (the MID then claims no new work).
    pub fn over_limit(&self) -> bool {
        self.bytes() >= self.shared.limit_bytes
    }

    #[cfg(test)]
    fn syncs(&self) -> u64 {
        self.shared.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn truncate(path: &Path, len: u64) -> Result<(), OutboxError> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .map_err(io_at(path))
}

/// Appends the results of the old layout's files in `dir` to the log; returns the
/// files to delete once the log is durable. Unreadable ones are set aside as
/// `*.corrupt`, as the old layout did.
fn migrate_legacy(
    dir: &Path,
    log_dir: &Path,
    segment_bytes: u64,
    state: &mut State,
) -> Result<Vec<PathBuf>, OutboxError> {
    let mut done = Vec::new();
    let mut moved = 0usize;
    for entry in std::fs::read_dir(dir).map_err(io_at(dir))? {
        let path = entry.map_err(io_at(dir))?.path();
        if replay::is_legacy_temp(&path) && path.is_file() {
            done.push(path);
            continue;
        }
        if !replay::is_legacy_result(&path) {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(io_at(&path))?;
        match serde_json::from_slice::<WorkResult>(&bytes) {
            Ok(result) => {
                let job = JobRef {
                    output_id: result.output_id.clone(),
                    attempt: result.attempt,
                };
                let (frame, json_len) = result_frame(&result)?;
                let seq = state.append(log_dir, segment_bytes, &frame)?;
                state.place(job, Arc::new(result), frame.len() as u64, json_len, seq);
                done.push(path);
                moved += 1;
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "unreadable outbox file set aside as .corrupt");
                let _ = std::fs::rename(&path, path.with_extension("corrupt"));
            }
        }
    }
    if moved > 0 {
        tracing::info!(
            results = moved,
            "moved results of the one-file-per-result outbox into the log"
        );
    }
    Ok(done)
}

/// Deletes body files no result names (their result was acknowledged just before a
/// crash) and partial ones (a probe cut short by a crash; its job is re-run). Runs at
/// open, before any probe can be writing one.
fn remove_stray_bodies(dir: &Path, entries: &BTreeMap<JobRef, Entry>) -> std::io::Result<()> {
    let bodies = dir.join("bodies");
    std::fs::create_dir_all(&bodies)?;
    let wanted: std::collections::HashSet<PathBuf> =
        entries.keys().map(|job| body_path(dir, job)).collect();
    for entry in std::fs::read_dir(&bodies)? {
        let path = entry?.path();
        if !wanted.contains(&path) {
            tracing::info!(file = %path.display(), "removing a response body no result needs");
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
