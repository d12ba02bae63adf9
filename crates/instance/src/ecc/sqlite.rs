//! [`Store`] on SQLite: one file in WAL mode, the embedded default.
//!
//! SQLite admits one writer at a time. Writes therefore go through a pool of exactly one
//! connection — transactions queue in-process instead of failing with `SQLITE_BUSY` —
//! and reads use a separate pool that WAL lets run beside the writer.

use super::migrations::MIGRATIONS;
use super::rows::{EccRow, MidDbRow, records};
use super::{
    Claim, EnrollError, EnrollmentTokenRow, MidKey, MidRow, Record, RecordFilter, RecordedResult,
    Store, StoreError,
};
use async_trait::async_trait;
use openmid_proto::ecc::{Priority, Queue, State};
use openmid_proto::mid::{AckOutcome, JobRef, MidStatus, WorkResult};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use std::path::Path;
use std::time::Duration;

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
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
        Ok(Self { writer, reader })
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

const INSERT_RECORD: &str = "INSERT INTO ecc (id, queue, agent, topic, name, source, payload, state, priority, response_to, correlator, attempt, max_attempts, at_most_once, error, claimed_by, lease_expires_at, created_at, claimed_at, processed_at, duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

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
            "INSERT INTO mids (id, name, secret_hash, public_key, status, status_reason, version, hostname, protocol_version, enrolled_at, validated_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&mut *tx)
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
        status: MidStatus,
        reason: &str,
        now: i64,
    ) -> Result<Option<MidRow>, StoreError> {
        let row: Option<MidDbRow> = sqlx::query_as(
            "UPDATE mids SET status = ?, status_reason = ?, validated_at = CASE WHEN ? AND validated_at IS NULL THEN ? ELSE validated_at END WHERE name = ? RETURNING *",
        )
        .bind(status.as_str())
        .bind(reason)
        .bind(status == MidStatus::Up)
        .bind(now)
        .bind(name)
        .fetch_optional(&self.writer)
        .await?;
        row.map(MidRow::try_from).transpose()
    }

    async fn mark_mid_seen(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE mids SET last_seen_at = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn insert_output(&self, record: &Record) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        insert_record(&mut conn, record).await?;
        Ok(())
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
        let mut tx = self.writer.begin().await?;
        let mut claimed = Vec::new();
        for priority in Priority::ALL {
            for agent in c.agents {
                let room = c.capacity.get(priority) as usize
                    - claimed
                        .iter()
                        .filter(|r: &&Record| r.priority == priority)
                        .count();
                if room == 0 {
                    break;
                }
                let rows: Vec<EccRow> = sqlx::query_as(
                    "UPDATE ecc SET state = 'processing', attempt = attempt + 1, claimed_by = ?, claimed_at = ?, lease_expires_at = ? \
                     WHERE id IN (SELECT id FROM ecc WHERE queue = 'output' AND state = 'ready' AND agent = ? AND priority = ? ORDER BY id LIMIT ?) \
                     RETURNING *",
                )
                .bind(c.mid_name)
                .bind(c.now)
                .bind(c.lease_until)
                .bind(agent)
                .bind(priority.rank())
                .bind(room as i64)
                .fetch_all(&mut *tx)
                .await?;
                claimed.extend(records(rows)?);
            }
        }
        tx.commit().await?;
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
            let answered: Option<i64> = sqlx::query_scalar(
                "SELECT attempt FROM ecc WHERE queue = 'input' AND response_to = ?",
            )
            .bind(&output.id)
            .fetch_optional(&mut *tx)
            .await?;
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
            };
            insert_record(&mut tx, &input).await?;
            let updated: EccRow = sqlx::query_as(
                "UPDATE ecc SET state = ?, error = ?, processed_at = ?, lease_expires_at = NULL WHERE id = ? RETURNING *",
            )
            .bind(state.as_str())
            .bind(&result.error)
            .bind(now)
            .bind(&output.id)
            .fetch_one(&mut *tx)
            .await?;
            out.push(RecordedResult {
                outcome,
                output: Some(Record::try_from(updated)?),
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
        let mut changed = Vec::with_capacity(lapsed.len());
        for output in records(lapsed)? {
            let holder = output.claimed_by.as_deref().unwrap_or("?");
            let failure = if output.at_most_once {
                Some(format!(
                    "lease lapsed while MID {holder} held attempt {}; at-most-once outputs are not re-run",
                    output.attempt
                ))
            } else if output.attempt >= output.max_attempts {
                Some(format!(
                    "lease lapsed on attempt {} of {} (last held by MID {holder}); no attempts left",
                    output.attempt, output.max_attempts
                ))
            } else {
                None
            };
            let row: Option<EccRow> = match &failure {
                Some(reason) => sqlx::query_as(
                    "UPDATE ecc SET state = 'error', error = ?, processed_at = ?, lease_expires_at = NULL WHERE id = ? AND state = 'processing' RETURNING *",
                )
                .bind(reason)
                .bind(now)
                .bind(&output.id)
                .fetch_optional(&mut *tx)
                .await?,
                None => sqlx::query_as(
                    "UPDATE ecc SET state = 'ready', lease_expires_at = NULL WHERE id = ? AND state = 'processing' RETURNING *",
                )
                .bind(&output.id)
                .fetch_optional(&mut *tx)
                .await?,
            };
            if let Some(row) = row {
                changed.push(Record::try_from(row)?);
            }
        }
        tx.commit().await?;
        Ok(changed)
    }
}
