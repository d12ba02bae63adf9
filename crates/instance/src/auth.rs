//! Tokens and secrets: made from the OS random source, stored only as hashes.
//!
//! Everything hashed here is 256 bits of randomness (admin token, enrollment tokens,
//! MID secrets), so a single SHA-256 is as strong as a slow password hash — nobody can
//! guess a preimage — and costs microseconds instead of tens of milliseconds on every
//! MID request. Argon2 (DESIGN.md) would matter for human-chosen passwords, of which
//! the instance has none.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one log line per peer address per this window; the next line says how many
/// were left out.
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// Peers remembered for rate limiting; past this, peers quiet for a whole window are
/// forgotten (a spray from many addresses must not grow the map without end).
const MAX_TRACKED_PEERS: usize = 10_000;

/// A fresh random token with a readable prefix (`omadm_`, `omenr_` …), 256 bits.
pub fn new_token(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(openmid_proto::secret::random_32())
    )
}

/// Hex SHA-256 of a token, as stored.
pub fn hash_token(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        token.as_bytes(),
    ))
}

/// Compares a presented token with a stored hash in constant time.
pub fn token_matches(token: &str, stored_hash: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(
        hash_token(token).as_bytes(),
        stored_hash.as_bytes(),
    )
    .is_ok()
}

/// Failed authentications (admin token, MID credential, enrollment token): counted
/// for metrics and logged with the peer address and route so an operator sees an
/// attack — never with the token presented. Logging is rate-limited per peer address,
/// so a flood costs one line per peer per ten seconds.
#[derive(Default)]
pub struct AuthFailures {
    total: AtomicU64,
    peers: Mutex<HashMap<IpAddr, PeerLog>>,
}

struct PeerLog {
    logged_at: Instant,
    suppressed: u64,
}

impl AuthFailures {
    /// Failures since start.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Counts one failure by `peer` (unknown when served without a socket) on `route`,
    /// and logs it unless this peer was logged within the window.
    pub fn record(&self, peer: Option<SocketAddr>, route: &str, reason: &str) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let Some(peer) = peer else {
            tracing::warn!(route, reason, "authentication failed");
            return;
        };
        let ip = peer.ip();
        let now = Instant::now();
        let suppressed = {
            let mut peers = match self.peers.lock() {
                Ok(p) => p,
                Err(poisoned) => poisoned.into_inner(),
            };
            if peers.len() >= MAX_TRACKED_PEERS && !peers.contains_key(&ip) {
                peers.retain(|_, p| now.duration_since(p.logged_at) < LOG_WINDOW);
            }
            match peers.get_mut(&ip) {
                Some(p) if now.duration_since(p.logged_at) < LOG_WINDOW => {
                    p.suppressed += 1;
                    return;
                }
                Some(p) => {
                    let suppressed = p.suppressed;
                    p.logged_at = now;
                    p.suppressed = 0;
                    suppressed
                }
                None => {
                    peers.insert(
                        ip,
                        PeerLog {
                            logged_at: now,
                            suppressed: 0,
                        },
                    );
                    0
                }
            }
        };
        tracing::warn!(
            peer = %peer,
            route,
            reason,
            suppressed_since_last = suppressed,
            "authentication failed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_even_when_not_logged() {
        let failures = AuthFailures::default();
        let peer: SocketAddr = ([192, 0, 2, 1], 4000).into();
        for _ in 0..5 {
            failures.record(Some(peer), "/api/v1/mids", "invalid admin token");
        }
        failures.record(None, "/api/v1/mids", "invalid admin token");
        assert_eq!(failures.total(), 6);
        let peers = failures.peers.lock().map(|p| p[&peer.ip()].suppressed);
        assert_eq!(peers.ok(), Some(4));
    }

    #[test]
    fn tokens_are_unique_and_verify() {
        let a = new_token("omadm_");
        let b = new_token("omadm_");
        assert_ne!(a, b);
        assert!(a.starts_with("omadm_") && a.len() > 40);
        assert!(token_matches(&a, &hash_token(&a)));
        assert!(!token_matches(&b, &hash_token(&a)));
    }
}
