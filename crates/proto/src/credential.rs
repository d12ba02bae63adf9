//! Credentials: what a probe authenticates with.
//!
//! A credential's secret fields are either stored on the instance (encrypted at rest,
//! sealed to the claiming MID at claim time, never returned by the API) or *local*: a
//! reference to an environment variable or file that the MID reads itself, so the
//! instance never sees the secret at all.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};

/// What the API shows in place of a stored secret. Sent back on update, it means "keep
/// the stored value".
pub const REDACTED: &str = "***";

/// One secret field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SecretValue {
    /// A local reference: `{"env": "NAME"}` or `{"file": "/path"}`.
    Local(LocalSecret),
    /// The value, stored encrypted on the instance.
    Stored(Secret),
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // By hand, so a wrong shape gets a message that says what is expected (and
        // never echoes the value).
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(SecretValue::Stored(Secret::new(s))),
            v @ serde_json::Value::Object(_) => serde_json::from_value(v)
                .map(SecretValue::Local)
                .map_err(|_| {
                    serde::de::Error::custom(
                        "a local secret is {\"env\": \"NAME\"} or {\"file\": \"/absolute/path\"}",
                    )
                }),
            _ => Err(serde::de::Error::custom(
                "a secret is a string, or {\"env\": \"NAME\"} or {\"file\": \"/absolute/path\"}",
            )),
        }
    }
}

impl SecretValue {
    /// A stored value.
    pub fn stored(value: impl Into<String>) -> Self {
        SecretValue::Stored(Secret::new(value))
    }

    /// True for the `***` placeholder the API shows.
    pub fn is_redacted(&self) -> bool {
        matches!(self, SecretValue::Stored(s) if s.expose() == REDACTED)
    }
}

/// A secret the MID resolves itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LocalSecret {
    /// An environment variable of the MID process.
    Env(String),
    /// A file on the MID host (its content, trailing newline removed).
    File(String),
}

impl std::fmt::Display for LocalSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalSecret::Env(name) => write!(f, "environment variable `{name}`"),
            LocalSecret::File(path) => write!(f, "file `{path}`"),
        }
    }
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPlacement {
    /// A request header named `name`.
    #[default]
    Header,
    /// A query parameter named `name`.
    Query,
}

/// How an OAuth 2.0 client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with client id and secret (RFC 6749 §2.3.1, the recommended way).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// A credential's type and fields. Secret fields are [`SecretValue`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialSpec {
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: SecretValue,
    },
    /// An API key in a header or a query parameter.
    ApiKey {
        /// Header or query parameter name (e.g. `X-API-Key`). Not `name`: that is the
        /// credential's own name in the API body.
        key_name: String,
        /// `header` (default) or `query`.
        #[serde(default)]
        placement: KeyPlacement,
        /// The key.
        key: SecretValue,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: SecretValue,
    },
    /// OAuth 2.0 client credentials: the MID fetches a token from `token_url` (inside the
    /// private network) and caches it until shortly before it expires.
    Oauth2ClientCredentials {
        /// Token endpoint.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: SecretValue,
        /// Scope to ask for.
        #[serde(default)]
        scope: Option<String>,
        /// `audience` parameter some providers want.
        #[serde(default)]
        audience: Option<String>,
        /// `basic` (default) or `body`.
        #[serde(default)]
        client_auth: ClientAuth,
    },
    /// A client certificate for mutual TLS to the target.
    ClientCertificate {
        /// The certificate chain, PEM.
        certificate_pem: String,
        /// The private key, PEM.
        private_key_pem: SecretValue,
    },
    /// SSH login with a password.
    SshPassword {
        /// User name.
        username: String,
        /// Password.
        password: SecretValue,
    },
    /// SSH login with a private key.
    SshKey {
        /// User name.
        username: String,
        /// Private key, OpenSSH or PEM format.
        private_key: SecretValue,
        /// Passphrase of the key.
        #[serde(default)]
        passphrase: Option<SecretValue>,
    },
    /// A database login.
    Database {
        /// User name.
        username: String,
        /// Password.
        password: SecretValue,
    },
    /// An LDAP simple bind.
    LdapBind {
        /// Bind DN.
        bind_dn: String,
        /// Password.
        password: SecretValue,
    },
    /// SNMP v1/v2c community.
    SnmpCommunity {
        /// Community string.
        community: SecretValue,
    },
    /// SNMP v3 user (USM).
    SnmpV3 {
        /// User name.
        username: String,
        /// `md5`, `sha`, `sha256` … (none: noAuthNoPriv).
        #[serde(default)]
        auth_protocol: Option<String>,
        /// Authentication password.
        #[serde(default)]
        auth_password: Option<SecretValue>,
        /// `des`, `aes` … (none: no privacy).
        #[serde(default)]
        priv_protocol: Option<String>,
        /// Privacy password.
        #[serde(default)]
        priv_password: Option<SecretValue>,
    },
}

