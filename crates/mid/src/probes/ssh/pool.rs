//! Connections kept between jobs, per (host, port, user, credential digest): the
//! handshake and login cost several round trips and, for an encrypted key, tens of
//! milliseconds of key derivation, which a burst of jobs to one host should pay once.
//! A key's connections — idle and in use together — are capped by the job's
//! `pool_size`; a job past the cap waits for one to come back. One job uses a
//! connection at a time, so a job that kills its connection harms no other.
//!
//! A kept connection may have died meanwhile (the server restarted, a firewall forgot
//! it): closed ones are dropped when the pool is asked, and the probe replaces one
//! that fails to open a channel (see [`super`]). Idle connections are closed after
//! [`IDLE_TIMEOUT`] by a sweeper that runs while any are kept.

use super::connect::Connection;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long an unused connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often idle connections are looked at.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Whose connections may be shared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Host, lowercase.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Remote user.
    pub user: String,
    /// [`super::auth::Login::pool_digest`]: the secrets and the host key policy.
    pub digest: [u8; 32],
}

struct Idle {
    conn: Connection,
    since: Instant,
}

#[derive(Default)]
struct Slot {
    idle: Vec<Idle>,
    /// Connections of this key in use or idle, plus dials under way.
    live: usize,
    freed: Arc<Notify>,
}

type Slots = Mutex<HashMap<PoolKey, Slot>>;

/// The MID's SSH connections (one per MID, in the probe context).
#[derive(Default)]
pub struct SshPool {
    slots: Arc<Slots>,
    sweeping: std::sync::atomic::AtomicBool,
}

/// A place in a key's pool: a kept connection, or leave to open one. Dropping it
/// frees the place (and closes any connection not given back with [`Permit::keep`]).
pub struct Permit {
    slots: Arc<Slots>,
    key: PoolKey,
    conn: Option<Connection>,
    kept: bool,
}

impl SshPool {
    /// A place for `key`, waiting while `cap` connections of it are in use.
    pub async fn acquire(&self, key: &PoolKey, cap: usize) -> Permit {
        let cap = cap.max(1);
        loop {
            let freed = {
                let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                let slot = slots.entry(key.clone()).or_default();
                drop_stale(slot);
                if let Some(idle) = slot.idle.pop() {
                    return self.permit(key, Some(idle.conn));
                }
                if slot.live < cap {
                    slot.live += 1;
                    return self.permit(key, None);
                }
                slot.freed.clone()
            };
            // `notify_one` keeps a wake-up for a waiter not yet waiting, so a place
            // freed between the unlock and this await is not missed.
            freed.notified().await;
        }
    }

    fn permit(&self, key: &PoolKey, conn: Option<Connection>) -> Permit {
        Permit {
            slots: self.slots.clone(),
            key: key.clone(),
            conn,
            kept: false,
        }
    }

    /// Idle connections now kept (for tests and metrics).
    pub fn idle(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.values().map(|s| s.idle.len()).sum()
    }

    /// Starts the sweeper of idle connections once, when a runtime is there.
    fn sweep_in_background(&self) {
        use std::sync::atomic::Ordering;
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(sweep(Arc::downgrade(&self.slots)));
            }
            Err(_) => self.sweeping.store(false, Ordering::Release),
        }
    }

    /// Gives a connection back for the next job of its key.
    pub fn keep(&self, mut permit: Permit, conn: Connection) {
        self.sweep_in_background();
        permit.kept = true;
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(permit.key.clone()).or_default();
        slot.idle.push(Idle {
            conn,
            since: Instant::now(),
        });
        slot.freed.notify_one();
    }
}

impl Permit {
    /// The kept connection this place came with, if any (once).
    pub fn take_kept(&mut self) -> Option<Connection> {
        self.conn.take()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get_mut(&self.key) {
            slot.live = slot.live.saturating_sub(1);
            slot.freed.notify_one();
            if slot.live == 0 && slot.idle.is_empty() {
                slots.remove(&self.key);
            }
        }
    }
}

/// Drops the idle connections that closed or waited too long.
fn drop_stale(slot: &mut Slot) {
    let before = slot.idle.len();
    slot.idle
        .retain(|i| !i.conn.handle.is_closed() && i.since.elapsed() < IDLE_TIMEOUT);
    let dropped = before - slot.idle.len();
    slot.live = slot.live.saturating_sub(dropped);
    if dropped > 0 {
        slot.freed.notify_one();
    }
}

/// Closes idle connections past their time until the pool is gone or empty.
async fn sweep(slots: Weak<Slots>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(slots) = slots.upgrade() else {
            return;
        };
        let mut slots = slots.lock().unwrap_or_else(|e| e.into_inner());
        for slot in slots.values_mut() {
            drop_stale(slot);
        }
        slots.retain(|_, s| s.live > 0 || !s.idle.is_empty());
    }
}
