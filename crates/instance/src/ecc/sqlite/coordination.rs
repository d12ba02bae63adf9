//! Node liveness, MID presence and named leases on SQLite. One node uses a SQLite
//! file, so these rows only ever name it; they are kept all the same, so the
//! dispatcher has one way of working on either backend.

use super::*;
use crate::ecc::{CoordinationStore, NodeRow, PresenceRow};

fn node_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRow> {
    Ok(NodeRow {
        id: r.get(0)?,
        name: r.get(1)?,
        started_at: r.get(2)?,
        last_seen: r.get(3)?,
    })
}

fn presence_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PresenceRow> {
    Ok(PresenceRow {
        mid_name: r.get(0)?,
        node: r.get(1)?,
        since: r.get(2)?,
    })
}

#[async_trait]
impl CoordinationStore for SqliteStore {
    async fn node_alive(&self, node: &NodeRow) -> Result<(), StoreError> {
        let node = node.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO instance_nodes (id, name, started_at, last_seen) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
                )?
                .execute(params![node.id, node.name, node.started_at, node.last_seen])?;
                Ok(())
            })
            .await
    }

    async fn live_nodes(&self, since: i64) -> Result<Vec<NodeRow>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, name, started_at, last_seen FROM instance_nodes \
                 WHERE last_seen >= ? ORDER BY started_at, id",
            )?;
            let rows = st.query_map([since], node_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn remove_node(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.writer
            .write(move |c| {
                c.prepare_cached("DELETE FROM mid_presence WHERE node = ?")?
                    .execute([&id])?;
                c.prepare_cached("DELETE FROM node_leases WHERE holder = ?")?
                    .execute([&id])?;
                c.prepare_cached("DELETE FROM instance_nodes WHERE id = ?")?
                    .execute([&id])?;
                Ok(())
            })
            .await
    }

    async fn set_presence(&self, mid: &str, node: &str, now: i64) -> Result<(), StoreError> {
        let (mid, node) = (mid.to_string(), node.to_string());
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO mid_presence (mid_name, node, since) VALUES (?, ?, ?) \
                     ON CONFLICT (mid_name) DO UPDATE SET node = excluded.node, since = excluded.since",
                )?
                .execute(params![mid, node, now])?;
                Ok(())
            })
            .await
    }

    async fn presence_of(&self, mid: &str) -> Result<Option<PresenceRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT mid_name, node, since FROM mid_presence WHERE mid_name = ?",
            )?
            .query_row([mid], presence_row)
            .optional()?)
        })
    }

    async fn clear_presence(&self, mid: &str, node: &str) -> Result<(), StoreError> {
        let (mid, node) = (mid.to_string(), node.to_string());
        self.writer
            .write(move |c| {
                c.prepare_cached("DELETE FROM mid_presence WHERE mid_name = ? AND node = ?")?
                    .execute([&mid, &node])?;
                Ok(())
            })
            .await
    }

    async fn clear_all_presence(&self) -> Result<(), StoreError> {
        self.writer
            .write(|c| {
                c.prepare_cached("DELETE FROM mid_presence")?.execute([])?;
                Ok(())
            })
            .await
    }

    async fn orphaned_mids(&self, since: i64) -> Result<Vec<PresenceRow>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT p.mid_name, p.node, p.since FROM mid_presence p \
                 JOIN mids m ON m.name = p.mid_name \
                 LEFT JOIN instance_nodes n ON n.id = p.node \
                 WHERE m.status = 'up' AND (n.id IS NULL OR n.last_seen < ?) \
                 ORDER BY p.mid_name",
            )?;
            let rows = st.query_map([since], presence_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.writer
            .write(move |c| {
                let changed = c
                    .prepare_cached(
                        "INSERT INTO node_leases (name, holder, until) VALUES (?, ?, ?) \
                         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                         WHERE node_leases.holder = excluded.holder OR node_leases.until < ?",
                    )?
                    .execute(params![name, holder, until, now])?;
                Ok(changed > 0)
            })
            .await
    }

    async fn lease_holder(&self, name: &str, now: i64) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT holder FROM node_leases WHERE name = ? AND until >= ?")?
                    .query_row(params![name, now], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.writer
            .write(move |c| {
                c.prepare_cached("DELETE FROM node_leases WHERE name = ? AND holder = ?")?
                    .execute([&name, &holder])?;
                Ok(())
            })
            .await
    }
}
