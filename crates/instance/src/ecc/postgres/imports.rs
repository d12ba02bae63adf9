//! Data sources and import sets on PostgreSQL.

use super::{PgStore, output_chunks, to_db};
use crate::ecc::{DataSourceRow, ImportSetRow, ImportStore, StoreError};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

const SOURCE_COLUMNS: &str = "name, spec, created_at, updated_at, next_run_at, schedule_anchor, marker_value, last_import_set";
const SET_COLUMNS: &str = "id, source, kind, trigger_kind, output_id, state, started_at, finished_at, expires_at, row_count, error_count, columns, marker_from, marker_to, detail";

fn source_row(r: &PgRow) -> Result<DataSourceRow, StoreError> {
    Ok(DataSourceRow {
        name: r.try_get(0)?,
        spec: r.try_get(1)?,
        created_at: r.try_get(2)?,
        updated_at: r.try_get(3)?,
        next_run_at: r.try_get(4)?,
        schedule_anchor: r.try_get(5)?,
        marker_value: r.try_get(6)?,
        last_import_set: r.try_get(7)?,
    })
}

fn set_row(r: &PgRow) -> Result<ImportSetRow, StoreError> {
    Ok(ImportSetRow {
        id: r.try_get(0)?,
        source: r.try_get(1)?,
        kind: r.try_get(2)?,
        trigger: r.try_get(3)?,
        output_id: r.try_get(4)?,
        state: r.try_get(5)?,
        started_at: r.try_get(6)?,
        finished_at: r.try_get(7)?,
        expires_at: r.try_get(8)?,
        rows: super::count(r, 9)?,
        errors: super::count(r, 10)?,
        columns: r.try_get(11)?,
        marker_from: r.try_get(12)?,
        marker_to: r.try_get(13)?,
        detail: r.try_get(14)?,
    })
}

#[async_trait]
impl ImportStore for PgStore {
    async fn put_data_source(&self, row: &DataSourceRow) -> Result<DataSourceRow, StoreError> {
        let saved = sqlx::query(&format!(
            "INSERT INTO data_sources (name, spec, created_at, updated_at, next_run_at, schedule_anchor, marker_value) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET \
             spec = excluded.spec, updated_at = excluded.updated_at, \
             next_run_at = excluded.next_run_at, schedule_anchor = excluded.schedule_anchor, \
             marker_value = excluded.marker_value RETURNING {SOURCE_COLUMNS}"
        ))
        .bind(&row.name)
        .bind(&row.spec)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(row.next_run_at)
        .bind(row.schedule_anchor)
        .bind(&row.marker_value)
        .fetch_one(self.pool())
        .await?;
        source_row(&saved)
    }

    async fn get_data_source(&self, name: &str) -> Result<Option<DataSourceRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SOURCE_COLUMNS} FROM data_sources WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(source_row)
        .transpose()
    }

    async fn list_data_sources(&self) -> Result<Vec<DataSourceRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SOURCE_COLUMNS} FROM data_sources ORDER BY name"
        ))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(source_row)
        .collect()
    }

    async fn delete_data_source(&self, name: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM data_sources WHERE name = $1")
            .bind(name)
            .execute(self.pool())
            .await?
            .rows_affected()
            > 0)
    }

    async fn due_data_sources(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<DataSourceRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SOURCE_COLUMNS} FROM data_sources WHERE next_run_at IS NOT NULL AND next_run_at <= $1 ORDER BY next_run_at LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(source_row)
        .collect()
    }

    async fn reschedule_data_source(
        &self,
        name: &str,
        expected: Option<i64>,
        next_run_at: Option<i64>,
        anchor: Option<i64>,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE data_sources SET next_run_at = $1, schedule_anchor = COALESCE($2, schedule_anchor) \
             WHERE name = $3 AND next_run_at IS NOT DISTINCT FROM $4",
        )
        .bind(next_run_at)
        .bind(anchor)
        .bind(name)
        .bind(expected)
        .execute(self.pool())
        .await?
        .rows_affected()
            > 0)
    }

    async fn insert_import_set(&self, row: &ImportSetRow) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO import_sets (id, source, kind, trigger_kind, output_id, state, started_at, marker_from) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&row.id)
        .bind(&row.source)
        .bind(&row.kind)
        .bind(&row.trigger)
        .bind(&row.output_id)
        .bind(&row.state)
        .bind(row.started_at)
        .bind(&row.marker_from)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE data_sources SET last_import_set = $1 WHERE name = $2")
            .bind(&row.id)
            .bind(&row.source)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_import_set(&self, id: &str) -> Result<Option<ImportSetRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SET_COLUMNS} FROM import_sets WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(set_row)
        .transpose()
    }

    async fn list_import_sets(
        &self,
        source: Option<&str>,
        state: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ImportSetRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SET_COLUMNS} FROM import_sets WHERE ($1::TEXT IS NULL OR source = $1) AND ($2::TEXT IS NULL OR state = $2) \
             AND ($3::BIGINT IS NULL OR started_at < $3) ORDER BY started_at DESC, id DESC LIMIT $4"
        ))
        .bind(source)
        .bind(state)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(set_row)
        .collect()
    }

    async fn finish_import_set(
        &self,
        row: &ImportSetRow,
        marker_value: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let changed = sqlx::query(
            "UPDATE import_sets SET state = $1, finished_at = $2, expires_at = $3, row_count = $4, error_count = $5, \
             columns = $6, marker_to = $7, detail = $8 WHERE id = $9 AND state = 'running'",
        )
        .bind(&row.state)
        .bind(row.finished_at)
        .bind(row.expires_at)
        .bind(to_db(row.rows))
        .bind(to_db(row.errors))
        .bind(&row.columns)
        .bind(&row.marker_to)
        .bind(&row.detail)
        .bind(&row.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if changed && let Some(marker) = marker_value {
            sqlx::query("UPDATE data_sources SET marker_value = $1 WHERE name = $2")
                .bind(marker)
                .bind(&row.source)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn purge_import_sets(&self, now: i64, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let expired = sqlx::query(
            "SELECT id, output_id FROM import_sets WHERE expires_at IS NOT NULL AND expires_at < $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut gone = 0;
        for row in &expired {
            let (id, output): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            sqlx::query("DELETE FROM ecc WHERE id = $1 OR (queue = 'input' AND response_to = $1)")
                .bind(&output)
                .execute(&mut *tx)
                .await?;
            output_chunks::purge(&mut tx, &output).await?;
            gone += sqlx::query("DELETE FROM import_sets WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(gone)
    }
}
