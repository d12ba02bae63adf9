//! Deciding whether the key a server presents is the key of the host the job means,
//! by the request's [`HostKeyPolicy`]: listed in a known_hosts file, equal to a pinned
//! key or fingerprint, or — trust on first use — pinned in the MID's state directory
//! the first time and required ever after. A refusal shows both fingerprints, the
//! expected and the presented one, so whoever reads the job's error can tell a
//! re-installed host from an attack and knows which file to change.
//!
//! Files: `<state>/ssh/known_hosts` (the operator's, never written by the MID) and
//! `<state>/ssh/pinned_hosts` (trust-on-first-use pins, known_hosts format, one plain
//! line per host and port, appended under a process-wide lock).

use super::known_hosts::{self, Entry, Marker};
use openmid_proto::ssh::{HostKeyPolicy, PinnedKey, fingerprint, show_fingerprint};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Serialises trust-on-first-use pinning across jobs, so two first connections to a
/// host at once cannot pin two different keys.
static PIN_LOCK: Mutex<()> = Mutex::new(());

/// The key a server presented.
#[derive(Debug, Clone)]
pub struct Presented {
    /// Its algorithm (`ssh-ed25519`).
    pub algorithm: String,
    /// Its blob.
    pub blob: Vec<u8>,
}

impl Presented {
    /// Its SHA-256 fingerprint.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.blob)
    }
}

/// Why a host key was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostKeyRefusal {
    /// No key is known for the host.
    #[error(
        "host key of {target} is unknown: {origin} has no key for it (expected: none known), the server presented {presented} ({algorithm}); add the key there, pin it (host_key.mode = pinned) or use host_key.mode = trust_on_first_use"
    )]
    Unknown {
        /// `host:port`.
        target: String,
        /// Where keys were looked up.
        origin: String,
        /// The presented fingerprint.
        presented: String,
        /// Its algorithm.
        algorithm: String,
    },
    /// A different key is known for the host.
    #[error(
        "host key of {target} has CHANGED: {origin} expects {expected}, the server presented {presented} ({algorithm}); someone may be intercepting the connection — if the host's key was really replaced, update {origin}"
    )]
    Changed {
        /// `host:port`.
        target: String,
        /// Where the expected key comes from.
        origin: String,
        /// The expected fingerprint(s).
        expected: String,
        /// The presented fingerprint.
        presented: String,
        /// Its algorithm.
        algorithm: String,
    },
    /// The presented key is marked `@revoked`.
    #[error("host key {presented} of {target} is revoked in {origin} (line {line})")]
    Revoked {
        /// `host:port`.
        target: String,
        /// The file.
        origin: String,
        /// The line.
        line: usize,
        /// The presented fingerprint.
        presented: String,
    },
    /// A file could not be read or written.
    #[error("host keys of {target}: {what}")]
    File {
        /// `host:port`.
        target: String,
        /// What failed (path and error; never file content).
        what: String,
    },
}

/// Where the MID's host key files are.
#[derive(Debug, Clone)]
pub struct HostKeyFiles {
    /// The MID's known_hosts file.
    pub known_hosts: PathBuf,
    /// Trust-on-first-use pins.
    pub pinned: PathBuf,
}

impl HostKeyFiles {
    /// The files under `ssh_dir`.
    pub fn in_dir(ssh_dir: &Path) -> Self {
        Self {
            known_hosts: ssh_dir.join("known_hosts"),
            pinned: ssh_dir.join("pinned_hosts"),
        }
    }
}

/// One host's check, built per connection.
#[derive(Debug, Clone)]
pub struct HostKeyCheck {
    /// The request's policy.
    pub policy: HostKeyPolicy,
    /// The MID's files.
    pub files: HostKeyFiles,
    /// The host as the job names it.
    pub host: String,
    /// Its port.
    pub port: u16,
}

impl HostKeyCheck {
    fn target(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }

