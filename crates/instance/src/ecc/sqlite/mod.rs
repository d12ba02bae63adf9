//! [`Store`] on SQLite: one file in WAL mode, the embedded default.
//!
//! SQLite admits one writer at a time, so every write operation goes to one thread
//! that owns the write connection ([`writer`]) and commits whatever operations are
//! waiting in one transaction: a burst of API calls, claims and results costs one
//! fsync, not one each. Reads run in place on read-only connections ([`readers`]),
//! which WAL lets run beside the writer.

mod operations;
mod output_chunks;
mod readers;
mod writer;

use super::migrations::MIGRATIONS;
use super::rows::{EccRow, HistoryDbRow, MidDbRow, ecc_columns, mid_columns, records};
use super::{
    AliasRow, Cancelled, ChunksStored, Claim, ClusterRow, CredentialKey, CredentialRow,
    EnrollError, EnrollmentTokenRow, Finished, IdempotencyKey, IdempotentHit, Load, MidKey, MidRow,
    Record, RecordFilter, RecordedResult, SessionChange, StatusChangeRow, Store, StoreError,
};
use async_trait::async_trait;
use openmid_proto::api::{ClusterKind, MidHealth, ProfileUpdate};
use openmid_proto::ecc::{Priority, Queue, State};
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

/// `SELECT` of every credential column, then `$tail`.
macro_rules! select_credentials {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, description, kind, shown, sealed, key_id, created_at, updated_at FROM credentials ",
            $tail
        )
    };
}

/// `SELECT` of every alias column, then `$tail`.
macro_rules! select_aliases {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, credential, spec, created_at, updated_at FROM aliases ",
            $tail
        )
    };
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

    /// Lets queued writes finish and closes the write connection.
    pub async fn close(&self) {
        self.writer.close().await;
    }

    fn read<T>(
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

const INSERT_RECORD: &str = "INSERT INTO ecc (id, queue, agent, topic, name, source, payload, state, priority, response_to, correlator, attempt, max_attempts, at_most_once, error, claimed_by, lease_expires_at, created_at, claimed_at, processed_at, duration_ms, assigned_to, selection, application) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

fn insert_record(conn: &Connection, r: &Record) -> rusqlite::Result<()> {
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
    ])?;
    Ok(())
}

