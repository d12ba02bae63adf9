//! How an `SSHCommand` names the host key it trusts, and the SHA-256 fingerprints
//! both sides show: the MID in its refusals and results, the instance in answers.

use crate::probe::{FieldError, field_error};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// How the MID decides the server is the host it means to reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostKeyPolicy {
    /// The key must be listed in a known_hosts file (OpenSSH's format: plain, wildcard
    /// and hashed host names, `[host]:port`, `@revoked`).
    KnownHosts {
        /// The file on the MID host; the MID's own `ssh/known_hosts` in its state
        /// directory when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    /// The key must be this one.
    Pinned {
        /// An OpenSSH public key line (`ssh-ed25519 AAAA… comment`) or its SHA-256
        /// fingerprint (`SHA256:…`, as `ssh-keygen -lf` prints it).
        key: String,
    },
    /// The first key seen for the host is pinned on the MID (in its state directory)
    /// and every later connection must present it. A key listed in the MID's
    /// known_hosts file takes precedence.
    TrustOnFirstUse,
}

impl Default for HostKeyPolicy {
    fn default() -> Self {
        Self::KnownHosts { path: None }
    }
}

impl HostKeyPolicy {
    /// Checks the policy's own fields (`host_key.path`, `host_key.key`).
    pub fn validate(&self) -> Result<(), FieldError> {
        match self {
            Self::KnownHosts { path: Some(path) } => {
                if !path.starts_with('/') || path.contains('\0') {
                    return Err(field_error("host_key.path", "must be an absolute path"));
                }
                Ok(())
            }
            Self::KnownHosts { path: None } | Self::TrustOnFirstUse => Ok(()),
            Self::Pinned { key } => PinnedKey::parse(key)
                .map(drop)
                .map_err(|m| field_error("host_key.key", m)),
        }
    }
}

/// A pinned host key as written: a whole public key or only its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinnedKey {
    /// An OpenSSH public key: its algorithm name and its wire-format blob.
    Key {
        /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa` …
        algorithm: String,
        /// The key blob (what the fingerprint hashes).
        blob: Vec<u8>,
    },
    /// The SHA-256 digest of the key blob.
    Fingerprint([u8; 32]),
}

impl PinnedKey {
    /// Reads `ssh-ed25519 AAAA… [comment]` or `SHA256:…`; the error says what is
    /// expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(b64) = text.strip_prefix("SHA256:") {
            return parse_fingerprint(b64).map(Self::Fingerprint).ok_or_else(|| {
                "a SHA256 fingerprint is `SHA256:` and 43 base64 characters, as `ssh-keygen -lf` prints it"
                    .to_string()
            });
        }
        let mut words = text.split_ascii_whitespace();
        let (Some(algorithm), Some(b64)) = (words.next(), words.next()) else {
            return Err(
                "expected an OpenSSH public key line (`ssh-ed25519 AAAA…`) or a `SHA256:…` fingerprint"
                    .to_string(),
            );
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| format!("the key of `{algorithm}` is not base64"))?;
        if blob_algorithm(&blob) != Some(algorithm) {
            return Err(format!(
                "the key blob does not hold a `{algorithm}` key (the line is damaged, or its type is wrong)"
            ));
        }
        Ok(Self::Key {
            algorithm: algorithm.to_string(),
            blob,
        })
    }

    /// The SHA-256 digest this pin stands for.
    pub fn sha256(&self) -> [u8; 32] {
        match self {
            Self::Fingerprint(digest) => *digest,
            Self::Key { blob, .. } => sha256(blob),
        }
    }
}

/// The SHA-256 fingerprint of a key blob as OpenSSH shows it: `SHA256:` and unpadded
/// base64.
pub fn fingerprint(blob: &[u8]) -> String {
    show_fingerprint(&sha256(blob))
}

/// Shows a SHA-256 digest as OpenSSH does.
pub fn show_fingerprint(digest: &[u8; 32]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The 32 bytes of an unpadded (or padded) base64 SHA-256 digest.
fn parse_fingerprint(b64: &str) -> Option<[u8; 32]> {
    let b64 = b64.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(b64)
        .ok()?;
    bytes.try_into().ok()
}

/// The algorithm name a key blob starts with (an SSH string: u32 length, then bytes).
pub fn blob_algorithm(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4usize.checked_add(len)?)?;
    std::str::from_utf8(name).ok().filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn blob(algorithm: &str, key: &[u8]) -> Vec<u8> {
        let mut b = (algorithm.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(algorithm.as_bytes());
        b.extend_from_slice(key);
        b
    }

    proptest! {
        #[test]
        fn fingerprints_read_back(digest in proptest::array::uniform32(any::<u8>())) {
            let shown = show_fingerprint(&digest);
            prop_assert_eq!(shown.len(), "SHA256:".len() + 43);
            prop_assert_eq!(PinnedKey::parse(&shown).map(|p| p.sha256()), Ok(digest));
        }

        #[test]
        fn key_lines_read_back(algorithm in "(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256)", key in proptest::collection::vec(any::<u8>(), 0..100), comment in "[a-z@.]{0,12}") {
            let blob = blob(&algorithm, &key);
            let line = format!("{algorithm} {} {comment}", base64::engine::general_purpose::STANDARD.encode(&blob));
            let pin = PinnedKey::parse(&line);
            prop_assert_eq!(pin.as_ref().map(PinnedKey::sha256), Ok(sha256(&blob)));
            prop_assert_eq!(show_fingerprint(&sha256(&blob)), fingerprint(&blob));
            // Another algorithm's name on the same blob is a damaged line.
            let wrong = format!("ssh-dss {}", base64::engine::general_purpose::STANDARD.encode(&blob));
            prop_assert!(PinnedKey::parse(&wrong).is_err());
        }

        #[test]
        fn any_text_parses_without_panicking(text in "\\PC{0,120}") {
            let _ = PinnedKey::parse(&text);
            let _ = blob_algorithm(text.as_bytes());
        }
    }
}
