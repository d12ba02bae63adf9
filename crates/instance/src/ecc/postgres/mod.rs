//! [`Store`](super::Store) on PostgreSQL: the store several instance nodes share.
//!
//! Every operation is one transaction on a pooled connection. Where SQLite relies on
//! its one writer, this backend takes row locks: a claim selects with
//! `FOR UPDATE SKIP LOCKED`, so nodes claiming at once never wait on one another nor
//! take one output twice; a result, a lease's end or a status change locks the row it
//! decides on (`FOR UPDATE`) before asking [`super::rules`]. Migrations run under an
//! advisory lock, so nodes starting together apply each one once.

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
mod registry;
mod sessions;

use super::migrations::MIGRATIONS;
use super::{MidRow, Record, StoreError};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Executor, Postgres, Row};
use std::str::FromStr;
use std::time::Duration;

/// The advisory lock migrations run under (an arbitrary constant: "openmid" in ASCII).
const MIGRATION_LOCK: i64 = 0x006f_7065_6e6d_6964;

/// Connections per node: claims, results and API reads of one node at once.
const POOL_SIZE: u32 = 16;

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?sslmode=…`)
    /// and applies migrations. Other nodes may use the same database at the same time.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("openmid-instance");
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        migrate(&pool).await?;
        Ok(Self { pool })
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl super::Lifecycle for PgStore {
    /// Waits for running operations and closes the pool's connections.
    async fn close(&self) {
        self.pool.close().await;
    }
}

/// The SQLite schema in PostgreSQL's words: the migrations are written for both, but
/// for binary columns.
fn dialect(sql: &str) -> String {
    sql.replace(" BLOB", " BYTEA")
}

async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let applied = apply_migrations(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    applied?;
    unlocked?;
    Ok(())
}

async fn apply_migrations(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(&mut *conn)
        .await?;
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // Several statements in one simple-protocol call.
        (&mut *tx).execute(dialect(sql).as_str()).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(openmid_proto::time::now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied schema migration");
    }
    Ok(())
}

/// Runs a statement returning whole `ecc` rows.
pub(super) async fn ecc_rows<'e, E>(
    exec: E,
    query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
) -> Result<Vec<Record>, StoreError>
where
    E: Executor<'e, Database = Postgres>,
{
    query
        .fetch_all(exec)
        .await?
        .iter()
        .map(|r| decode::ecc(r).and_then(Record::try_from))
        .collect()
}

/// Runs a statement returning at most one whole `ecc` row.
pub(super) async fn ecc_row<'e, E>(
    exec: E,
    query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
) -> Result<Option<Record>, StoreError>
where
    E: Executor<'e, Database = Postgres>,
{
    query
        .fetch_optional(exec)
        .await?
        .map(|r| decode::ecc(&r).and_then(Record::try_from))
        .transpose()
}

/// Runs a statement returning at most one whole `mids` row.
pub(super) async fn mid_row<'e, E>(
    exec: E,
    query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
) -> Result<Option<MidRow>, StoreError>
where
    E: Executor<'e, Database = Postgres>,
{
    query
        .fetch_optional(exec)
        .await?
        .map(|r| decode::mid(&r).and_then(MidRow::try_from))
        .transpose()
}

/// A count or position as PostgreSQL stores it (`BIGINT`), saturating.
pub(super) fn to_db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A count stored as `BIGINT`, read back.
pub(super) fn count(row: &PgRow, column: usize) -> Result<u64, StoreError> {
    let n: i64 = row.try_get(column)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
