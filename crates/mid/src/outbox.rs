//! The durable outbox: every result is on disk (written, fsynced, renamed into place)
//! before the MID posts it, and leaves only when the instance has acknowledged it.
//! A MID that restarts finds its unacknowledged results here and posts them again; the
//! instance's exactly-once recording turns a repeat into a harmless `duplicate`.
//!
//! One file per result keeps a torn write from ever damaging another result, and lets
//! a removal be a single unlink.
//!
//! A response body too large to sit inside a result is kept beside it, in
//! `bodies/` ([`body_path`]), and the result's payload says so under [`BODY_FILE_KEY`];
//! the sender uploads the file before posting the result, and the file leaves with the
//! result once the instance has acknowledged it.

use openmid_proto::mid::{JobRef, WorkResult};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
}

/// Writes `bytes` to `path` so that the file is either the old or the new content after
/// a crash: temp file, fsync, rename, fsync the directory. `private` makes it 0600.
pub fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    write_then_rename(path, bytes, private)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Temp file, write, fsync its data, rename into place. The rename is durable only once
/// the directory is fsynced ([`sync_dir`]); the outbox does that once per batch.
fn write_then_rename(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
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

struct Entry {
    result: Arc<WorkResult>,
    bytes: u64,
}

#[derive(Default)]
struct Contents {
    entries: BTreeMap<JobRef, Entry>,
    bytes: u64,
}

/// The outbox.
pub struct Outbox {
    dir: PathBuf,
    limit_bytes: u64,
    contents: Mutex<Contents>,
    /// Files were renamed into the directory since it was last fsynced.
    dir_dirty: std::sync::atomic::AtomicBool,
}

fn file_name(job: &JobRef) -> String {
    // Output ids come from the instance: hex-encode them so no id can name a path.
    format!(
        "{}.{}.json",
        hex::encode(job.output_id.as_bytes()),
        job.attempt
    )
}

impl Outbox {
    /// Opens the outbox in `dir`, loading every result left from earlier runs. Files
    /// that cannot be read as a result are renamed `*.corrupt` and reported, never
    /// silently dropped.
    pub fn open(dir: &Path, limit_bytes: u64) -> Result<Self, OutboxError> {
        let io = |source| OutboxError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut contents = Contents::default();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|source| OutboxError::Io {
                path: path.clone(),
                source,
            })?;
            match serde_json::from_slice::<WorkResult>(&bytes) {
                Ok(result) => {
                    let job = JobRef {
                        output_id: result.output_id.clone(),
                        attempt: result.attempt,
                    };
                    let size = bytes.len() as u64 + body_file_bytes(&result);
                    contents.bytes += size;
                    contents.entries.insert(
                        job,
                        Entry {
                            result: Arc::new(result),
                            bytes: size,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "unreadable outbox file set aside as .corrupt");
                    let _ = std::fs::rename(&path, path.with_extension("corrupt"));
                }
            }
        }
        remove_stray_bodies(dir, &contents.entries).map_err(io)?;
        if !contents.entries.is_empty() {
            tracing::info!(
                results = contents.entries.len(),
                "outbox holds results from an earlier run; they will be posted"
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            limit_bytes,
            contents: Mutex::new(contents),
            dir_dirty: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Contents> {
        self.contents.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a result: its bytes are on disk when this returns; call
    /// [`Outbox::make_durable`] before posting it, which makes its file's name durable
    /// too (one directory fsync for a whole batch instead of one per result).
    pub async fn put(&self, result: WorkResult) -> Result<(), OutboxError> {
        let job = JobRef {
            output_id: result.output_id.clone(),
            attempt: result.attempt,
        };
        let bytes = serde_json::to_vec(&result)?;
        let path = self.dir.join(file_name(&job));
        let len = bytes.len() as u64 + body_file_bytes(&result);
        let written = path.clone();
        tokio::task::spawn_blocking(move || write_then_rename(&written, &bytes, true))
            .await
            .map_err(|e| OutboxError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| OutboxError::Io { path, source })?;
        self.dir_dirty
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut c = self.lock();
        if let Some(old) = c.entries.insert(
            job,
            Entry {
                result: Arc::new(result),
                bytes: len,
            },
        ) {
            c.bytes -= old.bytes;
        }
        c.bytes += len;
        Ok(())
    }

    /// Makes every result stored so far survive a power loss (fsyncs the directory if a
    /// file was added since the last call).
    pub async fn make_durable(&self) -> Result<(), OutboxError> {
        if !self
            .dir_dirty
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        let dir = self.dir.clone();
        let synced = tokio::task::spawn_blocking(move || sync_dir(&dir))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        if let Err(source) = synced {
            self.dir_dirty
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(OutboxError::Io {
                path: self.dir.clone(),
                source,
            });
        }
        Ok(())
    }

    /// Results waiting to be acknowledged, oldest output first: up to `max` of them and,
    /// past the first, no more than `max_bytes` together (so a batch fits the instance's
    /// request limit).
    pub fn pending(&self, max: usize, max_bytes: u64) -> Vec<Arc<WorkResult>> {
        let contents = self.lock();
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        for entry in contents.entries.values().take(max) {
            if !batch.is_empty() && bytes + entry.bytes > max_bytes {
                break;
            }
            bytes += entry.bytes;
            batch.push(entry.result.clone());
        }
        batch
    }

    /// Drops acknowledged results.
    pub async fn remove(&self, jobs: Vec<JobRef>) {
        let mut paths = Vec::with_capacity(jobs.len());
        {
            let mut c = self.lock();
            for job in jobs {
                if let Some(old) = c.entries.remove(&job) {
                    c.bytes -= old.bytes;
                    paths.push(self.dir.join(file_name(&job)));
                    // Only a result that spilled its body has a body file to remove.
                    let payload = &old.result.payload;
                    if payload.get(BODY_FILE_KEY).is_some() || payload.get("body_blob").is_some() {
                        paths.push(body_path(&self.dir, &job));
                    }
                }
            }
        }
        // A removal lost in a crash only means the result is posted again and
        // acknowledged as a duplicate, so no fsync here.
        let _ = tokio::task::spawn_blocking(move || {
            for path in paths {
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(file = %path.display(), error = %e, "could not remove an acknowledged result");
                }
            }
        })
        .await;
    }

    /// Results whose response body still waits for upload. Their leases are renewed
    /// like running jobs': a large upload must not let the lease lapse.
    pub fn awaiting_upload(&self) -> Vec<JobRef> {
        self.lock()
            .entries
            .iter()
            .filter(|(_, e)| e.result.payload.get(BODY_FILE_KEY).is_some())
            .map(|(job, _)| job.clone())
            .collect()
    }

    /// The directory results are kept in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Results waiting.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Whether the outbox is past its limit (the MID then claims no new work).
    pub fn over_limit(&self) -> bool {
        self.bytes() >= self.limit_bytes
    }
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn result(id: &str, attempt: u32) -> WorkResult {
        WorkResult {
            output_id: id.to_string(),
            attempt,
            payload: serde_json::json!({"status": 200}),
            error: None,
            started_at_ms: 1,
            duration_ms: 2,
        }
    }

    #[tokio::test]
    async fn results_survive_reopen_until_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
        outbox.put(result("a", 1)).await.expect("put");
        outbox
            .put(result("../../etc/passwd", 1))
            .await
            .expect("put");
        drop(outbox);
        std::fs::write(dir.path().join("junk.json"), b"{not json").expect("write");

        let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(outbox.len(), 2);
        assert!(dir.path().join("junk.corrupt").exists());
        outbox
            .remove(vec![JobRef {
                output_id: "a".into(),
                attempt: 1,
            }])
            .await;
        drop(outbox);
        let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
        let left: Vec<String> = outbox
            .pending(10, u64::MAX)
            .iter()
            .map(|r| r.output_id.clone())
            .collect();
        assert_eq!(left, vec!["../../etc/passwd".to_string()]);
    }

    #[tokio::test]
    async fn batches_are_capped_by_bytes_but_never_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
        for id in ["a", "b", "c"] {
            outbox.put(result(id, 1)).await.expect("put");
        }
        assert_eq!(outbox.pending(10, u64::MAX).len(), 3);
        assert_eq!(outbox.pending(2, u64::MAX).len(), 2);
        assert_eq!(
            outbox.pending(10, 1).len(),
            1,
            "one result even when it alone is over"
        );
    }

    #[tokio::test]
    async fn body_files_leave_with_their_result_and_strays_are_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
        let job = JobRef {
            output_id: "a".into(),
            attempt: 1,
        };
        std::fs::write(body_path(dir.path(), &job), b"hello").expect("body");
        let mut big = result("a", 1);
        big.payload = serde_json::json!({"status": 200, BODY_FILE_KEY: {"size": 5, "sha256": "x"}});
        outbox.put(big).await.expect("put");
        assert_eq!(outbox.awaiting_upload(), vec![job.clone()]);
        let stray = body_path(
            dir.path(),
            &JobRef {
                output_id: "acknowledged".into(),
                attempt: 1,
            },
        );
        std::fs::write(&stray, b"old").expect("stray");
        let partial = dir.path().join("bodies").join("x.1.part");
        std::fs::write(&partial, b"cut short").expect("partial");
        drop(outbox);

        let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
        assert!(
            body_path(dir.path(), &job).exists(),
            "a pending body survives"
        );
        assert!(!stray.exists() && !partial.exists(), "strays are cleared");
        assert!(outbox.bytes() > 5, "the body counts against the limit");
        outbox.remove(vec![job.clone()]).await;
        assert!(!body_path(dir.path(), &job).exists());
    }

    #[tokio::test]
    async fn limit_applies_back_pressure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outbox = Outbox::open(dir.path(), 100).expect("open");
        assert!(!outbox.over_limit());
        outbox.put(result("a", 1)).await.expect("put");
        outbox.put(result("b", 1)).await.expect("put");
        assert!(outbox.over_limit());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_file_content_is_survived(content in proptest::collection::vec(any::<u8>(), 0..200)) {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("x.json"), &content).expect("write");
            let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
            prop_assert!(outbox.len() <= 1);
        }
    }
}
