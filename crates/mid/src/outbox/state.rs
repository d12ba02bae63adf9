//! What the outbox holds, in memory and in the log: live results, segments, the
//! segment appends go to, and the bookkeeping that decides what may be deleted.

use super::frame::{SEGMENT_MAGIC, result_frame};
use super::{COMPACT_LIVE_SHARE, OutboxError, body_file_bytes, io_at, private_options, replay};
use openmid_proto::mid::{JobRef, WorkResult};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A live result.
pub(super) struct Entry {
    pub(super) result: Arc<WorkResult>,
    /// Counted against the limit: its JSON and its body file.
    pub(super) bytes: u64,
    /// Bytes of its latest frame.
    pub(super) frame_len: u64,
    /// The segment that frame is in.
    pub(super) seq: u64,
}

/// A segment file still in the log.
pub(super) struct Segment {
    pub(super) path: PathBuf,
    /// Live results whose latest frame is here.
    pub(super) live: u64,
    /// Bytes of those frames (what compaction would copy).
    pub(super) live_bytes: u64,
    /// Log position of the newest frame that replaced one of this segment's results;
    /// until the log is durable up to there, this segment still holds the only durable
    /// copy of that result.
    pub(super) moved_until: u64,
}

impl Segment {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            live: 0,
            live_bytes: 0,
            moved_until: 0,
        }
    }
}

/// The segment appends go to.
pub(super) struct Current {
    pub(super) seq: u64,
    pub(super) path: PathBuf,
    pub(super) file: Arc<File>,
    /// Bytes in the file (the offset of the next frame).
    pub(super) len: u64,
}

/// What the outbox holds, in memory and in the log; one lock, so the memory state and
/// the order of frames in the log always agree.
pub(super) struct State {
    pub(super) entries: BTreeMap<JobRef, Entry>,
    pub(super) bytes: u64,
    pub(super) segments: BTreeMap<u64, Segment>,
    pub(super) current: Current,
    pub(super) next_seq: u64,
    /// A failed append could not be undone: the next one starts a new segment.
    pub(super) current_damaged: bool,
    /// Log position: bytes appended since open (headers included), only ever growing.
    pub(super) end: u64,
    /// Log position up to which everything is known to be on stable storage.
    pub(super) durable: u64,
    /// Segments rolled over with appends not yet synced.
    pub(super) unsynced: Vec<(PathBuf, Arc<File>)>,
    /// A segment was created since the log directory was last fsynced.
    pub(super) log_dir_dirty: bool,
    /// A result naming a body file was stored since `bodies/` was last fsynced.
    pub(super) bodies_dirty: bool,
    /// A sync failed; write every live result again before trusting the next one.
    pub(super) rewrite_pending: bool,
}

/// Creates segment `seq` and writes its header.
pub(super) fn create_segment(log_dir: &Path, seq: u64) -> Result<Current, OutboxError> {
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
    pub(super) fn new(current: Current) -> Self {
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
    pub(super) fn roll_over(&mut self, log_dir: &Path) -> Result<(), OutboxError> {
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
    pub(super) fn append(
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
    pub(super) fn place(
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
    pub(super) fn forget(&mut self, old: &Entry) {
        self.bytes = self.bytes.saturating_sub(old.bytes);
        if let Some(segment) = self.segments.get_mut(&old.seq) {
            segment.live = segment.live.saturating_sub(1);
            segment.live_bytes = segment.live_bytes.saturating_sub(old.frame_len);
        }
    }

    /// Appends the results of `jobs` again, to the current segment.
    pub(super) fn reappend(
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
    pub(super) fn compaction_candidate(&self, segment_bytes: u64) -> Option<u64> {
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
    pub(super) fn compact(
        &mut self,
        log_dir: &Path,
        segment_bytes: u64,
        seq: u64,
    ) -> Result<(), OutboxError> {
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
    pub(super) fn collect_garbage(&mut self) -> Vec<PathBuf> {
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