impl CredentialSpec {
    /// The type's name as in the JSON `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            CredentialSpec::Basic { .. } => "basic",
            CredentialSpec::ApiKey { .. } => "api_key",
            CredentialSpec::Bearer { .. } => "bearer",
            CredentialSpec::Oauth2ClientCredentials { .. } => "oauth2_client_credentials",
            CredentialSpec::ClientCertificate { .. } => "client_certificate",
            CredentialSpec::SshPassword { .. } => "ssh_password",
            CredentialSpec::SshKey { .. } => "ssh_key",
            CredentialSpec::Database { .. } => "database",
            CredentialSpec::LdapBind { .. } => "ldap_bind",
            CredentialSpec::SnmpCommunity { .. } => "snmp_community",
            CredentialSpec::SnmpV3 { .. } => "snmp_v3",
        }
    }

    /// True for types an `http` or `soap` connection can use.
    pub fn fits_http(&self) -> bool {
        matches!(
            self,
            CredentialSpec::Basic { .. }
                | CredentialSpec::ApiKey { .. }
                | CredentialSpec::Bearer { .. }
                | CredentialSpec::Oauth2ClientCredentials { .. }
                | CredentialSpec::ClientCertificate { .. }
        )
    }

    /// Every secret field, by name.
    pub fn secrets_mut(&mut self) -> Vec<(&'static str, &mut SecretValue)> {
        match self {
            CredentialSpec::Basic { password, .. }
            | CredentialSpec::SshPassword { password, .. }
            | CredentialSpec::Database { password, .. }
            | CredentialSpec::LdapBind { password, .. } => vec![("password", password)],
            CredentialSpec::ApiKey { key, .. } => vec![("key", key)],
            CredentialSpec::Bearer { token } => vec![("token", token)],
            CredentialSpec::Oauth2ClientCredentials { client_secret, .. } => {
                vec![("client_secret", client_secret)]
            }
            CredentialSpec::ClientCertificate {
                private_key_pem, ..
            } => vec![("private_key_pem", private_key_pem)],
            CredentialSpec::SshKey {
                private_key,
                passphrase,
                ..
            } => {
                let mut v = vec![("private_key", private_key)];
                if let Some(p) = passphrase {
                    v.push(("passphrase", p));
                }
                v
            }
            CredentialSpec::SnmpCommunity { community } => vec![("community", community)],
            CredentialSpec::SnmpV3 {
                auth_password,
                priv_password,
                ..
            } => {
                let mut v = Vec::new();
                if let Some(p) = auth_password {
                    v.push(("auth_password", p));
                }
                if let Some(p) = priv_password {
                    v.push(("priv_password", p));
                }
                v
            }
        }
    }

    /// A copy fit to show: stored secrets replaced by `***`, local references kept.
    pub fn redacted(&self) -> CredentialSpec {
        let mut shown = self.clone();
        for (_, value) in shown.secrets_mut() {
            if let SecretValue::Stored(_) = value {
                *value = SecretValue::stored(REDACTED);
            }
        }
        shown
    }

    /// For an update: every secret sent as `***` takes the value stored in `current`
    /// (when `current` has the same type). Returns the name of a `***` field that has
    /// nothing to keep.
    pub fn keep_redacted_from(&mut self, current: &CredentialSpec) -> Result<(), &'static str> {
        let mut old = current.clone();
        let same_type = old.type_name() == self.type_name();
        let old_secrets = old.secrets_mut();
        for (name, value) in self.secrets_mut() {
            if !value.is_redacted() {
                continue;
            }
            let kept = same_type
                .then(|| old_secrets.iter().find(|(n, _)| *n == name))
                .flatten();
            match kept {
                Some((_, v)) => *value = (**v).clone(),
                None => return Err(name),
            }
        }
        Ok(())
    }

    /// What is wrong with the fields, as `(field, message)`; secrets are not quoted.
    pub fn problem(&self) -> Option<(String, String)> {
        let text = |field: &str, value: &str, max: usize| {
            if value.trim().is_empty() {
                Some((field.to_string(), "must not be empty".to_string()))
            } else if value.len() > max {
                Some((field.to_string(), format!("longer than {max} bytes")))
            } else {
                None
            }
        };
        let found = match self {
            CredentialSpec::Basic { username, .. } => {
                if username.contains(':') {
                    Some((
                        "username".to_string(),
                        "must not contain `:` (HTTP Basic)".to_string(),
                    ))
                } else {
                    text("username", username, 256)
                }
            }
            CredentialSpec::ApiKey { key_name, .. } => text("key_name", key_name, 256),
            CredentialSpec::Oauth2ClientCredentials {
                token_url,
                client_id,
                ..
            } => match url::Url::parse(token_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                    text("client_id", client_id, 1024)
                }
                _ => Some((
                    "token_url".to_string(),
                    format!("`{token_url}` is not an absolute http(s) URL"),
                )),
            },
            CredentialSpec::ClientCertificate {
                certificate_pem, ..
            } => {
                if certificate_pem.contains("-----BEGIN CERTIFICATE-----") {
                    None
                } else {
                    Some((
                        "certificate_pem".to_string(),
                        "must hold a PEM `CERTIFICATE` block".to_string(),
                    ))
                }
            }
            CredentialSpec::SshPassword { username, .. }
            | CredentialSpec::SshKey { username, .. }
            | CredentialSpec::Database { username, .. }
            | CredentialSpec::SnmpV3 { username, .. } => text("username", username, 256),
            CredentialSpec::LdapBind { bind_dn, .. } => text("bind_dn", bind_dn, 1024),
            CredentialSpec::Bearer { .. } | CredentialSpec::SnmpCommunity { .. } => None,
        };
        if found.is_some() {
            return found;
        }
        let mut spec = self.clone();
        for (name, value) in spec.secrets_mut() {
            let bad = match value {
                SecretValue::Stored(s) if s.expose().is_empty() => Some("must not be empty"),
                SecretValue::Stored(s) if s.expose().len() > 64 * 1024 => {
                    Some("longer than 64 KiB")
                }
                SecretValue::Local(LocalSecret::Env(n)) if n.is_empty() || n.contains('=') => {
                    Some("names an invalid environment variable")
                }
                SecretValue::Local(LocalSecret::File(p)) if !p.starts_with('/') => {
                    Some("a local file must be an absolute path")
                }
                _ => None,
            };
            if let Some(message) = bad {
                return Some((name.to_string(), message.to_string()));
            }
        }
        None
    }
}

