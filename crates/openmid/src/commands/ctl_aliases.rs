//! `openmid ctl aliases`: Connection & Credential aliases from a shell — create from
//! flags or JSON, show, list, delete.

use super::connections::read_source;
use super::ctl_output::{parse_headers, print_json, table};
use anyhow::{Context, Result};
use openmid_client::ApiClient;
use openmid_proto::alias::{Alias, AliasInfo, ConnectionKind, Execution};
use openmid_proto::rest::{RetryMode, RetryPolicy};
use openmid_proto::soap::SoapVersion;
use openmid_proto::ssh::HostKeyPolicy;
use std::path::PathBuf;

/// `ctl aliases`.
#[derive(clap::Subcommand)]
pub enum AliasesCommand {
    /// List aliases.
    List,
    /// Show one alias.
    Show {
        /// Alias name.
        name: String,
    },
    /// Create an alias.
    Create(AliasFields),
    /// Replace an alias (every field as given now).
    Update(AliasFields),
    /// Delete an alias.
    Delete {
        /// Alias name.
        name: String,
    },
}

/// The fields of `aliases create` and `update`.
#[derive(clap::Args)]
pub struct AliasFields {
    /// Alias name.
    name: String,
    /// http, soap, ssh, jdbc, ldap or snmp.
    #[arg(long, value_parser = ["http", "soap", "ssh", "jdbc", "ldap", "snmp"], required_unless_present = "from_json")]
    kind: Option<String>,
    /// Where the target is, as the MID sees it: an http(s) base URL,
    /// ssh://[user@]host[:port], postgres://host[:port]/db, mysql://host[:port]/db or
    /// ldap(s)://host[:port][/base-dn] or snmp://host[:port].
    #[arg(long, required_unless_present = "from_json")]
    base_url: Option<String>,
    /// Credential name.
    #[arg(long)]
    credential: Option<String>,
    /// Run on this MID.
    #[arg(long, conflicts_with = "cluster")]
    mid: Option<String>,
    /// Run on this cluster.
    #[arg(long)]
    cluster: Option<String>,
    /// Application (auto selection).
    #[arg(long)]
    application: Option<String>,
    /// Capabilities the MID must offer, comma separated (auto selection).
    #[arg(long, value_delimiter = ',')]
    capabilities: Vec<String>,
    /// Header `Name: value` sent with every call (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Timeout of one attempt, in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// none, fixed or exponential.
    #[arg(long, value_parser = ["none", "fixed", "exponential"])]
    retry: Option<String>,
    /// Retries after the first attempt.
    #[arg(long)]
    retries: Option<u32>,
    /// Wait before the first retry, in milliseconds.
    #[arg(long)]
    retry_delay_ms: Option<u64>,
    /// SOAP version, 1.1 or 1.2 (soap aliases).
    #[arg(long, value_parser = ["1.1", "1.2"])]
    soap_version: Option<String>,
    /// The service's WSDL, to read SOAP actions from (soap aliases; `?wsdl` or a URL
    /// on the alias's origin).
    #[arg(long)]
    wsdl: Option<String>,
    /// PEM file of the CA the target's certificate chains to.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// SSH host-key check: known-hosts (the MID's file), known-hosts=PATH,
    /// pinned=KEY-OR-SHA256-FINGERPRINT, or tofu (trust on first use).
    #[arg(long)]
    host_key: Option<String>,
    /// SSH connections a MID keeps open to the host.
    #[arg(long)]
    pool_size: Option<u32>,
    /// Database TLS: disable, prefer, require, verify-ca or verify-full; for an
    /// ldap:// alias, verify-full means StartTLS.
    #[arg(long, value_parser = ["disable", "prefer", "require", "verify-ca", "verify-full"])]
    tls: Option<String>,
    /// Database session setting or connection option `name=value` (repeatable).
    #[arg(long = "option")]
    options: Vec<String>,
    /// `relaxed`: calls through this alias take the express lane (no durable record
    /// before they run; see the README); default `durable`.
    #[arg(long, value_parser = ["durable", "relaxed"])]
    durability: Option<String>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
    /// The whole alias as JSON (`-`: stdin).
    #[arg(long)]
    from_json: Option<PathBuf>,
}

