//! Scraped samples on disk until the instance acknowledges them: one segment file
//! per batch (`SEQ.json`, the batch's sequence number in the name), written to a
//! temporary name, synced and renamed, so a crash leaves whole batches or none. A
//! batch's file is deleted only after the instance acknowledged its sequence number.
//!
//! The buffer is bounded: [`SampleBuffer::append`] refuses a batch that would take it
//! past its bound, and the scrape loop then skips that scrape and counts it — samples
//! already buffered are never deleted to make room.

use openmid_proto::metrics::{SampleBatch, SeriesSamples};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a batch was not buffered.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The buffer holds `used` bytes; the batch of `size` would pass `max`.
    #[error("the sample buffer is full ({used} of {max} bytes; a batch of {size} bytes waits)")]
    Full {
        /// Bytes held.
        used: u64,
        /// The bound (`[metrics] buffer_max_bytes`).
        max: u64,
        /// The refused batch's size.
        size: u64,
    },
    /// The disk.
    #[error("sample buffer {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A segment that does not decode (left by a disk error; kept aside, not deleted).
    #[error("sample buffer {path}: not a sample batch: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BufferError + '_ {
    move |source| BufferError::Io {
        path: path.display().to_string(),
        source,
    }
}

struct State {
    /// Segment sizes by sequence number.
    segments: BTreeMap<u64, u64>,
    used: u64,
    next_seq: u64,
}

/// The on-disk buffer.
pub struct SampleBuffer {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
}

/// The file holding the next sequence number, so numbers are never reused after the
/// buffer empties and the MID restarts (the instance stores a (MID, seq) once).
const NEXT_SEQ: &str = "next_seq";

impl SampleBuffer {
    /// Opens (creating) the buffer in `dir`, finding the segments left by an earlier run.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, BufferError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut segments = BTreeMap::new();
        let mut used = 0;
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let size = entry.metadata().map_err(io(&entry.path()))?.len();
            segments.insert(seq, size);
            used += size;
        }
        let seq_file = dir.join(NEXT_SEQ);
        let stored = match std::fs::read_to_string(&seq_file) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(1),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(e) => return Err(io(&seq_file)(e)),
        };
        let after_segments = segments.keys().next_back().map_or(1, |s| s + 1);
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(State {
                segments,
                used,
                next_seq: stored.max(after_segments),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes held.
    pub fn used_bytes(&self) -> u64 {
        self.state().used
    }

    /// Batches held.
    pub fn len(&self) -> usize {
        self.state().segments.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a batch of about `size` bytes would fit.
    pub fn has_room(&self, size: u64) -> bool {
        let s = self.state();
        s.used.saturating_add(size) <= self.max_bytes
    }

    /// Writes `series` as one batch (durably) and returns its sequence number.
    pub fn append(&self, series: Vec<SeriesSamples>) -> Result<u64, BufferError> {
        let mut state = self.state();
        let seq = state.next_seq;
        let batch = SampleBatch { seq, series };
        let bytes = serde_json::to_vec(&batch).map_err(|e| BufferError::Corrupt {
            path: self.dir.display().to_string(),
            message: e.to_string(),
        })?;
        let size = bytes.len() as u64;
        if state.used.saturating_add(size) > self.max_bytes {
            return Err(BufferError::Full {
                used: state.used,
                max: self.max_bytes,
                size,
            });
        }
        // The counter first: a crash between the two leaves a gap, never a reuse.
        write_synced(&self.dir, NEXT_SEQ, (seq + 1).to_string().as_bytes())?;
        write_synced(&self.dir, &format!("{seq:020}.json"), &bytes)?;
        state.next_seq = seq + 1;
        state.segments.insert(seq, size);
        state.used += size;
        Ok(seq)
    }

    /// The oldest batch, if any.
    pub fn oldest(&self) -> Result<Option<SampleBatch>, BufferError> {
        let Some(seq) = self.state().segments.keys().next().copied() else {
            return Ok(None);
        };
        let path = self.dir.join(format!("{seq:020}.json"));
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        match serde_json::from_slice::<SampleBatch>(&bytes) {
            Ok(batch) if batch.seq == seq => Ok(Some(batch)),
            Ok(_) | Err(_) => {
                // Set aside, never deleted: an operator can look at it.
                let aside = path.with_extension("corrupt");
                std::fs::rename(&path, &aside).map_err(io(&path))?;
                let mut s = self.state();
                if let Some(size) = s.segments.remove(&seq) {
                    s.used = s.used.saturating_sub(size);
                }
                Err(BufferError::Corrupt {
                    path: aside.display().to_string(),
                    message: "does not decode as the batch its name says".into(),
                })
            }
        }
    }

    /// Deletes an acknowledged batch.
    pub fn remove(&self, seq: u64) -> Result<(), BufferError> {
        let path = self.dir.join(format!("{seq:020}.json"));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        let mut s = self.state();
        if let Some(size) = s.segments.remove(&seq) {
            s.used = s.used.saturating_sub(size);
        }
        Ok(())
    }
}

/// Writes `name` in `dir` through a temporary file, synced, then renamed.
fn write_synced(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), BufferError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_data().map_err(io(&tmp))?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmid_proto::metrics::Sample;

    fn series(n: usize) -> Vec<SeriesSamples> {
        vec![SeriesSamples {
            labels: BTreeMap::from([("__name__".to_string(), "x".to_string())]),
            samples: (0..n)
                .map(|i| Sample {
                    t_ms: i as i64,
                    value: i as f64,
                })
                .collect(),
        }]
    }

    #[test]
    fn batches_survive_a_restart_and_numbers_are_never_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let b = SampleBuffer::open(dir.path(), 1 << 20).expect("open");
        assert_eq!(b.append(series(3)).expect("a"), 1);
        assert_eq!(b.append(series(2)).expect("b"), 2);
        b.remove(1).expect("ack");
        drop(b);
        let b = SampleBuffer::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(b.len(), 1);
        let oldest = b.oldest().expect("read").expect("one");
        assert_eq!((oldest.seq, oldest.len()), (2, 2));
        b.remove(2).expect("ack");
        drop(b);
        let b = SampleBuffer::open(dir.path(), 1 << 20).expect("reopen empty");
        assert_eq!(
            b.append(series(1)).expect("c"),
            3,
            "numbers go on after an empty buffer"
        );
    }

    #[test]
    fn a_full_buffer_refuses_and_keeps_what_it_holds() {
        let dir = tempfile::tempdir().expect("dir");
        let b = SampleBuffer::open(dir.path(), 300).expect("open");
        b.append(series(3)).expect("fits");
        let used = b.used_bytes();
        assert!(matches!(
            b.append(series(50)),
            Err(BufferError::Full { .. })
        ));
        assert_eq!((b.len(), b.used_bytes()), (1, used));
    }
}
