//! Group commit: one fdatasync for everything appended so far, shared by the callers
//! that arrive while a sync runs.

use super::state::State;
use super::{BODY_FILE_KEY, OutboxError, io_at, sync_dir};
use openmid_proto::mid::{JobRef, WorkResult};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What one group commit syncs.
pub(super) struct SyncPlan {
    pub(super) files: Vec<(PathBuf, Arc<File>)>,
    pub(super) log_dir: bool,
    pub(super) bodies: bool,
    pub(super) upto: u64,
}

/// The outbox and what its blocking work needs to share.
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) log_dir: PathBuf,
    pub(super) limit_bytes: u64,
    pub(super) segment_bytes: u64,
    pub(super) state: Mutex<State>,
    /// One sync at a time: whoever waits here finds out afterwards whether the sync
    /// that ran meanwhile already covered its frames.
    pub(super) sync_turn: tokio::sync::Mutex<()>,
    /// Group commits made (each one fdatasync round).
    pub(super) syncs: AtomicU64,
}

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `result`'s frame and makes it the job's result.
    pub(super) fn store(
        &self,
        result: WorkResult,
        frame: Vec<u8>,
        json_len: u64,
    ) -> Result<(), OutboxError> {
        let job = JobRef {
            output_id: result.output_id.clone(),
            attempt: result.attempt,
        };
        let names_body = result.payload.has_field(BODY_FILE_KEY);
        let mut state = self.lock();
        let seq = state.append(&self.log_dir, self.segment_bytes, &frame)?;
        state.place(job, Arc::new(result), frame.len() as u64, json_len, seq);
        state.bodies_dirty |= names_body;
        Ok(())
    }

    /// One group commit (blocking): syncs every segment appended to since the last one,
    /// and the directories if needed, then deletes segments that became garbage.
    pub(super) fn sync_now(&self) -> Result<(), OutboxError> {
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

    pub(super) fn run(&self, plan: &SyncPlan) -> Result<(), OutboxError> {
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
    pub(super) async fn sync_to(self: &Arc<Self>, target: u64) -> Result<(), OutboxError> {
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

pub(super) fn delete_files(paths: &[PathBuf], what: &str) {
    for path in paths {
        if let Err(e) = std::fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), error = %e, "could not delete {what}");
        }
    }
}
