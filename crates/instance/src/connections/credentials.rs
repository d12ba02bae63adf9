//! Credentials: kept encrypted under the vault's key, shown redacted, and sealed to
//! one MID for one attempt when a job needs one ([`seal_for_mid`]).

use super::Connections;
use super::check_name;
use crate::ecc::{CredentialKey, CredentialRow, MidRow, Store, StoreError};
use crate::error::{DispatchError, invalid};
use crate::vault::Vault;
use openmid_proto::alias::CredentialInfo;
use openmid_proto::credential::CredentialSpec;
use openmid_proto::mid::SealedCredential;
use openmid_proto::seal;
use openmid_proto::time::{now_ms, rfc3339};

/// Additional data bound into a stored credential's encryption: a blob copied onto
/// another credential's row does not decrypt.
fn at_rest_aad(credential_id: &str) -> Vec<u8> {
    format!("openmid-credential-at-rest-v1\n{credential_id}").into_bytes()
}

/// Parses a credential body: `{"name", "description"?, "type", …fields}`. Errors name
/// the field but never quote a value (it may be a secret).
pub fn parse_credential_body(
    mut body: serde_json::Value,
) -> Result<(Option<String>, Option<String>, CredentialSpec), DispatchError> {
    let object = body
        .as_object_mut()
        .ok_or_else(|| invalid("body", "must be a JSON object"))?;
    let take_text =
        |object: &mut serde_json::Map<String, serde_json::Value>, key: &str| match object
            .remove(key)
        {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(key, "must be a string")),
        };
    let name = take_text(object, "name")?;
    let description = take_text(object, "description")?;
    let spec: CredentialSpec = serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        // serde's messages quote unknown variants and fields, never values of strings.
        let inner = e.into_inner().to_string();
        invalid(if path == "." { "body" } else { &path }, inner)
    })?;
    Ok((name, description, spec))
}