fn print_alias(a: &AliasInfo) {
    let mut t = table(&["field", "value"]);
    let al = &a.alias;
    let rows = [
        ("name", al.name.clone()),
        ("kind", al.kind.to_string()),
        ("base url", al.base_url.clone()),
        ("credential", al.credential.clone().unwrap_or_default()),
        ("runs on", a.agent.clone()),
        (
            "application",
            al.execution.application.clone().unwrap_or_default(),
        ),
        ("capabilities", al.execution.capabilities.join(", ")),
        (
            "host key",
            al.host_key
                .as_ref()
                .map(|h| serde_json::to_string(h).unwrap_or_default())
                .unwrap_or_default(),
        ),
        (
            "pool size",
            al.pool_size.map(|n| n.to_string()).unwrap_or_default(),
        ),
        (
            "tls",
            al.tls
                .map(|t| serde_json::to_string(&t).unwrap_or_default())
                .unwrap_or_default(),
        ),
        (
            "options",
            al.options
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (
            "durability",
            if al.durability.is_some_and(|d| d.is_relaxed()) {
                "relaxed (express lane)".to_string()
            } else {
                String::new()
            },
        ),
        (
            "headers",
            al.headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        (
            "timeout",
            al.timeout_ms.map(|t| format!("{t} ms")).unwrap_or_default(),
        ),
        (
            "retry",
            match al.retry.mode {
                RetryMode::None => "none".to_string(),
                mode => format!(
                    "{mode:?}, {} retries from {} ms",
                    al.retry.max_retries, al.retry.delay_ms
                )
                .to_lowercase(),
            },
        ),
        ("updated", a.updated_at.clone()),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    println!("{t}");
}

fn alias_body(f: &AliasFields) -> Result<Alias> {
    if let Some(path) = &f.from_json {
        let mut alias: Alias =
            serde_json::from_str(&read_source(path)?).context("--from-json: not a valid alias")?;
        alias.name = f.name.clone();
        return Ok(alias);
    }
    let kind = match f.kind.as_deref() {
        Some("soap") => ConnectionKind::Soap,
        Some("ssh") => ConnectionKind::Ssh,
        Some("jdbc") => ConnectionKind::Jdbc,
        Some("ldap") => ConnectionKind::Ldap,
        Some("snmp") => ConnectionKind::Snmp,
        _ => ConnectionKind::Http,
    };
    let host_key = f.host_key.as_deref().map(host_key_policy).transpose()?;
    let tls = match f.tls.as_deref() {
        None => None,
        Some(mode) => Some(
            serde_json::from_value(serde_json::Value::String(mode.replace('-', "_")))
                .with_context(|| format!("--tls `{mode}`"))?,
        ),
    };
    let mut options = std::collections::BTreeMap::new();
    for o in &f.options {
        let (k, v) = o
            .split_once('=')
            .with_context(|| format!("--option `{o}`: expected `name=value`"))?;
        options.insert(k.to_string(), v.to_string());
    }
    let mut retry = RetryPolicy::default();
    if let Some(mode) = &f.retry {
        retry.mode = match mode.as_str() {
            "fixed" => RetryMode::Fixed,
            "exponential" => RetryMode::Exponential,
            _ => RetryMode::None,
        };
    }
    if let Some(n) = f.retries {
        retry.max_retries = n;
    }
    if let Some(d) = f.retry_delay_ms {
        retry.delay_ms = d;
    }
    Ok(Alias {
        name: f.name.clone(),
        description: f.description.clone(),
        kind,
        base_url: f.base_url.clone().unwrap_or_default(),
        headers: parse_headers(&f.headers)?,
        timeout_ms: f.timeout_ms,
        retry,
        credential: f.credential.clone(),
        execution: Execution {
            mid: f.mid.clone(),
            cluster: f.cluster.clone(),
            application: f.application.clone(),
            capabilities: f.capabilities.clone(),
        },
        soap_version: match f.soap_version.as_deref() {
            Some("1.2") => Some(SoapVersion::V1_2),
            Some(_) => Some(SoapVersion::V1_1),
            None => None,
        },
        wsdl: f.wsdl.clone(),
        ca_pem: f
            .ca_file
            .as_ref()
            .map(|p| {
                std::fs::read_to_string(p).with_context(|| format!("--ca-file {}", p.display()))
            })
            .transpose()?,
        host_key,
        pool_size: f.pool_size,
        tls,
        options,
        durability: f.durability.as_deref().map(|d| match d {
            "relaxed" => openmid_proto::api::Durability::Relaxed,
            _ => openmid_proto::api::Durability::Durable,
        }),
    })
}

/// `--host-key`: `known-hosts`, `known-hosts=PATH`, `pinned=KEY` or `tofu`.
fn host_key_policy(text: &str) -> Result<HostKeyPolicy> {
    let (mode, value) = match text.split_once('=') {
        Some((m, v)) => (m, Some(v)),
        None => (text, None),
    };
    Ok(match (mode, value) {
        ("known-hosts", path) => HostKeyPolicy::KnownHosts {
            path: path.map(str::to_string),
        },
        ("pinned", Some(key)) => HostKeyPolicy::Pinned {
            key: key.to_string(),
        },
        ("tofu", None) => HostKeyPolicy::TrustOnFirstUse,
        _ => anyhow::bail!(
            "--host-key `{text}`: give known-hosts, known-hosts=PATH, pinned=KEY or tofu"
        ),
    })
}

/// Runs `ctl aliases …`.
pub async fn aliases(api: &ApiClient, cmd: AliasesCommand, json: bool) -> Result<()> {
    match cmd {
        AliasesCommand::List => {
            let list = api.list_aliases().await?;
            if json {
                return print_json(&list);
            }
            let mut t = table(&["name", "kind", "base url", "credential", "runs on"]);
            for a in &list {
                t.add_row(vec![
                    a.alias.name.clone(),
                    a.alias.kind.to_string(),
                    a.alias.base_url.clone(),
                    a.alias.credential.clone().unwrap_or_default(),
                    a.agent.clone(),
                ]);
            }
            println!("{t}");
        }
        AliasesCommand::Show { name } => {
            let a = api.get_alias(&name).await?;
            if json {
                print_json(&a)?
            } else {
                print_alias(&a)
            }
        }
        AliasesCommand::Create(fields) => {
            let a = api.create_alias(&alias_body(&fields)?).await?;
            if json {
                print_json(&a)?
            } else {
                print_alias(&a)
            }
        }
        AliasesCommand::Update(fields) => {
            let a = api.put_alias(&alias_body(&fields)?).await?;
            if json {
                print_json(&a)?
            } else {
                print_alias(&a)
            }
        }
        AliasesCommand::Delete { name } => {
            api.delete_alias(&name).await?;
            if !json {
                println!("deleted alias {name}");
            }
        }
    }
    Ok(())
}
