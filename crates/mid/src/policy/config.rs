//! The `[policy]` table of mid.toml as written, and its compilation into the rules the
//! checks use. Every mistake is found here, at config load, with the key at fault
//! (`policy.command.programs[0].path: must be an absolute path`), so a running MID
//! never meets a rule it cannot read.

use super::Protocol;
use super::command::{CommandRules, EnvPattern, ProgramRule, is_plain_absolute};
use super::network::{Allow, Entry, HostPattern, NetworkRules, PortRange, parse_cidr};
use super::pattern::ArgPattern;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The `[policy]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Rules every protocol shares: its deny lists add to each protocol's, its allow
    /// lists apply where a protocol's own is empty.
    #[serde(default)]
    pub default: NetworkConfig,
    /// REST and SOAP probes.
    #[serde(default)]
    pub http: NetworkConfig,
    /// SSH.
    #[serde(default)]
    pub ssh: NetworkConfig,
    /// SQL databases: the network rules, and whether jobs may write.
    #[serde(default)]
    pub sql: SqlConfig,
    /// LDAP directories.
    #[serde(default)]
    pub ldap: NetworkConfig,
    /// SNMP agents.
    #[serde(default)]
    pub snmp: NetworkConfig,
    /// Ping and port scans.
    #[serde(default)]
    pub scan: NetworkConfig,
    /// Which commands may run (none unless listed).
    #[serde(default)]
    pub command: CommandConfig,
    /// Which local files imports may read (none unless listed).
    #[serde(default)]
    pub file: super::file::FileConfig,
}

impl PolicyConfig {
    /// The section of one protocol.
    pub fn section(&self, protocol: Protocol) -> &NetworkConfig {
        match protocol {
            Protocol::Http => &self.http,
            Protocol::Ssh => &self.ssh,
            Protocol::Sql => &self.sql.network,
            Protocol::Ldap => &self.ldap,
            Protocol::Snmp => &self.snmp,
            Protocol::Scan => &self.scan,
        }
    }
}

/// One network section: `[policy.default]`, `[policy.http]`, …
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Addresses that may be reached (`10.0.0.0/8`, `fd00::/8`, `10.1.2.3`); empty means
    /// any address except the built-in refusals.
    pub allow_cidrs: Vec<String>,
    /// Addresses that are refused, whatever the allow lists say.
    pub deny_cidrs: Vec<String>,
    /// Host names that may be reached (`api.example.com`, `*.corp.example.com`); empty
    /// means any name. When set, an IP-literal target needs an `allow_cidrs` entry.
    pub allow_hosts: Vec<String>,
    /// Host names that are refused.
    pub deny_hosts: Vec<String>,
    /// Ports that may be reached (`443`, `"8000-8999"`); empty means any port.
    pub allow_ports: Vec<PortSpec>,
    /// Ports that are refused.
    pub deny_ports: Vec<PortSpec>,
}

/// The `[policy.sql]` section: a network section plus `writes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// Which servers may be reached, as in every network section.
    #[serde(flatten)]
    pub network: NetworkConfig,
    /// Whether a SQL job may ask for a writing session (`write = true`). Off by
    /// default: every session is read-only, enforced by the server.
    #[serde(default)]
    pub writes: bool,
}

/// A port (`443`) or a range (`"8000-8999"`, or `"443"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// A single port, as a TOML integer.
    Number(i64),
    /// A port or `lo-hi` range, as a string.
    Text(String),
}

impl PortSpec {
    fn parse(&self) -> Result<PortRange, String> {
        match self {
            Self::Number(n) => PortRange::parse(&n.to_string()),
            Self::Text(t) => PortRange::parse(t),
        }
    }

    fn written(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => t.clone(),
        }
    }
}

/// The `[policy.command]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandConfig {
    /// Programs that may be handed a script body to run (absolute paths); each needs a
    /// `programs` entry too, which bounds its arguments, directories and run time.
    pub interpreters: Vec<PathBuf>,
    /// The programs that may run.
    pub programs: Vec<ProgramConfig>,
}

