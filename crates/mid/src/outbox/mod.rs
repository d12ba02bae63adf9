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

use frame::{FrameError, SEGMENT_MAGIC, ack_frame, result_frame};
use openmid_proto::mid::{JobRef, WorkResult};
use replay::{Fold, SegmentRead};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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
        .get(BODY_FILE_KEY)
        .and_then(|m| m.get("size"))
        .and_then(|s| s.as_u64())
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

/// A live result.
struct Entry {
    result: Arc<WorkResult>,
    /// Counted against the limit: its JSON and its body file.
    bytes: u64,
    /// Bytes of its latest frame.
    frame_len: u64,
    /// The segment that frame is in.
    seq: u64,
}

/// A segment file still in the log.
struct Segment {
    path: PathBuf,
    /// Live results whose latest frame is here.
    live: u64,
    /// Bytes of those frames (what compaction would copy).
    live_bytes: u64,
    /// Log position of the newest frame that replaced one of this segment's results;
    /// until the log is durable up to there, this segment still holds the only durable
    /// copy of that result.
    moved_until: u64,
}

impl Segment {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            live: 0,
            live_bytes: 0,
            moved_until: 0,
        }
    }
}

/// The segment appends go to.
struct Current {
    seq: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Bytes in the file (the offset of the next frame).
    len: u64,
}

/// What the outbox holds, in memory and in the log; one lock, so the memory state and
/// the order of frames in the log always agree.
struct State {
    entries: BTreeMap<JobRef, Entry>,
    bytes: u64,
    segments: BTreeMap<u64, Segment>,
    current: Current,
    next_seq: u64,
    /// A failed append could not be undone: the next one starts a new segment.
    current_damaged: bool,
    /// Log position: bytes appended since open (headers included), only ever growing.
    end: u64,
    /// Log position up to which everything is known to be on stable storage.
    durable: u64,
    /// Segments rolled over with appends not yet synced.
    unsynced: Vec<(PathBuf, Arc<File>)>,
    /// A segment was created since the log directory was last fsynced.
    log_dir_dirty: bool,
    /// A result naming a body file was stored since `bodies/` was last fsynced.
    bodies_dirty: bool,
    /// A sync failed; write every live result again before trusting the next one.
    rewrite_pending: bool,
}

/// Creates segment `seq` and writes its header.
fn create_segment(log_dir: &Path, seq: u64) -> Result<Current, OutboxError> {
    let path = replay::segment_path(log_dir, seq);
    let mut options = private_options(true);
    options.create_new(true);
    let mut file = options.open(&path).map_err(io_at(&path))?;
    if let Err(source) = file.write_all(&SEGMENT_MAGIC) {
        // Ours and empty or half a header: replay would only warn about it.
        let _ = std::fs::remove_file(&path);
        return Err(OutboxError::Io { path, source });
    }
    Ok(Current {
        seq,
        path,
        file: Arc::new(file),
        len: SEGMENT_MAGIC.len() as u64,
    })
}

impl State {
    fn new(current: Current) -> Self {
        let mut segments = BTreeMap::new();
        segments.insert(current.seq, Segment::new(current.path.clone()));
        Self {
            entries: BTreeMap::new(),
            bytes: 0,
            segments,
            next_seq: current.seq + 1,
            end: current.len,
            current,
            current_damaged: false,
            durable: 0,
            unsynced: Vec::new(),
            log_dir_dirty: true,
            bodies_dirty: false,
            rewrite_pending: false,
        }
    }

    /// Starts a new current segment.
    fn roll_over(&mut self, log_dir: &Path) -> Result<(), OutboxError> {
        // A name that failed once is not tried again.
        let seq = self.next_seq;
        self.next_seq += 1;
        let next = create_segment(log_dir, seq)?;
        self.end += next.len;
        self.segments
            .insert(next.seq, Segment::new(next.path.clone()));
        let old = std::mem::replace(&mut self.current, next);
        self.unsynced.push((old.path, old.file));
        self.log_dir_dirty = true;
        self.current_damaged = false;
        Ok(())
    }

