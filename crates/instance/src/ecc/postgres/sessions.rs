//! Dashboard sessions on PostgreSQL: what lets every node sharing the database accept
//! a session another node made.

use super::PgStore;
use crate::ecc::{DashboardSessionRow, DashboardSessionStore, StoreError};
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl DashboardSessionStore for PgStore {
    async fn insert_dashboard_session(&self, row: &DashboardSessionRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO dashboard_sessions (id_hash, csrf_token, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row.id_hash)
        .bind(&row.csrf_token)
        .bind(row.created_at)
        .bind(row.last_seen_at)
        .bind(row.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn get_dashboard_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<DashboardSessionRow>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id_hash, csrf_token, created_at, last_seen_at, expires_at \
             FROM dashboard_sessions WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(self.pool())
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(DashboardSessionRow {
            id_hash: row.try_get(0)?,
            csrf_token: row.try_get(1)?,
            created_at: row.try_get(2)?,
            last_seen_at: row.try_get(3)?,
            expires_at: row.try_get(4)?,
        }))
    }

    async fn touch_dashboard_session(
        &self,
        id_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE dashboard_sessions SET last_seen_at = $1, expires_at = $2 \
             WHERE id_hash = $3 AND expires_at > $1",
        )
        .bind(now)
        .bind(expires_at)
        .bind(id_hash)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    async fn delete_dashboard_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let deleted = sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    async fn purge_dashboard_sessions(&self, now: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }
}
