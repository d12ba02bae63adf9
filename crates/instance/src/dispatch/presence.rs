//! Which MIDs are in touch, noticed fast. A MID keeps a long-poll open at all times, so
//! a MID that dies (kill -9, crash, lost host) drops that connection at once; the poll's
//! guard sees the drop, and if no new poll arrives within a short grace the MID is
//! declared `down` — seconds, not the minutes a heartbeat timeout would take. Silent
//! partitions, where no connection closes, fall back to `down_after` without contact.
//!
//! A poll that ends normally is followed by the next one within milliseconds, so a MID
//! with no poll open for longer than the grace is gone too — that covers a death that
//! falls between two polls.
//!
//! This is per instance node: with several nodes behind one PostgreSQL each node
//! watches the MIDs whose polls reach it, and the store says which node a MID is
//! attached to ([`super::nodes`]): a MID that leaves one node for another is not gone,
//! and the node it left hears so and forgets it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Entry {
    open_polls: u32,
    /// When the last open poll ended, and whether its connection dropped.
    idle_since: Option<(Instant, bool)>,
    last_contact: Instant,
    /// Whether this node has said (in the store) that the MID's poll is attached here.
    attached: bool,
}

/// Presence of MIDs, by name.
#[derive(Debug, Default)]
pub struct Presence {
    entries: Mutex<HashMap<String, Entry>>,
}

/// Held while a long-poll runs; dropped without [`PollGuard::finish`] it means the
/// connection went away mid-poll. Either way the grace starts until the next poll.
pub struct PollGuard {
    presence: Arc<Presence>,
    name: String,
    finished: bool,
}

impl PollGuard {
    /// The poll answered normally.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut map = self.presence.lock();
        if let Some(e) = map.get_mut(&self.name) {
            e.open_polls = e.open_polls.saturating_sub(1);
            e.last_contact = now;
            if e.open_polls == 0 {
                e.idle_since = Some((now, !self.finished));
            }
        }
    }
}

/// Why a MID is considered gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    /// MID name.
    pub name: String,
    /// What was seen.
    pub reason: String,
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry<'a>(map: &'a mut HashMap<String, Entry>, name: &str, now: Instant) -> &'a mut Entry {
        map.entry(name.to_string()).or_insert(Entry {
            open_polls: 0,
            idle_since: None,
            last_contact: now,
            attached: false,
        })
    }

    /// Any request from the MID.
    pub fn contact(&self, name: &str) {
        let now = Instant::now();
        let mut map = self.lock();
        let e = Self::entry(&mut map, name, now);
        e.last_contact = now;
    }

    /// A long-poll starts. The flag is true when the MID was not attached to this
    /// node before (first poll here, or back from another node): the store must be
    /// told.
    pub fn poll_started(self: &Arc<Self>, name: &str) -> (PollGuard, bool) {
        let now = Instant::now();
        let mut map = self.lock();
        let e = Self::entry(&mut map, name, now);
        e.open_polls += 1;
        e.idle_since = None;
        e.last_contact = now;
        let newly = !std::mem::replace(&mut e.attached, true);
        let guard = PollGuard {
            presence: self.clone(),
            name: name.to_string(),
            finished: false,
        };
        (guard, newly)
    }

    /// Another node says the MID polls there now: it is forgotten here. When a poll
    /// of it is still open here (it came back before the news arrived, or an old poll
    /// has not ended yet), it stays, and its next poll here says again that it is
    /// attached here — never the open poll itself, or two nodes with a poll each
    /// would take it from each other back and forth.
    pub fn moved_away(&self, name: &str) {
        let mut map = self.lock();
        match map.get_mut(name) {
            Some(e) if e.open_polls > 0 => e.attached = false,
            Some(_) => {
                map.remove(name);
            }
            None => {}
        }
    }

    /// Whether the MID has a long-poll open on this node now.
    pub fn has_open_poll(&self, name: &str) -> bool {
        self.lock().get(name).is_some_and(|e| e.open_polls > 0)
    }

    /// Stops watching a MID (it is down, invalidated or gone for good).
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// MIDs without an open poll for more than `grace` (their connection dropped, or
    /// they stopped polling), or not in touch at all for `down_after`.
    pub fn gone(&self, grace: Duration, down_after: Duration) -> Vec<Gone> {
        let now = Instant::now();
        let map = self.lock();
        let mut gone = Vec::new();
        for (name, e) in map.iter() {
            if e.open_polls > 0 {
                continue;
            }
            if let Some((since, dropped)) = e.idle_since
                && now.duration_since(since) >= grace
            {
                let ms = now.duration_since(since).as_millis();
                gone.push(Gone {
                    name: name.clone(),
                    reason: if dropped {
                        format!("connection lost {ms} ms ago and not re-established")
                    } else {
                        format!("stopped polling {ms} ms ago")
                    },
                });
            } else if now.duration_since(e.last_contact) >= down_after {
                gone.push(Gone {
                    name: name.clone(),
                    reason: format!(
                        "no contact for {} ms (down_after)",
                        now.duration_since(e.last_contact).as_millis()
                    ),
                });
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mid_that_moved_to_another_node_is_forgotten_unless_it_polls_here() {
        let p = Arc::new(Presence::default());
        let (first, newly) = p.poll_started("a");
        assert!(newly);
        p.moved_away("a");
        assert!(p.has_open_poll("a"), "its poll is open here: it stays");
        first.finish();
        let (second, newly) = p.poll_started("a");
        assert!(newly, "its next poll here says it is attached here again");
        second.finish();
        p.moved_away("a");
        assert!(!p.has_open_poll("a"));
        assert!(
            p.gone(Duration::ZERO, Duration::ZERO).is_empty(),
            "forgotten here"
        );
        let (_again, newly) = p.poll_started("a");
        assert!(newly, "back here: attached again");
        assert!(p.has_open_poll("a"));
    }

    #[test]
    fn a_mid_without_an_open_poll_is_gone_after_the_grace() {
        let p = Arc::new(Presence::default());
        drop(p.poll_started("a"));
        drop(p.poll_started("b"));
        let (_back, newly) = p.poll_started("b");
        assert!(!newly, "b was attached here already");
        p.poll_started("c").0.finish();
        p.contact("d");
        std::thread::sleep(Duration::from_millis(30));
        let mut gone = p.gone(Duration::from_millis(20), Duration::from_secs(60));
        gone.sort_by(|x, y| x.name.cmp(&y.name));
        let names: Vec<&str> = gone.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            ["a", "c"],
            "b polls again; d never polled and is within down_after"
        );
        assert!(gone[0].reason.contains("connection lost"));
        assert!(gone[1].reason.contains("stopped polling"));
        p.forget("a");
        p.forget("c");
        assert_eq!(
            p.gone(Duration::ZERO, Duration::ZERO).len(),
            1,
            "d, silent too long"
        );
    }
}
