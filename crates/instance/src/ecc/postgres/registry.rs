//! The MID registry and the instance's settings on PostgreSQL: enrollment, MIDs,
//! their status, health and history, clusters. A decision on a MID's row (its
//! enrollment, a status change, a new session) is taken under a lock on that row.

use super::{PgStore, decode, mid_row};
use crate::ecc::rows::mid_columns;
use crate::ecc::{
    ClusterRow, EnrollError, EnrollmentTokenRow, MidKey, MidRow, RegistryStore, SessionChange,
    SettingsStore, StatusChangeRow, StoreError, rules,
};
use async_trait::async_trait;
use openmid_proto::api::{ClusterKind, MidHealth, ProfileUpdate};
use openmid_proto::mid::{MidProfile, MidStatus};
use sqlx::{PgConnection, Row};

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

pub(super) async fn insert_history(
    c: &mut PgConnection,
    mid_id: &str,
    from: Option<MidStatus>,
    to: MidStatus,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO mid_status_history (id, mid_id, at, from_status, to_status, reason) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(mid_id)
    .bind(now)
    .bind(from.map(MidStatus::as_str))
    .bind(to.as_str())
    .bind(reason)
    .execute(c)
    .await?;
    Ok(())
}

#[async_trait]
impl SettingsStore for PgStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[async_trait]
impl RegistryStore for PgStore {
    async fn insert_enrollment_token(&self, t: &EnrollmentTokenRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO enrollment_tokens (token_hash, expires_at, auto_validate, note, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&t.token_hash)
        .bind(t.expires_at)
        .bind(t.auto_validate)
        .bind(&t.note)
        .bind(t.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn enroll_mid(&self, token_hash: &str, mid: &MidRow) -> Result<MidRow, EnrollError> {
        let mut tx = self.pool().begin().await.map_err(StoreError::from)?;
        // The token's row is locked: two MIDs enrolling with one token at once get one
        // enrollment between them.
        let auto_validate: Option<bool> = sqlx::query_scalar(
            "SELECT auto_validate FROM enrollment_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 FOR UPDATE",
        )
        .bind(token_hash)
        .bind(mid.enrolled_at)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let taken: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM mids WHERE name = $1)")
            .bind(&mid.name)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let row = rules::enrollment(auto_validate, taken, mid.clone())?;
        sqlx::query(
            "UPDATE enrollment_tokens SET used_by = $1, used_at = $2 WHERE token_hash = $3",
        )
        .bind(&row.id)
        .bind(row.enrolled_at)
        .bind(token_hash)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let inserted = sqlx::query(
            "INSERT INTO mids (id, name, secret_hash, public_key, status, status_reason, version, hostname, protocol_version, enrolled_at, validated_at, last_seen_at, declared_profile) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (name) DO NOTHING",
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
        .bind(json(&row.declared_profile))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if inserted.rows_affected() == 0 {
            // Another node enrolled this name since the check.
            return Err(EnrollError::NameTaken(row.name));
        }
        insert_history(
            &mut tx,
            &row.id,
            None,
            row.status,
            row.status_reason.as_deref().unwrap_or("enrolled"),
            row.enrolled_at,
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(row)
    }

    async fn get_mid(&self, key: MidKey<'_>) -> Result<Option<MidRow>, StoreError> {
        let (column, value) = match key {
            MidKey::Id(id) => ("id", id),
            MidKey::Name(name) => ("name", name),
        };
        let sql = format!("SELECT {} FROM mids WHERE {column} = $1", mid_columns!());
        mid_row(self.pool(), sqlx::query(&sql).bind(value)).await
    }

    async fn list_mids(&self) -> Result<Vec<MidRow>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            mid_columns!(),
            " FROM mids ORDER BY name"
        ))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| decode::mid(r).and_then(MidRow::try_from))
        .collect()
    }

    async fn set_mid_status(
        &self,
        name: &str,
        only_from: &[MidStatus],
        status: MidStatus,
        reason: &str,
        now: i64,
    ) -> Result<Option<MidRow>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let Some(current) = mid_row(
            &mut *tx,
            sqlx::query(concat!(
                "SELECT ",
                mid_columns!(),
                " FROM mids WHERE name = $1 FOR UPDATE"
            ))
            .bind(name),
        )
        .await?
        else {
            return Ok(None);
        };
        if current.status == status
            || !(only_from.is_empty() || only_from.contains(&current.status))
        {
            return Ok(Some(current));
        }
        let row = mid_row(
            &mut *tx,
            sqlx::query(concat!(
                "UPDATE mids SET status = $1, status_reason = $2, validated_at = CASE WHEN $3 AND validated_at IS NULL THEN $4 ELSE validated_at END WHERE id = $5 RETURNING ",
                mid_columns!()
            ))
            .bind(status.as_str())
            .bind(reason)
            .bind(status == MidStatus::Up)
            .bind(now)
            .bind(&current.id),
        )
        .await?;
        insert_history(
            &mut tx,
            &current.id,
            Some(current.status),
            status,
            reason,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn mid_history(&self, id: &str, limit: u32) -> Result<Vec<StatusChangeRow>, StoreError> {
        sqlx::query(
            "SELECT id, at, from_status, to_status, reason FROM mid_status_history WHERE mid_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(id)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| decode::history(r).and_then(StatusChangeRow::try_from))
        .collect()
    }

    async fn delete_mid(&self, id: &str, name: &str, now: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let ended = sqlx::query(
            "UPDATE ecc SET state = 'error', error = $1, processed_at = $2 WHERE queue = 'output' AND state = 'ready' AND agent = $3",
        )
        .bind(format!("MID {name} was deleted before it ran this"))
        .bind(now)
        .bind(format!("mid.server.{name}"))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM mid_status_history WHERE mid_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM mids WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ended)
    }

    async fn mark_mid_seen(&self, id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE mids SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn record_heartbeat(
        &self,
        id: &str,
        health: &MidHealth,
        declared: &MidProfile,
        session: Option<&str>,
        now: i64,
    ) -> Result<SessionChange, StoreError> {
        let mut tx = self.pool().begin().await?;
        let change = match session {
            None => SessionChange::Same,
            Some(session) => {
                let previous: Option<Option<String>> =
                    sqlx::query_scalar("SELECT session_id FROM mids WHERE id = $1 FOR UPDATE")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let previous = previous.flatten();
                if previous.as_deref() == Some(session) {
                    SessionChange::Same
                } else {
                    SessionChange::New { previous }
                }
            }
        };
        sqlx::query(
            "UPDATE mids SET last_seen_at = $1, health = $2, declared_profile = $3, version = $4, session_id = coalesce($5, session_id) WHERE id = $6",
        )
        .bind(now)
        .bind(json(health))
        .bind(json(declared))
        .bind(&health.version)
        .bind(session)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(change)
    }

    async fn set_admin_profile(
        &self,
        name: &str,
        profile: Option<&ProfileUpdate>,
    ) -> Result<Option<MidRow>, StoreError> {
        mid_row(
            self.pool(),
            sqlx::query(concat!(
                "UPDATE mids SET admin_profile = $1 WHERE name = $2 RETURNING ",
                mid_columns!()
            ))
            .bind(profile.map(json))
            .bind(name),
        )
        .await
    }

    async fn request_rekey(
        &self,
        name: &str,
        requested: bool,
    ) -> Result<Option<MidRow>, StoreError> {
        mid_row(
            self.pool(),
            sqlx::query(concat!(
                "UPDATE mids SET rekey_requested = $1 WHERE name = $2 RETURNING ",
                mid_columns!()
            ))
            .bind(requested)
            .bind(name),
        )
        .await
    }

    async fn rekey_mid(
        &self,
        id: &str,
        secret_hash: &str,
        public_key: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mids SET secret_hash = $1, public_key = $2, rekey_requested = FALSE WHERE id = $3",
        )
        .bind(secret_hash)
        .bind(public_key)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn put_cluster(
        &self,
        name: &str,
        kind: ClusterKind,
        members: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO clusters (name, kind, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET kind = excluded.kind",
        )
        .bind(name)
        .bind(kind.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM cluster_members WHERE cluster = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        for (rank, member) in members.iter().enumerate() {
            sqlx::query(
                "INSERT INTO cluster_members (cluster, mid_name, rank) VALUES ($1, $2, $3)",
            )
            .bind(name)
            .bind(member)
            .bind(rank as i64 + 1)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_cluster(&self, name: &str) -> Result<Option<ClusterRow>, StoreError> {
        Ok(self.clusters(Some(name)).await?.into_iter().next())
    }

    async fn list_clusters(&self) -> Result<Vec<ClusterRow>, StoreError> {
        self.clusters(None).await
    }

    async fn delete_cluster(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM cluster_members WHERE cluster = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM clusters WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }
}

impl PgStore {
    async fn clusters(&self, only: Option<&str>) -> Result<Vec<ClusterRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.name, c.kind, m.mid_name FROM clusters c LEFT JOIN cluster_members m ON m.cluster = c.name \
             WHERE $1::TEXT IS NULL OR c.name = $1 ORDER BY c.name, m.rank",
        )
        .bind(only)
        .fetch_all(self.pool())
        .await?;
        let rows = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<Vec<(String, String, Option<String>)>, StoreError>>()?;
        crate::ecc::rows::clusters(rows)
    }
}
