//! Named wake-up signals: "new work for agent X", "output Y finished".
//!
//! Push pickup rests on this: a long-polling MID waits on its agent's signal and an
//! API caller waits on its output's, so nobody polls the database on a timer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;

/// A map from key to a [`Notify`] that lives as long as someone waits on it.
#[derive(Default)]
pub struct Signals {
    map: Mutex<HashMap<String, Weak<Notify>>>,
}

impl Signals {
    /// The signal for `key`, shared with every other current subscriber. Waiters must
    /// `enable()` their `notified()` future *before* checking the condition they wait
    /// for, so a signal between the check and the wait is not lost.
    pub fn subscribe(&self, key: &str) -> Arc<Notify> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = map.get(key).and_then(Weak::upgrade) {
            return existing;
        }
        if map.len() > 1024 && map.len().is_power_of_two() {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let notify = Arc::new(Notify::new());
        map.insert(key.to_string(), Arc::downgrade(&notify));
        notify
    }

    /// Whether anyone holds a subscription to `key` right now.
    pub fn is_awaited(&self, key: &str) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).is_some_and(|w| w.strong_count() > 0)
    }

    /// Wakes everyone waiting on any key (after wake-ups may have been missed).
    pub fn signal_all(&self) {
        let waiting: Vec<Arc<Notify>> = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, w| w.strong_count() > 0);
            map.values().filter_map(Weak::upgrade).collect()
        };
        for n in waiting {
            n.notify_waiters();
        }
    }

    /// Wakes everyone currently waiting on `key`.
    pub fn signal(&self, key: &str) {
        let notify = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(key).map(Weak::upgrade) {
                Some(Some(n)) => Some(n),
                Some(None) => {
                    map.remove(key);
                    None
                }
                None => None,
            }
        };
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_signal_wakes_an_enabled_waiter() {
        let signals = Arc::new(Signals::default());
        let notify = signals.subscribe("a");
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        signals.signal("a");
        tokio::time::timeout(Duration::from_secs(5), notified)
            .await
            .expect("woken");
    }

    #[test]
    fn dropped_subscribers_are_forgotten() {
        let signals = Signals::default();
        drop(signals.subscribe("a"));
        signals.signal("a");
        assert!(signals.map.lock().map(|m| m.is_empty()).unwrap_or(false));
    }
}
