//! Where a SQL connection opens, under the egress policy. The host is resolved by
//! [`Endpoint::resolve`] (`PolicyResolver`) (a name whose addresses are all refused is refused, naming the
//! rule) and every address is checked again with its port; the MID then opens the TCP
//! connection itself, to a checked address only.
//!
//! sqlx connects by host name, resolving it itself, and verifies the server's
//! certificate against that same name, so handing it the checked address would break
//! `verify_full` for named servers. Instead the open socket is handed to sqlx through
//! a private Unix socket: sqlx connects to it (its `socket` option), speaks TLS over it
//! with the request's host name, and [`Bridge`] copies bytes between the two. The
//! socket lives in a fresh directory only the MID's user can enter and is unlinked as
//! soon as sqlx has connected, so nothing else can reach the connection.

use crate::probes::ProbeError;
pub(super) use crate::probes::endpoint::Endpoint;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

/// Longest a TCP connect to one address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP connection to a checked address, offered to sqlx on a private Unix socket.
/// Dropping it closes both ends.
pub(super) struct Bridge {
    dir: PathBuf,
    socket: PathBuf,
    task: JoinHandle<()>,
}

impl Bridge {
    /// Connects to the first of `endpoint`'s addresses that answers and listens for
    /// sqlx at `<private dir>/<file_name>`.
    pub async fn open(endpoint: &Endpoint, file_name: &str) -> Result<Self, ProbeError> {
        let tcp = endpoint.connect_any(CONNECT_TIMEOUT).await?;
        let dir = private_dir()
            .map_err(|e| ProbeError::Target(format!("making the connection's socket: {e}")))?;
        let socket = dir.join(file_name);
        let listener = match UnixListener::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(ProbeError::Target(format!(
                    "making the connection's socket: {e}"
                )));
            }
        };
        let (path, folder) = (socket.clone(), dir.clone());
        let task = tokio::spawn(async move {
            let accepted = tokio::time::timeout(CONNECT_TIMEOUT, listener.accept()).await;
            // One connection only: nothing else may reach this socket.
            drop(listener);
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir(&folder);
            if let Ok(Ok((mut unix, _))) = accepted {
                let mut tcp = tcp;
                let _ = tokio::io::copy_bidirectional(&mut unix, &mut tcp).await;
            }
        });
        Ok(Self { dir, socket, task })
    }

    /// The private directory holding the socket (PostgreSQL's `socket` option).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The socket itself (MySQL's `socket` option).
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new directory under the system's temporary one that only this user may enter.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let mut random = [0u8; 12];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| std::io::Error::other("no randomness"))?;
    let dir = std::env::temp_dir().join(format!("openmid-sql-{}", hex::encode(random)));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}