impl Connections<'_> {
    /// Creates (`create`: refuses an existing name) or replaces a credential. On
    /// replace, a secret sent as `***` keeps its stored value.
    pub async fn put_credential(
        &self,
        name: &str,
        description: Option<String>,
        mut spec: CredentialSpec,
        create: bool,
    ) -> Result<CredentialInfo, DispatchError> {
        check_name("name", name)?;
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 1000)
        {
            return Err(invalid("description", "longer than 1000 characters"));
        }
        let current = self.store.get_credential(CredentialKey::Name(name)).await?;
        match (&current, create) {
            (Some(_), true) => {
                return Err(DispatchError::Conflict(format!(
                    "a credential named `{name}` exists: PUT /api/v1/credentials/{name} to change it"
                )));
            }
            (None, false) => {
                return Err(DispatchError::NotFound(format!(
                    "no credential named `{name}`"
                )));
            }
            _ => {}
        }
        if let Some(current) = &current {
            let stored = self.open_credential(current)?;
            spec.keep_redacted_from(&stored).map_err(|field| {
                invalid(
                    field,
                    "`***` keeps the stored value, but there is none of this type to keep: give the value",
                )
            })?;
        } else {
            let mut probe = spec.clone();
            if let Some((field, _)) = probe
                .secrets_mut()
                .into_iter()
                .find(|(_, v)| v.is_redacted())
            {
                return Err(invalid(
                    field,
                    "`***` is only allowed on update: give the value",
                ));
            }
        }
        if let Some((field, message)) = spec.problem() {
            return Err(invalid(&field, message));
        }
        if current.is_some() {
            let users = self.aliases_using(name).await?;
            if !spec.fits_http() && !users.is_empty() {
                return Err(invalid(
                    "type",
                    format!(
                        "`{}` cannot authenticate HTTP calls, and alias(es) {} use this credential",
                        spec.type_name(),
                        users.join(", ")
                    ),
                ));
            }
        }
        let now = now_ms();
        let id = current
            .as_ref()
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), |c| c.id.clone());
        let whole = zeroize::Zeroizing::new(
            serde_json::to_vec(&spec).map_err(|e| invalid("body", e.to_string()))?,
        );
        let row = CredentialRow {
            sealed: self.vault.encrypt(&at_rest_aad(&id), &whole),
            id,
            name: name.to_string(),
            description,
            kind: spec.type_name().to_string(),
            shown: serde_json::to_string(&spec.redacted())
                .map_err(|e| invalid("body", e.to_string()))?,
            key_id: self.vault.key_id(),
            created_at: current.as_ref().map_or(now, |c| c.created_at),
            updated_at: now,
        };
        let row = self.store.put_credential(&row).await?;
        self.credential_info(row).await
    }

    pub(super) fn open_credential(
        &self,
        row: &CredentialRow,
    ) -> Result<CredentialSpec, DispatchError> {
        let plain = self.vault.decrypt(&at_rest_aad(&row.id), &row.sealed)?;
        serde_json::from_slice(&plain).map_err(|_| {
            DispatchError::Store(StoreError::Corrupt {
                id: row.id.clone(),
                detail: "a stored credential does not parse".into(),
            })
        })
    }

    async fn aliases_using(&self, credential: &str) -> Result<Vec<String>, DispatchError> {
        Ok(self
            .store
            .list_aliases()
            .await?
            .into_iter()
            .filter(|a| a.credential.as_deref() == Some(credential))
            .map(|a| a.name)
            .collect())
    }

    async fn credential_info(&self, row: CredentialRow) -> Result<CredentialInfo, DispatchError> {
        let spec: CredentialSpec =
            serde_json::from_str(&row.shown).map_err(|_| StoreError::Corrupt {
                id: row.id.clone(),
                detail: "redacted credential does not parse".into(),
            })?;
        Ok(CredentialInfo {
            used_by: self.aliases_using(&row.name).await?,
            id: row.id,
            name: row.name,
            description: row.description,
            spec,
            created_at: rfc3339(row.created_at),
            updated_at: rfc3339(row.updated_at),
        })
    }

    /// One credential, redacted.
    pub async fn get_credential(&self, name: &str) -> Result<CredentialInfo, DispatchError> {
        let row = self
            .store
            .get_credential(CredentialKey::Name(name))
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no credential named `{name}`")))?;
        self.credential_info(row).await
    }

    /// Every credential, redacted.
    pub async fn list_credentials(&self) -> Result<Vec<CredentialInfo>, DispatchError> {
        let mut out = Vec::new();
        for row in self.store.list_credentials().await? {
            out.push(self.credential_info(row).await?);
        }
        Ok(out)
    }

    /// Deletes a credential no alias uses.
    pub async fn delete_credential(&self, name: &str) -> Result<(), DispatchError> {
        if self.store.delete_credential(name).await? {
            Ok(())
        } else {
            Err(DispatchError::NotFound(format!(
                "no credential named `{name}`"
            )))
        }
    }
}

/// Seals the credential `credential_id` to `mid` for one attempt at one output: the
/// only form in which a secret leaves the instance.
pub async fn seal_for_mid(
    store: &dyn Store,
    vault: &Vault,
    mid: &MidRow,
    output_id: &str,
    attempt: u32,
    credential_id: &str,
) -> Result<Option<SealedCredential>, DispatchError> {
    let Some(row) = store
        .get_credential(CredentialKey::Id(credential_id))
        .await?
    else {
        return Ok(None);
    };
    let plain = vault.decrypt(&at_rest_aad(&row.id), &row.sealed)?;
    let public_key: [u8; 32] = base64_key(&mid.public_key).ok_or_else(|| {
        DispatchError::Store(StoreError::Corrupt {
            id: mid.id.clone(),
            detail: "the MID's public key is not 32 bytes of base64".into(),
        })
    })?;
    let aad = seal::credential_aad(&mid.id, &row.id, output_id, attempt);
    let sealed = seal::seal(&public_key, &aad, &plain).map_err(|e| {
        DispatchError::Store(StoreError::Corrupt {
            id: mid.id.clone(),
            detail: format!("sealing to the MID's key failed: {e}"),
        })
    })?;
    Ok(Some(SealedCredential {
        credential_id: row.id,
        sealed,
    }))
}

fn base64_key(b64: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()?
        .try_into()
        .ok()
}