/// One `[[policy.command.programs]]` entry. Several entries may name the same program
/// (say `df -h` and `df -i`); the first that fits a run allows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramConfig {
    /// The program, as an absolute path.
    pub path: PathBuf,
    /// One pattern per argument (`*` any one, `**` any remaining, globs); empty means
    /// no arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Directories (and their subdirectories) the program may run in; empty means the
    /// job may not choose one.
    #[serde(default)]
    pub cwd: Vec<PathBuf>,
    /// Environment variables the job may set (`LANG`, `LC_*`); empty means none.
    #[serde(default)]
    pub env: Vec<String>,
    /// The longest a run may take, in seconds (1–86400).
    #[serde(default = "default_max_runtime")]
    pub max_runtime_secs: u64,
}

fn default_max_runtime() -> u64 {
    300
}

/// A policy setting that cannot be used, naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// The key at fault, e.g. `policy.http.deny_cidrs[1]`.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

fn bad(field: String, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field,
        message: message.into(),
    }
}

/// Compiles one list, naming each entry `{key}[i]`.
fn entries<W, T>(
    key: &str,
    written: &[W],
    parse: impl Fn(&W) -> Result<T, String>,
    show: impl Fn(&W) -> String,
) -> Result<Vec<Entry<T>>, PolicyError> {
    written
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let rule = format!("{key}[{i}]");
            match parse(w) {
                Ok(value) => Ok(Entry {
                    value,
                    rule,
                    written: show(w),
                }),
                Err(message) => Err(bad(rule, message)),
            }
        })
        .collect()
}

/// The compiled lists of one section.
struct Lists {
    allow_cidrs: Vec<Entry<ipnet::IpNet>>,
    deny_cidrs: Vec<Entry<ipnet::IpNet>>,
    allow_hosts: Vec<Entry<HostPattern>>,
    deny_hosts: Vec<Entry<HostPattern>>,
    allow_ports: Vec<Entry<PortRange>>,
    deny_ports: Vec<Entry<PortRange>>,
}

fn lists(section: &str, c: &NetworkConfig) -> Result<Lists, PolicyError> {
    let key = |list: &str| format!("policy.{section}.{list}");
    let cidr = |s: &String| parse_cidr(s);
    let host = |s: &String| HostPattern::parse(s);
    let text = |s: &String| s.clone();
    Ok(Lists {
        allow_cidrs: entries(&key("allow_cidrs"), &c.allow_cidrs, cidr, text)?,
        deny_cidrs: entries(&key("deny_cidrs"), &c.deny_cidrs, cidr, text)?,
        allow_hosts: entries(&key("allow_hosts"), &c.allow_hosts, host, text)?,
        deny_hosts: entries(&key("deny_hosts"), &c.deny_hosts, host, text)?,
        allow_ports: entries(
            &key("allow_ports"),
            &c.allow_ports,
            PortSpec::parse,
            PortSpec::written,
        )?,
        deny_ports: entries(
            &key("deny_ports"),
            &c.deny_ports,
            PortSpec::parse,
            PortSpec::written,
        )?,
    })
}

/// A protocol's own allow list when it has one, else the default section's; the key
/// names the list in force, or the protocol's own when both are empty (that is where
/// an operator would add an entry).
fn allow<T>(protocol: Protocol, list: &str, own: Vec<Entry<T>>, default: &[Entry<T>]) -> Allow<T>
where
    T: Clone,
{
    if own.is_empty() && !default.is_empty() {
        Allow {
            entries: default.to_vec(),
            key: format!("policy.default.{list}"),
        }
    } else {
        Allow {
            entries: own,
            key: format!("policy.{protocol}.{list}"),
        }
    }
}

fn deny<T: Clone>(own: Vec<Entry<T>>, default: &[Entry<T>]) -> Vec<Entry<T>> {
    let mut all = own;
    all.extend_from_slice(default);
    all
}

