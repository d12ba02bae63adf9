//! The MID's identity: its X25519 key pair (credentials are sealed to the public key),
//! its session secret and, once enrolled, its registry id. Made at first start, kept in
//! `state_dir/identity.json`, readable by the MID's user only.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openmid_proto::mid::SealedCredential;
use openmid_proto::seal::{SealError, credential_aad, open};
use openmid_proto::secret::{Secret, random_32};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use x25519_dalek::{PublicKey, StaticSecret};

/// Errors loading or saving the identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// File access failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid identity.
    #[error("{path}: not a valid MID identity: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// The state directory belongs to another MID.
    #[error(
        "{path} holds the identity of MID `{found}`, not `{wanted}`: use another state_dir or the same name"
    )]
    OtherMid {
        /// The file.
        path: PathBuf,
        /// Name in the file.
        found: String,
        /// Name in the config.
        wanted: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    name: String,
    mid_id: Option<String>,
    secret: Secret,
    private_key: Secret,
    /// Keys of a rekey in progress: saved before they are sent, promoted once the
    /// instance has them, so a crash in between cannot lock the MID out.
    #[serde(default)]
    pending: Option<PendingKeys>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingKeys {
    secret: Secret,
    private_key: Secret,
}

fn decode_key(path: &Path, b64: &Secret) -> Result<StaticSecret, IdentityError> {
    let key: [u8; 32] = STANDARD
        .decode(b64.expose())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| IdentityError::Invalid {
            path: path.to_path_buf(),
            detail: "private_key is not 32 bytes of base64".into(),
        })?;
    Ok(StaticSecret::from(key))
}

