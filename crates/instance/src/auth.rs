//! Tokens and secrets: made from the OS random source, stored only as hashes.
//!
//! Everything hashed here is 256 bits of randomness (admin token, enrollment tokens,
//! MID secrets), so a single SHA-256 is as strong as a slow password hash — nobody can
//! guess a preimage — and costs microseconds instead of tens of milliseconds on every
//! MID request. Argon2 (DESIGN.md) would matter for human-chosen passwords, of which
//! the instance has none.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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

#[cfg(test)]
mod tests {
    use super::*;

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
