//! The audit entry of an API call that waits for its action, written in the same
//! transaction as the result that finishes the action.
//!
//! Why: a durable `?wait` call used to wait for the result's commit and then for a
//! commit of its own, its `action.run` entry, before it could answer — one more
//! fsync in a row on every call. Now the caller leaves its entry here (as the `200`
//! it answers when the result comes in time) and the result's writer takes it into
//! its transaction.
//!
//! Whoever takes the entry owns it, so it is written once and says what the caller
//! answered: the result's writer takes it while it records (`Taken`) and marks it
//! `Written` after the commit, or gives it back when the result did not finish the
//! output or the write failed. The caller settles at the end: `Written` means its
//! output finished with the entry, so it answers 200; an entry still `Waiting` comes
//! back to the caller, which writes it with the status it answers (a 202 when its
//! wait ran out); `Taken` means a write is under way, and the caller waits for it.

use crate::ecc::NewAuditEntry;
use openmid_proto::time::now_ms;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// Longest a caller waits for a write under way with its entry before it stops
/// waiting (the store is then failing; the entry is written by the caller too).
const WRITE_WAIT: Duration = Duration::from_secs(30);

enum Slot {
    /// Left by the caller; nobody has taken it.
    Waiting(NewAuditEntry),
    /// In the result writer's transaction now.
    Taken(NewAuditEntry),
    /// Committed with the result that finished the output.
    Written,
}

/// The entries callers left, by output id.
#[derive(Default)]
pub struct CallerAudits {
    slots: Mutex<HashMap<String, Slot>>,
    /// Woken whenever a write with entries in it ends, either way.
    settled: Notify,
}

impl CallerAudits {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves the entry of the call waiting on `output_id`, to be written with the
    /// result that finishes it.
    pub fn leave(&self, output_id: &str, entry: NewAuditEntry) {
        self.lock()
            .insert(output_id.to_string(), Slot::Waiting(entry));
    }

    /// The entries left for these outputs (in order; `None` where there is none),
    /// now taken by the writer recording their results.
    pub fn take<'a>(
        &self,
        output_ids: impl Iterator<Item = &'a str>,
    ) -> Vec<Option<NewAuditEntry>> {
        let mut slots = self.lock();
        if slots.is_empty() {
            return output_ids.map(|_| None).collect();
        }
        let at = now_ms();
        output_ids
            .map(|id| {
                let slot = slots.get_mut(id)?;
                let Slot::Waiting(entry) = slot else {
                    return None;
                };
                let mut entry = entry.clone();
                // The entry says when the call could answer: when its result is in.
                entry.at = at;
                *slot = Slot::Taken(entry.clone());
                Some(entry)
            })
            .collect()
    }

    /// After the write of entries [`CallerAudits::take`] gave: `written[i]` says
    /// whether the entry taken for `output_ids[i]` was committed (missing: it was
    /// not, as when the write failed).
    pub fn settle<'a>(&self, output_ids: impl Iterator<Item = &'a str>, written: &[bool]) {
        let mut slots = self.lock();
        for (i, id) in output_ids.enumerate() {
            let Some(slot) = slots.get_mut(id) else {
                continue;
            };
            if let Slot::Taken(entry) = slot {
                *slot = if written.get(i).copied().unwrap_or(false) {
                    Slot::Written
                } else {
                    Slot::Waiting(std::mem::take(entry))
                };
            }
        }
        drop(slots);
        self.settled.notify_waiters();
    }

    /// Drops what a caller that went away (its connection closed while it waited)
    /// left for `output_id`.
    pub fn forget(&self, output_id: &str) {
        self.lock().remove(output_id);
    }

    /// Ends the caller's part for `output_id`: whether its entry was written with the
    /// output's result. When it was not, the entry is the caller's to write.
    pub async fn written(&self, output_id: &str) -> bool {
        let deadline = tokio::time::Instant::now() + WRITE_WAIT;
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            {
                let mut slots = self.lock();
                match slots.get(output_id) {
                    None | Some(Slot::Waiting(_)) => {
                        slots.remove(output_id);
                        return false;
                    }
                    Some(Slot::Written) => {
                        slots.remove(output_id);
                        return true;
                    }
                    Some(Slot::Taken(_)) => {}
                }
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                tracing::warn!(output = %output_id, "a result's write has held an API call's audit entry for 30 s; the call writes it itself");
                self.lock().remove(output_id);
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> NewAuditEntry {
        NewAuditEntry {
            action: "action.run".into(),
            status: Some(200),
            ..NewAuditEntry::default()
        }
    }

    #[tokio::test]
    async fn an_entry_is_written_by_one_side_only() {
        let audits = CallerAudits::default();
        // Nobody took it: the caller writes it.
        audits.leave("a", entry());
        assert!(!audits.written("a").await);
        // The writer took and committed it.
        audits.leave("b", entry());
        let taken = audits.take(["x", "b"].into_iter());
        assert!(taken[0].is_none() && taken[1].is_some());
        assert!(audits.take(["b"].into_iter())[0].is_none(), "taken once");
        audits.settle(["x", "b"].into_iter(), &[false, true]);
        assert!(audits.written("b").await);
        // The write did not finish the output: the entry goes back to the caller.
        audits.leave("c", entry());
        audits.take(["c"].into_iter());
        audits.settle(["c"].into_iter(), &[false]);
        assert!(!audits.written("c").await);
        // A failed write says nothing was written.
        audits.leave("d", entry());
        audits.take(["d"].into_iter());
        audits.settle(["d"].into_iter(), &[]);
        assert!(!audits.written("d").await);
        assert!(audits.lock().is_empty(), "nothing stays behind");
    }

    #[tokio::test]
    async fn a_caller_waits_out_a_write_under_way() {
        let audits = std::sync::Arc::new(CallerAudits::default());
        audits.leave("a", entry());
        audits.take(["a"].into_iter());
        let caller = tokio::spawn({
            let audits = audits.clone();
            async move { audits.written("a").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !caller.is_finished(),
            "the caller waits while the write runs"
        );
        audits.settle(["a"].into_iter(), &[true]);
        assert!(caller.await.unwrap_or(false));
    }
}
