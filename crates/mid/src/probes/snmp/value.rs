//! Varbind values as JSON, the way the result shows them: integers as numbers (a
//! counter64 past 2^53 as a decimal string, where JSON readers would round it),
//! octet strings as text when they are printable UTF-8 else `{"hex": "…"}`,
//! addresses and OIDs dotted.

use super::ber::Value;
use openmid_proto::snmp::{VarBind, oid_text};
use serde_json::json;

/// The type's name in the result.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) => "integer",
        Value::OctetString(_) => "octet_string",
        Value::Null => "null",
        Value::Oid(_) => "oid",
        Value::IpAddress(_) => "ip_address",
        Value::Counter32(_) => "counter32",
        Value::Gauge32(_) => "gauge32",
        Value::TimeTicks(_) => "timeticks",
        Value::Opaque(_) => "opaque",
        Value::Counter64(_) => "counter64",
        Value::NoSuchObject => "no_such_object",
        Value::NoSuchInstance => "no_such_instance",
        Value::EndOfMibView => "end_of_mib_view",
    }
}

fn text_or_hex(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(s)
            if s.chars()
                .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t')) =>
        {
            json!(s)
        }
        _ => json!({ "hex": hex::encode(bytes) }),
    }
}

/// The value as JSON.
pub fn json(v: &Value) -> serde_json::Value {
    match v {
        Value::Integer(n) => json!(n),
        Value::OctetString(b) => text_or_hex(b),
        Value::Oid(o) => json!(oid_text(o)),
        Value::IpAddress(a) => json!(std::net::Ipv4Addr::from(*a).to_string()),
        Value::Counter32(n) | Value::Gauge32(n) | Value::TimeTicks(n) => json!(n),
        Value::Opaque(b) => json!({ "hex": hex::encode(b) }),
        Value::Counter64(n) if *n > (1u64 << 53) => json!(n.to_string()),
        Value::Counter64(n) => json!(n),
        Value::Null | Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView => {
            serde_json::Value::Null
        }
    }
}

/// A varbind as the result shows it.
pub fn varbind(oid: &[u32], v: &Value) -> VarBind {
    VarBind {
        oid: oid_text(oid),
        type_name: type_name(v).to_string(),
        value: json(v),
    }
}
