//! Aliases: a named target, its credential and the MIDs that run calls to it, checked
//! when written.

use super::Connections;
use super::check_name;
use super::target_url::wsdl_url;
use crate::ecc::{AliasRow, CredentialKey, StoreError};
use crate::error::{DispatchError, invalid};
use openmid_proto::alias::{Alias, AliasInfo, ConnectionKind};
use openmid_proto::rest::MAX_TIMEOUT_MS;
use openmid_proto::time::{now_ms, rfc3339};

impl Connections<'_> {
    /// Creates (`create`: refuses an existing name) or replaces an alias.
    pub async fn put_alias(&self, alias: Alias, create: bool) -> Result<AliasInfo, DispatchError> {
        check_alias(&alias)?;
        if let Some(name) = &alias.credential {
            let row = self
                .store
                .get_credential(CredentialKey::Name(name))
                .await?
                .ok_or_else(|| invalid("credential", format!("no credential named `{name}`")))?;
            // The type alone decides; no secret needs opening for it.
            let (fits, wanted) = match alias.kind {
                ConnectionKind::Http | ConnectionKind::Soap => (
                    self.open_credential(&row)?.fits_http(),
                    "basic, api_key, bearer, oauth2_client_credentials or client_certificate",
                ),
                ConnectionKind::Ssh => (
                    super::ssh::SSH_CREDENTIALS.contains(&row.kind.as_str()),
                    "ssh_password or ssh_key",
                ),
                ConnectionKind::Jdbc => (
                    super::sql::SQL_CREDENTIALS.contains(&row.kind.as_str()),
                    "database",
                ),
                ConnectionKind::Ldap => (
                    super::ldap::LDAP_CREDENTIALS.contains(&row.kind.as_str()),
                    "ldap_bind",
                ),
                ConnectionKind::Snmp => (
                    super::snmp::SNMP_CREDENTIALS.contains(&row.kind.as_str()),
                    "snmp_community or snmp_v3",
                ),
            };
            if !fits {
                return Err(invalid(
                    "credential",
                    format!(
                        "`{name}` is a `{}` credential: a `{}` alias needs {wanted}",
                        row.kind, alias.kind
                    ),
                ));
            }
        }
        let current = self.store.get_alias(&alias.name).await?;
        match (&current, create) {
            (Some(_), true) => {
                return Err(DispatchError::Conflict(format!(
                    "an alias named `{}` exists: PUT /api/v1/aliases/{} to change it",
                    alias.name, alias.name
                )));
            }
            (None, false) => {
                return Err(DispatchError::NotFound(format!(
                    "no alias named `{}`",
                    alias.name
                )));
            }
            _ => {}
        }
        let now = now_ms();
        let row = AliasRow {
            id: current
                .as_ref()
                .map_or_else(|| uuid::Uuid::now_v7().to_string(), |c| c.id.clone()),
            name: alias.name.clone(),
            credential: alias.credential.clone(),
            spec: serde_json::to_string(&alias).map_err(|e| invalid("body", e.to_string()))?,
            created_at: current.as_ref().map_or(now, |c| c.created_at),
            updated_at: now,
        };
        let row = self.store.put_alias(&row).await?;
        alias_info(row)
    }

    /// One alias.
    pub async fn get_alias(&self, name: &str) -> Result<AliasInfo, DispatchError> {
        let row = self
            .store
            .get_alias(name)
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no alias named `{name}`")))?;
        alias_info(row)
    }

    /// Every alias.
    pub async fn list_aliases(&self) -> Result<Vec<AliasInfo>, DispatchError> {
        self.store
            .list_aliases()
            .await?
            .into_iter()
            .map(alias_info)
            .collect()
    }

    /// Deletes an alias.
    pub async fn delete_alias(&self, name: &str) -> Result<(), DispatchError> {
        if self.store.delete_alias(name).await? {
            Ok(())
        } else {
            Err(DispatchError::NotFound(format!("no alias named `{name}`")))
        }
    }
}

fn alias_info(row: AliasRow) -> Result<AliasInfo, DispatchError> {
    let alias: Alias = serde_json::from_str(&row.spec).map_err(|e| StoreError::Corrupt {
        id: row.id.clone(),
        detail: format!("alias does not parse: {e}"),
    })?;
    Ok(AliasInfo {
        agent: alias.execution.agent(),
        id: row.id,
        alias,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
    })
}

