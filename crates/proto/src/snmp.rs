//! Payloads of the `SNMPProbe` topic: reads from an SNMP agent (a switch, a printer,
//! a UPS …) inside the MID's network — `get`, `get_next`, a walk of a subtree with
//! get-next or get-bulk, or a table read into rows by index — over SNMP v1, v2c or
//! v3 (USM).
//!
//! The request's OIDs are dotted numbers: MIB names are resolved by whoever builds
//! the request, so the MID needs no MIB files. Whether the credential fits the
//! version (a community for v1/v2c, a USM user for v3) is checked on the MID once the
//! credential is opened, since the instance sees only its reference.

use crate::credential::CredentialRef;
use crate::probe::{FieldError, Target, field_error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The agent's port unless the request says otherwise.
pub const DEFAULT_PORT: u16 = 161;
/// Wait for one answer (per attempt).
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// Longest `timeout_ms`.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Attempts after the first.
pub const DEFAULT_RETRIES: u32 = 2;
/// Most `retries`.
pub const MAX_RETRIES: u32 = 10;
/// Most varbinds a walk or table read returns (then `truncated`).
pub const DEFAULT_MAX_VARBINDS: u64 = 100_000;
/// Longest the whole job runs unless `job_timeout_ms` says otherwise.
pub const DEFAULT_JOB_TIMEOUT_MS: u64 = 60_000;
/// Longest `job_timeout_ms`.
pub const MAX_JOB_TIMEOUT_MS: u64 = 3_600_000;
/// Default `max_repetitions` of a bulk walk.
pub const DEFAULT_MAX_REPETITIONS: u32 = 25;
/// Most OIDs in one `get`/`get_next`.
pub const MAX_OIDS: usize = 128;
/// Most sub-identifiers in an OID (RFC 2578 §3.5).
pub const MAX_OID_LEN: usize = 128;

/// The protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnmpVersion {
    /// SNMPv1 (community).
    V1,
    /// SNMPv2c (community), the common default.
    #[default]
    V2c,
    /// SNMPv3 with the User-based Security Model.
    V3,
}

/// What is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum SnmpOperation {
    /// The values of these OIDs.
    Get {
        /// Dotted numeric OIDs (`1.3.6.1.2.1.1.1.0`).
        oids: Vec<String>,
    },
    /// The values that follow these OIDs.
    GetNext {
        /// Dotted numeric OIDs.
        oids: Vec<String>,
    },
    /// Everything under `oid`, one get-next at a time (works with v1).
    Walk {
        /// The subtree's root.
        oid: String,
    },
    /// Everything under `oid`, with get-bulk (v2c and v3).
    BulkWalk {
        /// The subtree's root.
        oid: String,
        /// Varbinds asked per get-bulk (default 25).
        #[serde(default = "default_max_repetitions")]
        max_repetitions: u32,
    },
    /// A conceptual table read into rows by index.
    Table {
        /// The table (`ifTable`, 1.3.6.1.2.1.2.2) or its entry (…2.2.1).
        oid: String,
        /// Only these columns (sub-identifiers under the entry); default all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        columns: Option<Vec<u32>>,
    },
}

fn default_max_repetitions() -> u32 {
    DEFAULT_MAX_REPETITIONS
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

/// Input of an `SNMPProbe` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpRequest {
    /// The agent's host name or IP address, resolved and checked by the MID's egress
    /// policy (`policy.snmp`).
    pub host: String,
    /// Its UDP port (default 161).
    #[serde(default = "default_port")]
    pub port: u16,
    /// `v1`, `v2c` (default) or `v3`.
    #[serde(default)]
    pub version: SnmpVersion,
    /// An `snmp_community` credential for v1/v2c, `snmp_v3` for v3.
    pub credential: CredentialRef,
    /// What is read.
    pub operation: SnmpOperation,
    /// Wait for one answer, per attempt (default 2000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Attempts after the first when no answer comes (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Most varbinds a walk or table read returns (default 100 000); past it the
    /// result is `truncated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_varbinds: Option<u64>,
    /// The v3 context name (default empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_name: Option<String>,
    /// Longest the whole job may take (default 60 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_timeout_ms: Option<u64>,
}

/// One variable binding: an OID and its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VarBind {
    /// Dotted numeric OID.
    pub oid: String,
    /// `integer`, `octet_string`, `oid`, `ip_address`, `counter32`, `gauge32`,
    /// `timeticks`, `counter64`, `opaque`, `null`, `no_such_object`,
    /// `no_such_instance` or `end_of_mib_view`.
    pub type_name: String,
    /// Integers as numbers (a counter64 above 2^53 as a decimal string), octet
    /// strings as text when printable UTF-8 else `{"hex": "…"}`, addresses and OIDs
    /// as dotted text, `null` for the exceptions.
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

/// One row of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TableRow {
    /// The row's index: the OID sub-identifiers after the column (`1`, or
    /// `10.0.0.1` for an address-indexed table).
    pub index: String,
    /// Values by column number, as in [`VarBind::value`].
    #[schema(value_type = Object)]
    pub columns: BTreeMap<u32, serde_json::Value>,
}

