//! Dashboard sessions on SQLite.

use super::*;
use crate::ecc::{DashboardSessionRow, DashboardSessionStore};

#[async_trait]
impl DashboardSessionStore for SqliteStore {
    async fn insert_dashboard_session(&self, row: &DashboardSessionRow) -> Result<(), StoreError> {
        let row = row.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO dashboard_sessions (id_hash, csrf_token, created_at, last_seen_at, expires_at) \
                     VALUES (?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    row.id_hash,
                    row.csrf_token,
                    row.created_at,
                    row.last_seen_at,
                    row.expires_at
                ])?;
                Ok(())
            })
            .await
    }

    async fn get_dashboard_session(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<DashboardSessionRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT id_hash, csrf_token, created_at, last_seen_at, expires_at \
                 FROM dashboard_sessions WHERE id_hash = ? AND expires_at > ?",
            )?
            .query_row(params![id_hash, now], |r| {
                Ok(DashboardSessionRow {
                    id_hash: r.get(0)?,
                    csrf_token: r.get(1)?,
                    created_at: r.get(2)?,
                    last_seen_at: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            })
            .optional()?)
        })
    }

    async fn touch_dashboard_session(
        &self,
        id_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let id_hash = id_hash.to_string();
        self.writer
            .write(move |c| {
                Ok(c.prepare_cached(
                    "UPDATE dashboard_sessions SET last_seen_at = ?, expires_at = ? \
                     WHERE id_hash = ? AND expires_at > ?",
                )?
                .execute(params![now, expires_at, id_hash, now])?
                    > 0)
            })
            .await
    }

    async fn delete_dashboard_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let id_hash = id_hash.to_string();
        self.writer
            .write(move |c| {
                Ok(
                    c.prepare_cached("DELETE FROM dashboard_sessions WHERE id_hash = ?")?
                        .execute([id_hash])?
                        > 0,
                )
            })
            .await
    }

    async fn purge_dashboard_sessions(&self, now: i64) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                Ok(
                    c.prepare_cached("DELETE FROM dashboard_sessions WHERE expires_at <= ?")?
                        .execute([now])? as u64,
                )
            })
            .await
    }
}