pub(super) fn check_alias(alias: &Alias) -> Result<(), DispatchError> {
    check_name("name", &alias.name)?;
    if alias
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1000)
    {
        return Err(invalid("description", "longer than 1000 characters"));
    }
    match alias.kind {
        ConnectionKind::Http | ConnectionKind::Soap => check_http_base(&alias.base_url)?,
        ConnectionKind::Ssh => super::ssh::check_ssh_alias(alias)?,
        ConnectionKind::Jdbc => super::sql::check_sql_alias(alias)?,
        ConnectionKind::Ldap => super::ldap::check_ldap_alias(alias)?,
        ConnectionKind::Snmp => super::snmp::check_snmp_alias(alias)?,
    }
    // Fields that mean something for one kind only are refused on the others, so a
    // typo'd kind is not silently a different alias.
    let is = |kinds: &[ConnectionKind]| kinds.contains(&alias.kind);
    use ConnectionKind::{Http, Jdbc, Ldap, Soap, Ssh};
    for (field, given, kinds, name) in [
        (
            "headers",
            !alias.headers.is_empty(),
            &[Http, Soap][..],
            "`http` and `soap`",
        ),
        ("host_key", alias.host_key.is_some(), &[Ssh][..], "`ssh`"),
        ("pool_size", alias.pool_size.is_some(), &[Ssh][..], "`ssh`"),
        (
            "tls",
            alias.tls.is_some(),
            &[Jdbc, Ldap][..],
            "`jdbc` and `ldap`",
        ),
        ("options", !alias.options.is_empty(), &[Jdbc][..], "`jdbc`"),
        (
            "ca_pem",
            alias.ca_pem.is_some(),
            &[Http, Soap, Jdbc, Ldap][..],
            "`http`, `soap`, `jdbc` and `ldap`",
        ),
        (
            "retry",
            alias.retry != Default::default(),
            &[Http, Soap][..],
            "`http` and `soap`",
        ),
    ] {
        if given && !is(kinds) {
            return Err(invalid(field, format!("only for {name} aliases")));
        }
    }
    openmid_proto::probe::check_headers(&alias.headers)
        .map_err(|e| invalid(&e.field, e.message))?;
    for name in alias.headers.keys() {
        if name.eq_ignore_ascii_case("authorization") {
            return Err(invalid(
                "headers",
                "`Authorization` belongs in a credential, where it is kept secret",
            ));
        }
    }
    // One HTTP attempt is short; a command or a query over SSH or SQL may run for
    // hours (an import), as their probes allow.
    let max = match alias.kind {
        ConnectionKind::Http | ConnectionKind::Soap => MAX_TIMEOUT_MS,
        ConnectionKind::Ssh => openmid_proto::command::MAX_TIMEOUT_MS,
        ConnectionKind::Jdbc => openmid_proto::sql::MAX_TIMEOUT_MS,
        ConnectionKind::Ldap => openmid_proto::ldap::MAX_TIMEOUT_MS,
        ConnectionKind::Snmp => openmid_proto::snmp::MAX_TIMEOUT_MS,
    };
    if let Some(t) = alias.timeout_ms
        && (t == 0 || t > max)
    {
        return Err(invalid("timeout_ms", format!("must be 1–{max}, got {t}")));
    }
    if let Some((field, message)) = alias.retry.problem() {
        return Err(invalid(&format!("retry.{field}"), message));
    }
    if let Some((field, message)) = alias.execution.problem() {
        return Err(invalid(field, message));
    }
    if let Some(cred) = &alias.credential {
        check_name("credential", cred)?;
    }
    if let Some(pem) = &alias.ca_pem
        && !pem.contains("-----BEGIN CERTIFICATE-----")
    {
        return Err(invalid("ca_pem", "must hold a PEM `CERTIFICATE` block"));
    }
    if alias.soap_version.is_some() && alias.kind != ConnectionKind::Soap {
        return Err(invalid("soap_version", "only for `soap` aliases"));
    }
    if let Some(wsdl) = &alias.wsdl {
        if alias.kind != ConnectionKind::Soap {
            return Err(invalid("wsdl", "only for `soap` aliases"));
        }
        wsdl_url(&alias.base_url, wsdl)?;
    }
    Ok(())
}

/// An http(s) base URL with a host and no user or password.
fn check_http_base(base_url: &str) -> Result<(), DispatchError> {
    let url = url::Url::parse(base_url).map_err(|e| {
        invalid(
            "base_url",
            format!("`{}` is not an absolute URL: {e}", base_url),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            "base_url",
            format!("`{}` must be an http or https URL with a host", base_url),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "base_url",
            "must not carry a user or password: put them in a credential",
        ));
    }
    Ok(())
}
