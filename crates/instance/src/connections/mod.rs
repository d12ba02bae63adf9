//! Connection & Credential aliases: credentials kept encrypted under the vault's key,
//! aliases that name a target, a credential and the MIDs to run through, and the
//! resolution of an action against an alias into an ECC output.
//!
//! A secret leaves this module only sealed to one MID ([`seal_for_mid`]); the API sees
//! the redacted form, the ECC payload a [`CredentialRef`].

mod target_url;

use crate::ecc::{AliasRow, CredentialKey, CredentialRow, MidRow, Store, StoreError};
use crate::error::{DispatchError, invalid};
use crate::vault::Vault;
use openmid_proto::alias::{Alias, AliasInfo, ConnectionKind, CredentialInfo};
use openmid_proto::api::{NewOutput, RestAction, SoapAction};
use openmid_proto::credential::{CredentialRef, CredentialSpec};
use openmid_proto::ecc::{Priority, Topic};
use openmid_proto::mid::SealedCredential;
use openmid_proto::rest::{MAX_TIMEOUT_MS, RestRequest};
use openmid_proto::seal;
use openmid_proto::soap::SoapRequest;
use openmid_proto::time::{now_ms, rfc3339};
use std::collections::BTreeMap;
use target_url::{join_url, overlay_headers, wsdl_url};

/// Additional data bound into a stored credential's encryption: a blob copied onto
/// another credential's row does not decrypt.
fn at_rest_aad(credential_id: &str) -> Vec<u8> {
    format!("openmid-credential-at-rest-v1\n{credential_id}").into_bytes()
}

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