    /// Accepts `key` or says why not; `Ok(true)` when this call pinned it. Reads (and
    /// for trust on first use, appends to) small files: call it off the runtime.
    pub fn verify(&self, key: &Presented) -> Result<bool, HostKeyRefusal> {
        match &self.policy {
            HostKeyPolicy::Pinned { key: pin } => self.verify_pinned(pin, key).map(|()| false),
            HostKeyPolicy::KnownHosts { path } => {
                let file = path
                    .as_deref()
                    .map_or_else(|| self.files.known_hosts.clone(), PathBuf::from);
                let entries = self.read(&file, path.is_some())?;
                match self.decide(&entries, &file, key)? {
                    Some(()) => Ok(false),
                    None => Err(HostKeyRefusal::Unknown {
                        target: self.target(),
                        origin: format!("known_hosts file {}", file.display()),
                        presented: key.fingerprint(),
                        algorithm: key.algorithm.clone(),
                    }),
                }
            }
            HostKeyPolicy::TrustOnFirstUse => {
                // The operator's file decides first: a host listed there is never pinned.
                let known = self.read(&self.files.known_hosts, false)?;
                if self.decide(&known, &self.files.known_hosts, key)?.is_some() {
                    return Ok(false);
                }
                let _pinning = PIN_LOCK.lock().unwrap_or_else(|e| e.into_inner());
                let pins = self.read(&self.files.pinned, false)?;
                if self.decide(&pins, &self.files.pinned, key)?.is_some() {
                    return Ok(false);
                }
                self.pin(key)?;
                tracing::info!(target = %self.target(), fingerprint = %key.fingerprint(), file = %self.files.pinned.display(), "pinned the host key on first use");
                Ok(true)
            }
        }
    }

    /// The algorithms of the keys known for the host, to ask the server for those
    /// first (a server with several host keys then presents the one we can check).
    pub fn known_algorithms(&self) -> Vec<String> {
        let files: Vec<PathBuf> = match &self.policy {
            HostKeyPolicy::Pinned { key } => {
                return match PinnedKey::parse(key) {
                    Ok(PinnedKey::Key { algorithm, .. }) => vec![algorithm],
                    _ => Vec::new(),
                };
            }
            HostKeyPolicy::KnownHosts { path: Some(p) } => vec![PathBuf::from(p)],
            HostKeyPolicy::KnownHosts { path: None } => vec![self.files.known_hosts.clone()],
            HostKeyPolicy::TrustOnFirstUse => {
                vec![self.files.known_hosts.clone(), self.files.pinned.clone()]
            }
        };
        let mut found: Vec<String> = Vec::new();
        for file in files {
            for e in self.read(&file, false).unwrap_or_default() {
                if e.marker == Marker::None
                    && e.matches(&self.host, self.port)
                    && !found.contains(&e.algorithm)
                {
                    found.push(e.algorithm);
                }
            }
        }
        found
    }

    fn verify_pinned(&self, pin: &str, key: &Presented) -> Result<(), HostKeyRefusal> {
        let pin = PinnedKey::parse(pin).map_err(|why| HostKeyRefusal::File {
            target: self.target(),
            what: format!("host_key.key: {why}"),
        })?;
        let digest = pin.sha256();
        let presented = key.fingerprint();
        if show_fingerprint(&digest) == presented {
            return Ok(());
        }
        Err(HostKeyRefusal::Changed {
            target: self.target(),
            origin: "the job's pinned key (host_key.key)".into(),
            expected: show_fingerprint(&digest),
            presented,
            algorithm: key.algorithm.clone(),
        })
    }

