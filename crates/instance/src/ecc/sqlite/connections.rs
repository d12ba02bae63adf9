//! Credentials and aliases on SQLite.

use super::*;

/// `SELECT` of every credential column, then `$tail`.
macro_rules! select_credentials {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, description, kind, shown, sealed, key_id, created_at, updated_at FROM credentials ",
            $tail
        )
    };
}

/// `SELECT` of every alias column, then `$tail`.
macro_rules! select_aliases {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, credential, spec, created_at, updated_at FROM aliases ",
            $tail
        )
    };
}

#[async_trait]
impl ConnectionStore for SqliteStore {
    async fn put_credential(&self, row: &CredentialRow) -> Result<CredentialRow, StoreError> {
        let row = row.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO credentials (id, name, description, kind, shown, sealed, key_id, created_at, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
                     description = excluded.description, kind = excluded.kind, shown = excluded.shown, \
                     sealed = excluded.sealed, key_id = excluded.key_id, updated_at = excluded.updated_at",
                )?
                .execute(params![
                    row.id,
                    row.name,
                    row.description,
                    row.kind,
                    row.shown,
                    row.sealed,
                    row.key_id,
                    row.created_at,
                    row.updated_at
                ])?;
                Ok(c.prepare_cached(select_credentials!("WHERE name = ?"))?
                    .query_row([&row.name], credential_row)?)
            })
            .await
    }

    async fn get_credential(
        &self,
        key: CredentialKey<'_>,
    ) -> Result<Option<CredentialRow>, StoreError> {
        let (sql, value) = match key {
            CredentialKey::Id(id) => (select_credentials!("WHERE id = ?"), id),
            CredentialKey::Name(name) => (select_credentials!("WHERE name = ?"), name),
        };
        self.read(|c| {
            Ok(c.prepare_cached(sql)?
                .query_row([value], credential_row)
                .optional()?)
        })
    }

    async fn list_credentials(&self) -> Result<Vec<CredentialRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_credentials!("ORDER BY name"))?
                .query_map([], credential_row)?
                .collect::<Result<_, _>>()?)
        })
    }

    async fn delete_credential(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                let users: Vec<String> = c
                    .prepare_cached("SELECT name FROM aliases WHERE credential = ? ORDER BY name")?
                    .query_map([&name], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                if !users.is_empty() {
                    return Err(StoreError::InUse(format!(
                        "credential `{name}` is used by alias(es) {}: change or delete them first",
                        users.join(", ")
                    )));
                }
                let deleted = c
                    .prepare_cached("DELETE FROM credentials WHERE name = ?")?
                    .execute([&name])?;
                Ok(deleted > 0)
            })
            .await
    }

    async fn put_alias(&self, row: &AliasRow) -> Result<AliasRow, StoreError> {
        let row = row.clone();
        self.writer
            .write(move |c| {
                if let Some(credential) = &row.credential {
                    let found: Option<String> = c
                        .prepare_cached("SELECT id FROM credentials WHERE name = ?")?
                        .query_row([credential], |r| r.get(0))
                        .optional()?;
                    if found.is_none() {
                        return Err(StoreError::MissingCredential(credential.clone()));
                    }
                }
                c.prepare_cached(
                    "INSERT INTO aliases (id, name, credential, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (name) DO UPDATE SET credential = excluded.credential, spec = excluded.spec, \
                     updated_at = excluded.updated_at",
                )?
                .execute(params![
                    row.id,
                    row.name,
                    row.credential,
                    row.spec,
                    row.created_at,
                    row.updated_at
                ])?;
                Ok(c.prepare_cached(select_aliases!("WHERE name = ?"))?
                    .query_row([&row.name], alias_row)?)
            })
            .await
    }

    async fn get_alias(&self, name: &str) -> Result<Option<AliasRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_aliases!("WHERE name = ?"))?
                .query_row([name], alias_row)
                .optional()?)
        })
    }

    async fn list_aliases(&self) -> Result<Vec<AliasRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_aliases!("ORDER BY name"))?
                .query_map([], alias_row)?
                .collect::<Result<_, _>>()?)
        })
    }

    async fn delete_alias(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                let deleted = c
                    .prepare_cached("DELETE FROM aliases WHERE name = ?")?
                    .execute([&name])?;
                Ok(deleted > 0)
            })
            .await
    }
}
