//! Reading the outbox log back: which segment files there are, what each holds, and
//! which results are still live once every frame is applied in order (a result frame
//! stores or replaces a job's result, an ack frame drops it).
//!
//! Nothing here changes a file; [`super::Outbox::open`] decides what to cut off, set
//! aside or migrate, and [`super::pending_on_disk`] only counts.

use super::frame::{Decoded, Frame, SEGMENT_MAGIC, decode_frames};
use openmid_proto::mid::{JobRef, WorkResult};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Digits of a segment's sequence number in its file name.
const SEQ_DIGITS: usize = 16;

/// Where segment `seq` lives.
pub(super) fn segment_path(log_dir: &Path, seq: u64) -> PathBuf {
    log_dir.join(format!("{seq:016}.seg"))
}

/// A segment file found in the log directory.
pub(super) struct SegmentFile {
    /// Its sequence number (order of creation).
    pub seq: u64,
    /// Its path.
    pub path: PathBuf,
}

/// The segments in `log_dir`, oldest first, and the highest sequence number any file
/// there carries — set-aside `.corrupt` files included, so a new segment never takes
/// the name of one and a later set-aside never overwrites an earlier one.
pub(super) fn list_segments(log_dir: &Path) -> std::io::Result<(Vec<SegmentFile>, u64)> {
    let mut segments = Vec::new();
    let mut highest = 0;
    for entry in std::fs::read_dir(log_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(seq) = name
            .get(..SEQ_DIGITS)
            .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok())
        else {
            continue;
        };
        highest = highest.max(seq);
        if name.len() == SEQ_DIGITS + 4 && name.ends_with(".seg") {
            segments.push(SegmentFile {
                seq,
                path: entry.path(),
            });
        }
    }
    segments.sort_by_key(|s| s.seq);
    Ok((segments, highest))
}

/// What a segment file's bytes are.
pub(super) enum SegmentRead {
    /// Our header, then frames (maybe ending in a torn or corrupt one).
    Frames(Decoded),
    /// Shorter than the header: a crash came between creating the file and writing it.
    Unstarted,
    /// Not our header (another format or version, or damage).
    Foreign,
}

/// Reads a segment file's bytes.
pub(super) fn read_segment(bytes: &[u8]) -> SegmentRead {
    match bytes.split_at_checked(SEGMENT_MAGIC.len()) {
        None => SegmentRead::Unstarted,
        Some((header, frames)) if header == SEGMENT_MAGIC => {
            SegmentRead::Frames(decode_frames(frames))
        }
        Some(_) => SegmentRead::Foreign,
    }
}

/// A result still live after replay.
pub(super) struct Replayed {
    /// The result (from its latest frame).
    pub result: WorkResult,
    /// Bytes of its JSON.
    pub json_len: u64,
    /// Bytes of its latest frame.
    pub frame_len: u64,
    /// The segment that frame is in.
    pub seq: u64,
}

/// Frames applied in log order.
#[derive(Default)]
pub(super) struct Fold {
    /// Results stored and not acknowledged since.
    pub live: BTreeMap<JobRef, Replayed>,
}

impl Fold {
    /// Applies the frames of segment `seq`, in order.
    pub fn apply(&mut self, seq: u64, frames: Vec<(Frame, u64)>) {
        for (frame, frame_len) in frames {
            match frame {
                Frame::Result { result, json_len } => {
                    let job = JobRef {
                        output_id: result.output_id.clone(),
                        attempt: result.attempt,
                    };
                    self.live.insert(
                        job,
                        Replayed {
                            result,
                            json_len,
                            frame_len,
                            seq,
                        },
                    );
                }
                Frame::Ack(job) => {
                    self.live.remove(&job);
                }
            }
        }
    }
}

/// A file of the old layout (one `<hex id>.<attempt>.json` per result) in `dir`.
pub(super) fn is_legacy_result(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// A temp file of the old layout: a result whose write a crash cut short (never
/// renamed into place, so never posted; the job's lease lapses and it is run again).
pub(super) fn is_legacy_temp(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "tmp")
}
