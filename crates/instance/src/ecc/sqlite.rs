//! [`Store`] on SQLite: one file in WAL mode, the embedded default.
//!
//! SQLite admits one writer at a time. Writes therefore go through a pool of exactly one
//! connection — transactions queue in-process instead of failing with `SQLITE_BUSY` —
//! and reads use a separate pool that WAL lets run beside the writer.
//!
//! New outputs are group-committed: concurrent API calls' inserts wait in a channel and
//! one task writes all that are waiting in one transaction, so a burst of calls costs
//! one fsync instead of one each.

use super::migrations::MIGRATIONS;
use super::rows::{EccRow, HistoryDbRow, MidDbRow, records};
use super::{
    AliasRow, Claim, ClusterRow, CredentialKey, CredentialRow, EnrollError, EnrollmentTokenRow,
    Load, MidKey, MidRow, Record, RecordFilter, RecordedResult, StatusChangeRow, Store, StoreError,
};
use async_trait::async_trait;
use openmid_proto::api::{ClusterKind, MidHealth, ProfileUpdate};
use openmid_proto::ecc::{Priority, Queue, State};
use openmid_proto::mid::MidProfile;
use openmid_proto::mid::{AckOutcome, JobRef, MidStatus, WorkResult};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

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
    writer: SqlitePool,
    reader: SqlitePool,
    inserts: tokio::sync::mpsc::Sender<InsertJob>,
}

/// An output waiting to be written, and who to tell.
type InsertJob = (Record, tokio::sync::oneshot::Sender<Result<(), String>>);

/// Most outputs written in one group commit.
const INSERTS_PER_COMMIT: usize = 512;

