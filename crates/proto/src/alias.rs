//! Connection & Credential aliases: a named target defined once and reused by every
//! action — where it is, how to authenticate, how long to wait, when to retry, and
//! which MID Servers may run calls to it.

use crate::rest::RetryPolicy;
use crate::soap::SoapVersion;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// REST / plain HTTP(S).
    Http,
    /// SOAP over HTTP(S).
    Soap,
    /// SSH to a host (`base_url`: `ssh://[user@]host[:port]`).
    Ssh,
    /// A SQL database (`base_url`: `postgres://host[:port]/database` or
    /// `mysql://host[:port]/database`, MariaDB included).
    Jdbc,
    /// An LDAP directory (`base_url`: `ldap://host[:port][/base-dn]` or
    /// `ldaps://…`; `tls: verify_full` on an `ldap://` alias means StartTLS).
    Ldap,
    /// An SNMP agent (`base_url`: `snmp://host[:port]`).
    Snmp,
}

impl std::fmt::Display for ConnectionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectionKind::Http => "http",
            ConnectionKind::Soap => "soap",
            ConnectionKind::Ssh => "ssh",
            ConnectionKind::Jdbc => "jdbc",
            ConnectionKind::Ldap => "ldap",
            ConnectionKind::Snmp => "snmp",
        })
    }
}

/// Which MID Servers run calls through an alias: one MID, a cluster (load balancing or
/// failover), or, when neither is given, any MID chosen by application and capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Execution {
    /// A specific MID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    /// A cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Application the MID must serve (auto selection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// Capabilities the MID must offer besides the probe's own (auto selection).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

impl Execution {
    /// The ECC agent: `mid.server.NAME`, `mid.cluster.NAME` or `mid.auto`.
    pub fn agent(&self) -> String {
        match (&self.mid, &self.cluster) {
            (Some(mid), _) => format!("mid.server.{mid}"),
            (None, Some(cluster)) => format!("mid.cluster.{cluster}"),
            (None, None) => "mid.auto".to_string(),
        }
    }

    /// What is wrong, as `(field, message)`.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if self.mid.is_some() && self.cluster.is_some() {
            return Some((
                "execution",
                "give `mid` or `cluster`, not both (neither: auto selection)".into(),
            ));
        }
        for (field, name) in [
            ("execution.mid", &self.mid),
            ("execution.cluster", &self.cluster),
        ] {
            if let Some(n) = name
                && !crate::is_valid_name(n)
            {
                return Some((field, format!("`{n}` is not a valid name")));
            }
        }
        None
    }
}

/// An alias as created and updated through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alias {
    /// Unique name (same alphabet as MID names).
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `http`, `soap`, `ssh` or `jdbc`.
    pub kind: ConnectionKind,
    /// Where the target is: an `http(s)` base URL an action's `path` is appended to;
    /// `ssh://[user@]host[:port]`; `postgres://host[:port]/database` or
    /// `mysql://host[:port]/database`. Never a password: that is the credential's.
    pub base_url: String,
    /// Headers sent with every call (an action's own headers win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one attempt in milliseconds (default 30 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// When and how to retry (default: never).
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Name of the credential to authenticate with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Which MID Servers run the calls (default: auto).
    #[serde(default)]
    pub execution: Execution,
    /// SOAP version when an action does not say (SOAP aliases; default 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap_version: Option<SoapVersion>,
    /// The service's WSDL (SOAP aliases): a URL on the alias's origin, or a reference
    /// resolved against `base_url` (`?wsdl`). When an operation call gives no
    /// `soap_action`, the MID reads the operation's `soapAction` from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wsdl: Option<String>,
    /// PEM CA certificates for a target with an internal CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// SSH aliases: how the MID checks the host's key (default: its known_hosts file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<crate::ssh::HostKeyPolicy>,
    /// SSH aliases: most connections a MID keeps open to the host, reused across jobs
    /// (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
    /// JDBC aliases: TLS to the database (default `prefer`; `verify_full` checks the
    /// certificate against `ca_pem` and the host name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::sql::TlsMode>,
    /// JDBC aliases: session settings and connection options (see the SQL probe).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// HTTP aliases: `relaxed` sends calls through the express lane unless an action
    /// says otherwise (see [`crate::api::Durability`]); default `durable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<crate::api::Durability>,
}

/// An alias as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AliasInfo {
    /// Alias id.
    pub id: String,
    /// The alias.
    #[serde(flatten)]
    pub alias: Alias,
    /// The ECC agent calls go to.
    pub agent: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

/// A credential as the API shows it: stored secrets as `***`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialInfo {
    /// Credential id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Type and fields, redacted.
    #[serde(flatten)]
    pub spec: crate::credential::CredentialSpec,
    /// Aliases that use it.
    pub used_by: Vec<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}