/// Runs a cached statement returning whole `ecc` rows.
fn ecc_rows(
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
fn ecc_row(
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
fn mid_row(
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

fn credential_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CredentialRow> {
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

fn alias_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AliasRow> {
    Ok(AliasRow {
        id: row.get(0)?,
        name: row.get(1)?,
        credential: row.get(2)?,
        spec: row.get(3)?,
        created_at: row.get(4)?,
        updated_at: row.get(5)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT value FROM settings WHERE key = ?")?
                    .query_row([key], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute([key, value])?;
                Ok(())
            })
            .await
    }

    async fn insert_enrollment_token(&self, t: &EnrollmentTokenRow) -> Result<(), StoreError> {
        let t = t.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO enrollment_tokens (token_hash, expires_at, auto_validate, note, created_at) VALUES (?, ?, ?, ?, ?)",
                )?
                .execute(params![t.token_hash, t.expires_at, t.auto_validate, t.note, t.created_at])?;
                Ok(())
            })
            .await
    }

    async fn enroll_mid(&self, token_hash: &str, mid: &MidRow) -> Result<MidRow, EnrollError> {
        let (token_hash, mid) = (token_hash.to_string(), mid.clone());
        self.writer
            .write(move |c| enroll(c, &token_hash, mid))
            .await
    }

    async fn get_mid(&self, key: MidKey<'_>) -> Result<Option<MidRow>, StoreError> {
        let (sql, value) = match key {
            MidKey::Id(id) => (
                concat!("SELECT ", mid_columns!(), " FROM mids WHERE id = ?"),
                id,
            ),
            MidKey::Name(name) => (
                concat!("SELECT ", mid_columns!(), " FROM mids WHERE name = ?"),
                name,
            ),
        };
        self.read(|c| mid_row(c, sql, [value]))
    }

    async fn list_mids(&self) -> Result<Vec<MidRow>, StoreError> {
        self.read(|c| {
            let rows = c
                .prepare_cached(concat!(
                    "SELECT ",
                    mid_columns!(),
                    " FROM mids ORDER BY name"
                ))?
                .query_map([], MidDbRow::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(MidRow::try_from).collect()
        })
    }

    async fn set_mid_status(
        &self,
        name: &str,
        only_from: &[MidStatus],
        status: MidStatus,
        reason: &str,
        now: i64,
    ) -> Result<Option<MidRow>, StoreError> {
        let (name, only_from, reason) = (name.to_string(), only_from.to_vec(), reason.to_string());
        self.writer
            .write(move |c| {
                let Some(current) = mid_row(c, concat!("SELECT ", mid_columns!(), " FROM mids WHERE name = ?"), [&name])?
                else {
                    return Ok(None);
                };
                if current.status == status
                    || !(only_from.is_empty() || only_from.contains(&current.status))
                {
                    return Ok(Some(current));
                }
                let row = mid_row(
                    c,
                    concat!("UPDATE mids SET status = ?, status_reason = ?, validated_at = CASE WHEN ? AND validated_at IS NULL THEN ? ELSE validated_at END WHERE id = ? RETURNING ", mid_columns!()),
                    params![status.as_str(), reason, (status == MidStatus::Up), now, current.id],
                )?;
                insert_history(c, &current.id, Some(current.status), status, &reason, now)?;
                Ok(row)
            })
            .await
    }

    async fn mid_history(&self, id: &str, limit: u32) -> Result<Vec<StatusChangeRow>, StoreError> {
        self.read(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT id, at, from_status, to_status, reason FROM mid_status_history WHERE mid_id = ? ORDER BY at DESC, id DESC LIMIT ?",
                )?
                .query_map(params![id, i64::from(limit)], HistoryDbRow::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(StatusChangeRow::try_from).collect()
        })
    }

    async fn delete_mid(&self, id: &str, name: &str, now: i64) -> Result<u64, StoreError> {
        let (id, name) = (id.to_string(), name.to_string());
        self.writer
            .write(move |c| {
                let ended = c
                    .prepare_cached(
                        "UPDATE ecc SET state = 'error', error = ?, processed_at = ? WHERE queue = 'output' AND state = 'ready' AND agent = ?",
                    )?
                    .execute(params![
                        format!("MID {name} was deleted before it ran this"),
                        now,
                        format!("mid.server.{name}")
                    ])?;
                c.prepare_cached("DELETE FROM mid_status_history WHERE mid_id = ?")?
                    .execute([&id])?;
                c.prepare_cached("DELETE FROM mids WHERE id = ?")?
                    .execute([&id])?;
                Ok(ended as u64)
            })
            .await
    }

    async fn mark_mid_seen(&self, id: &str, now: i64) -> Result<(), StoreError> {
        let id = id.to_string();
        self.writer
            .write(move |c| {
                c.prepare_cached("UPDATE mids SET last_seen_at = ? WHERE id = ?")?
                    .execute(params![now, id])?;
                Ok(())
            })
            .await
    }

    async fn record_heartbeat(
        &self,
        id: &str,
        health: &MidHealth,
        declared: &MidProfile,
        session: Option<&str>,
        now: i64,
    ) -> Result<SessionChange, StoreError> {
        let (id, version) = (id.to_string(), health.version.clone());
        let (health, declared) = (json(health), json(declared));
        let session = session.map(str::to_string);
        self.writer
            .write(move |c| {
                let change = match &session {
                    None => SessionChange::Same,
                    Some(session) => {
                        let previous: Option<String> = c
                            .prepare_cached("SELECT session_id FROM mids WHERE id = ?")?
                            .query_row([&id], |r| r.get(0))
                            .optional()?
                            .flatten();
                        if previous.as_deref() == Some(session.as_str()) {
                            SessionChange::Same
                        } else {
                            SessionChange::New { previous }
                        }
                    }
                };
                c.prepare_cached(
                    "UPDATE mids SET last_seen_at = ?, health = ?, declared_profile = ?, version = ?, session_id = coalesce(?, session_id) WHERE id = ?",
                )?
                .execute(params![now, health, declared, version, session, id])?;
                Ok(change)
            })
            .await
    }

    async fn set_admin_profile(
        &self,
        name: &str,
        profile: Option<&ProfileUpdate>,
    ) -> Result<Option<MidRow>, StoreError> {
        let (name, profile) = (name.to_string(), profile.map(json));
        self.writer
            .write(move |c| {
                mid_row(
                    c,
                    concat!(
                        "UPDATE mids SET admin_profile = ? WHERE name = ? RETURNING ",
                        mid_columns!()
                    ),
                    params![profile, name],
                )
            })
            .await
    }

    async fn request_rekey(
        &self,
        name: &str,
        requested: bool,
    ) -> Result<Option<MidRow>, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                mid_row(
                    c,
                    concat!(
                        "UPDATE mids SET rekey_requested = ? WHERE name = ? RETURNING ",
                        mid_columns!()
                    ),
                    params![requested, name],
                )
            })
            .await
    }

    async fn rekey_mid(
        &self,
        id: &str,
        secret_hash: &str,
        public_key: &str,
    ) -> Result<(), StoreError> {
        let (id, secret_hash, public_key) = (
            id.to_string(),
            secret_hash.to_string(),
            public_key.to_string(),
        );
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE mids SET secret_hash = ?, public_key = ?, rekey_requested = FALSE WHERE id = ?",
                )?
                .execute([secret_hash, public_key, id])?;
                Ok(())
            })
            .await
    }

    async fn put_cluster(
        &self,
        name: &str,
        kind: ClusterKind,
        members: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let (name, members) = (name.to_string(), members.to_vec());
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO clusters (name, kind, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET kind = excluded.kind",
                )?
                .execute(params![name, kind.as_str(), now])?;
                c.prepare_cached("DELETE FROM cluster_members WHERE cluster = ?")?
                    .execute([&name])?;
                let mut add = c.prepare_cached(
                    "INSERT INTO cluster_members (cluster, mid_name, rank) VALUES (?, ?, ?)",
                )?;
                for (rank, member) in members.iter().enumerate() {
                    add.execute(params![name, member, (rank as i64 + 1)])?;
                }
                Ok(())
            })
            .await
    }

    async fn get_cluster(&self, name: &str) -> Result<Option<ClusterRow>, StoreError> {
        Ok(self.clusters(Some(name))?.into_iter().next())
    }

    async fn list_clusters(&self) -> Result<Vec<ClusterRow>, StoreError> {
        self.clusters(None)
    }

    async fn delete_cluster(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                c.prepare_cached("DELETE FROM cluster_members WHERE cluster = ?")?
                    .execute([&name])?;
                let deleted = c
                    .prepare_cached("DELETE FROM clusters WHERE name = ?")?
                    .execute([&name])?;
                Ok(deleted > 0)
            })
            .await
    }

    async fn put_credential(&self, row: &CredentialRow) -> Result<CredentialRow, StoreError> {
        let row = row.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO credentials (id, name, description, kind, shown, sealed, key_id, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
                     description = excluded.description, kind = excluded.kind, shown = excluded.shown, \
                     sealed = excluded.sealed, key_id = excluded.key_id, updated_at = excluded.updated_at",
                )?
                .execute(params![
                    row.id,
                    row.name,
                    row.description,
                    row.kind,
                    row.shown,
                    row.sealed,
                    row.key_id,
                    row.created_at,
                    row.updated_at
                ])?;
                Ok(c.prepare_cached(select_credentials!("WHERE name = ?"))?
                    .query_row([&row.name], credential_row)?)
            })
            .await
    }

    async fn get_credential(
        &self,
        key: CredentialKey<'_>,
    ) -> Result<Option<CredentialRow>, StoreError> {
        let (sql, value) = match key {
            CredentialKey::Id(id) => (select_credentials!("WHERE id = ?"), id),
            CredentialKey::Name(name) => (select_credentials!("WHERE name = ?"), name),
        };
        self.read(|c| {
            Ok(c.prepare_cached(sql)?
                .query_row([value], credential_row)
                .optional()?)
        })
    }

    async fn list_credentials(&self) -> Result<Vec<CredentialRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_credentials!("ORDER BY name"))?
                .query_map([], credential_row)?
                .collect::<Result<_, _>>()?)
        })
    }

    async fn delete_credential(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                let users: Vec<String> = c
                    .prepare_cached("SELECT name FROM aliases WHERE credential = ? ORDER BY name")?
                    .query_map([&name], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                if !users.is_empty() {
                    return Err(StoreError::InUse(format!(
                        "credential `{name}` is used by alias(es) {}: change or delete them first",
                        users.join(", ")
                    )));
                }
                let deleted = c
                    .prepare_cached("DELETE FROM credentials WHERE name = ?")?
                    .execute([&name])?;
                Ok(deleted > 0)
            })
            .await
    }

    async fn put_alias(&self, row: &AliasRow) -> Result<AliasRow, StoreError> {
        let row = row.clone();
        self.writer
            .write(move |c| {
                if let Some(credential) = &row.credential {
                    let found: Option<String> = c
                        .prepare_cached("SELECT id FROM credentials WHERE name = ?")?
                        .query_row([credential], |r| r.get(0))
                        .optional()?;
                    if found.is_none() {
                        return Err(StoreError::MissingCredential(credential.clone()));
                    }
                }
                c.prepare_cached(
                    "INSERT INTO aliases (id, name, credential, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (name) DO UPDATE SET credential = excluded.credential, spec = excluded.spec, \
                     updated_at = excluded.updated_at",
                )?
                .execute(params![
                    row.id,
                    row.name,
                    row.credential,
                    row.spec,
                    row.created_at,
                    row.updated_at
                ])?;
                Ok(c.prepare_cached(select_aliases!("WHERE name = ?"))?
                    .query_row([&row.name], alias_row)?)
            })
            .await
    }

    async fn get_alias(&self, name: &str) -> Result<Option<AliasRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_aliases!("WHERE name = ?"))?
                .query_row([name], alias_row)
                .optional()?)
        })
    }

    async fn list_aliases(&self) -> Result<Vec<AliasRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_aliases!("ORDER BY name"))?
                .query_map([], alias_row)?
                .collect::<Result<_, _>>()?)
        })
    }

    async fn delete_alias(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                let deleted = c
                    .prepare_cached("DELETE FROM aliases WHERE name = ?")?
                    .execute([&name])?;
                Ok(deleted > 0)
            })
            .await
    }

    async fn insert_output(&self, record: &Record) -> Result<(), StoreError> {
        let record = record.clone();
        self.writer
            .write(move |c| Ok(insert_record(c, &record)?))
            .await
    }

    async fn insert_output_once(
        &self,
        record: &Record,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotentHit>, StoreError> {
        let (record, key) = (record.clone(), key.clone());
        self.writer
            .write(move |c| {
                if let Some(hit) = idempotent_hit(c, &key.key, key.not_before)? {
                    return Ok(Some(hit));
                }
                // A key past the window is forgotten: this submission takes it over.
                c.prepare_cached(
                    "INSERT OR REPLACE INTO idempotency_keys (key, request_hash, output_id, created_at) VALUES (?, ?, ?, ?)",
                )?
                .execute(params![key.key, key.request_hash, record.id, key.now])?;
                insert_record(c, &record)?;
                Ok(None)
            })
            .await
    }

    async fn find_idempotent(
        &self,
        key: &str,
        not_before: i64,
    ) -> Result<Option<IdempotentHit>, StoreError> {
        self.read(|c| idempotent_hit(c, key, not_before))
    }

    async fn get_record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        self.read(|c| {
            ecc_row(
                c,
                concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE id = ?"),
                [id],
            )
        })
    }

    async fn input_for(&self, output_id: &str) -> Result<Option<Record>, StoreError> {
        self.read(|c| {
            ecc_row(
                c,
                concat!(
                    "SELECT ",
                    ecc_columns!(),
                    " FROM ecc WHERE queue = 'input' AND response_to = ?"
                ),
                [output_id],
            )
        })
    }

    async fn list_records(&self, f: &RecordFilter) -> Result<Vec<Record>, StoreError> {
        use rusqlite::types::Value;
        let mut sql = String::from(concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE 1 = 1"));
        let mut values: Vec<Value> = Vec::new();
        let mut filter = |clause: &str, value: Value| {
            sql.push_str(clause);
            values.push(value);
        };
        if let Some(queue) = f.queue {
            filter(" AND queue = ?", queue.as_str().to_string().into());
        }
        if let Some(state) = f.state {
            filter(" AND state = ?", state.as_str().to_string().into());
        }
        if let Some(agent) = &f.agent {
            filter(" AND agent = ?", agent.clone().into());
        }
        if let Some(topic) = f.topic {
            filter(" AND topic = ?", topic.as_str().to_string().into());
        }
        if let Some(correlator) = &f.correlator {
            filter(" AND correlator = ?", correlator.clone().into());
        }
        if let Some(after) = &f.after {
            filter(" AND id > ?", after.clone().into());
        }
        filter(" ORDER BY id LIMIT ?", i64::from(f.limit).into());
        self.read(|c| ecc_rows(c, &sql, rusqlite::params_from_iter(values)))
    }

    async fn claim_ready_outputs(&self, c: &Claim<'_>) -> Result<Vec<Record>, StoreError> {
        const CLAIM: &str = concat!(
            "UPDATE ecc SET state = 'processing', attempt = attempt + 1, claimed_by = ?, claimed_at = ?, lease_expires_at = ? \
             WHERE id IN (SELECT id FROM ecc WHERE queue = 'output' AND state = 'ready' AND assigned_to = ? AND priority = ? ORDER BY id LIMIT ?) \
             RETURNING ",
            ecc_columns!()
        );
        let open: Vec<(Priority, u32)> = Priority::ALL
            .into_iter()
            .map(|p| (p, c.capacity.get(p)))
            .filter(|(_, free)| *free > 0)
            .collect();
        if open.is_empty() {
            return Ok(Vec::new());
        }
        // Most polls find nothing: a read says so without queueing for the writer.
        let waiting: bool = self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM ecc WHERE queue = 'output' AND state = 'ready' AND assigned_to = ?)",
                )?
                .query_row([c.mid_name], |r| r.get(0))?)
        })?;
        if !waiting {
            return Ok(Vec::new());
        }
        let (mid, now, lease_until) = (c.mid_name.to_string(), c.now, c.lease_until);
        let mut claimed = self
            .writer
            .write(move |conn| {
                let mut claimed = Vec::new();
                for (priority, free) in open {
                    claimed.extend(ecc_rows(
                        conn,
                        CLAIM,
                        params![mid, now, lease_until, mid, priority.rank(), i64::from(free)],
                    )?);
                }
                Ok::<_, StoreError>(claimed)
            })
            .await?;
        claimed.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
        Ok(claimed)
    }

    async fn record_results(
        &self,
        mid_name: &str,
        results: &[WorkResult],
        now: i64,
    ) -> Result<Vec<RecordedResult>, StoreError> {
        let mid_name = mid_name.to_string();
        let results: Vec<EncodedResult> = results
            .iter()
            .map(|r| EncodedResult {
                output_id: r.output_id.clone(),
                attempt: r.attempt,
                payload: r.payload.to_string(),
                error: r.error.clone(),
                duration_ms: i64::try_from(r.duration_ms).unwrap_or(i64::MAX),
            })
            .collect();
        self.writer
            .write(move |c| {
                results
                    .into_iter()
                    .map(|result| record_result(c, &mid_name, result, now))
                    .collect()
            })
            .await
    }

    async fn renew_leases(
        &self,
        mid_name: &str,
        jobs: &[JobRef],
        lease_until: i64,
    ) -> Result<Vec<JobRef>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (mid_name, jobs) = (mid_name.to_string(), jobs.to_vec());
        self.writer
            .write(move |c| {
                let mut renew = c.prepare_cached(
                    "UPDATE ecc SET lease_expires_at = ? WHERE id = ? AND queue = 'output' AND state = 'processing' AND attempt = ? AND claimed_by = ?",
                )?;
                let mut lost = Vec::new();
                for job in jobs {
                    let renewed = renew.execute(params![
                        lease_until,
                        job.output_id,
                        i64::from(job.attempt),
                        mid_name
                    ])?;
                    if renewed == 0 {
                        lost.push(job);
                    }
                }
                Ok(lost)
            })
            .await
    }

    async fn expire_leases(&self, now: i64) -> Result<Vec<Record>, StoreError> {
        self.writer
            .write(move |c| {
                let lapsed = ecc_rows(
                    c,
                    concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE state = 'processing' AND lease_expires_at < ? ORDER BY id LIMIT 1000"),
                    [now],
                )?;
                end_leases(c, lapsed, "lease lapsed", now)
            })
            .await
    }

    async fn release_leases_of(
        &self,
        mid_name: &str,
        keep: &[JobRef],
        reason: &str,
        now: i64,
    ) -> Result<Vec<Record>, StoreError> {
        let (mid_name, reason) = (mid_name.to_string(), reason.to_string());
        let keep: std::collections::HashSet<(String, u32)> = keep
            .iter()
            .map(|j| (j.output_id.clone(), j.attempt))
            .collect();
        self.writer
            .write(move |c| {
                let mut running = ecc_rows(
                    c,
                    concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE queue = 'output' AND state = 'processing' AND claimed_by = ? ORDER BY id"),
                    [&mid_name],
                )?;
                running.retain(|r| !keep.contains(&(r.id.clone(), r.attempt)));
                end_leases(c, running, &reason, now)
            })
            .await
    }

    async fn extend_all_leases(&self, lease_until: i64) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                let changed = c
                    .prepare_cached(
                        "UPDATE ecc SET lease_expires_at = ? WHERE queue = 'output' AND state = 'processing' AND lease_expires_at < ?",
                    )?
                    .execute(params![lease_until, lease_until])?;
                Ok(changed as u64)
            })
            .await
    }

    async fn cancel_output(
        &self,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Option<Cancelled>, StoreError> {
        let (id, reason) = (id.to_string(), reason.to_string());
        self.writer
            .write(move |c| {
                let Some(output) = ecc_row(
                    c,
                    concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE id = ? AND queue = 'output'"),
                    [&id],
                )?
                else {
                    return Ok(None);
                };
                Ok(Some(match output.state {
                    State::Ready => {
                        let row = ecc_row(
                            c,
                            concat!(
                                "UPDATE ecc SET state = 'cancelled', error = ?, processed_at = ?, lease_expires_at = NULL WHERE id = ? AND state = 'ready' RETURNING ",
                                ecc_columns!()
                            ),
                            params![reason, now, id],
                        )?;
                        Cancelled::Now(row.unwrap_or(output))
                    }
                    State::Processing => {
                        c.prepare_cached(
                            "INSERT OR IGNORE INTO cancel_requests (output_id, reason, requested_at) VALUES (?, ?, ?)",
                        )?
                        .execute(params![id, reason, now])?;
                        Cancelled::Stopping(output)
                    }
                    _ => Cancelled::AlreadyFinished(output),
                }))
            })
            .await
    }

    async fn cancelled_running(&self, mid_name: &str) -> Result<Vec<JobRef>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT e.id, e.attempt FROM cancel_requests r JOIN ecc e ON e.id = r.output_id WHERE e.state = 'processing' AND e.claimed_by = ?",
            )?;
            let jobs = stmt
                .query_map([mid_name], |r| {
                    Ok(JobRef {
                        output_id: r.get(0)?,
                        attempt: r.get::<_, i64>(1)?.try_into().unwrap_or(0),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(jobs)
        })
    }

    async fn purge_idempotency_keys(&self, before: i64) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                let deleted = c
                    .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?")?
                    .execute([before])?;
                Ok(deleted as u64)
            })
            .await
    }

    async fn purge_finished(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                let ids: Vec<String> = c
                    .prepare_cached(
                        "SELECT id FROM ecc WHERE queue = 'output' AND state IN ('processed', 'error', 'cancelled') AND processed_at < ? ORDER BY id LIMIT ?",
                    )?
                    .query_map(params![before, i64::from(limit)], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut delete = c.prepare_cached(
                    "DELETE FROM ecc WHERE id = ? OR (queue = 'input' AND response_to = ?)",
                )?;
                let mut deleted = 0;
                for id in &ids {
                    deleted += delete.execute([id, id])? as u64;
                    // Its streamed output goes with it (not counted: not records).
                    output_chunks::purge(c, id)?;
                }
                Ok(deleted)
            })
            .await
    }

    async fn store_output_chunks(
        &self,
        mid_name: &str,
        output_id: &str,
        attempt: u32,
        chunks: Vec<openmid_proto::command_output::DecodedChunk>,
    ) -> Result<ChunksStored, StoreError> {
        let (mid_name, output_id) = (mid_name.to_string(), output_id.to_string());
        self.writer
            .write(move |c| output_chunks::store(c, &mid_name, &output_id, attempt, &chunks))
            .await
    }

    async fn carry_output_chunks(
        &self,
        output_id: &str,
        attempt: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let output_id = output_id.to_string();
        self.writer
            .write(move |c| output_chunks::carry(c, &output_id, attempt))
            .await
    }

    async fn output_chunks(
        &self,
        output_id: &str,
        attempt: u32,
        after: Option<u64>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<openmid_proto::command_output::DecodedChunk>, StoreError> {
        self.read(|c| output_chunks::read(c, output_id, attempt, after, limit, max_bytes))
    }

    async fn load_by_mid(&self) -> Result<HashMap<String, Load>, StoreError> {
        let rows: Vec<(String, String, i64)> = self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT assigned_to, 'ready', COUNT(*) FROM ecc WHERE queue = 'output' AND state = 'ready' AND assigned_to IS NOT NULL GROUP BY assigned_to \
                 UNION ALL \
                 SELECT claimed_by, 'processing', COUNT(*) FROM ecc WHERE queue = 'output' AND state = 'processing' AND claimed_by IS NOT NULL GROUP BY claimed_by",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?)
        })?;
        let mut load: HashMap<String, Load> = HashMap::new();
        for (mid, state, count) in rows {
            let entry = load.entry(mid).or_default();
            let count = u64::try_from(count).unwrap_or(0);
            if state == "ready" {
                entry.ready += count;
            } else {
                entry.processing += count;
            }
        }
        Ok(load)
    }

    async fn movable_outputs(&self, limit: u32) -> Result<Vec<Record>, StoreError> {
        self.read(|c| {
            ecc_rows(
                c,
                concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE queue = 'output' AND state = 'ready' AND agent NOT LIKE 'mid.server.%' ORDER BY id LIMIT ?"),
                [i64::from(limit)],
            )
        })
    }

    async fn assign_output(
        &self,
        id: &str,
        from: Option<&str>,
        to: Option<&str>,
        selection: &str,
    ) -> Result<bool, StoreError> {
        let (id, from, to, selection) = (
            id.to_string(),
            from.map(str::to_string),
            to.map(str::to_string),
            selection.to_string(),
        );
        self.writer
            .write(move |c| {
                let assigned = c
                    .prepare_cached(
                        "UPDATE ecc SET assigned_to = ?, selection = ? WHERE id = ? AND queue = 'output' AND state = 'ready' AND assigned_to IS ?",
                    )?
                    .execute(params![to, selection, id, from])?;
                Ok(assigned > 0)
            })
            .await
    }
}

impl SqliteStore {
    fn clusters(&self, only: Option<&str>) -> Result<Vec<ClusterRow>, StoreError> {
        let rows: Vec<(String, String, Option<String>)> = self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT c.name, c.kind, m.mid_name FROM clusters c LEFT JOIN cluster_members m ON m.cluster = c.name \
                 WHERE ? IS NULL OR c.name = ? ORDER BY c.name, m.rank",
            )?
            .query_map([only, only], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?)
        })?;
        let mut out: Vec<ClusterRow> = Vec::new();
        for (name, kind, member) in rows {
            if out.last().is_none_or(|c| c.name != name) {
                let kind = ClusterKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
                    id: name.clone(),
                    detail: format!("cluster kind {kind}"),
                })?;
                out.push(ClusterRow {
                    name: name.clone(),
                    kind,
                    members: Vec::new(),
                });
            }
            if let (Some(member), Some(cluster)) = (member, out.last_mut()) {
                cluster.members.push(member);
            }
        }
        Ok(out)
    }
}