    /// Appends `frames` (whole frames) to the current segment; returns its sequence.
    fn append(
        &mut self,
        log_dir: &Path,
        segment_bytes: u64,
        frames: &[u8],
    ) -> Result<u64, OutboxError> {
        if self.current_damaged || self.current.len >= segment_bytes {
            self.roll_over(log_dir)?;
        }
        let start = self.current.len;
        if let Err(source) = (&*self.current.file).write_all(frames) {
            // Replay stops at a partial frame, so one left here would hide every frame
            // after it: cut it off, or if even that fails, append elsewhere from now on
            // (replay then treats this segment as damaged and keeps its bytes).
            let file = &*self.current.file;
            let undone = file
                .set_len(start)
                .and_then(|()| (&*file).seek(std::io::SeekFrom::Start(start)));
            if undone.is_err() {
                self.current_damaged = true;
            }
            return Err(OutboxError::Io {
                path: self.current.path.clone(),
                source,
            });
        }
        self.current.len += frames.len() as u64;
        self.end += frames.len() as u64;
        Ok(self.current.seq)
    }

    /// Records that `job`'s latest frame (of `frame_len` bytes, ending at the current
    /// log end) is in segment `seq`.
    fn place(
        &mut self,
        job: JobRef,
        result: Arc<WorkResult>,
        frame_len: u64,
        json_len: u64,
        seq: u64,
    ) {
        let bytes = json_len + body_file_bytes(&result);
        if let Some(segment) = self.segments.get_mut(&seq) {
            segment.live += 1;
            segment.live_bytes += frame_len;
        }
        self.bytes += bytes;
        let entry = Entry {
            result,
            bytes,
            frame_len,
            seq,
        };
        if let Some(old) = self.entries.insert(job, entry) {
            self.forget(&old);
            if old.seq != seq
                && let Some(segment) = self.segments.get_mut(&old.seq)
            {
                segment.moved_until = segment.moved_until.max(self.end);
            }
        }
    }

    /// Takes a replaced or acknowledged entry out of the counts.
    fn forget(&mut self, old: &Entry) {
        self.bytes = self.bytes.saturating_sub(old.bytes);
        if let Some(segment) = self.segments.get_mut(&old.seq) {
            segment.live = segment.live.saturating_sub(1);
            segment.live_bytes = segment.live_bytes.saturating_sub(old.frame_len);
        }
    }

    /// Appends the results of `jobs` again, to the current segment.
    fn reappend(
        &mut self,
        log_dir: &Path,
        segment_bytes: u64,
        jobs: Vec<JobRef>,
    ) -> Result<(), OutboxError> {
        for job in jobs {
            let Some(result) = self.entries.get(&job).map(|e| e.result.clone()) else {
                continue;
            };
            let (frame, json_len) = result_frame(&result)?;
            let seq = self.append(log_dir, segment_bytes, &frame)?;
            self.place(job, result, frame.len() as u64, json_len, seq);
        }
        Ok(())
    }

    /// The oldest segment, if it is worth compacting: its few live results pin at
    /// least one more segment behind it.
    fn compaction_candidate(&self, segment_bytes: u64) -> Option<u64> {
        if self.segments.len() < 3 {
            return None;
        }
        let (&seq, segment) = self.segments.first_key_value()?;
        (seq != self.current.seq
            && segment.live > 0
            && segment.live_bytes <= segment_bytes / COMPACT_LIVE_SHARE)
            .then_some(seq)
    }

    /// Copies the live results of segment `seq` to the current one.
    fn compact(&mut self, log_dir: &Path, segment_bytes: u64, seq: u64) -> Result<(), OutboxError> {
        let jobs: Vec<JobRef> = self
            .entries
            .iter()
            .filter(|(_, e)| e.seq == seq)
            .map(|(job, _)| job.clone())
            .collect();
        self.reappend(log_dir, segment_bytes, jobs)
    }

    /// Takes out of the log the oldest segments that hold nothing live any more and
    /// whose replaced results are durable elsewhere; returns their files to delete.
    fn collect_garbage(&mut self) -> Vec<PathBuf> {
        let mut garbage = Vec::new();
        while let Some(oldest) = self.segments.first_entry() {
            let segment = oldest.get();
            if *oldest.key() == self.current.seq
                || segment.live > 0
                || segment.moved_until > self.durable
            {
                break;
            }
            garbage.push(oldest.remove().path);
        }
        garbage
    }
}

/// What one group commit syncs.
struct SyncPlan {
    files: Vec<(PathBuf, Arc<File>)>,
    log_dir: bool,
    bodies: bool,
    upto: u64,
}

