//! The MID registry and the instance's settings on SQLite: enrollment, MIDs, their
//! status, health and history, clusters.

use super::*;

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT value FROM settings WHERE key = ?")?
                    .query_row([key], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute([key, value])?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl RegistryStore for SqliteStore {
    async fn insert_enrollment_token(&self, t: &EnrollmentTokenRow) -> Result<(), StoreError> {
        let t = t.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO enrollment_tokens (token_hash, expires_at, auto_validate, note, created_at) VALUES (?, ?, ?, ?, ?)",
                )?
                .execute(params![t.token_hash, t.expires_at, t.auto_validate, t.note, t.created_at])?;
                Ok(())
            })
            .await
    }

    async fn enroll_mid(&self, token_hash: &str, mid: &MidRow) -> Result<MidRow, EnrollError> {
        let (token_hash, mid) = (token_hash.to_string(), mid.clone());
        self.writer
            .write(move |c| enroll(c, &token_hash, mid))
            .await
    }

    async fn get_mid(&self, key: MidKey<'_>) -> Result<Option<MidRow>, StoreError> {
        let (sql, value) = match key {
            MidKey::Id(id) => (
                concat!("SELECT ", mid_columns!(), " FROM mids WHERE id = ?"),
                id,
            ),
            MidKey::Name(name) => (
                concat!("SELECT ", mid_columns!(), " FROM mids WHERE name = ?"),
                name,
            ),
        };
        self.read(|c| mid_row(c, sql, [value]))
    }

    async fn list_mids(&self) -> Result<Vec<MidRow>, StoreError> {
        self.read(|c| {
            let rows = c
                .prepare_cached(concat!(
                    "SELECT ",
                    mid_columns!(),
                    " FROM mids ORDER BY name"
                ))?
                .query_map([], MidDbRow::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(MidRow::try_from).collect()
        })
    }

    async fn set_mid_status(
        &self,
        name: &str,
        only_from: &[MidStatus],
        status: MidStatus,
        reason: &str,
        now: i64,
    ) -> Result<Option<MidRow>, StoreError> {
        let (name, only_from, reason) = (name.to_string(), only_from.to_vec(), reason.to_string());
        self.writer
            .write(move |c| {
                let Some(current) = mid_row(c, concat!("SELECT ", mid_columns!(), " FROM mids WHERE name = ?"), [&name])?
                else {
                    return Ok(None);
                };
                if current.status == status
                    || !(only_from.is_empty() || only_from.contains(&current.status))
                {
                    return Ok(Some(current));
                }
                let row = mid_row(
                    c,
                    concat!("UPDATE mids SET status = ?, status_reason = ?, validated_at = CASE WHEN ? AND validated_at IS NULL THEN ? ELSE validated_at END WHERE id = ? RETURNING ", mid_columns!()),
                    params![status.as_str(), reason, (status == MidStatus::Up), now, current.id],
                )?;
                insert_history(c, &current.id, Some(current.status), status, &reason, now)?;
                Ok(row)
            })
            .await
    }

    async fn mid_history(&self, id: &str, limit: u32) -> Result<Vec<StatusChangeRow>, StoreError> {
        self.read(|c| {
            let rows = c
                .prepare_cached(
                    "SELECT id, at, from_status, to_status, reason FROM mid_status_history WHERE mid_id = ? ORDER BY at DESC, id DESC LIMIT ?",
                )?
                .query_map(params![id, i64::from(limit)], HistoryDbRow::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(StatusChangeRow::try_from).collect()
        })
    }

    async fn delete_mid(&self, id: &str, name: &str, now: i64) -> Result<u64, StoreError> {
        let (id, name) = (id.to_string(), name.to_string());
        self.writer
            .write(move |c| {
                let ended = c
                    .prepare_cached(
                        "UPDATE ecc SET state = 'error', error = ?, processed_at = ? WHERE queue = 'output' AND state = 'ready' AND agent = ?",
                    )?
                    .execute(params![
                        format!("MID {name} was deleted before it ran this"),
                        now,
                        format!("mid.server.{name}")
                    ])?;
                c.prepare_cached("DELETE FROM mid_status_history WHERE mid_id = ?")?
                    .execute([&id])?;
                c.prepare_cached("DELETE FROM mids WHERE id = ?")?
                    .execute([&id])?;
                Ok(ended as u64)
            })
            .await
    }

    async fn mark_mid_seen(&self, id: &str, now: i64) -> Result<(), StoreError> {
        let id = id.to_string();
        self.writer
            .write(move |c| {
                c.prepare_cached("UPDATE mids SET last_seen_at = ? WHERE id = ?")?
                    .execute(params![now, id])?;
                Ok(())
            })
            .await
    }

    async fn record_heartbeat(
        &self,
        id: &str,
        health: &MidHealth,
        declared: &MidProfile,
        session: Option<&str>,
        now: i64,
    ) -> Result<SessionChange, StoreError> {
        let (id, version) = (id.to_string(), health.version.clone());
        let (health, declared) = (json(health), json(declared));
        let session = session.map(str::to_string);
        self.writer
            .write(move |c| {
                let change = match &session {
                    None => SessionChange::Same,
                    Some(session) => {
                        let previous: Option<String> = c
                            .prepare_cached("SELECT session_id FROM mids WHERE id = ?")?
                            .query_row([&id], |r| r.get(0))
                            .optional()?
                            .flatten();
                        if previous.as_deref() == Some(session.as_str()) {
                            SessionChange::Same
                        } else {
                            SessionChange::New { previous }
                        }
                    }
                };
                c.prepare_cached(
                    "UPDATE mids SET last_seen_at = ?, health = ?, declared_profile = ?, version = ?, session_id = coalesce(?, session_id) WHERE id = ?",
                )?
                .execute(params![now, health, declared, version, session, id])?;
                Ok(change)
            })
            .await
    }

    async fn set_admin_profile(
        &self,
        name: &str,
        profile: Option<&ProfileUpdate>,
    ) -> Result<Option<MidRow>, StoreError> {
        let (name, profile) = (name.to_string(), profile.map(json));
        self.writer
            .write(move |c| {
                mid_row(
                    c,
                    concat!(
                        "UPDATE mids SET admin_profile = ? WHERE name = ? RETURNING ",
                        mid_columns!()
                    ),
                    params![profile, name],
                )
            })
            .await
    }

    async fn request_rekey(
        &self,
        name: &str,
        requested: bool,
    ) -> Result<Option<MidRow>, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                mid_row(
                    c,
                    concat!(
                        "UPDATE mids SET rekey_requested = ? WHERE name = ? RETURNING ",
                        mid_columns!()
                    ),
                    params![requested, name],
                )
            })
            .await
    }

    async fn rekey_mid(
        &self,
        id: &str,
        secret_hash: &str,
        public_key: &str,
    ) -> Result<(), StoreError> {
        let (id, secret_hash, public_key) = (
            id.to_string(),
            secret_hash.to_string(),
            public_key.to_string(),
        );
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE mids SET secret_hash = ?, public_key = ?, rekey_requested = FALSE WHERE id = ?",
                )?
                .execute([secret_hash, public_key, id])?;
                Ok(())
            })
            .await
    }

    async fn put_cluster(
        &self,
        name: &str,
        kind: ClusterKind,
        members: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let (name, members) = (name.to_string(), members.to_vec());
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO clusters (name, kind, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET kind = excluded.kind",
                )?
                .execute(params![name, kind.as_str(), now])?;
                c.prepare_cached("DELETE FROM cluster_members WHERE cluster = ?")?
                    .execute([&name])?;
                let mut add = c.prepare_cached(
                    "INSERT INTO cluster_members (cluster, mid_name, rank) VALUES (?, ?, ?)",
                )?;
                for (rank, member) in members.iter().enumerate() {
                    add.execute(params![name, member, (rank as i64 + 1)])?;
                }
                Ok(())
            })
            .await
    }

    async fn get_cluster(&self, name: &str) -> Result<Option<ClusterRow>, StoreError> {
        Ok(self.clusters(Some(name))?.into_iter().next())
    }

    async fn list_clusters(&self) -> Result<Vec<ClusterRow>, StoreError> {
        self.clusters(None)
    }

    async fn delete_cluster(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                c.prepare_cached("DELETE FROM cluster_members WHERE cluster = ?")?
                    .execute([&name])?;
                let deleted = c
                    .prepare_cached("DELETE FROM clusters WHERE name = ?")?
                    .execute([&name])?;
                Ok(deleted > 0)
            })
            .await
    }
}

impl SqliteStore {
    fn clusters(&self, only: Option<&str>) -> Result<Vec<ClusterRow>, StoreError> {
        let rows: Vec<(String, String, Option<String>)> = self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT c.name, c.kind, m.mid_name FROM clusters c LEFT JOIN cluster_members m ON m.cluster = c.name \
                 WHERE ? IS NULL OR c.name = ? ORDER BY c.name, m.rank",
            )?
            .query_map([only, only], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?)
        })?;
        crate::ecc::rows::clusters(rows)
    }
}
