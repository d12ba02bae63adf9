//! Hand-off: new work goes straight to a MID whose long-poll is waiting for it.
//!
//! Without it, a new output is written `ready`, the waiting poll is woken and claims
//! it in a transaction of its own: a second commit, and a second fsync, on every job's
//! path. Instead, when `submit` finds the assigned MID parked in a poll with a free
//! slot of the output's priority, it reserves that slot, writes the output already
//! claimed by the MID (one transaction), and hands the record to the poll, which
//! answers with it.
//!
//! A reservation is taken under the lock, before the write, and settled after it. A
//! poll that stops waiting (work, timeout, shutdown) first closes its parking spot —
//! no new reservations — then waits for the open ones to settle, so every record
//! written as claimed reaches the poll that reserved it.

use crate::ecc::Record;
use openmid_proto::ecc::Priority;
use openmid_proto::mid::Capacity;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// The polls parked right now, by MID name.
#[derive(Default)]
pub struct ParkedPolls {
    by_mid: Mutex<HashMap<String, Vec<Arc<Spot>>>>,
}

/// One parked poll.
struct Spot {
    state: Mutex<SpotState>,
    /// Signalled when a record is handed over or a reservation settles.
    changed: Notify,
}

struct SpotState {
    free: Capacity,
    open: bool,
    reserved: u32,
    handed: Vec<Record>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ParkedPolls {
    /// Parks a poll of `mid` with `free` slots; close the returned spot when done.
    pub fn park(self: &Arc<Self>, mid: &str, free: Capacity) -> Parking {
        let spot = Arc::new(Spot {
            state: Mutex::new(SpotState {
                free,
                open: true,
                reserved: 0,
                handed: Vec::new(),
            }),
            changed: Notify::new(),
        });
        lock(&self.by_mid)
            .entry(mid.to_string())
            .or_default()
            .push(spot.clone());
        Parking {
            polls: self.clone(),
            mid: mid.to_string(),
            spot,
        }
    }

    /// Takes a free slot of `priority` in a parked poll of `mid`, if there is one.
    pub fn reserve(&self, mid: &str, priority: Priority) -> Option<Reservation> {
        let by_mid = lock(&self.by_mid);
        for spot in by_mid.get(mid)? {
            let mut guard = lock(&spot.state);
            let state = &mut *guard;
            if !state.open {
                continue;
            }
            let free = state.free.get_mut(priority);
            if *free > 0 {
                *free -= 1;
                state.reserved += 1;
                return Some(Reservation {
                    spot: spot.clone(),
                    priority,
                    settled: false,
                });
            }
        }
        None
    }
}

/// A poll's parking spot.
pub struct Parking {
    polls: Arc<ParkedPolls>,
    mid: String,
    spot: Arc<Spot>,
}

impl Parking {
    /// Waits until a record is handed over (returns at once if one already was).
    pub async fn handed(&self) {
        loop {
            let changed = self.spot.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !lock(&self.spot.state).handed.is_empty() {
                return;
            }
            changed.await;
        }
    }

    /// Takes the spot out of the table: no new reservations.
    fn unpark(&self) {
        let mut by_mid = lock(&self.polls.by_mid);
        lock(&self.spot.state).open = false;
        if let Some(spots) = by_mid.get_mut(&self.mid) {
            spots.retain(|s| !Arc::ptr_eq(s, &self.spot));
            if spots.is_empty() {
                by_mid.remove(&self.mid);
            }
        }
    }

    /// Stops taking reservations, waits for the open ones to settle, and returns what
    /// was handed over.
    pub async fn close(self) -> Vec<Record> {
        self.unpark();
        loop {
            let changed = self.spot.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = lock(&self.spot.state);
                if state.reserved == 0 {
                    return std::mem::take(&mut state.handed);
                }
            }
            changed.await;
        }
    }
}

impl Drop for Parking {
    /// A poll dropped without closing (its connection went away) takes no more work.
    fn drop(&mut self) {
        self.unpark();
    }
}

/// A slot taken in a parked poll: [`Reservation::hand_over`] the record once it is
/// written as claimed; dropped unused, the slot is given back.
pub struct Reservation {
    spot: Arc<Spot>,
    priority: Priority,
    settled: bool,
}

impl Reservation {
    /// Gives the claimed record to the poll.
    pub fn hand_over(mut self, record: Record) {
        let mut state = lock(&self.spot.state);
        state.handed.push(record);
        state.reserved -= 1;
        self.settled = true;
        drop(state);
        self.spot.changed.notify_waiters();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let mut state = lock(&self.spot.state);
        *state.free.get_mut(self.priority) += 1;
        state.reserved -= 1;
        drop(state);
        self.spot.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn capacity(interactive: u32) -> Capacity {
        Capacity {
            interactive,
            expedited: 0,
            standard: 0,
        }
    }

    #[tokio::test]
    async fn slots_are_limited_by_the_polls_capacity_and_priority() {
        let polls = Arc::new(ParkedPolls::default());
        assert!(
            polls.reserve("a", Priority::Interactive).is_none(),
            "nobody parked"
        );
        let parking = polls.park("a", capacity(2));
        assert!(
            polls.reserve("a", Priority::Standard).is_none(),
            "no standard slot"
        );
        assert!(
            polls.reserve("b", Priority::Interactive).is_none(),
            "other MID"
        );
        let one = polls
            .reserve("a", Priority::Interactive)
            .expect("first slot");
        let two = polls
            .reserve("a", Priority::Interactive)
            .expect("second slot");
        assert!(polls.reserve("a", Priority::Interactive).is_none(), "full");
        drop(two);
        let again = polls.reserve("a", Priority::Interactive);
        assert!(again.is_some(), "a dropped reservation gives its slot back");
        drop(again);
        one.hand_over(Record::sample("r1"));
        tokio::time::timeout(Duration::from_secs(5), parking.handed())
            .await
            .expect("woken by the hand-over");
        let handed = parking.close().await;
        assert_eq!(handed.len(), 1);
        assert!(
            polls.reserve("a", Priority::Interactive).is_none(),
            "closed"
        );
    }

    #[tokio::test]
    async fn closing_waits_for_a_reservation_in_flight() {
        let polls = Arc::new(ParkedPolls::default());
        let parking = polls.park("a", capacity(1));
        let reservation = polls.reserve("a", Priority::Interactive).expect("slot");
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            reservation.hand_over(Record::sample("late"));
        });
        let handed = tokio::time::timeout(Duration::from_secs(5), parking.close())
            .await
            .expect("closed");
        assert_eq!(handed.len(), 1, "the record written meanwhile is not lost");
        late.await.expect("task");
    }
}
