//! Logging in: the job's credential turned into an SSH login (password, or a private
//! key in OpenSSH or PEM format, decrypted with its passphrase), and the pool key that
//! keeps a connection for exactly that login. No message here quotes a secret; a key
//! is named by its public fingerprint, which is not one.

use super::connect::SshHandle;
use crate::probes::ProbeError;
use crate::probes::credentials::Credential;
use openmid_proto::secret::Secret;
use openmid_proto::ssh::HostKeyPolicy;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use std::sync::Arc;

/// Who logs in, and how.
pub struct Login {
    /// The remote user.
    pub username: String,
    method: Method,
}

enum Method {
    Password(Secret),
    Key {
        private_key: Secret,
        passphrase: Option<Secret>,
    },
}

impl Login {
    /// The login a job's credential gives, as `username` when the request overrides
    /// the credential's user.
    pub fn of(credential: Option<&Credential>, username: Option<&str>) -> Result<Self, ProbeError> {
        let (user, method) = match credential {
            Some(Credential::SshPassword { username, password }) => {
                (username, Method::Password(password.clone()))
            }
            Some(Credential::SshKey {
                username,
                private_key,
                passphrase,
            }) => (
                username,
                Method::Key {
                    private_key: private_key.clone(),
                    passphrase: passphrase.clone(),
                },
            ),
            Some(_) => {
                return Err(ProbeError::Credential(
                    "SSHCommand needs an ssh_password or ssh_key credential".into(),
                ));
            }
            None => {
                return Err(ProbeError::Credential(
                    "SSHCommand needs a credential, and none came with the job".into(),
                ));
            }
        };
        Ok(Self {
            username: username.map_or_else(|| user.clone(), str::to_string),
            method,
        })
    }

    /// The password `sudo` is fed, when the login has one.
    pub fn password(&self) -> Option<&Secret> {
        match &self.method {
            Method::Password(p) => Some(p),
            Method::Key { .. } => None,
        }
    }

    /// The credential's type, for messages.
    pub fn kind(&self) -> &'static str {
        match self.method {
            Method::Password(_) => "ssh_password",
            Method::Key { .. } => "ssh_key",
        }
    }

    /// A digest of everything that makes a connection this login's: user, secrets and
    /// the host key policy. Pooled connections are kept per digest, so a job never
    /// rides a connection another credential (or a laxer host key check) opened.
    pub fn pool_digest(&self, host_key: &HostKeyPolicy) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let policy = serde_json::to_string(host_key).unwrap_or_default();
        let (kind, secret, passphrase) = match &self.method {
            Method::Password(p) => ("password", p.expose(), ""),
            Method::Key {
                private_key,
                passphrase,
            } => (
                "key",
                private_key.expose(),
                passphrase.as_ref().map_or("", |p| p.expose()),
            ),
        };
        for part in [kind, &self.username, secret, passphrase, &policy] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Authenticates `handle` as this login on `target` (`host:port`, for messages).
    pub async fn authenticate(
        &self,
        handle: &mut SshHandle,
        target: &str,
    ) -> Result<(), ProbeError> {
        let user = self.username.clone();
        let refused = |what: String| {
            ProbeError::Credential(format!(
                "{}: {target} refused {what} for user `{user}`",
                self.kind()
            ))
        };
        let failed = |e: russh::Error| {
            ProbeError::Target(format!("SSH authentication with {target} failed: {e}"))
        };
        match &self.method {
            Method::Password(password) => {
                let result = handle
                    .authenticate_password(user.clone(), password.expose())
                    .await
                    .map_err(failed)?;
                if !result.success() {
                    return Err(refused("the password".into()));
                }
            }
            Method::Key {
                private_key,
                passphrase,
            } => {
                let key = decode_key(private_key, passphrase.as_ref()).await?;
                let public = openmid_proto::ssh::fingerprint(
                    &key.public_key().to_bytes().unwrap_or_default(),
                );
                let hash = if matches!(key.algorithm(), russh::keys::Algorithm::Rsa { .. }) {
                    handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(failed)?
                        .flatten()
                } else {
                    None
                };
                let result = handle
                    .authenticate_publickey(
                        user.clone(),
                        PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                    )
                    .await
                    .map_err(failed)?;
                if !result.success() {
                    return Err(refused(format!("the key {public}")));
                }
            }
        }
        Ok(())
    }
}

/// Decrypts a private key; the key derivation of an encrypted OpenSSH key takes tens
/// of milliseconds of CPU, so it runs off the runtime.
async fn decode_key(
    private_key: &Secret,
    passphrase: Option<&Secret>,
) -> Result<PrivateKey, ProbeError> {
    let text = private_key.clone();
    let passphrase = passphrase.cloned();
    let decoded = tokio::task::spawn_blocking(move || {
        russh::keys::decode_secret_key(text.expose(), passphrase.as_ref().map(|p| p.expose()))
            .map_err(|e| matches!(e, russh::keys::Error::KeyIsEncrypted))
    })
    .await
    .map_err(|_| ProbeError::Credential("ssh_key: decoding the private key failed".into()))?;
    decoded.map_err(|encrypted| {
        ProbeError::Credential(
            if encrypted {
                "ssh_key: the private key is encrypted and the credential has no passphrase"
            } else {
                "ssh_key: the private key cannot be read: a wrong passphrase, or neither OpenSSH nor PEM format"
            }
            .into(),
        )
    })
}