/// Result of an `SNMPProbe` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnmpResponse {
    /// The varbinds read, in the agent's order.
    pub varbinds: Vec<VarBind>,
    /// A table read's rows, by index in the agent's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<Vec<TableRow>>,
    /// The agent's SNMP engine id (v3), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_id: Option<String>,
    /// How long the job took.
    pub duration_ms: u64,
    /// A walk stopped at `max_varbinds` with more to read.
    #[serde(default)]
    pub truncated: bool,
}

impl SnmpRequest {
    /// Wait for one answer.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }

    /// Attempts after the first.
    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(DEFAULT_RETRIES)
    }

    /// Most varbinds a walk returns.
    pub fn max_varbinds(&self) -> u64 {
        self.max_varbinds.unwrap_or(DEFAULT_MAX_VARBINDS)
    }

    /// The whole job's bound.
    pub fn job_timeout_ms(&self) -> u64 {
        self.job_timeout_ms.unwrap_or(DEFAULT_JOB_TIMEOUT_MS)
    }

    /// Checks what can be checked without the agent; errors name the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.host.is_empty()
            || self.host.len() > 253
            || self
                .host
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/')
        {
            return Err(field_error(
                "host",
                "must be a host name or IP address (no scheme, port or path)",
            ));
        }
        if self.port == 0 {
            return Err(field_error("port", "must be 1–65535"));
        }
        match &self.operation {
            SnmpOperation::Get { oids } | SnmpOperation::GetNext { oids } => {
                if oids.is_empty() || oids.len() > MAX_OIDS {
                    return Err(field_error(
                        "operation.oids",
                        format!("must hold 1–{MAX_OIDS} OIDs"),
                    ));
                }
                for (i, oid) in oids.iter().enumerate() {
                    parse_oid(oid).map_err(|m| field_error(&format!("operation.oids[{i}]"), m))?;
                }
            }
            SnmpOperation::Walk { oid } => {
                parse_oid(oid).map_err(|m| field_error("operation.oid", m))?;
            }
            SnmpOperation::BulkWalk {
                oid,
                max_repetitions,
            } => {
                parse_oid(oid).map_err(|m| field_error("operation.oid", m))?;
                if self.version == SnmpVersion::V1 {
                    return Err(field_error(
                        "operation",
                        "bulk_walk needs v2c or v3 (SNMPv1 has no get-bulk): use walk",
                    ));
                }
                if !(1..=1000).contains(max_repetitions) {
                    return Err(field_error(
                        "operation.max_repetitions",
                        format!("must be 1–1000, got {max_repetitions}"),
                    ));
                }
            }
            SnmpOperation::Table { oid, columns } => {
                parse_oid(oid).map_err(|m| field_error("operation.oid", m))?;
                if let Some(cols) = columns
                    && (cols.is_empty() || cols.len() > MAX_OIDS)
                {
                    return Err(field_error(
                        "operation.columns",
                        format!("must hold 1–{MAX_OIDS} column numbers when given"),
                    ));
                }
            }
        }
        if let Some(t) = self.timeout_ms
            && !(1..=MAX_TIMEOUT_MS).contains(&t)
        {
            return Err(field_error(
                "timeout_ms",
                format!("must be 1–{MAX_TIMEOUT_MS}, got {t}"),
            ));
        }
        if let Some(r) = self.retries
            && r > MAX_RETRIES
        {
            return Err(field_error(
                "retries",
                format!("must be 0–{MAX_RETRIES}, got {r}"),
            ));
        }
        if self.max_varbinds == Some(0) {
            return Err(field_error("max_varbinds", "must be at least 1"));
        }
        if let Some(t) = self.job_timeout_ms
            && !(1..=MAX_JOB_TIMEOUT_MS).contains(&t)
        {
            return Err(field_error(
                "job_timeout_ms",
                format!("must be 1–{MAX_JOB_TIMEOUT_MS}, got {t}"),
            ));
        }
        if let Some(name) = &self.context_name {
            if self.version != SnmpVersion::V3 {
                return Err(field_error("context_name", "is for v3 only"));
            }
            if name.len() > 255 {
                return Err(field_error("context_name", "must be at most 255 bytes"));
            }
        }
        Ok(())
    }
}

