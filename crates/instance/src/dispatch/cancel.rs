//! Cancelling an output: at once when it waits; through its MID's open poll (and
//! every heartbeat until it ends) when it runs.

use super::*;

impl Dispatcher {
    /// Cancels an output: a waiting one at once; a running one is stopped on its MID
    /// (told through its open poll at once, and by every heartbeat until it ends) and
    /// recorded `cancelled` with what it produced so far.
    pub async fn cancel(&self, id: &str) -> Result<Cancelled, DispatchError> {
        let cancelled = self
            .store
            .cancel_output(id, "cancelled by an admin", now_ms())
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no output record with id `{id}`")))?;
        match &cancelled {
            Cancelled::Now(output) => {
                tracing::info!(output = %output.id, "output cancelled before it ran");
                self.signal_finished(&output.id);
            }
            Cancelled::Stopping(output) => {
                if let Some(mid) = &output.claimed_by {
                    tracing::info!(output = %output.id, %mid, "output cancelled while running: telling its MID");
                    let job = JobRef {
                        output_id: output.id.clone(),
                        attempt: output.attempt,
                    };
                    if !self.presence.has_open_poll(mid) {
                        self.announce(crate::ecc::Announcement::Cancel {
                            mid: mid.clone(),
                            output: job.output_id.clone(),
                            attempt: job.attempt,
                        });
                    }
                    self.queue_cancel(mid, job);
                    self.agents.signal(&mid_key(mid));
                }
            }
            Cancelled::AlreadyFinished(_) => {}
        }
        Ok(cancelled)
    }

    /// Keeps a cancelled job for its MID's next poll answer.
    pub(super) fn queue_cancel(&self, mid: &str, job: JobRef) {
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(mid.to_string())
            .or_default()
            .push(job);
    }

    pub(super) fn has_cancels(&self, mid: &str) -> bool {
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(mid)
            .is_some_and(|c| !c.is_empty())
    }

    pub(super) fn take_cancels(&self, mid: &str) -> Vec<JobRef> {
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(mid)
            .unwrap_or_default()
    }
}