/// The MID's identity.
pub struct Identity {
    /// MID name.
    pub name: String,
    /// Registry id, once enrolled.
    pub mid_id: Option<String>,
    /// Session secret (the instance keeps its hash).
    pub secret: Secret,
    private_key: StaticSecret,
    pending: Option<(Secret, StaticSecret)>,
    path: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("mid_id", &self.mid_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads the identity in `state_dir`, or makes a new one for `name`.
    pub fn load_or_create(state_dir: &Path, name: &str) -> Result<Self, IdentityError> {
        let path = state_dir.join("identity.json");
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file: IdentityFile =
                    serde_json::from_slice(&bytes).map_err(|e| IdentityError::Invalid {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                if file.name != name {
                    return Err(IdentityError::OtherMid {
                        path,
                        found: file.name,
                        wanted: name.to_string(),
                    });
                }
                let private_key = decode_key(&path, &file.private_key)?;
                let pending = file
                    .pending
                    .map(|p| decode_key(&path, &p.private_key).map(|k| (p.secret, k)))
                    .transpose()?;
                Ok(Self {
                    name: file.name,
                    mid_id: file.mid_id,
                    secret: file.secret,
                    private_key,
                    pending,
                    path,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(state_dir).map_err(io)?;
                let identity = Self {
                    name: name.to_string(),
                    mid_id: None,
                    secret: Secret::new(URL_SAFE_NO_PAD.encode(random_32())),
                    private_key: StaticSecret::from(random_32()),
                    pending: None,
                    path,
                };
                identity.save()?;
                Ok(identity)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The X25519 public key, base64.
    pub fn public_key_b64(&self) -> String {
        STANDARD.encode(PublicKey::from(&self.private_key).as_bytes())
    }

    /// `MID_ID.SECRET` for the session's bearer header, once enrolled.
    pub fn bearer(&self) -> Option<Secret> {
        self.mid_id
            .as_ref()
            .map(|id| Secret::new(format!("{id}.{}", self.secret.expose())))
    }

    /// `MID_ID.SECRET` with another secret (the pending one of a rekey).
    pub fn bearer_with(&self, secret: &Secret) -> Option<Secret> {
        self.mid_id
            .as_ref()
            .map(|id| Secret::new(format!("{id}.{}", secret.expose())))
    }

    /// Records the registry id after enrollment.
    pub fn set_enrolled(&mut self, mid_id: String) -> Result<(), IdentityError> {
        self.mid_id = Some(mid_id);
        self.save()
    }

    /// Makes (or reuses) the keys of a rekey and saves them as pending. Returns the
    /// new public key (base64) and secret to send to the instance.
    pub fn begin_rekey(&mut self) -> Result<(String, Secret), IdentityError> {
        if self.pending.is_none() {
            self.pending = Some((
                Secret::new(URL_SAFE_NO_PAD.encode(random_32())),
                StaticSecret::from(random_32()),
            ));
            self.save()?;
        }
        let (secret, key) = self
            .pending
            .as_ref()
            .map(|(s, k)| (s.clone(), k.clone()))
            .ok_or_else(|| IdentityError::Invalid {
                path: self.path.clone(),
                detail: "no pending keys".into(),
            })?;
        Ok((STANDARD.encode(PublicKey::from(&key).as_bytes()), secret))
    }

    /// The instance has the pending keys: they become the identity.
    pub fn finish_rekey(&mut self) -> Result<(), IdentityError> {
        if let Some((secret, key)) = self.pending.take() {
            self.secret = secret;
            self.private_key = key;
            self.save()?;
        }
        Ok(())
    }

    /// Opens a credential sealed to this MID for one attempt at one output. Tries the
    /// current key, then the pending one of a rekey in progress (the instance may have
    /// stored the new key before the MID heard back).
    pub fn open_sealed(
        &self,
        output_id: &str,
        attempt: u32,
        sealed: &SealedCredential,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, SealError> {
        let mid_id = self.mid_id.as_deref().unwrap_or_default();
        let aad = credential_aad(mid_id, &sealed.credential_id, output_id, attempt);
        let mut last = None;
        for key in std::iter::once(&self.private_key).chain(self.pending.as_ref().map(|(_, k)| k)) {
            match open(&key.to_bytes(), &aad, &sealed.sealed) {
                Ok(plain) => return Ok(plain),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(SealError::Open))
    }

    /// Whether a rekey was begun and not finished (e.g. the MID crashed in between).
    pub fn has_pending_rekey(&self) -> bool {
        self.pending.is_some()
    }

    /// Writes the identity atomically, owner-readable only.
    fn save(&self) -> Result<(), IdentityError> {
        let file = IdentityFile {
            name: self.name.clone(),
            mid_id: self.mid_id.clone(),
            secret: self.secret.clone(),
            private_key: Secret::new(STANDARD.encode(self.private_key.to_bytes())),
            pending: self.pending.as_ref().map(|(secret, key)| PendingKeys {
                secret: secret.clone(),
                private_key: Secret::new(STANDARD.encode(key.to_bytes())),
            }),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| IdentityError::Invalid {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        crate::outbox::write_atomically(&self.path, &bytes, true).map_err(|source| {
            IdentityError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_restart_and_refuses_other_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = Identity::load_or_create(dir.path(), "mid-a").expect("create");
        a.set_enrolled("id-1".into()).expect("save");
        let b = Identity::load_or_create(dir.path(), "mid-a").expect("load");
        assert_eq!(b.mid_id.as_deref(), Some("id-1"));
        assert_eq!(a.public_key_b64(), b.public_key_b64());
        assert_eq!(a.secret.expose(), b.secret.expose());
        assert!(matches!(
            Identity::load_or_create(dir.path(), "mid-b"),
            Err(IdentityError::OtherMid { .. })
        ));

        // A rekey survives a restart between its two steps.
        let mut c = Identity::load_or_create(dir.path(), "mid-a").expect("load");
        let (public, secret) = c.begin_rekey().expect("begin");
        let mut d = Identity::load_or_create(dir.path(), "mid-a").expect("load");
        assert!(d.has_pending_rekey());
        assert_eq!(d.begin_rekey().expect("same keys").0, public);
        d.finish_rekey().expect("finish");
        let e = Identity::load_or_create(dir.path(), "mid-a").expect("load");
        assert_eq!(e.public_key_b64(), public);
        assert_eq!(e.secret.expose(), secret.expose());
        assert!(!e.has_pending_rekey());
    }
}