/// A reference to a credential inside an ECC payload: the secret itself never goes
/// there, it travels sealed beside the work item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRef {
    /// Credential id.
    pub id: String,
    /// Credential name, for messages.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_each_type_and_local_refs() {
        let spec: CredentialSpec = serde_json::from_value(json!({
            "type": "basic", "username": "u", "password": "p"
        }))
        .expect("basic");
        assert_eq!(spec.type_name(), "basic");
        let spec: CredentialSpec = serde_json::from_value(json!({
            "type": "api_key", "key_name": "X-API-Key", "placement": "query", "key": {"env": "K"}
        }))
        .expect("api key");
        assert!(matches!(
            spec,
            CredentialSpec::ApiKey { key: SecretValue::Local(LocalSecret::Env(ref n)), placement: KeyPlacement::Query, .. } if n == "K"
        ));
        let bad = serde_json::from_value::<CredentialSpec>(json!({
            "type": "bearer", "token": "t", "extra": 1
        }));
        assert!(bad.is_err(), "unknown fields are refused");
        let bad = serde_json::from_value::<CredentialSpec>(json!({"type": "kerberos"}));
        assert!(bad.is_err());
    }

    #[test]
    fn redaction_hides_stored_keeps_local() {
        let spec = CredentialSpec::SshKey {
            username: "root".into(),
            private_key: SecretValue::stored("KEYDATA"),
            passphrase: Some(SecretValue::Local(LocalSecret::File("/run/p".into()))),
        };
        let shown = serde_json::to_string(&spec.redacted()).expect("json");
        assert!(!shown.contains("KEYDATA"));
        assert!(shown.contains("***"));
        assert!(shown.contains("/run/p"));
    }

    #[test]
    fn update_keeps_redacted_secrets() {
        let current = CredentialSpec::Basic {
            username: "a".into(),
            password: SecretValue::stored("old"),
        };
        let mut update = CredentialSpec::Basic {
            username: "b".into(),
            password: SecretValue::stored(REDACTED),
        };
        update.keep_redacted_from(&current).expect("kept");
        assert_eq!(
            update,
            CredentialSpec::Basic {
                username: "b".into(),
                password: SecretValue::stored("old"),
            }
        );
        let mut other = CredentialSpec::Bearer {
            token: SecretValue::stored(REDACTED),
        };
        assert_eq!(other.keep_redacted_from(&current), Err("token"));
    }

    #[test]
    fn problems_name_the_field() {
        let spec = CredentialSpec::Basic {
            username: "a:b".into(),
            password: SecretValue::stored("x"),
        };
        assert_eq!(spec.problem().map(|p| p.0).as_deref(), Some("username"));
        let spec = CredentialSpec::Bearer {
            token: SecretValue::Local(LocalSecret::File("relative".into())),
        };
        assert_eq!(spec.problem().map(|p| p.0).as_deref(), Some("token"));
        let spec = CredentialSpec::Oauth2ClientCredentials {
            token_url: "nope".into(),
            client_id: "c".into(),
            client_secret: SecretValue::stored("s"),
            scope: None,
            audience: None,
            client_auth: ClientAuth::Basic,
        };
        assert_eq!(spec.problem().map(|p| p.0).as_deref(), Some("token_url"));
    }
}