/// Parses a dotted numeric OID (`1.3.6.1.2.1.1.1.0`, a leading dot allowed): at
/// least two sub-identifiers, the first 0–2, the second below 40 unless the first is
/// 2, at most [`MAX_OID_LEN`] of them, each a `u32`.
pub fn parse_oid(text: &str) -> Result<Vec<u32>, String> {
    let body = text.strip_prefix('.').unwrap_or(text);
    let mut out = Vec::new();
    for part in body.split('.') {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{text}` is not a dotted numeric OID"));
        }
        let n: u32 = part
            .parse()
            .map_err(|_| format!("`{text}`: sub-identifier {part} is above 4294967295"))?;
        out.push(n);
    }
    if out.len() < 2 || out.len() > MAX_OID_LEN {
        return Err(format!(
            "`{text}` must have 2–{MAX_OID_LEN} sub-identifiers"
        ));
    }
    if out[0] > 2 || (out[0] < 2 && out[1] >= 40) {
        return Err(format!(
            "`{text}` does not start with 0, 1 or 2 (and a second arc below 40)"
        ));
    }
    Ok(out)
}

/// An OID written dotted.
pub fn oid_text(oid: &[u32]) -> String {
    let mut s = String::with_capacity(oid.len() * 4);
    for (i, n) in oid.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        s.push_str(&n.to_string());
    }
    s
}

/// The `SNMPProbe` topic.
pub struct Snmp;

impl crate::probe::Contract for Snmp {
    const TOPIC: crate::ecc::Topic = crate::ecc::Topic::SNMPProbe;
    type Request = SnmpRequest;
    type Response = SnmpResponse;

    fn validate(req: &SnmpRequest) -> Result<(), FieldError> {
        req.validate()
    }

    fn target(req: &SnmpRequest) -> Option<Target> {
        Some(Target {
            host: req.host.clone(),
            port: Some(req.port),
        })
    }

    fn credential(req: &SnmpRequest) -> Option<&CredentialRef> {
        Some(&req.credential)
    }

    /// Always bounded: a walk of a large agent could otherwise run on.
    fn timeout(req: &SnmpRequest) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(req.job_timeout_ms()))
    }
}

/// `POST /api/v1/actions/snmp`: a read run by a MID against the agent of an alias of
/// kind `snmp` (its host, port and credential).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnmpAction {
    /// The alias (kind `snmp`).
    pub alias: String,
    /// The version (default: the alias's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<SnmpVersion>,
    /// What is read (required: `None` only so the type has a `Default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<SnmpOperation>,
    /// Wait for one answer in milliseconds (default 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Attempts after the first (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Most varbinds a walk returns (default 100 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_varbinds: Option<u64>,
    /// Never run it twice: after a lost MID it ends in `error` instead.
    #[serde(default)]
    pub at_most_once: bool,
    /// Caller's correlator for the output record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlator: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: serde_json::Value) -> Result<SnmpRequest, String> {
        let mut base = json!({"host": "10.0.0.5", "credential": {"id": "c", "name": "n"}});
        if let (Some(m), Some(more)) = (base.as_object_mut(), v.as_object()) {
            m.extend(more.clone());
        }
        let r: SnmpRequest = serde_json::from_value(base).map_err(|e| e.to_string())?;
        r.validate().map_err(|e| e.to_string())?;
        Ok(r)
    }

    #[test]
    fn oids_parse_strictly() {
        assert_eq!(parse_oid(".1.3.6.1"), Ok(vec![1, 3, 6, 1]));
        assert_eq!(oid_text(&[1, 3, 6, 1, 2]), "1.3.6.1.2");
        for bad in [
            "",
            "1",
            "1..3",
            "1.3.x",
            "3.1",
            "1.40",
            "1.3.99999999999",
            "sysDescr.0",
        ] {
            assert!(parse_oid(bad).is_err(), "{bad}");
        }
        assert!(parse_oid("2.999.1").is_ok());
    }

    #[test]
    fn requests_validate_naming_the_field() {
        let r = req(json!({"operation": {"op": "get", "oids": ["1.3.6.1.2.1.1.1.0"]}}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.port, r.version, r.retries(), r.timeout_ms()),
            (161, SnmpVersion::V2c, 2, 2000)
        );
        let e = req(json!({"operation": {"op": "get", "oids": ["1.3", "bad"]}})).err();
        assert!(e.is_some_and(|e| e.starts_with("operation.oids[1]:")));
        let e =
            req(json!({"version": "v1", "operation": {"op": "bulk_walk", "oid": "1.3.6"}})).err();
        assert!(e.is_some_and(|e| e.starts_with("operation:")));
        let r = req(json!({"operation": {"op": "bulk_walk", "oid": "1.3.6"}}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.operation,
            SnmpOperation::BulkWalk {
                oid: "1.3.6".into(),
                max_repetitions: 25
            }
        );
        let e = req(json!({"retries": 11, "operation": {"op": "walk", "oid": "1.3.6"}})).err();
        assert!(e.is_some_and(|e| e.starts_with("retries:")));
        let e =
            req(json!({"context_name": "x", "operation": {"op": "walk", "oid": "1.3.6"}})).err();
        assert!(e.is_some_and(|e| e.starts_with("context_name:")));
        let e = req(json!({"host": "a b", "operation": {"op": "walk", "oid": "1.3.6"}})).err();
        assert!(e.is_some_and(|e| e.starts_with("host:")));
        let e = req(json!({"operation": {"op": "table", "oid": "1.3.6", "columns": []}})).err();
        assert!(e.is_some_and(|e| e.starts_with("operation.columns:")));
    }
}
