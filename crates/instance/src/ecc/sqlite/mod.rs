//! [`Store`] on SQLite: one file in WAL mode, the embedded default.
//!
//! SQLite admits one writer at a time, so every write operation goes to one thread
//! that owns the write connection ([`writer`]) and commits whatever operations are
//! waiting in one transaction: a burst of API calls, claims and results costs one
//! fsync, not one each. Reads run in place on read-only connections ([`readers`]),
//! which WAL lets run beside the writer.

mod audit;
mod connections;
mod coordination;
mod decode;
mod depth;
mod discovery;
mod imports;
mod metrics;
mod operations;
mod output_chunks;
mod queue;
mod readers;
mod registry;
mod sessions;
mod writer;

use super::migrations::MIGRATIONS;
use super::{
    AliasRow, Cancelled, ChunksStored, Claim, ClusterRow, ConnectionStore, CredentialKey,
    CredentialRow, EnrollError, EnrollmentTokenRow, IdempotencyKey, IdempotentHit, Load, MidKey,
    MidRow, QueueStore, Record, RecordFilter, RecordedResult, RegistryStore, SessionChange,
    SettingsStore, StatusChangeRow, StoreError,
};
use crate::ecc::rows::{EccRow, HistoryDbRow, MidDbRow, ecc_columns, mid_columns, records};
use async_trait::async_trait;
use openmid_proto::api::{ClusterKind, MidHealth, ProfileUpdate};
use openmid_proto::ecc::{Priority, State};
use openmid_proto::mid::MidProfile;
use openmid_proto::mid::{AckOutcome, JobRef, MidStatus, WorkResult};
use operations::{
    EncodedResult, end_leases, enroll, idempotent_hit, insert_history, json, record_result,
};
use readers::Readers;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use writer::Writer;

#[async_trait]
impl super::Lifecycle for SqliteStore {
    /// Lets queued writes finish and closes the write connection.
    async fn close(&self) {
        self.writer.close().await;
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
}

/// How long a connection waits for a lock before failing with "database is locked"
/// (only another process, a backup tool say, can hold one that long).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Settings every connection gets.
fn tune(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            crate::private_fs::create_dir_all(parent).map_err(|source| StoreError::Open {
                path: parent.display().to_string(),
                source,
            })?;
        }
        restrict_files(path)?;
        let conn = Connection::open(path)?;
        tune(&conn)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                mode,
                "SQLite refused WAL mode: readers will wait for the writer"
            );
        }
        // FULL: a result acknowledged to a MID is on disk, even across power loss.
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrate(&conn)?;
        // The WAL and shared-memory files exist now; SQLite gives them the database
        // file's mode, but ones left by an older version may be wider.
        restrict_files(path)?;
        Ok(Self {
            writer: Writer::start(conn)?,
            readers: Arc::new(Readers::new(path)),
        })
    }

    pub(super) fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.readers.read(read)
    }
}

/// Makes the database file 0600 before SQLite opens it (SQLite creates it 0644 and
/// gives its WAL and SHM files the same mode), and tightens any of the three that
/// already exist.
fn restrict_files(path: &Path) -> Result<(), StoreError> {
    let open_error = |p: &Path| {
        let p = p.display().to_string();
        move |source| StoreError::Open { path: p, source }
    };
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(crate::private_fs::FILE_MODE);
        }
        options.open(path).map_err(open_error(path))?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = std::path::PathBuf::from(file);
        crate::private_fs::restrict(&file, crate::private_fs::FILE_MODE)
            .map_err(open_error(&file))?;
    }
    Ok(())
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        [],
    )?;
    let applied: Vec<i64> = conn
        .prepare("SELECT version FROM schema_migrations")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
            params![version, openmid_proto::time::now_ms()],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}

pub(super) const INSERT_RECORD: &str = "INSERT INTO ecc (id, queue, agent, topic, name, source, payload, state, priority, response_to, correlator, attempt, max_attempts, at_most_once, error, claimed_by, lease_expires_at, created_at, claimed_at, processed_at, duration_ms, assigned_to, selection, application, traceparent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub(super) fn insert_record(conn: &Connection, r: &Record) -> rusqlite::Result<()> {
    conn.prepare_cached(INSERT_RECORD)?.execute(params![
        r.id,
        r.queue.as_str(),
        r.agent,
        r.topic.as_str(),
        r.name,
        r.source,
        r.payload,
        r.state.as_str(),
        r.priority.rank(),
        r.response_to,
        r.correlator,
        i64::from(r.attempt),
        i64::from(r.max_attempts),
        r.at_most_once,
        r.error,
        r.claimed_by,
        r.lease_expires_at,
        r.created_at,
        r.claimed_at,
        r.processed_at,
        r.duration_ms,
        r.assigned_to,
        r.selection,
        r.application,
        r.traceparent,
    ])?;
    Ok(())
}

/// Runs a cached statement returning whole `ecc` rows.
pub(super) fn ecc_rows(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Record>, StoreError> {
    let rows = conn
        .prepare_cached(sql)?
        .query_map(params, EccRow::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    records(rows)
}

/// Runs a cached statement returning at most one whole `ecc` row.
pub(super) fn ecc_row(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<Record>, StoreError> {
    conn.prepare_cached(sql)?
        .query_row(params, EccRow::from_row)
        .optional()?
        .map(Record::try_from)
        .transpose()
}

/// Runs a cached statement returning at most one whole `mids` row.
pub(super) fn mid_row(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<MidRow>, StoreError> {
    conn.prepare_cached(sql)?
        .query_row(params, MidDbRow::from_row)
        .optional()?
        .map(MidRow::try_from)
        .transpose()
}

pub(super) fn credential_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CredentialRow> {
    Ok(CredentialRow {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        kind: row.get(3)?,
        shown: row.get(4)?,
        sealed: row.get(5)?,
        key_id: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

pub(super) fn alias_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AliasRow> {
    Ok(AliasRow {
        id: row.get(0)?,
        name: row.get(1)?,
        credential: row.get(2)?,
        spec: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    })
}
