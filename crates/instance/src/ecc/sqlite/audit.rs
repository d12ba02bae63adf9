//! The audit log on SQLite: ids given by the one writer (max + 1).

use super::*;
use crate::ecc::audit::{AuditFilter, AuditRow, AuditStore, NewAuditEntry, audit_columns};

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        id: r.get(0)?,
        entry: NewAuditEntry {
            at: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            peer: r.get(5)?,
            outcome: r.get(6)?,
            status: r.get(7)?,
            mid: r.get(8)?,
            output_id: r.get(9)?,
            topic: r.get(10)?,
            detail: r.get(11)?,
            rows: r.get(12)?,
            error: r.get(13)?,
        },
    })
}

/// Appends `e` in the writer's transaction; returns its id.
pub(super) fn insert_audit(c: &Connection, e: &NewAuditEntry) -> Result<i64, StoreError> {
    let id: i64 = c
        .prepare_cached("SELECT COALESCE(MAX(id), 0) + 1 FROM audit_log")?
        .query_row([], |r| r.get(0))?;
    c.prepare_cached(concat!(
        "INSERT INTO audit_log (id, ",
        audit_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))?
    .execute(params![
        id,
        e.at,
        e.actor,
        e.action,
        e.target,
        e.peer,
        e.outcome,
        e.status,
        e.mid,
        e.output_id,
        e.topic,
        e.detail,
        e.rows,
        e.error
    ])?;
    Ok(id)
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<i64, StoreError> {
        let e = entry.clone();
        self.writer.write(move |c| insert_audit(c, &e)).await
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        let (action, action_prefix) = filter.action_parts();
        let prefix_like = action_prefix.map(|p| format!("{}%", like_escaped(&p)));
        self.read(|c| {
            Ok(c.prepare_cached(concat!(
                "SELECT id, ",
                audit_columns!(),
                " FROM audit_log WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2) \
                 AND (?3 IS NULL OR action LIKE ?3 ESCAPE '\\') AND (?4 IS NULL OR mid = ?4) \
                 AND (?5 IS NULL OR at >= ?5) AND (?6 IS NULL OR at < ?6) AND (?7 IS NULL OR id < ?7) \
                 ORDER BY id DESC LIMIT ?8"
            ))?
            .query_map(
                params![
                    filter.actor,
                    action,
                    prefix_like,
                    filter.mid,
                    filter.since,
                    filter.until,
                    filter.before,
                    i64::from(filter.limit)
                ],
                audit_row,
            )?
            .collect::<Result<_, _>>()?)
        })
    }

    async fn purge_audit(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                // The newest entry stays whatever its age, so the next id (max + 1)
                // is never one given before.
                let deleted = c
                    .prepare_cached(
                        "DELETE FROM audit_log WHERE id IN \
                         (SELECT id FROM audit_log WHERE at < ? \
                          AND id < (SELECT MAX(id) FROM audit_log) ORDER BY id LIMIT ?)",
                    )?
                    .execute(params![before, i64::from(limit)])?;
                Ok(deleted as u64)
            })
            .await
    }
}

/// `s` with SQL `LIKE`'s wildcards escaped (by `\`).
fn like_escaped(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