    /// `Some` when an entry for the host holds `key`; `None` when no entry is about
    /// the host; a refusal when entries are and none holds it, or it is revoked.
    fn decide(
        &self,
        entries: &[Entry],
        file: &Path,
        key: &Presented,
    ) -> Result<Option<()>, HostKeyRefusal> {
        if let Some(revoked) = entries
            .iter()
            .find(|e| e.marker == Marker::Revoked && e.blob == key.blob)
        {
            return Err(HostKeyRefusal::Revoked {
                target: self.target(),
                origin: file.display().to_string(),
                line: revoked.line,
                presented: key.fingerprint(),
            });
        }
        let mine: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.marker == Marker::None && e.matches(&self.host, self.port))
            .collect();
        if mine.iter().any(|e| e.blob == key.blob) {
            return Ok(Some(()));
        }
        if mine.is_empty() {
            return Ok(None);
        }
        let expected = mine
            .iter()
            .map(|e| {
                format!(
                    "{} ({}, line {})",
                    fingerprint(&e.blob),
                    e.algorithm,
                    e.line
                )
            })
            .collect::<Vec<_>>()
            .join(" or ");
        Err(HostKeyRefusal::Changed {
            target: self.target(),
            origin: file.display().to_string(),
            expected,
            presented: key.fingerprint(),
            algorithm: key.algorithm.clone(),
        })
    }

    /// The usable entries of `file`; a missing file has none, unless the job named it.
    fn read(&self, file: &Path, must_exist: bool) -> Result<Vec<Entry>, HostKeyRefusal> {
        match std::fs::read_to_string(file) {
            Ok(text) => Ok(known_hosts::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => Ok(Vec::new()),
            Err(e) => Err(HostKeyRefusal::File {
                target: self.target(),
                what: format!("cannot read {}: {e}", file.display()),
            }),
        }
    }

    fn pin(&self, key: &Presented) -> Result<(), HostKeyRefusal> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let file = &self.files.pinned;
        let failed = |e: std::io::Error| HostKeyRefusal::File {
            target: self.target(),
            what: format!("cannot pin the key in {}: {e}", file.display()),
        };
        if let Some(dir) = file.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(failed)?;
        }
        let mut out = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(file)
            .map_err(failed)?;
        let line = known_hosts::line(&self.host, self.port, &key.algorithm, &key.blob);
        writeln!(out, "{line}").map_err(failed)?;
        out.sync_all().map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Presented {
        let mut blob = 11u32.to_be_bytes().to_vec();
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[n; 36]);
        Presented {
            algorithm: "ssh-ed25519".into(),
            blob,
        }
    }

    fn check(dir: &Path, policy: HostKeyPolicy) -> HostKeyCheck {
        HostKeyCheck {
            policy,
            files: HostKeyFiles::in_dir(dir),
            host: "db1.corp".into(),
            port: 2222,
        }
    }

    #[test]
    fn trust_on_first_use_pins_then_refuses_a_change() {
        let dir = tempfile::tempdir().expect("dir");
        let c = check(&dir.path().join("ssh"), HostKeyPolicy::TrustOnFirstUse);
        assert!(matches!(c.verify(&key(1)), Ok(true)));
        assert!(matches!(c.verify(&key(1)), Ok(false)));
        let err = c
            .verify(&key(2))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(&key(1).fingerprint()), "{err}");
        assert!(err.contains(&key(2).fingerprint()), "{err}");
        assert_eq!(c.known_algorithms(), vec!["ssh-ed25519".to_string()]);
    }

    #[test]
    fn known_hosts_refuses_unknown_changed_and_revoked_keys() {
        let dir = tempfile::tempdir().expect("dir");
        let c = check(dir.path(), HostKeyPolicy::default());
        let err = c
            .verify(&key(1))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("unknown") && err.contains(&key(1).fingerprint()),
            "{err}"
        );
        let k = key(1);
        let revoked = key(3);
        std::fs::write(
            dir.path().join("known_hosts"),
            format!(
                "{}\n@revoked * {} {}\n",
                known_hosts::line("db1.corp", 2222, &k.algorithm, &k.blob),
                revoked.algorithm,
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &revoked.blob)
            ),
        )
        .expect("write");
        assert!(matches!(c.verify(&key(1)), Ok(false)));
        let err = c
            .verify(&key(2))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("CHANGED") && err.contains(&key(1).fingerprint()),
            "{err}"
        );
        let err = c
            .verify(&revoked)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("revoked"), "{err}");
        let named = check(
            dir.path(),
            HostKeyPolicy::KnownHosts {
                path: Some(dir.path().join("nowhere").display().to_string()),
            },
        );
        assert!(matches!(
            named.verify(&key(1)),
            Err(HostKeyRefusal::File { .. })
        ));
    }

    #[test]
    fn pins_by_key_or_fingerprint() {
        let dir = tempfile::tempdir().expect("dir");
        let k = key(1);
        let line = format!(
            "{} {}",
            k.algorithm,
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &k.blob)
        );
        for pin in [line, k.fingerprint()] {
            let c = check(dir.path(), HostKeyPolicy::Pinned { key: pin });
            assert!(matches!(c.verify(&k), Ok(false)));
            let err = c
                .verify(&key(2))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(&k.fingerprint()) && err.contains(&key(2).fingerprint()));
        }
    }
}
