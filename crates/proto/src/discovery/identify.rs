//! `Identify`: what each live host of a discovery run says about itself, gathered by
//! one job over many hosts after the scan — the `Server` header of its web ports,
//! the names in its TLS certificate (read, never trusted: this is discovery, not a
//! connection that carries anything), and with an SNMP credential its `sysDescr.0`,
//! `sysObjectID.0` and `sysName.0`. The instance classifies from it.
//!
//! Every connection is checked by the MID's policy where it opens: web and TLS ports
//! under `policy.scan` (the scan already reached them), SNMP under `policy.snmp`.

use crate::credential::CredentialRef;
use crate::probe::{FieldError, Target, field_error};
use crate::snmp::SnmpVersion;
use serde::{Deserialize, Serialize};

/// Most hosts one job identifies.
pub const MAX_IDENTIFY_HOSTS: usize = 4096;
/// Most ports per host and kind.
pub const MAX_IDENTIFY_PORTS: usize = 16;
/// Most bytes of one header value or name kept.
pub const MAX_IDENTITY_TEXT: usize = 256;
/// Most TLS names kept per host.
pub const MAX_TLS_NAMES: usize = 32;
/// `sysDescr.0`.
pub const SYS_DESCR: &str = "1.3.6.1.2.1.1.1.0";
/// `sysObjectID.0`.
pub const SYS_OBJECT_ID: &str = "1.3.6.1.2.1.1.2.0";
/// `sysName.0`.
pub const SYS_NAME: &str = "1.3.6.1.2.1.1.5.0";

fn default_identify_timeout_ms() -> u64 {
    2000
}
fn default_identify_concurrency() -> u32 {
    64
}
fn default_snmp_port() -> u16 {
    crate::snmp::DEFAULT_PORT
}

/// One host to identify, and which of its open ports to ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifyHost {
    /// Its IP address.
    pub address: String,
    /// Ports asked for an HTTP `Server` header in plain text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_ports: Vec<u16>,
    /// Ports where a TLS handshake is made for the certificate's names, then an
    /// HTTP `Server` header asked over it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_ports: Vec<u16>,
}

/// How the hosts' SNMP agents are asked, with the job's one credential (the
/// request's `credential`, where every topic keeps it so the instance seals it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifySnmp {
    /// Which version the credential speaks.
    #[serde(default)]
    pub version: SnmpVersion,
    /// The agents' UDP port (default 161).
    #[serde(default = "default_snmp_port")]
    pub port: u16,
    /// Which snmp alias it came from, for the evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// Input of an `Identify` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifyRequest {
    /// The hosts, each once.
    pub hosts: Vec<IdentifyHost>,
    /// Ask every host's SNMP agent too, with `credential`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmp: Option<IdentifySnmp>,
    /// The `snmp_community` (v1/v2c) or `snmp_v3` credential SNMP is asked with,
    /// sealed to the MID that claims the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialRef>,
    /// How long one connection, handshake or answer may take (default 2000).
    #[serde(default = "default_identify_timeout_ms")]
    pub timeout_ms: u64,
    /// Hosts asked at once (default 64).
    #[serde(default = "default_identify_concurrency")]
    pub concurrency: u32,
    /// Longest the whole job may take (default one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_run_ms: Option<u64>,
}

impl IdentifyRequest {
    /// The whole job's time limit.
    pub fn max_run_ms(&self) -> u64 {
        self.max_run_ms.unwrap_or(super::DEFAULT_MAX_RUN_MS)
    }

