//! Several nodes on one PostgreSQL: node liveness, MID presence, named leases, and
//! wake-ups by `LISTEN/NOTIFY` on the channel [`CHANNEL`].
//!
//! A notification is delivered only after the transaction sending it commits, and to
//! every session listening on the database, so a node's announcement reaches the
//! others in well under a millisecond on one host. A lost listening connection is
//! re-established, and what was said meanwhile is lost: the listener says so
//! ([`Heard::Reconnected`]) and the dispatcher re-checks everything it waits on.

use super::PgStore;
use crate::ecc::{Announcement, CoordinationStore, Heard, NodeRow, PresenceRow, StoreError};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgListener, PgRow};
use std::time::Duration;
use tokio::sync::mpsc;

/// The notification channel (per database, so instances on other databases of the
/// same server never hear each other).
pub const CHANNEL: &str = "openmid";

/// Announcements queued for the dispatcher before the listener waits for it.
const HEARD_QUEUE: usize = 4096;

fn node_row(r: &PgRow) -> Result<NodeRow, StoreError> {
    Ok(NodeRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        started_at: r.try_get(2)?,
        last_seen: r.try_get(3)?,
    })
}

fn presence_row(r: &PgRow) -> Result<PresenceRow, StoreError> {
    Ok(PresenceRow {
        mid_name: r.try_get(0)?,
        node: r.try_get(1)?,
        since: r.try_get(2)?,
    })
}

#[async_trait]
impl CoordinationStore for PgStore {
    async fn node_alive(&self, node: &NodeRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO instance_nodes (id, name, started_at, last_seen) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
        )
        .bind(&node.id)
        .bind(&node.name)
        .bind(node.started_at)
        .bind(node.last_seen)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn live_nodes(&self, since: i64) -> Result<Vec<NodeRow>, StoreError> {
        sqlx::query(
            "SELECT id, name, started_at, last_seen FROM instance_nodes \
             WHERE last_seen >= $1 ORDER BY started_at, id",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(node_row)
        .collect()
    }

    async fn remove_node(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for sql in [
            "DELETE FROM mid_presence WHERE node = $1",
            "DELETE FROM node_leases WHERE holder = $1",
            "DELETE FROM instance_nodes WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_presence(&self, mid: &str, node: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mid_presence (mid_name, node, since) VALUES ($1, $2, $3) \
             ON CONFLICT (mid_name) DO UPDATE SET node = excluded.node, since = excluded.since",
        )
        .bind(mid)
        .bind(node)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn presence_of(&self, mid: &str) -> Result<Option<PresenceRow>, StoreError> {
        sqlx::query("SELECT mid_name, node, since FROM mid_presence WHERE mid_name = $1")
            .bind(mid)
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(presence_row)
            .transpose()
    }

    async fn clear_presence(&self, mid: &str, node: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM mid_presence WHERE mid_name = $1 AND node = $2")
            .bind(mid)
            .bind(node)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn clear_all_presence(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM mid_presence")
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn orphaned_mids(&self, since: i64) -> Result<Vec<PresenceRow>, StoreError> {
        sqlx::query(
            "SELECT p.mid_name, p.node, p.since FROM mid_presence p \
             JOIN mids m ON m.name = p.mid_name \
             LEFT JOIN instance_nodes n ON n.id = p.node \
             WHERE m.status = 'up' AND (n.id IS NULL OR n.last_seen < $1) \
             ORDER BY p.mid_name",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(presence_row)
        .collect()
    }

    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "INSERT INTO node_leases (name, holder, until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE node_leases.holder = excluded.holder OR node_leases.until < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    async fn lease_holder(&self, name: &str, now: i64) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT holder FROM node_leases WHERE name = $1 AND until >= $2")
                .bind(name)
                .bind(now)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM node_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn announce(&self, from_node: &str, batch: &[Announcement]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let payloads: Vec<String> = batch.iter().map(|a| a.encode(from_node)).collect();
        sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(CHANNEL)
            .bind(&payloads)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn listen(&self) -> Result<Option<mpsc::Receiver<Heard>>, StoreError> {
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen(CHANNEL).await?;
        let (tx, rx) = mpsc::channel(HEARD_QUEUE);
        let pool = self.pool().clone();
        tokio::spawn(async move {
            loop {
                let heard = match listener.try_recv().await {
                    Ok(Some(n)) => match Announcement::decode(n.payload()) {
                        Some((node, said)) => Heard::Said(node, said),
                        None => continue,
                    },
                    // The connection was lost; the next call connects again.
                    Ok(None) => {
                        tracing::warn!("lost the connection announcements arrive on: reconnecting");
                        Heard::Reconnected
                    }
                    Err(_) if pool.is_closed() => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for other nodes failed: retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                if tx.send(heard).await.is_err() {
                    return;
                }
            }
        });
        Ok(Some(rx))
    }
}
