//! A running command's output as it streams in: chunks a MID posts are stored under
//! the attempt it holds, and followers of the output are woken. The wake-up is the
//! `progress` signal, kept apart from "output finished" so a follower does not make
//! finished results be kept in memory for it (that signal's waiters take them).

use super::{DispatchError, Dispatcher};
use crate::ecc::ChunksStored;
use openmid_proto::command_output::OutputPost;
use std::sync::Arc;
use tokio::sync::Notify;

impl Dispatcher {
    /// Stores the chunks of `post` if `mid_name` holds `attempt` of `output_id`;
    /// wakes the output's followers when something new was stored.
    pub async fn store_output(
        &self,
        mid_name: &str,
        output_id: &str,
        attempt: u32,
        post: &OutputPost,
    ) -> Result<ChunksStored, DispatchError> {
        let chunks = post
            .decode()
            .map_err(|e| super::invalid("chunks", e.to_string()))?;
        let stored = self
            .store
            .store_output_chunks(mid_name, output_id, attempt, chunks)
            .await?;
        if let ChunksStored::Stored { stored: n, .. } = stored
            && n > 0
        {
            self.progress.signal(output_id);
            self.announce(crate::ecc::Announcement::Progress {
                output: output_id.to_string(),
            });
        }
        Ok(stored)
    }

    /// The signal woken when chunks of `output_id` are stored or it finishes. Enable
    /// the `notified()` future before reading, as for every [`Signals`] waiter.
    ///
    /// [`Signals`]: super::signals::Signals
    pub fn output_progress(&self, output_id: &str) -> Arc<Notify> {
        self.progress.subscribe(output_id)
    }

    /// Wakes everyone waiting for `output_id` to finish, and its followers.
    pub(super) fn signal_finished(&self, output_id: &str) {
        self.outputs.signal(output_id);
        self.progress.signal(output_id);
        self.announce(crate::ecc::Announcement::Finished {
            output: output_id.to_string(),
        });
    }
}