/// Writes waiting outputs in one transaction per round, until every sender is gone.
async fn group_commit_inserts(pool: SqlitePool, mut jobs: tokio::sync::mpsc::Receiver<InsertJob>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < INSERTS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let written = async {
            let mut tx = pool.begin().await?;
            for (record, _) in &batch {
                insert_record(&mut tx, record).await?;
            }
            tx.commit().await
        }
        .await
        .map_err(|e| e.to_string());
        for (_, reply) in batch {
            let _ = reply.send(written.clone());
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Open {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a result acknowledged to a MID is on disk, even across power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        migrate(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let (inserts, jobs) = tokio::sync::mpsc::channel(4 * INSERTS_PER_COMMIT);
        tokio::spawn(group_commit_inserts(writer.clone(), jobs));
        Ok(Self {
            writer,
            reader,
            inserts,
        })
    }

    /// Closes both pools, waiting for running statements.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(pool)
        .await?;
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
            .bind(version)
            .bind(openmid_proto::time::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}

const INSERT_RECORD: &str = "INSERT INTO ecc (id, queue, agent, topic, name, source, payload, state, priority, response_to, correlator, attempt, max_attempts, at_most_once, error, claimed_by, lease_expires_at, created_at, claimed_at, processed_at, duration_ms, assigned_to, selection, application) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

async fn insert_record(conn: &mut sqlx::SqliteConnection, r: &Record) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_RECORD)
        .bind(&r.id)
        .bind(r.queue.as_str())
        .bind(&r.agent)
        .bind(r.topic.as_str())
        .bind(&r.name)
        .bind(&r.source)
        .bind(&r.payload)
        .bind(r.state.as_str())
        .bind(r.priority.rank())
        .bind(&r.response_to)
        .bind(&r.correlator)
        .bind(i64::from(r.attempt))
        .bind(i64::from(r.max_attempts))
        .bind(r.at_most_once)
        .bind(&r.error)
        .bind(&r.claimed_by)
        .bind(r.lease_expires_at)
        .bind(r.created_at)
        .bind(r.claimed_at)
        .bind(r.processed_at)
        .bind(r.duration_ms)
        .bind(&r.assigned_to)
        .bind(&r.selection)
        .bind(&r.application)
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn insert_enrollment_token(&self, t: &EnrollmentTokenRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO enrollment_tokens (token_hash, expires_at, auto_validate, note, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&t.token_hash)
        .bind(t.expires_at)
        .bind(t.auto_validate)
        .bind(&t.note)
        .bind(t.created_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn enroll_mid(&self, token_hash: &str, mid: &MidRow) -> Result<MidRow, EnrollError> {
        let mut tx = self.writer.begin().await.map_err(StoreError::from)?;
        let auto_validate: Option<bool> = sqlx::query_scalar(
            "SELECT auto_validate FROM enrollment_tokens WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(token_hash)
        .bind(mid.enrolled_at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let Some(auto_validate) = auto_validate else {
            return Err(EnrollError::TokenInvalid);
        };
        let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM mids WHERE name = ?")
            .bind(&mid.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        if taken.is_some() {
            return Err(EnrollError::NameTaken(mid.name.clone()));
        }
        sqlx::query("UPDATE enrollment_tokens SET used_by = ?, used_at = ? WHERE token_hash = ?")
            .bind(&mid.id)
            .bind(mid.enrolled_at)
            .bind(token_hash)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let mut row = mid.clone();
        if auto_validate {
            row.status = MidStatus::Up;
            row.status_reason = Some("validated by its enrollment token".into());
            row.validated_at = Some(mid.enrolled_at);
        } else {
            row.status = MidStatus::ValidationPending;
            row.status_reason = Some("waiting for an admin to validate it".into());
        }
        sqlx::query(
            "INSERT INTO mids (id, name, secret_hash, public_key, status, status_reason, version, hostname, protocol_version, enrolled_at, validated_at, last_seen_at, declared_profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.secret_hash)
        .bind(&row.public_key)
        .bind(row.status.as_str())
        .bind(&row.status_reason)
        .bind(&row.version)
        .bind(&row.hostname)
        .bind(i64::from(row.protocol_version))
        .bind(row.enrolled_at)
        .bind(row.validated_at)
        .bind(row.last_seen_at)
        .bind(json(&row.declared_profile))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        insert_history(
            &mut tx,
            &row.id,
            None,
            row.status,
            row.status_reason.as_deref().unwrap_or("enrolled"),
            row.enrolled_at,
        )
        .await
        .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(row)
    }

    async fn get_mid(&self, key: MidKey<'_>) -> Result<Option<MidRow>, StoreError> {
        let (sql, value) = match key {
            MidKey::Id(id) => ("SELECT * FROM mids WHERE id = ?", id),
            MidKey::Name(name) => ("SELECT * FROM mids WHERE name = ?", name),
        };
        let row: Option<MidDbRow> = sqlx::query_as(sql)
            .bind(value)
            .fetch_optional(&self.reader)
            .await?;
        row.map(MidRow::try_from).transpose()
    }

    async fn list_mids(&self) -> Result<Vec<MidRow>, StoreError> {
        let rows: Vec<MidDbRow> = sqlx::query_as("SELECT * FROM mids ORDER BY name")
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(MidRow::try_from).collect()
    }

    async fn set_mid_status(
        &self,
        name: &str,
        only_from: &[MidStatus],
        status: MidStatus,
        reason: &str,
        now: i64,
    ) -> Result<Option<MidRow>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let current: Option<MidDbRow> = sqlx::query_as("SELECT * FROM mids WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(current) = current.map(MidRow::try_from).transpose()? else {
            return Ok(None);
        };
        if current.status == status
            || !(only_from.is_empty() || only_from.contains(&current.status))
        {
            return Ok(Some(current));
        }
        let row: MidDbRow = sqlx::query_as(
            "UPDATE mids SET status = ?, status_reason = ?, validated_at = CASE WHEN ? AND validated_at IS NULL THEN ? ELSE validated_at END WHERE id = ? RETURNING *",
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(status == MidStatus::Up)
        .bind(now)
        .bind(&current.id)
        .fetch_one(&mut *tx)
        .await?;
        insert_history(
            &mut tx,
            &current.id,
            Some(current.status),
            status,
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(MidRow::try_from(row)?))
    }

    async fn mid_history(&self, id: &str, limit: u32) -> Result<Vec<StatusChangeRow>, StoreError> {
        let rows: Vec<HistoryDbRow> = sqlx::query_as(
            "SELECT id, at, from_status, to_status, reason FROM mid_status_history WHERE mid_id = ? ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(StatusChangeRow::try_from).collect()
    }

    async fn delete_mid(&self, id: &str, name: &str, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let ended = sqlx::query(
            "UPDATE ecc SET state = 'error', error = ?, processed_at = ? WHERE queue = 'output' AND state = 'ready' AND agent = ?",
        )
        .bind(format!("MID {name} was deleted before it ran this"))
        .bind(now)
        .bind(format!("mid.server.{name}"))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM mid_status_history WHERE mid_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM mids WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn mark_mid_seen(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE mids SET last_seen_at = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn record_heartbeat(
        &self,
        id: &str,
        health: &MidHealth,
        declared: &MidProfile,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE mids SET last_seen_at = ?, health = ?, declared_profile = ?, version = ? WHERE id = ?")
            .bind(now)
            .bind(json(health))
            .bind(json(declared))
            .bind(&health.version)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn set_admin_profile(
        &self,
        name: &str,
        profile: Option<&ProfileUpdate>,
    ) -> Result<Option<MidRow>, StoreError> {
        let row: Option<MidDbRow> =
            sqlx::query_as("UPDATE mids SET admin_profile = ? WHERE name = ? RETURNING *")
                .bind(profile.map(json))
                .bind(name)
                .fetch_optional(&self.writer)
                .await?;
        row.map(MidRow::try_from).transpose()
    }

    async fn request_rekey(
        &self,
        name: &str,
        requested: bool,
    ) -> Result<Option<MidRow>, StoreError> {
        let row: Option<MidDbRow> =
            sqlx::query_as("UPDATE mids SET rekey_requested = ? WHERE name = ? RETURNING *")
                .bind(requested)
                .bind(name)
                .fetch_optional(&self.writer)
                .await?;
        row.map(MidRow::try_from).transpose()
    }

    async fn rekey_mid(
        &self,
        id: &str,
        secret_hash: &str,
        public_key: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mids SET secret_hash = ?, public_key = ?, rekey_requested = FALSE WHERE id = ?",
        )
        .bind(secret_hash)
        .bind(public_key)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn put_cluster(
        &self,
        name: &str,
        kind: ClusterKind,
        members: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO clusters (name, kind, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET kind = excluded.kind",
        )
        .bind(name)
        .bind(kind.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM cluster_members WHERE cluster = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        for (rank, member) in members.iter().enumerate() {
            sqlx::query("INSERT INTO cluster_members (cluster, mid_name, rank) VALUES (?, ?, ?)")
                .bind(name)
                .bind(member)
                .bind(rank as i64 + 1)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_cluster(&self, name: &str) -> Result<Option<ClusterRow>, StoreError> {
        Ok(self.clusters(Some(name)).await?.into_iter().next())
    }

    async fn list_clusters(&self) -> Result<Vec<ClusterRow>, StoreError> {
        self.clusters(None).await
    }

    async fn delete_cluster(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM cluster_members WHERE cluster = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM clusters WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_credential(&self, row: &CredentialRow) -> Result<CredentialRow, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO credentials (id, name, description, kind, shown, sealed, key_id, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
             description = excluded.description, kind = excluded.kind, shown = excluded.shown, \
             sealed = excluded.sealed, key_id = excluded.key_id, updated_at = excluded.updated_at",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.description)
        .bind(&row.kind)
        .bind(&row.shown)
        .bind(&row.sealed)
        .bind(&row.key_id)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await?;
        let stored: CredentialDbRow = sqlx::query_as(select_credentials!("WHERE name = ?"))
            .bind(&row.name)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored.into())
    }

    async fn get_credential(
        &self,
        key: CredentialKey<'_>,
    ) -> Result<Option<CredentialRow>, StoreError> {
        let (sql, value) = match key {
            CredentialKey::Id(id) => (select_credentials!("WHERE id = ?"), id),
            CredentialKey::Name(name) => (select_credentials!("WHERE name = ?"), name),
        };
        let row: Option<CredentialDbRow> = sqlx::query_as(sql)
            .bind(value)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn list_credentials(&self) -> Result<Vec<CredentialRow>, StoreError> {
        let rows: Vec<CredentialDbRow> = sqlx::query_as(select_credentials!("ORDER BY name"))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn delete_credential(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let users: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM aliases WHERE credential = ? ORDER BY name")
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
        if !users.is_empty() {
            let names: Vec<String> = users.into_iter().map(|(n,)| n).collect();
            return Err(StoreError::InUse(format!(
                "credential `{name}` is used by alias(es) {}: change or delete them first",
                names.join(", ")
            )));
        }
        let done = sqlx::query("DELETE FROM credentials WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_alias(&self, row: &AliasRow) -> Result<AliasRow, StoreError> {
        let mut tx = self.writer.begin().await?;
        if let Some(credential) = &row.credential {
            let found: Option<(String,)> =
                sqlx::query_as("SELECT id FROM credentials WHERE name = ?")
                    .bind(credential)
                    .fetch_optional(&mut *tx)
                    .await?;
            if found.is_none() {
                return Err(StoreError::MissingCredential(credential.clone()));
            }
        }
        sqlx::query(
            "INSERT INTO aliases (id, name, credential, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET credential = excluded.credential, spec = excluded.spec, \
             updated_at = excluded.updated_at",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.credential)
        .bind(&row.spec)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await?;
        let stored: AliasDbRow = sqlx::query_as(select_aliases!("WHERE name = ?"))
            .bind(&row.name)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stored.into())
    }

    async fn get_alias(&self, name: &str) -> Result<Option<AliasRow>, StoreError> {
        let row: Option<AliasDbRow> = sqlx::query_as(select_aliases!("WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn list_aliases(&self) -> Result<Vec<AliasRow>, StoreError> {
        let rows: Vec<AliasDbRow> = sqlx::query_as(select_aliases!("ORDER BY name"))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn delete_alias(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM aliases WHERE name = ?")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_output(&self, record: &Record) -> Result<(), StoreError> {
        let (reply, written) = tokio::sync::oneshot::channel();
        self.inserts
            .send((record.clone(), reply))
            .await
            .map_err(|_| StoreError::Batch("the store is closed".into()))?;
        written
            .await
            .map_err(|_| StoreError::Batch("the store is closed".into()))?
            .map_err(StoreError::Batch)
    }

    async fn get_record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let row: Option<EccRow> = sqlx::query_as("SELECT * FROM ecc WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(Record::try_from).transpose()
    }

    async fn input_for(&self, output_id: &str) -> Result<Option<Record>, StoreError> {
        let row: Option<EccRow> =
            sqlx::query_as("SELECT * FROM ecc WHERE queue = 'input' AND response_to = ?")
                .bind(output_id)
                .fetch_optional(&self.reader)
                .await?;
        row.map(Record::try_from).transpose()
    }

    async fn list_records(&self, f: &RecordFilter) -> Result<Vec<Record>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM ecc WHERE 1 = 1");
        if let Some(queue) = f.queue {
            q.push(" AND queue = ").push_bind(queue.as_str());
        }
        if let Some(state) = f.state {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(agent) = &f.agent {
            q.push(" AND agent = ").push_bind(agent.clone());
        }
        if let Some(topic) = f.topic {
            q.push(" AND topic = ").push_bind(topic.as_str());
        }
        if let Some(correlator) = &f.correlator {
            q.push(" AND correlator = ").push_bind(correlator.clone());
        }
        if let Some(after) = &f.after {
            q.push(" AND id > ").push_bind(after.clone());
        }
        q.push(" ORDER BY id LIMIT ").push_bind(i64::from(f.limit));
        let rows: Vec<EccRow> = q.build_query_as().fetch_all(&self.reader).await?;
        records(rows)
    }

    async fn claim_ready_outputs(&self, c: &Claim<'_>) -> Result<Vec<Record>, StoreError> {
        const CLAIM: &str = "UPDATE ecc SET state = 'processing', attempt = attempt + 1, claimed_by = ?, claimed_at = ?, lease_expires_at = ? \
             WHERE id IN (SELECT id FROM ecc WHERE queue = 'output' AND state = 'ready' AND assigned_to = ? AND priority = ? ORDER BY id LIMIT ?) \
             RETURNING *";
        let open: Vec<Priority> = Priority::ALL
            .into_iter()
            .filter(|p| c.capacity.get(*p) > 0)
            .collect();
        let claim = |priority: Priority| {
            sqlx::query_as::<_, EccRow>(CLAIM)
                .bind(c.mid_name)
                .bind(c.now)
                .bind(c.lease_until)
                .bind(c.mid_name)
                .bind(priority.rank())
                .bind(i64::from(c.capacity.get(priority)))
        };
        let mut claimed = Vec::new();
        if let [only] = open.as_slice() {
            // One statement is atomic on its own: no transaction round trips.
            claimed = records(claim(*only).fetch_all(&self.writer).await?)?;
        } else if !open.is_empty() {
            let mut tx = self.writer.begin().await?;
            for priority in open {
                claimed.extend(records(claim(priority).fetch_all(&mut *tx).await?)?);
            }
            tx.commit().await?;
        }
        claimed.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
        Ok(claimed)
    }

    async fn record_results(
        &self,
        mid_name: &str,
        results: &[WorkResult],
        now: i64,
    ) -> Result<Vec<RecordedResult>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let mut out = Vec::with_capacity(results.len());
        for result in results {
            let output: Option<EccRow> =
                sqlx::query_as("SELECT * FROM ecc WHERE id = ? AND queue = 'output'")
                    .bind(&result.output_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(output) = output.map(Record::try_from).transpose()? else {
                out.push(RecordedResult {
                    outcome: AckOutcome::Unknown,
                    output: None,
                });
                continue;
            };
            // Recording an input finishes its output in the same transaction, so an
            // output still `processing` has no input: look only for finished ones.
            let answered: Option<i64> = if output.state == State::Processing {
                None
            } else {
                sqlx::query_scalar(
                    "SELECT attempt FROM ecc WHERE queue = 'input' AND response_to = ?",
                )
                .bind(&output.id)
                .fetch_optional(&mut *tx)
                .await?
            };
            let outcome = match answered {
                Some(attempt) if attempt == i64::from(result.attempt) => AckOutcome::Duplicate,
                Some(_) => AckOutcome::Superseded,
                None if output.state == State::Processing
                    && output.attempt == result.attempt
                    && output.claimed_by.as_deref() == Some(mid_name) =>
                {
                    AckOutcome::Recorded
                }
                None => AckOutcome::Superseded,
            };
            if outcome != AckOutcome::Recorded {
                out.push(RecordedResult {
                    outcome,
                    output: None,
                });
                continue;
            }
            let state = if result.error.is_some() {
                State::Error
            } else {
                State::Processed
            };
            let input = Record {
                id: uuid::Uuid::now_v7().to_string(),
                queue: Queue::Input,
                agent: format!("mid.server.{mid_name}"),
                topic: output.topic,
                name: output.name.clone(),
                source: mid_name.to_string(),
                payload: result.payload.to_string(),
                state,
                priority: output.priority,
                response_to: Some(output.id.clone()),
                correlator: output.correlator.clone(),
                attempt: result.attempt,
                max_attempts: output.max_attempts,
                at_most_once: output.at_most_once,
                error: result.error.clone(),
                claimed_by: None,
                lease_expires_at: None,
                created_at: now,
                claimed_at: None,
                processed_at: Some(now),
                duration_ms: Some(i64::try_from(result.duration_ms).unwrap_or(i64::MAX)),
                assigned_to: None,
                selection: None,
                application: output.application.clone(),
            };
            insert_record(&mut tx, &input).await?;
            sqlx::query(
                "UPDATE ecc SET state = ?, error = ?, processed_at = ?, lease_expires_at = NULL WHERE id = ?",
            )
            .bind(state.as_str())
            .bind(&result.error)
            .bind(now)
            .bind(&output.id)
            .execute(&mut *tx)
            .await?;
            out.push(RecordedResult {
                outcome,
                output: Some(Record {
                    state,
                    error: result.error.clone(),
                    processed_at: Some(now),
                    lease_expires_at: None,
                    ..output
                }),
            });
        }
        tx.commit().await?;
        Ok(out)
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
        let mut tx = self.writer.begin().await?;
        let mut lost = Vec::new();
        for job in jobs {
            let done = sqlx::query(
                "UPDATE ecc SET lease_expires_at = ? WHERE id = ? AND queue = 'output' AND state = 'processing' AND attempt = ? AND claimed_by = ?",
            )
            .bind(lease_until)
            .bind(&job.output_id)
            .bind(i64::from(job.attempt))
            .bind(mid_name)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                lost.push(job.clone());
            }
        }
        tx.commit().await?;
        Ok(lost)
    }

    async fn expire_leases(&self, now: i64) -> Result<Vec<Record>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let lapsed: Vec<EccRow> = sqlx::query_as(
            "SELECT * FROM ecc WHERE state = 'processing' AND lease_expires_at < ? ORDER BY id LIMIT 1000",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let changed = end_leases(&mut tx, records(lapsed)?, "lease lapsed", now).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn release_leases_of(
        &self,
        mid_name: &str,
        reason: &str,
        now: i64,
    ) -> Result<Vec<Record>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let running: Vec<EccRow> = sqlx::query_as(
            "SELECT * FROM ecc WHERE queue = 'output' AND state = 'processing' AND claimed_by = ? ORDER BY id",
        )
        .bind(mid_name)
        .fetch_all(&mut *tx)
        .await?;
        let changed = end_leases(&mut tx, records(running)?, reason, now).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn purge_finished(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM ecc WHERE queue = 'output' AND state IN ('processed', 'error', 'cancelled') AND processed_at < ? ORDER BY id LIMIT ?",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut deleted = 0;
        for id in &ids {
            deleted += sqlx::query(
                "DELETE FROM ecc WHERE id = ? OR (queue = 'input' AND response_to = ?)",
            )
            .bind(id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn load_by_mid(&self) -> Result<HashMap<String, Load>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT assigned_to, 'ready', COUNT(*) FROM ecc WHERE queue = 'output' AND state = 'ready' AND assigned_to IS NOT NULL GROUP BY assigned_to \
             UNION ALL \
             SELECT claimed_by, 'processing', COUNT(*) FROM ecc WHERE queue = 'output' AND state = 'processing' AND claimed_by IS NOT NULL GROUP BY claimed_by",
        )
        .fetch_all(&self.reader)
        .await?;
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
        let rows: Vec<EccRow> = sqlx::query_as(
            "SELECT * FROM ecc WHERE queue = 'output' AND state = 'ready' AND agent NOT LIKE 'mid.server.%' ORDER BY id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        records(rows)
    }

    async fn assign_output(
        &self,
        id: &str,
        from: Option<&str>,
        to: Option<&str>,
        selection: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE ecc SET assigned_to = ?, selection = ? WHERE id = ? AND queue = 'output' AND state = 'ready' AND assigned_to IS ?",
        )
        .bind(to)
        .bind(selection)
        .bind(id)
        .bind(from)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

impl SqliteStore {
    async fn clusters(&self, only: Option<&str>) -> Result<Vec<ClusterRow>, StoreError> {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT c.name, c.kind, m.mid_name FROM clusters c LEFT JOIN cluster_members m ON m.cluster = c.name \
             WHERE ? IS NULL OR c.name = ? ORDER BY c.name, m.rank",
        )
        .bind(only)
        .bind(only)
        .fetch_all(&self.reader)
        .await?;
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

#[derive(sqlx::FromRow)]
struct CredentialDbRow {
    id: String,
    name: String,
    description: Option<String>,
    kind: String,
    shown: String,
    sealed: Vec<u8>,
    key_id: String,
    created_at: i64,
    updated_at: i64,
}

impl From<CredentialDbRow> for CredentialRow {
    fn from(r: CredentialDbRow) -> Self {
        CredentialRow {
            id: r.id,
            name: r.name,
            description: r.description,
            kind: r.kind,
            shown: r.shown,
            sealed: r.sealed,
            key_id: r.key_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AliasDbRow {
    id: String,
    name: String,
    credential: Option<String>,
    spec: String,
    created_at: i64,
    updated_at: i64,
}

impl From<AliasDbRow> for AliasRow {
    fn from(r: AliasDbRow) -> Self {
        AliasRow {
            id: r.id,
            name: r.name,
            credential: r.credential,
            spec: r.spec,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

async fn insert_history(
    conn: &mut sqlx::SqliteConnection,
    mid_id: &str,
    from: Option<MidStatus>,
    to: MidStatus,
    reason: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO mid_status_history (id, mid_id, at, from_status, to_status, reason) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(mid_id)
    .bind(now)
    .bind(from.map(MidStatus::as_str))
    .bind(to.as_str())
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends the leases of `outputs`: back to `ready` for another attempt, or `error` when
/// attempts are used up or the output is at-most-once. `why` starts the error text.
async fn end_leases(
    conn: &mut sqlx::SqliteConnection,
    outputs: Vec<Record>,
    why: &str,
    now: i64,
) -> Result<Vec<Record>, StoreError> {
    let mut changed = Vec::with_capacity(outputs.len());
    for output in outputs {
        let holder = output.claimed_by.as_deref().unwrap_or("?");
        let failure = if output.at_most_once {
            Some(format!(
                "{why} while MID {holder} held attempt {}; at-most-once outputs are not re-run",
                output.attempt
            ))
        } else if output.attempt >= output.max_attempts {
            Some(format!(
                "{why} on attempt {} of {} (last held by MID {holder}); no attempts left",
                output.attempt, output.max_attempts
            ))
        } else {
            None
        };
        let row: Option<EccRow> = match &failure {
            Some(reason) => sqlx::query_as(
                "UPDATE ecc SET state = 'error', error = ?, processed_at = ?, lease_expires_at = NULL WHERE id = ? AND state = 'processing' AND attempt = ? RETURNING *",
            )
            .bind(reason)
            .bind(now)
            .bind(&output.id)
            .bind(i64::from(output.attempt))
            .fetch_optional(&mut *conn)
            .await?,
            None => sqlx::query_as(
                "UPDATE ecc SET state = 'ready', lease_expires_at = NULL WHERE id = ? AND state = 'processing' AND attempt = ? RETURNING *",
            )
            .bind(&output.id)
            .bind(i64::from(output.attempt))
            .fetch_optional(&mut *conn)
            .await?,
        };
        if let Some(row) = row {
            changed.push(Record::try_from(row)?);
        }
    }
    Ok(changed)
}