    /// Checks what can be checked without the network; errors name the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.hosts.is_empty() {
            return Err(field_error("hosts", "name at least one host"));
        }
        if self.hosts.len() > MAX_IDENTIFY_HOSTS {
            return Err(field_error(
                "hosts",
                format!(
                    "at most {MAX_IDENTIFY_HOSTS} hosts, got {}",
                    self.hosts.len()
                ),
            ));
        }
        for (i, host) in self.hosts.iter().enumerate() {
            if host.address.parse::<std::net::IpAddr>().is_err() {
                return Err(field_error(
                    &format!("hosts[{i}].address"),
                    format!("`{}` is not an IP address", host.address),
                ));
            }
            for (name, ports) in [
                ("http_ports", &host.http_ports),
                ("tls_ports", &host.tls_ports),
            ] {
                if ports.len() > MAX_IDENTIFY_PORTS {
                    return Err(field_error(
                        &format!("hosts[{i}].{name}"),
                        format!("at most {MAX_IDENTIFY_PORTS} ports"),
                    ));
                }
                if let Some(j) = ports.iter().position(|p| *p == 0) {
                    return Err(field_error(
                        &format!("hosts[{i}].{name}[{j}]"),
                        "0 is not a port",
                    ));
                }
            }
        }
        match (&self.snmp, &self.credential) {
            (Some(snmp), _) if snmp.port == 0 => {
                return Err(field_error("snmp.port", "0 is not a port"));
            }
            (Some(_), None) => {
                return Err(field_error(
                    "credential",
                    "is required with `snmp`: an snmp_community or snmp_v3 credential",
                ));
            }
            (None, Some(_)) => {
                return Err(field_error(
                    "snmp",
                    "is required with a credential: say how the agents are asked",
                ));
            }
            _ => {}
        }
        super::in_range(
            "timeout_ms",
            self.timeout_ms,
            1,
            super::MAX_PROBE_TIMEOUT_MS,
        )?;
        super::in_range(
            "concurrency",
            u64::from(self.concurrency),
            1,
            u64::from(super::MAX_CONCURRENCY),
        )?;
        if let Some(t) = self.max_run_ms {
            super::in_range("max_run_ms", t, 1, super::MAX_RUN_MS)?;
        }
        Ok(())
    }
}

/// What one web port answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebAnswer {
    /// The port.
    pub port: u16,
    /// Whether it was asked over TLS.
    pub tls: bool,
    /// The status line's code, when it answered HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Its `Server` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// What a host's SNMP agent said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnmpIdentity {
    /// `sysDescr.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_descr: Option<String>,
    /// `sysObjectID.0`, dotted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_object_id: Option<String>,
    /// `sysName.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_name: Option<String>,
    /// The snmp alias whose credential it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// What one host said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostIdentity {
    /// The address.
    pub address: String,
    /// Its web ports' answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub web: Vec<WebAnswer>,
    /// Names in its TLS certificate: the subject's common name, then its DNS
    /// subject alternative names, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_names: Vec<String>,
    /// Its SNMP agent's identity, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmp: Option<SnmpIdentity>,
    /// What could not be asked and why (`snmp: no answer …`, `443: handshake …`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Result of an `Identify` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IdentifyResponse {
    /// Every host asked, in the request's order.
    pub hosts: Vec<HostIdentity>,
    /// Connections the MID's policy refused.
    pub refused: u64,
    /// How long it ran.
    pub duration_ms: u64,
}

/// The `Identify` topic.
pub struct Identify;

impl crate::probe::Contract for Identify {
    const TOPIC: crate::ecc::Topic = crate::ecc::Topic::Identify;
    type Request = IdentifyRequest;
    type Response = IdentifyResponse;

    fn validate(req: &IdentifyRequest) -> Result<(), FieldError> {
        req.validate()
    }

    fn target(req: &IdentifyRequest) -> Option<Target> {
        req.hosts.first().map(|h| Target {
            host: h.address.clone(),
            port: None,
        })
    }

    fn credential(req: &IdentifyRequest) -> Option<&CredentialRef> {
        req.credential.as_ref()
    }

    fn timeout(req: &IdentifyRequest) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(req.max_run_ms()))
    }
}

/// The HTTP status code and `Server` header of a response's head (the bytes up to
/// the blank line, or what came of them); `None` when it is not HTTP. The header's
/// value is cut to [`MAX_IDENTITY_TEXT`] bytes on a character boundary, control
/// characters escaped: it is outside data shown to people.
pub fn parse_http_head(head: &[u8]) -> Option<(u16, Option<String>)> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code: u16 = parts.next()?.trim().parse().ok()?;
    let mut server = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("server")
        {
            let value = value.trim();
            if !value.is_empty() {
                server = Some(shown(value));
            }
            break;
        }
    }
    Some((code, server))
}

/// Outside text as kept: control characters escaped, at most [`MAX_IDENTITY_TEXT`]
/// bytes.
pub fn shown(text: &str) -> String {
    let escaped = super::escape_banner(text.as_bytes());
    let mut end = escaped.len().min(MAX_IDENTITY_TEXT);
    while !escaped.is_char_boundary(end) {
        end -= 1;
    }
    escaped[..end].to_string()
}