/// The effective network rules of every protocol, in [`Protocol::ALL`] order.
pub(crate) fn compile_network(config: &PolicyConfig) -> Result<Vec<NetworkRules>, PolicyError> {
    let shared = lists("default", &config.default)?;
    Protocol::ALL
        .iter()
        .map(|&protocol| {
            let own = lists(protocol.key(), config.section(protocol))?;
            Ok(NetworkRules {
                protocol,
                deny_cidrs: deny(own.deny_cidrs, &shared.deny_cidrs),
                deny_hosts: deny(own.deny_hosts, &shared.deny_hosts),
                deny_ports: deny(own.deny_ports, &shared.deny_ports),
                allow_cidrs: allow(
                    protocol,
                    "allow_cidrs",
                    own.allow_cidrs,
                    &shared.allow_cidrs,
                ),
                allow_hosts: allow(
                    protocol,
                    "allow_hosts",
                    own.allow_hosts,
                    &shared.allow_hosts,
                ),
                allow_ports: allow(
                    protocol,
                    "allow_ports",
                    own.allow_ports,
                    &shared.allow_ports,
                ),
            })
        })
        .collect()
}

/// The compiled `[policy.command]` section.
pub(crate) fn compile_command(config: &CommandConfig) -> Result<CommandRules, PolicyError> {
    const ABSOLUTE: &str = "must be an absolute path without `..`";
    for (i, interpreter) in config.interpreters.iter().enumerate() {
        if !is_plain_absolute(interpreter) {
            return Err(bad(format!("policy.command.interpreters[{i}]"), ABSOLUTE));
        }
        if !config.programs.iter().any(|p| &p.path == interpreter) {
            return Err(bad(
                format!("policy.command.interpreters[{i}]"),
                format!(
                    "{} has no policy.command.programs entry (one is needed to bound its arguments, directories and run time)",
                    interpreter.display()
                ),
            ));
        }
    }
    let programs = config
        .programs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let rule = format!("policy.command.programs[{i}]");
            if !is_plain_absolute(&p.path) {
                return Err(bad(format!("{rule}.path"), ABSOLUTE));
            }
            let last = p.args.len().saturating_sub(1);
            let args = p
                .args
                .iter()
                .enumerate()
                .map(|(j, written)| {
                    let pattern = ArgPattern::parse(written)
                        .map_err(|m| bad(format!("{rule}.args[{j}]"), m))?;
                    if pattern == ArgPattern::Rest && j != last {
                        return Err(bad(
                            format!("{rule}.args[{j}]"),
                            "`**` (any remaining arguments) may only be the last pattern",
                        ));
                    }
                    Ok((written.clone(), pattern))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(j) = p.cwd.iter().position(|d| !is_plain_absolute(d)) {
                return Err(bad(format!("{rule}.cwd[{j}]"), ABSOLUTE));
            }
            let env = p
                .env
                .iter()
                .enumerate()
                .map(|(j, e)| EnvPattern::parse(e).map_err(|m| bad(format!("{rule}.env[{j}]"), m)))
                .collect::<Result<Vec<_>, _>>()?;
            if !(1..=86_400).contains(&p.max_runtime_secs) {
                return Err(bad(
                    format!("{rule}.max_runtime_secs"),
                    format!("must be 1–86400, got {}", p.max_runtime_secs),
                ));
            }
            Ok(ProgramRule {
                rule,
                path: p.path.clone(),
                args,
                cwd: p.cwd.clone(),
                env,
                max_runtime: Duration::from_secs(p.max_runtime_secs),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CommandRules {
        interpreters: config.interpreters.clone(),
        programs,
    })
}

/// Checks the `[policy.file]` section: absolute directories without `..` (they are
/// resolved at each check, so one created after the MID started counts).
pub(crate) fn check_file(config: &super::file::FileConfig) -> Result<(), PolicyError> {
    for (i, dir) in config.allow_dirs.iter().enumerate() {
        if !is_plain_absolute(dir) {
            return Err(bad(
                format!("policy.file.allow_dirs[{i}]"),
                "must be an absolute path without `..`",
            ));
        }
    }
    Ok(())
}
