//! The audit log on PostgreSQL: ids given as max + 1 under a transaction-scoped
//! advisory lock, so several instance nodes never give one twice and ids grow in
//! commit order (a page cursor never skips an entry committed late).

use super::PgStore;
use crate::ecc::StoreError;
use crate::ecc::audit::{AuditFilter, AuditRow, AuditStore, NewAuditEntry, audit_columns};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

/// The advisory lock audit ids are given under.
const AUDIT_IDS: i64 = 0x006f_7065_6e61_7564;

fn audit_row(r: &PgRow) -> Result<AuditRow, StoreError> {
    Ok(AuditRow {
        id: r.try_get(0)?,
        entry: NewAuditEntry {
            at: r.try_get(1)?,
            actor: r.try_get(2)?,
            action: r.try_get(3)?,
            target: r.try_get(4)?,
            peer: r.try_get(5)?,
            outcome: r.try_get(6)?,
            status: r.try_get(7)?,
            mid: r.try_get(8)?,
            output_id: r.try_get(9)?,
            topic: r.try_get(10)?,
            detail: r.try_get(11)?,
            rows: r.try_get(12)?,
            error: r.try_get(13)?,
        },
    })
}

/// Appends `e` in the transaction `tx` (taking the ids' advisory lock until it ends);
/// returns its id.
pub(super) async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    e: &NewAuditEntry,
) -> Result<i64, StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(AUDIT_IDS)
        .execute(&mut **tx)
        .await?;
    let id: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM audit_log")
        .fetch_one(&mut **tx)
        .await?;
    sqlx::query(concat!(
        "INSERT INTO audit_log (id, ",
        audit_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    ))
    .bind(id)
    .bind(e.at)
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.target)
    .bind(&e.peer)
    .bind(&e.outcome)
    .bind(e.status)
    .bind(&e.mid)
    .bind(&e.output_id)
    .bind(&e.topic)
    .bind(&e.detail)
    .bind(e.rows)
    .bind(&e.error)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// `s` with SQL `LIKE`'s wildcards escaped (by `\`).
fn like_escaped(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, e: &NewAuditEntry) -> Result<i64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let id = insert_audit(&mut tx, e).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let (action, action_prefix) = filter.action_parts();
        let prefix_like = action_prefix.map(|p| format!("{}%", like_escaped(&p)));
        sqlx::query(concat!(
            "SELECT id, ",
            audit_columns!(),
            " FROM audit_log WHERE ($1::TEXT IS NULL OR actor = $1) AND ($2::TEXT IS NULL OR action = $2) \
             AND ($3::TEXT IS NULL OR action LIKE $3 ESCAPE '\\') AND ($4::TEXT IS NULL OR mid = $4) \
             AND ($5::BIGINT IS NULL OR at >= $5) AND ($6::BIGINT IS NULL OR at < $6) \
             AND ($7::BIGINT IS NULL OR id < $7) ORDER BY id DESC LIMIT $8"
        ))
        .bind(&filter.actor)
        .bind(action)
        .bind(prefix_like)
        .bind(&filter.mid)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.before)
        .bind(i64::from(filter.limit))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(audit_row)
        .collect()
    }

    async fn purge_audit(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        // The newest entry stays whatever its age, so the next id (max + 1) is never
        // one given before.
        Ok(sqlx::query(
            "DELETE FROM audit_log WHERE id IN \
             (SELECT id FROM audit_log WHERE at < $1 \
              AND id < (SELECT MAX(id) FROM audit_log) ORDER BY id LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(self.pool())
        .await?
        .rows_affected())
    }
}
