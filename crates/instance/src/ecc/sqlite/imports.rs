//! Data sources and import sets on SQLite.

use super::*;
use crate::ecc::{DataSourceRow, ImportSetRow, ImportStore};

/// `SELECT` of every data source column, then `$tail`.
macro_rules! select_sources {
    ($tail:literal) => {
        concat!(
            "SELECT name, spec, created_at, updated_at, next_run_at, schedule_anchor, marker_value, last_import_set FROM data_sources ",
            $tail
        )
    };
}

/// `SELECT` of every import set column, then `$tail`.
macro_rules! select_sets {
    ($tail:literal) => {
        concat!(
            "SELECT id, source, kind, trigger_kind, output_id, state, started_at, finished_at, expires_at, row_count, error_count, columns, marker_from, marker_to, detail FROM import_sets ",
            $tail
        )
    };
}

fn source_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DataSourceRow> {
    Ok(DataSourceRow {
        name: r.get(0)?,
        spec: r.get(1)?,
        created_at: r.get(2)?,
        updated_at: r.get(3)?,
        next_run_at: r.get(4)?,
        schedule_anchor: r.get(5)?,
        marker_value: r.get(6)?,
        last_import_set: r.get(7)?,
    })
}

fn set_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImportSetRow> {
    Ok(ImportSetRow {
        id: r.get(0)?,
        source: r.get(1)?,
        kind: r.get(2)?,
        trigger: r.get(3)?,
        output_id: r.get(4)?,
        state: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        expires_at: r.get(8)?,
        rows: u64::try_from(r.get::<_, i64>(9)?).unwrap_or(0),
        errors: u64::try_from(r.get::<_, i64>(10)?).unwrap_or(0),
        columns: r.get(11)?,
        marker_from: r.get(12)?,
        marker_to: r.get(13)?,
        detail: r.get(14)?,
    })
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl ImportStore for SqliteStore {
    async fn put_data_source(&self, row: &DataSourceRow) -> Result<DataSourceRow, StoreError> {
        let row = row.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO data_sources (name, spec, created_at, updated_at, next_run_at, schedule_anchor, marker_value) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
                     spec = excluded.spec, updated_at = excluded.updated_at, \
                     next_run_at = excluded.next_run_at, schedule_anchor = excluded.schedule_anchor, \
                     marker_value = excluded.marker_value",
                )?
                .execute(params![
                    row.name,
                    row.spec,
                    row.created_at,
                    row.updated_at,
                    row.next_run_at,
                    row.schedule_anchor,
                    row.marker_value
                ])?;
                Ok(c.prepare_cached(select_sources!("WHERE name = ?"))?
                    .query_row([&row.name], source_row)?)
            })
            .await
    }

    async fn get_data_source(&self, name: &str) -> Result<Option<DataSourceRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_sources!("WHERE name = ?"))?
                .query_row([name], source_row)
                .optional()?)
        })
    }

    async fn list_data_sources(&self) -> Result<Vec<DataSourceRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_sources!("ORDER BY name"))?
                .query_map([], source_row)?
                .collect::<Result<_, _>>()?)
        })
    }

    async fn delete_data_source(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                Ok(c.prepare_cached("DELETE FROM data_sources WHERE name = ?")?
                    .execute([&name])?
                    > 0)
            })
            .await
    }

    async fn due_data_sources(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<DataSourceRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_sources!(
                "WHERE next_run_at IS NOT NULL AND next_run_at <= ? ORDER BY next_run_at LIMIT ?"
            ))?
            .query_map(params![now, i64::from(limit)], source_row)?
            .collect::<Result<_, _>>()?)
        })
    }

    async fn reschedule_data_source(
        &self,
        name: &str,
        expected: Option<i64>,
        next_run_at: Option<i64>,
        anchor: Option<i64>,
    ) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                Ok(c.prepare_cached(
                    "UPDATE data_sources SET next_run_at = ?, schedule_anchor = COALESCE(?, schedule_anchor) \
                     WHERE name = ? AND next_run_at IS ?",
                )?
                .execute(params![next_run_at, anchor, name, expected])?
                    > 0)
            })
            .await
    }

    async fn insert_import_set(&self, row: &ImportSetRow) -> Result<(), StoreError> {
        let row = row.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO import_sets (id, source, kind, trigger_kind, output_id, state, started_at, marker_from) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    row.id,
                    row.source,
                    row.kind,
                    row.trigger,
                    row.output_id,
                    row.state,
                    row.started_at,
                    row.marker_from
                ])?;
                c.prepare_cached("UPDATE data_sources SET last_import_set = ? WHERE name = ?")?
                    .execute(params![row.id, row.source])?;
                Ok(())
            })
            .await
    }

    async fn get_import_set(&self, id: &str) -> Result<Option<ImportSetRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_sets!("WHERE id = ?"))?
                .query_row([id], set_row)
                .optional()?)
        })
    }

    async fn list_import_sets(
        &self,
        source: Option<&str>,
        state: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ImportSetRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_sets!(
                "WHERE (?1 IS NULL OR source = ?1) AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR started_at < ?3) \
                 ORDER BY started_at DESC, id DESC LIMIT ?4"
            ))?
            .query_map(params![source, state, before, i64::from(limit)], set_row)?
            .collect::<Result<_, _>>()?)
        })
    }

    async fn finish_import_set(
        &self,
        row: &ImportSetRow,
        marker_value: Option<&str>,
    ) -> Result<bool, StoreError> {
        let row = row.clone();
        let marker_value = marker_value.map(str::to_string);
        self.writer
            .write(move |c| {
                let changed = c
                    .prepare_cached(
                        "UPDATE import_sets SET state = ?, finished_at = ?, expires_at = ?, row_count = ?, error_count = ?, \
                         columns = ?, marker_to = ?, detail = ? WHERE id = ? AND state = 'running'",
                    )?
                    .execute(params![
                        row.state,
                        row.finished_at,
                        row.expires_at,
                        count(row.rows),
                        count(row.errors),
                        row.columns,
                        row.marker_to,
                        row.detail,
                        row.id
                    ])?
                    > 0;
                if changed && let Some(marker) = marker_value {
                    c.prepare_cached("UPDATE data_sources SET marker_value = ? WHERE name = ?")?
                        .execute(params![marker, row.source])?;
                }
                Ok(changed)
            })
            .await
    }

    async fn purge_import_sets(&self, now: i64, limit: u32) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                let expired: Vec<(String, String)> = c
                    .prepare_cached(
                        "SELECT id, output_id FROM import_sets WHERE expires_at IS NOT NULL AND expires_at < ? ORDER BY expires_at LIMIT ?",
                    )?
                    .query_map(params![now, i64::from(limit)], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                let mut gone = 0;
                for (id, output) in &expired {
                    c.prepare_cached("DELETE FROM ecc WHERE id = ? OR (queue = 'input' AND response_to = ?)")?
                        .execute([output, output])?;
                    output_chunks::purge(c, output)?;
                    gone += c
                        .prepare_cached("DELETE FROM import_sets WHERE id = ?")?
                        .execute([id])? as u64;
                }
                Ok(gone)
            })
            .await
    }
}
