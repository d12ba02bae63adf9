//! Connection & Credential aliases: credentials kept encrypted under the vault's key,
//! aliases that name a target, a credential and the MIDs to run through, and the
//! resolution of an action against an alias into an ECC output.
//!
//! A secret leaves this module only sealed to one MID ([`seal_for_mid`]); the API sees
//! the redacted form, the ECC payload a [`CredentialRef`].

mod aliases;
mod credentials;
mod file;
mod ldap;
mod rest;
mod snmp;
mod soap;
mod sql;
mod ssh;
mod target_url;

pub use credentials::{parse_credential_body, seal_for_mid};
pub use sql::{Database, database};
pub use ssh::ssh_target;

use crate::ecc::{CredentialKey, Store};
use crate::error::{DispatchError, invalid};
use crate::vault::Vault;
use openmid_proto::alias::{Alias, ConnectionKind};
use openmid_proto::credential::CredentialRef;
use std::collections::BTreeMap;

fn check_name(field: &str, name: &str) -> Result<(), DispatchError> {
    if openmid_proto::is_valid_name(name) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "`{name}` is not a valid name: 1–64 of A-Z a-z 0-9 . _ -, starting with a letter or digit"
            ),
        ))
    }
}

/// Credentials and aliases over a store and the vault.
pub struct Connections<'a> {
    /// The store.
    pub store: &'a dyn Store,
    /// The vault.
    pub vault: &'a Vault,
}

impl Connections<'_> {
    async fn alias_for(
        &self,
        name: &str,
        kind: ConnectionKind,
    ) -> Result<(Alias, Option<CredentialRef>), DispatchError> {
        let info = self.get_alias(name).await.map_err(|e| match e {
            DispatchError::NotFound(m) => invalid("alias", m),
            e => e,
        })?;
        if info.alias.kind != kind {
            return Err(invalid(
                "alias",
                format!(
                    "`{name}` is a `{}` alias; this action needs a `{kind}` one",
                    info.alias.kind
                ),
            ));
        }
        let credential = match &info.alias.credential {
            None => None,
            Some(cred) => {
                let row = self
                    .store
                    .get_credential(CredentialKey::Name(cred))
                    .await?
                    .ok_or_else(|| {
                        invalid(
                            "alias",
                            format!("alias `{name}` names credential `{cred}`, which is gone"),
                        )
                    })?;
                Some(CredentialRef {
                    id: row.id,
                    name: row.name,
                })
            }
        };
        Ok((info.alias, credential))
    }

    /// The alias's credential, which this kind of alias cannot do without, of one of
    /// the types it can use.
    async fn required_credential(
        &self,
        alias: &Alias,
        credential: Option<CredentialRef>,
        types: &[&str],
    ) -> Result<CredentialRef, DispatchError> {
        let Some(credential) = credential else {
            return Err(invalid(
                "alias",
                format!(
                    "alias `{}` names no credential; a `{}` alias needs one of type {}",
                    alias.name,
                    alias.kind,
                    types.join(" or ")
                ),
            ));
        };
        let row = self
            .store
            .get_credential(CredentialKey::Id(&credential.id))
            .await?;
        match row {
            Some(row) if types.contains(&row.kind.as_str()) => Ok(credential),
            Some(row) => Err(invalid(
                "alias",
                format!(
                    "alias `{}` names credential `{}` of type {}; a `{}` alias needs {}",
                    alias.name,
                    row.name,
                    row.kind,
                    alias.kind,
                    types.join(" or ")
                ),
            )),
            None => Err(invalid(
                "alias",
                format!("alias `{}` names a credential that is gone", alias.name),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    proptest::proptest! {
        /// Whatever shape a secret field has, a refusal never quotes it.
        #[test]
        fn refusals_never_quote_a_secret(
            secret in "[a-zA-Z0-9]{12,24}",
            shape in 0usize..6,
            kind in proptest::sample::select(vec!["basic", "bearer", "api_key", "database", "snmp_v3"]),
        ) {
            let value = match shape {
                0 => json!(secret),
                1 => json!({"env": 5, "x": secret}),
                2 => json!([secret]),
                3 => json!({ "file": secret, "env": secret }),
                4 => json!({ secret.clone(): 1 }),
                _ => json!(secret.len()),
            };
            let body = match kind {
                "basic" | "database" => json!({"name": "c", "type": kind, "username": "u", "password": value}),
                "bearer" => json!({"name": "c", "type": kind, "token": value}),
                "api_key" => json!({"name": "c", "type": kind, "key_name": "k", "key": value}),
                _ => json!({"name": "c", "type": kind, "username": "u", "auth_password": value}),
            };
            if let Err(e) = parse_credential_body(body) {
                proptest::prop_assert!(!e.to_string().contains(&secret), "{}", e);
            }
        }
    }

    #[test]
    fn credential_bodies_name_fields_without_values() {
        let err = parse_credential_body(serde_json::json!({
            "name": "x", "type": "basic", "username": "u", "password": 5
        }))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("a secret is a string"), "{err}");
        let err = parse_credential_body(serde_json::json!({
            "name": "x", "type": "nope", "token": "SECRETVALUE"
        }))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.contains("nope") && !err.contains("SECRETVALUE"),
            "{err}"
        );
    }
}
