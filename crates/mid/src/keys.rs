//! The MID's identity: its X25519 key pair (credentials are sealed to the public key),
//! its session secret and, once enrolled, its registry id. Made at first start, kept in
//! `state_dir/identity.json`, readable by the MID's user only.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
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
                let key: [u8; 32] = STANDARD
                    .decode(file.private_key.expose())
                    .ok()
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| IdentityError::Invalid {
                        path: path.clone(),
                        detail: "private_key is not 32 bytes of base64".into(),
                    })?;
                Ok(Self {
                    name: file.name,
                    mid_id: file.mid_id,
                    secret: file.secret,
                    private_key: StaticSecret::from(key),
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

    /// Records the registry id after enrollment.
    pub fn set_enrolled(&mut self, mid_id: String) -> Result<(), IdentityError> {
        self.mid_id = Some(mid_id);
        self.save()
    }

    /// Writes the identity atomically, owner-readable only.
    fn save(&self) -> Result<(), IdentityError> {
        let file = IdentityFile {
            name: self.name.clone(),
            mid_id: self.mid_id.clone(),
            secret: self.secret.clone(),
            private_key: Secret::new(STANDARD.encode(self.private_key.to_bytes())),
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
    }
}
