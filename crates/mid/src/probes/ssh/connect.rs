//! Opening one SSH connection: the host resolved under the egress policy (every
//! address checked with its port, so a name resolving to a refused address is never
//! dialled), a TCP connection with a timeout, the handshake — whose host key is
//! verified by [`HostKeyCheck`] before anything else is sent — and the login.

use super::auth::Login;
use super::host_keys::{HostKeyCheck, HostKeyRefusal, Presented};
use crate::policy::{PolicyResolver, Protocol, ResolveError};
use crate::probes::{ProbeContext, ProbeError};
use russh::keys::{Algorithm, HashAlg, PublicKey, PublicKeyOrCertificate};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest wait for one TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence after which the client asks the server whether it is still there; three
/// unanswered asks close the connection (a pooled connection whose host went away is
/// then seen as closed).
const KEEPALIVE: Duration = Duration::from_secs(15);

/// A connection's handle.
pub type SshHandle = russh::client::Handle<Client>;

/// An authenticated connection.
pub struct Connection {
    /// The session.
    pub handle: SshHandle,
    /// The fingerprint of the host key it was verified with.
    pub host_key: String,
    /// Opening it pinned that key (trust on first use).
    pub pinned: bool,
}

/// What the handshake saw of the host key.
#[derive(Debug, Clone)]
struct Seen {
    fingerprint: String,
    pinned: bool,
}

/// The client side of the handshake: it verifies the host key.
pub struct Client {
    check: Arc<HostKeyCheck>,
    seen: Arc<Mutex<Option<Seen>>>,
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The protocol failed.
    #[error(transparent)]
    Ssh(#[from] russh::Error),
    /// The host key was refused.
    #[error(transparent)]
    HostKey(#[from] HostKeyRefusal),
}

impl russh::client::Handler for Client {
    type Error = ClientError;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, ClientError> {
        // A host certificate is judged by the key it certifies (CAs are not trusted).
        let public = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        let blob = public
            .to_bytes()
            .map_err(|_| russh::Error::WrongServerSig)?;
        let presented = Presented {
            algorithm: openmid_proto::ssh::blob_algorithm(&blob)
                .unwrap_or("unknown")
                .to_string(),
            blob,
        };
        let fingerprint = presented.fingerprint();
        let check = self.check.clone();
        let verdict = tokio::task::spawn_blocking(move || check.verify(&presented))
            .await
            .map_err(|_| russh::Error::Disconnect)?;
        let pinned = verdict?;
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(Seen {
            fingerprint,
            pinned,
        });
        Ok(true)
    }
}

/// How `host:port` is shown in messages.
pub fn shown_target(host: &str, port: u16) -> String {
    match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    }
}

/// Opens, verifies and authenticates a connection to the check's host.
pub async fn dial(
    ctx: &ProbeContext,
    check: HostKeyCheck,
    login: &Login,
) -> Result<Connection, ProbeError> {
    let target = shown_target(&check.host, check.port);
    let stream = tcp(ctx, &check.host, check.port, &target).await?;
    let config = Arc::new(config(&check));
    let seen = Arc::new(Mutex::new(None));
    let client = Client {
        check: Arc::new(check),
        seen: seen.clone(),
    };
    let mut handle = russh::client::connect_stream(config, stream, client)
        .await
        .map_err(|e| match e {
            ClientError::HostKey(refusal) => ProbeError::Target(refusal.to_string()),
            ClientError::Ssh(e) => {
                ProbeError::Target(format!("SSH handshake with {target} failed: {e}"))
            }
        })?;
    login.authenticate(&mut handle, &target).await?;
    let seen = seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .ok_or_else(|| {
            ProbeError::Target(format!("{target}: the handshake ended without a host key"))
        })?;
    tracing::debug!(%target, user = %login.username, host_key = %seen.fingerprint, "SSH connection opened");
    Ok(Connection {
        handle,
        host_key: seen.fingerprint,
        pinned: seen.pinned,
    })
}

/// A TCP connection to the first address of `host` the policy allows that answers.
async fn tcp(
    ctx: &ProbeContext,
    host: &str,
    port: u16,
    target: &str,
) -> Result<tokio::net::TcpStream, ProbeError> {
    let resolver = PolicyResolver::new(ctx.policy.clone(), Protocol::Ssh);
    let addrs = resolver.lookup(host).await.map_err(|e| match e {
        ResolveError::Denied(denial) => ProbeError::Policy(denial),
        other => ProbeError::Target(other.to_string()),
    })?;
    let mut failures = Vec::new();
    for mut addr in addrs {
        addr.set_port(port);
        // The resolver checked names and addresses; this adds the port, per address.
        ctx.policy.check_addr(Protocol::Ssh, host, addr)?;
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(e)) => failures.push(format!("{addr}: {e}")),
            Err(_) => failures.push(format!(
                "{addr}: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )),
        }
    }
    Err(ProbeError::Target(format!(
        "cannot connect to {target}: {}",
        failures.join("; ")
    )))
}

/// The client settings: keepalives, and the host key algorithms known for the host
/// asked for first.
fn config(check: &HostKeyCheck) -> russh::client::Config {
    let mut preferred: Vec<Algorithm> = Vec::new();
    for name in check.known_algorithms() {
        let wanted: Vec<Algorithm> = match name.as_str() {
            // RSA keys sign with SHA-2 today; the `ssh-rsa` name is the key's type.
            "ssh-rsa" => vec![
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512),
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256),
                },
            ],
            other => Algorithm::new(other).map(|a| vec![a]).unwrap_or_default(),
        };
        for a in wanted {
            if !preferred.contains(&a) {
                preferred.push(a);
            }
        }
    }
    let mut config = russh::client::Config {
        client_id: russh::SshId::Standard(Cow::Owned(format!(
            "SSH-2.0-openmid_{}",
            env!("CARGO_PKG_VERSION")
        ))),
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    };
    // Only algorithms the client supports are asked for, known ones first.
    let defaults = config.preferred.key.clone();
    preferred.retain(|a| defaults.contains(a));
    for a in defaults.iter() {
        if !preferred.contains(a) {
            preferred.push(a.clone());
        }
    }
    config.preferred.key = Cow::Owned(preferred);
    config
}
