//! An LDAP action turned into an output through its alias: the alias says which
//! directory (`ldap://host[:port][/base-dn]`, `ldaps://…`), how it is secured (LDAPS by
//! the scheme, StartTLS with `tls: verify_full` on `ldap://`; certificates are always
//! checked, against `ca_pem` or the system's roots), which bind credential and which
//! MIDs; the action says what to search.

use super::Connections;
use crate::error::{DispatchError, invalid};
use openmid_proto::alias::{Alias, ConnectionKind};
use openmid_proto::api::NewOutput;
use openmid_proto::ecc::{Priority, Topic};
use openmid_proto::ldap::{LdapAction, LdapOperation, LdapRequest, parse_url};
use openmid_proto::sql::TlsMode;

/// Credential types an ldap alias may name (none: anonymous binds).
pub const LDAP_CREDENTIALS: [&str; 1] = ["ldap_bind"];

/// Where an ldap alias points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    /// The URL the MID connects to: scheme, host and port, no path.
    pub url: String,
    /// The base DN the URL's path names (percent-decoded), when it names one.
    pub base: Option<String>,
    /// StartTLS on a plain `ldap://` connection.
    pub start_tls: bool,
}

impl Connections<'_> {
    /// Turns an LDAP action into an output.
    pub async fn ldap_output(&self, action: LdapAction) -> Result<NewOutput, DispatchError> {
        let (alias, credential) = self.alias_for(&action.alias, ConnectionKind::Ldap).await?;
        let directory = directory(&alias)?;
        let base = match (action.base, directory.base) {
            (Some(base), _) | (None, Some(base)) => base,
            (None, None) if action.operation == LdapOperation::Bind => String::new(),
            (None, None) => {
                return Err(invalid(
                    "base",
                    format!(
                        "give the search base, or put a default one in alias `{}`'s base_url (ldap://host/dc=example,dc=com)",
                        alias.name
                    ),
                ));
            }
        };
        let request = LdapRequest {
            url: directory.url,
            start_tls: directory.start_tls,
            ca_pem: alias.ca_pem.clone(),
            credential,
            operation: action.operation,
            base,
            scope: action.scope.unwrap_or_default(),
            filter: action
                .filter
                .unwrap_or_else(|| "(objectClass=*)".to_string()),
            attributes: action.attributes,
            binary_attributes: action.binary_attributes,
            page_size: action.page_size,
            max_entries: action.max_entries,
            marker_attribute: None,
            timeout_ms: action.timeout_ms.or(alias.timeout_ms),
            resume: None,
        };
        let name: String = match request.operation {
            LdapOperation::Bind => format!("{}: bind", alias.name),
            LdapOperation::Search => format!("{}: {} {}", alias.name, request.base, request.filter),
        }
        .chars()
        .take(200)
        .collect();
        Ok(NewOutput {
            durability: Default::default(),
            agent: alias.execution.agent(),
            topic: Topic::LDAPProbe,
            name: Some(name),
            source: Some("api:actions/ldap".into()),
            payload: openmid_proto::payload::Payload::encode(&request)
                .map_err(|e| invalid("filter", e.to_string()))?,
            priority: Some(Priority::Interactive),
            correlator: action.correlator,
            max_attempts: None,
            at_most_once: action.at_most_once,
            application: alias.execution.application.clone(),
        })
    }
}

/// Reads an ldap alias's `base_url` and `tls`.
pub fn directory(alias: &Alias) -> Result<Directory, DispatchError> {
    let url = url::Url::parse(&alias.base_url).map_err(|e| {
        invalid(
            "base_url",
            format!("`{}` is not a URL: {e}", alias.base_url),
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "base_url",
            "must not carry a user or password: put the bind DN and password in an ldap_bind credential",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "base_url",
            "give the search's attributes, scope and filter in the action, not in the URL",
        ));
    }
    let mut root = url.clone();
    root.set_path("");
    let root = root.as_str().trim_end_matches('/').to_string();
    let parsed = parse_url(&root).map_err(|e| invalid("base_url", e.message))?;
    let path = url.path().trim_start_matches('/');
    let base = if path.is_empty() {
        None
    } else {
        Some(
            percent_encoding::percent_decode_str(path)
                .decode_utf8()
                .map_err(|_| invalid("base_url", "the base DN in the URL's path is not UTF-8"))?
                .into_owned(),
        )
    };
    let start_tls = match alias.tls {
        None | Some(TlsMode::Disable) => false,
        Some(TlsMode::VerifyFull) if !parsed.ldaps => true,
        Some(TlsMode::VerifyFull) => {
            return Err(invalid(
                "tls",
                "an ldaps:// alias is TLS already: drop `tls` (StartTLS is for ldap://)",
            ));
        }
        Some(other) => {
            return Err(invalid(
                "tls",
                format!(
                    "`{}` is not for ldap aliases: certificates are always checked; use `verify_full` on an ldap:// alias for StartTLS, or an ldaps:// URL",
                    serde_json::to_value(other)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ),
            ));
        }
    };
    if alias.ca_pem.is_some() && !parsed.ldaps && !start_tls {
        return Err(invalid(
            "ca_pem",
            "is for TLS: use an ldaps:// URL or `tls: verify_full` (StartTLS)",
        ));
    }
    Ok(Directory {
        url: root,
        base,
        start_tls,
    })
}

/// The checks of an ldap alias's own fields.
pub fn check_ldap_alias(alias: &Alias) -> Result<(), DispatchError> {
    directory(alias).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(base_url: &str, tls: Option<TlsMode>) -> Alias {
        Alias {
            name: "ad".into(),
            description: None,
            kind: ConnectionKind::Ldap,
            base_url: base_url.into(),
            headers: Default::default(),
            timeout_ms: None,
            retry: Default::default(),
            credential: None,
            execution: Default::default(),
            soap_version: None,
            wsdl: None,
            ca_pem: None,
            host_key: None,
            pool_size: None,
            tls,
            options: Default::default(),
            durability: None,
        }
    }

    #[test]
    fn directories_are_read_from_the_url() {
        let d = directory(&alias(
            "ldap://dc1.corp:3389/ou=people,dc=example,dc=com",
            None,
        ))
        .expect("valid");
        assert_eq!(d.url, "ldap://dc1.corp:3389");
        assert_eq!(d.base.as_deref(), Some("ou=people,dc=example,dc=com"));
        assert!(!d.start_tls);
        let d = directory(&alias("ldap://dc1.corp", Some(TlsMode::VerifyFull))).expect("valid");
        assert!(d.start_tls && d.base.is_none());
        let d = directory(&alias("ldaps://[fd00::1]/dc=x%20y", None)).expect("valid");
        assert_eq!(d.base.as_deref(), Some("dc=x y"));
        for (url, tls) in [
            ("ldaps://h", Some(TlsMode::VerifyFull)),
            ("ldap://h", Some(TlsMode::Prefer)),
            ("ldap://u:secret@h", None),
            ("ldap://h/dc=x?cn", None),
            ("http://h", None),
        ] {
            let e = directory(&alias(url, tls)).expect_err(url);
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }
}
