//! Read-only connections, used in place by the task that reads.
//!
//! WAL lets readers run beside the writer, each seeing the last commit. A store read
//! is an indexed lookup answered from the OS page cache in microseconds — less than
//! handing it to another thread and back would cost — so it runs on the calling task,
//! on a connection taken from this pool. Reads are bounded (every list has a limit),
//! so none holds a runtime thread for long. (Memory-mapping the file was tried: no
//! faster here, and the mapped pages doubled the instance's resident memory.)

use super::super::StoreError;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Idle connections kept; more are opened when more tasks read at once.
const MAX_IDLE: usize = 8;

/// The pool of read-only connections.
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(super) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on an idle connection (opening one if none is idle).
    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let out = read(&conn);
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    super::tune(&conn)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}
