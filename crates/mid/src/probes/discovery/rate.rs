//! A token bucket for connection attempts: `rate` tokens a second, holding at most
//! `burst`. Written as its equivalent, the generic cell rate algorithm: the bucket is
//! one instant, the theoretical time of the next attempt, so taking a token is one
//! short critical section with no timer task. One limiter belongs to one job (a scan
//! never waits on another's).

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Paces attempts to a rate.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// `per_sec` attempts a second (at least 1), up to `burst` at once after a pause.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(1) / per_sec.max(1);
        let burst = interval * burst.max(1).saturating_sub(1);
        let now = Instant::now();
        Self {
            interval,
            burst,
            // A full bucket to start with.
            next: Mutex::new(now.checked_sub(burst).unwrap_or(now)),
        }
    }

    /// Waits for a token. A waiter dropped before its slot gives its slot up only
    /// to the extent of the burst: pacing holds either way.
    pub async fn acquire(&self) {
        let slot = {
            let now = Instant::now();
            // A poisoned lock still holds a valid instant.
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let earliest = now.checked_sub(self.burst).unwrap_or(now);
            let slot = (*next).max(earliest);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn attempts_are_paced_after_the_burst() {
        let limiter = RateLimiter::new(1000, 10);
        let started = Instant::now();
        for _ in 0..110 {
            limiter.acquire().await;
        }
        let took = started.elapsed();
        // 10 at once, then 100 at 1 ms apart: 100 ms (timers may only be late).
        assert!(took >= Duration::from_millis(99), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