/// The outbox and what its blocking work needs to share.
struct Shared {
    dir: PathBuf,
    log_dir: PathBuf,
    limit_bytes: u64,
    segment_bytes: u64,
    state: Mutex<State>,
    /// One sync at a time: whoever waits here finds out afterwards whether the sync
    /// that ran meanwhile already covered its frames.
    sync_turn: tokio::sync::Mutex<()>,
    /// Group commits made (each one fdatasync round).
    syncs: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `result`'s frame and makes it the job's result.
    fn store(&self, result: WorkResult, frame: Vec<u8>, json_len: u64) -> Result<(), OutboxError> {
        let job = JobRef {
            output_id: result.output_id.clone(),
            attempt: result.attempt,
        };
        let names_body = result.payload.get(BODY_FILE_KEY).is_some();
        let mut state = self.lock();
        let seq = state.append(&self.log_dir, self.segment_bytes, &frame)?;
        state.place(job, Arc::new(result), frame.len() as u64, json_len, seq);
        state.bodies_dirty |= names_body;
        Ok(())
    }

    /// One group commit (blocking): syncs every segment appended to since the last one,
    /// and the directories if needed, then deletes segments that became garbage.
    fn sync_now(&self) -> Result<(), OutboxError> {
        let plan = {
            let mut state = self.lock();
            if state.rewrite_pending {
                // After a failed fsync the kernel may have dropped the pages it could not
                // write and report the next fsync clean: write every live result again,
                // to a new segment, rather than trust it.
                state.roll_over(&self.log_dir)?;
                let jobs = state.entries.keys().cloned().collect();
                state.reappend(&self.log_dir, self.segment_bytes, jobs)?;
                // The older segments hold nothing the new one does not (acks need no
                // durability), so they need no sync — and a file that keeps failing
                // one cannot hold the outbox up.
                state.unsynced.clear();
                state.rewrite_pending = false;
            }
            let mut files = std::mem::take(&mut state.unsynced);
            files.push((state.current.path.clone(), state.current.file.clone()));
            SyncPlan {
                files,
                log_dir: std::mem::take(&mut state.log_dir_dirty),
                bodies: std::mem::take(&mut state.bodies_dirty),
                upto: state.end,
            }
        };
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let synced = self.run(&plan);
        let mut state = self.lock();
        match synced {
            Ok(()) => {
                state.durable = state.durable.max(plan.upto);
                let garbage = state.collect_garbage();
                drop(state);
                delete_files(&garbage, "an outbox segment with nothing left to post");
                Ok(())
            }
            Err(e) => {
                let SyncPlan {
                    mut files,
                    log_dir,
                    bodies,
                    ..
                } = plan;
                // The last one was the current segment; if it rolled over meanwhile it is
                // already listed again.
                files.pop();
                state.unsynced.extend(files);
                state.log_dir_dirty |= log_dir;
                state.bodies_dirty |= bodies;
                state.rewrite_pending = true;
                Err(e)
            }
        }
    }

    fn run(&self, plan: &SyncPlan) -> Result<(), OutboxError> {
        for (path, file) in &plan.files {
            file.sync_data().map_err(io_at(path))?;
        }
        if plan.log_dir {
            sync_dir(&self.log_dir).map_err(io_at(&self.log_dir))?;
        }
        if plan.bodies {
            let bodies = self.dir.join("bodies");
            sync_dir(&bodies).map_err(io_at(&bodies))?;
        }
        Ok(())
    }

    /// Returns once the log is durable up to position `target`, sharing syncs with
    /// concurrent callers.
    async fn sync_to(self: &Arc<Self>, target: u64) -> Result<(), OutboxError> {
        if self.lock().durable >= target {
            return Ok(());
        }
        let _turn = self.sync_turn.lock().await;
        // A sync that ran while this call waited began after its frames were appended,
        // so it covered them: no second fsync.
        if self.lock().durable >= target {
            return Ok(());
        }
        let shared = self.clone();
        tokio::task::spawn_blocking(move || shared.sync_now())
            .await
            .map_err(|e| OutboxError::Io {
                path: self.log_dir.clone(),
                source: std::io::Error::other(e),
            })?
    }
}

fn delete_files(paths: &[PathBuf], what: &str) {
    for path in paths {
        if let Err(e) = std::fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), error = %e, "could not delete {what}");
        }
    }
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
                if payload.get(BODY_FILE_KEY).is_some() || payload.get("body_blob").is_some() {
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
        self.shared.syncs.load(Ordering::Relaxed)
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
