//! Credentials and aliases on PostgreSQL. An alias and the credential it names are
//! checked under a lock on the credential's row, so a delete and a new alias using
//! it cannot both succeed.

use super::{PgStore, decode};
use crate::ecc::{AliasRow, ConnectionStore, CredentialKey, CredentialRow, StoreError};
use async_trait::async_trait;

const CREDENTIAL_COLUMNS: &str =
    "id, name, description, kind, shown, sealed, key_id, created_at, updated_at";
const ALIAS_COLUMNS: &str = "id, name, credential, spec, created_at, updated_at";

#[async_trait]
impl ConnectionStore for PgStore {
    async fn put_credential(&self, row: &CredentialRow) -> Result<CredentialRow, StoreError> {
        let saved = sqlx::query(&format!(
            "INSERT INTO credentials ({CREDENTIAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (name) DO UPDATE SET description = excluded.description, kind = excluded.kind, \
             shown = excluded.shown, sealed = excluded.sealed, key_id = excluded.key_id, \
             updated_at = excluded.updated_at RETURNING {CREDENTIAL_COLUMNS}"
        ))
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.description)
        .bind(&row.kind)
        .bind(&row.shown)
        .bind(&row.sealed)
        .bind(&row.key_id)
        .bind(row.created_at)
        .bind(row.updated_at)
        .fetch_one(self.pool())
        .await?;
        decode::credential(&saved)
    }

    async fn get_credential(
        &self,
        key: CredentialKey<'_>,
    ) -> Result<Option<CredentialRow>, StoreError> {
        let (column, value) = match key {
            CredentialKey::Id(id) => ("id", id),
            CredentialKey::Name(name) => ("name", name),
        };
        sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE {column} = $1"
        ))
        .bind(value)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(decode::credential)
        .transpose()
    }

    async fn list_credentials(&self) -> Result<Vec<CredentialRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY name"
        ))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(decode::credential)
        .collect()
    }

    async fn delete_credential(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let exists = sqlx::query("SELECT id FROM credentials WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        let users: Vec<String> =
            sqlx::query_scalar("SELECT name FROM aliases WHERE credential = $1 ORDER BY name")
                .bind(name)
                .fetch_all(&mut *tx)
                .await?;
        if !users.is_empty() {
            return Err(StoreError::InUse(format!(
                "credential `{name}` is used by alias(es) {}: change or delete them first",
                users.join(", ")
            )));
        }
        let deleted = sqlx::query("DELETE FROM credentials WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn put_alias(&self, row: &AliasRow) -> Result<AliasRow, StoreError> {
        let mut tx = self.pool().begin().await?;
        if let Some(credential) = &row.credential {
            let found = sqlx::query("SELECT id FROM credentials WHERE name = $1 FOR SHARE")
                .bind(credential)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(StoreError::MissingCredential(credential.clone()));
            }
        }
        let saved = sqlx::query(&format!(
            "INSERT INTO aliases ({ALIAS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET credential = excluded.credential, spec = excluded.spec, \
             updated_at = excluded.updated_at RETURNING {ALIAS_COLUMNS}"
        ))
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.credential)
        .bind(&row.spec)
        .bind(row.created_at)
        .bind(row.updated_at)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        decode::alias(&saved)
    }

    async fn get_alias(&self, name: &str) -> Result<Option<AliasRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ALIAS_COLUMNS} FROM aliases WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(decode::alias)
        .transpose()
    }

    async fn list_aliases(&self) -> Result<Vec<AliasRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ALIAS_COLUMNS} FROM aliases ORDER BY name"
        ))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(decode::alias)
        .collect()
    }

    async fn delete_alias(&self, name: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM aliases WHERE name = $1")
            .bind(name)
            .execute(self.pool())
            .await?
            .rows_affected()
            > 0)
    }
}