/// Credentials and aliases over a store and the vault.
pub struct Connections<'a> {
    /// The store.
    pub store: &'a dyn Store,
    /// The vault.
    pub vault: &'a Vault,
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

    fn open_credential(&self, row: &CredentialRow) -> Result<CredentialSpec, DispatchError> {
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

    /// Creates (`create`: refuses an existing name) or replaces an alias.
    pub async fn put_alias(&self, alias: Alias, create: bool) -> Result<AliasInfo, DispatchError> {
        check_alias(&alias)?;
        if let Some(name) = &alias.credential {
            let row = self
                .store
                .get_credential(CredentialKey::Name(name))
                .await?
                .ok_or_else(|| invalid("credential", format!("no credential named `{name}`")))?;
            let spec = self.open_credential(&row)?;
            if !spec.fits_http() {
                return Err(invalid(
                    "credential",
                    format!(
                        "`{name}` is a `{}` credential: an {} alias needs basic, api_key, bearer, oauth2_client_credentials or client_certificate",
                        spec.type_name(),
                        alias.kind
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

    /// Turns a REST action into an output: through its alias, or (without one) to its
    /// URL on the MID it names.
    pub async fn rest_output(&self, action: RestAction) -> Result<NewOutput, DispatchError> {
        let method = action
            .method
            .clone()
            .unwrap_or_else(|| "GET".into())
            .to_uppercase();
        let (agent, application, request) = match &action.alias {
            Some(alias_name) => {
                for (field, given) in [
                    ("url", action.url.is_some()),
                    ("mid", action.mid.is_some()),
                    ("agent", action.agent.is_some()),
                    ("application", action.application.is_some()),
                ] {
                    if given {
                        return Err(invalid(
                            field,
                            "comes from the alias: drop it, or call without `alias`",
                        ));
                    }
                }
                let (alias, credential) = self.alias_for(alias_name, ConnectionKind::Http).await?;
                let url = join_url(&alias.base_url, action.path.as_deref(), &action.query)?;
                let mut headers = alias.headers.clone();
                overlay_headers(&mut headers, action.headers);
                let request = RestRequest {
                    method,
                    url,
                    headers,
                    body: action.body,
                    body_blob: action.body_blob.clone(),
                    timeout_ms: action.timeout_ms.or(alias.timeout_ms),
                    credential,
                    retry: Some(alias.retry.clone()),
                    ca_pem: alias.ca_pem.clone(),
                    alias: Some(alias.name.clone()),
                    mid_capabilities: alias.execution.capabilities.clone(),
                };
                (
                    alias.execution.agent(),
                    alias.execution.application.clone(),
                    request,
                )
            }
            None => {
                if action.path.is_some() || !action.query.is_empty() {
                    return Err(invalid(
                        "path",
                        "`path` and `query` go with `alias`; without one give the whole `url`",
                    ));
                }
                let url = action.url.clone().ok_or_else(|| {
                    invalid(
                        "alias",
                        "give `alias` (a Connection & Credential alias), or `url` with `mid` or `agent`",
                    )
                })?;
                let agent = match (&action.mid, &action.agent) {
                    (Some(mid), None) => {
                        check_name("mid", mid)?;
                        format!("mid.server.{mid}")
                    }
                    (None, Some(agent)) => agent.clone(),
                    _ => {
                        return Err(invalid(
                            "mid",
                            "give either `mid` (a MID name) or `agent` (mid.server.NAME, mid.cluster.NAME or mid.auto)",
                        ));
                    }
                };
                let mut request = RestRequest::get(url);
                request.method = method;
                request.headers = action.headers;
                request.body = action.body;
                request.body_blob = action.body_blob.clone();
                request.timeout_ms = action.timeout_ms;
                (agent, action.application.clone(), request)
            }
        };
        let name = match &request.alias {
            Some(alias) => format!(
                "{} {alias}:{}",
                request.method,
                action.path.as_deref().unwrap_or("/")
            ),
            None => format!("{} {}", request.method, request.url),
        };
        Ok(NewOutput {
            agent,
            topic: Topic::RESTProbe,
            name: Some(name),
            source: Some("api:actions/rest".into()),
            payload: serde_json::to_value(&request).map_err(|e| invalid("body", e.to_string()))?,
            priority: Some(Priority::Interactive),
            correlator: action.correlator,
            max_attempts: None,
            at_most_once: action.at_most_once,
            application,
        })
    }

    /// Turns a SOAP action into an output through its alias.
    pub async fn soap_output(&self, action: SoapAction) -> Result<NewOutput, DispatchError> {
        let (alias, credential) = self.alias_for(&action.alias, ConnectionKind::Soap).await?;
        match (&action.body, &action.operation) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "body",
                    "give `body` (the Body's XML) or `operation`, not both",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "operation",
                    "give `operation` (with `namespace` and `params`) or `body` (the Body's XML)",
                ));
            }
            _ => {}
        }
        if action.operation.is_none() && (action.namespace.is_some() || !action.params.is_empty()) {
            return Err(invalid(
                "params",
                "`namespace` and `params` go with `operation`",
            ));
        }
        if action.operation.is_none() && action.element_form.is_some() {
            return Err(invalid(
                "element_form",
                "`element_form` goes with `operation`",
            ));
        }
        let url = join_url(&alias.base_url, action.path.as_deref(), &BTreeMap::new())?;
        let mut headers = alias.headers.clone();
        overlay_headers(&mut headers, action.headers);
        // Only needed (and fetched) when the action has to be read from it.
        let wsdl_url = match (&alias.wsdl, &action.soap_action, &action.operation) {
            (Some(wsdl), None, Some(_)) => Some(wsdl_url(&alias.base_url, wsdl)?),
            _ => None,
        };
        let request = SoapRequest {
            url,
            version: action.version.or(alias.soap_version).unwrap_or_default(),
            soap_action: action.soap_action,
            body: action.body,
            operation: action.operation,
            namespace: action.namespace,
            params: action.params,
            element_form: action.element_form,
            wsdl_url,
            headers,
            timeout_ms: action.timeout_ms.or(alias.timeout_ms),
            credential,
            retry: Some(alias.retry.clone()),
            ca_pem: alias.ca_pem.clone(),
            alias: Some(alias.name.clone()),
            mid_capabilities: alias.execution.capabilities.clone(),
        };
        let name = format!(
            "SOAP {} {}",
            alias.name,
            request
                .operation
                .as_deref()
                .or(request.soap_action.as_deref())
                .unwrap_or("call")
        );
        Ok(NewOutput {
            agent: alias.execution.agent(),
            topic: Topic::SOAPProbe,
            name: Some(name),
            source: Some("api:actions/soap".into()),
            payload: serde_json::to_value(&request).map_err(|e| invalid("body", e.to_string()))?,
            priority: Some(Priority::Interactive),
            correlator: action.correlator,
            max_attempts: None,
            at_most_once: action.at_most_once,
            application: alias.execution.application.clone(),
        })
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

fn check_alias(alias: &Alias) -> Result<(), DispatchError> {
    check_name("name", &alias.name)?;
    if alias
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 1000)
    {
        return Err(invalid("description", "longer than 1000 characters"));
    }
    let url = url::Url::parse(&alias.base_url).map_err(|e| {
        invalid(
            "base_url",
            format!("`{}` is not an absolute URL: {e}", alias.base_url),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            "base_url",
            format!(
                "`{}` must be an http or https URL with a host",
                alias.base_url
            ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "base_url",
            "must not carry a user or password: put them in a credential",
        ));
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
    if let Some(t) = alias.timeout_ms
        && (t == 0 || t > MAX_TIMEOUT_MS)
    {
        return Err(invalid(
            "timeout_ms",
            format!("must be 1–{MAX_TIMEOUT_MS}, got {t}"),
        ));
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
