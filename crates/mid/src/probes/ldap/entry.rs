//! Search results as JSON: an entry's DN and attributes read from the BER the server
//! sent, each value a string, or base64 when its attribute holds bytes (the built-in
//! binary attributes, the request's `binary_attributes`, any `;binary` option) or it
//! is not UTF-8. A single value is a JSON string, several an array.
//!
//! The entries are read here rather than with `ldap3::SearchEntry::construct`, which
//! panics on a malformed message: what a directory sends is outside data, and a bad
//! entry must fail the job with a message, not the MID.

use base64::Engine as _;
use ldap3::asn1::{PL, StructureTag, TagClass};
use openmid_proto::ldap::{BINARY_ATTRIBUTES, LdapEntry};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// Application tag of a SearchResultEntry (RFC 4511 §4.5.2).
const ENTRY_TAG: u64 = 4;
/// Application tag of a SearchResultReference.
const REFERENCE_TAG: u64 = 19;

/// What one search response message holds.
#[derive(Debug)]
pub(super) enum Item {
    /// An entry.
    Entry(LdapEntry),
    /// A search reference: URIs where more results may be (not followed).
    Reference(Vec<String>),
    /// Anything else (an intermediate response): skipped.
    Other,
}

/// Maps attributes to JSON.
pub(super) struct Mapper {
    /// Lower-cased names of the attributes returned base64.
    binary: HashSet<String>,
}

impl Mapper {
    /// A mapper returning [`BINARY_ATTRIBUTES`] and `extra` base64.
    pub fn new(extra: &[String]) -> Self {
        let binary = BINARY_ATTRIBUTES
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().cloned())
            .map(|s| s.to_ascii_lowercase())
            .collect();
        Self { binary }
    }

    fn is_binary(&self, attribute: &str) -> bool {
        let lower = attribute.to_ascii_lowercase();
        let mut parts = lower.split(';');
        let name = parts.next().unwrap_or_default();
        self.binary.contains(name) || parts.any(|option| option == "binary")
    }

    /// Reads one message of a search's answer.
    pub fn item(&self, tag: StructureTag) -> Result<Item, String> {
        if tag.class != TagClass::Application {
            return Ok(Item::Other);
        }
        match tag.id {
            ENTRY_TAG => self.entry(tag).map(Item::Entry),
            REFERENCE_TAG => {
                let uris = constructed(tag, "search reference")?
                    .into_iter()
                    .map(|t| primitive(t, "reference URI").map(|b| lossy(&b)))
                    .collect::<Result<_, _>>()?;
                Ok(Item::Reference(uris))
            }
            _ => Ok(Item::Other),
        }
    }

    fn entry(&self, tag: StructureTag) -> Result<LdapEntry, String> {
        let mut parts = constructed(tag, "entry")?.into_iter();
        let dn = parts.next().ok_or("an entry without a DN").and_then(|t| {
            primitive(t, "entry DN").map_err(|_| "an entry DN that is not a string")
        })?;
        let dn = String::from_utf8(dn).map_err(|_| "an entry DN that is not UTF-8".to_string())?;
        let mut attributes = BTreeMap::new();
        let list = parts
            .next()
            .map(|t| constructed(t, "attribute list"))
            .transpose()?
            .unwrap_or_default();
        for attribute in list {
            let mut pair = constructed(attribute, "attribute")?.into_iter();
            let name = pair
                .next()
                .ok_or_else(|| format!("an attribute without a name in `{dn}`"))
                .and_then(|t| primitive(t, "attribute name"))?;
            let name = lossy(&name);
            let values = pair
                .next()
                .map(|t| constructed(t, "attribute values"))
                .transpose()?
                .unwrap_or_default();
            let binary = self.is_binary(&name);
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                let bytes = primitive(v, "attribute value")?;
                out.push(Value::String(text_or_base64(bytes, binary)));
            }
            let value = if out.len() == 1 {
                out.pop().unwrap_or(Value::Null)
            } else {
                Value::Array(out)
            };
            attributes.insert(name, value);
        }
        Ok(LdapEntry { dn, attributes })
    }
}

/// A value as text when it is UTF-8 and not a binary attribute's, else base64.
fn text_or_base64(bytes: Vec<u8>, binary: bool) -> String {
    if !binary {
        match String::from_utf8(bytes) {
            Ok(text) => return text,
            Err(e) => return base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
        }
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn constructed(tag: StructureTag, what: &str) -> Result<Vec<StructureTag>, String> {
    match tag.payload {
        PL::C(inner) => Ok(inner),
        PL::P(_) => Err(format!("a malformed {what} (not a sequence)")),
    }
}

fn primitive(tag: StructureTag, what: &str) -> Result<Vec<u8>, String> {
    match tag.payload {
        PL::P(bytes) => Ok(bytes),
        PL::C(_) => Err(format!("a malformed {what} (not a string)")),
    }
}

/// The highest of a marker attribute's values in `entry`, as text.
pub(super) fn marker_of(entry: &LdapEntry, attribute: &str) -> Option<String> {
    let (_, value) = entry
        .attributes
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))?;
    let values: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    values
        .into_iter()
        .reduce(|a, b| {
            if openmid_proto::ldap::marker_greater(b, a) {
                b
            } else {
                a
            }
        })
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prim(bytes: &[u8]) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(bytes.to_vec()),
        }
    }

    fn cons(id: u64, inner: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id,
            payload: PL::C(inner),
        }
    }

    fn message(id: u64, inner: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class: TagClass::Application,
            ..cons(id, inner)
        }
    }

    fn attr(name: &str, values: &[&[u8]]) -> StructureTag {
        cons(
            16,
            vec![
                prim(name.as_bytes()),
                cons(17, values.iter().map(|v| prim(v)).collect()),
            ],
        )
    }

    #[test]
    fn values_are_strings_arrays_or_base64() {
        let tag = message(
            ENTRY_TAG,
            vec![
                prim(b"uid=a,dc=x"),
                cons(
                    16,
                    vec![
                        attr("cn", &[b"Ann"]),
                        attr("mail", &[b"a@x", b"b@x"]),
                        attr("jpegPhoto", &[b"abc"]),
                        attr("userCertificate;binary", &[b"z"]),
                        attr("blob", &[&[0xff, 0xfe]]),
                        attr("custom", &[b"hi"]),
                    ],
                ),
            ],
        );
        let mapper = Mapper::new(&["CUSTOM".to_string()]);
        let Ok(Item::Entry(e)) = mapper.item(tag) else {
            panic!("not an entry")
        };
        assert_eq!(e.dn, "uid=a,dc=x");
        assert_eq!(e.attributes["cn"], "Ann");
        assert_eq!(e.attributes["mail"], serde_json::json!(["a@x", "b@x"]));
        assert_eq!(e.attributes["jpegPhoto"], "YWJj");
        assert_eq!(e.attributes["userCertificate;binary"], "eg==");
        assert_eq!(e.attributes["blob"], "//4=");
        assert_eq!(e.attributes["custom"], "aGk=");
    }

    #[test]
    fn malformed_messages_are_errors_and_references_are_read() {
        let mapper = Mapper::new(&[]);
        assert!(
            mapper
                .item(prim(b"x"))
                .is_ok_and(|i| matches!(i, Item::Other))
        );
        let mut bad = prim(b"x");
        bad.class = TagClass::Application;
        assert!(mapper.item(bad).is_err());
        assert!(mapper.item(message(ENTRY_TAG, vec![])).is_err());
        let r = mapper.item(message(REFERENCE_TAG, vec![prim(b"ldap://other/dc=x")]));
        assert!(matches!(r, Ok(Item::Reference(u)) if u == ["ldap://other/dc=x"]));
    }

    #[test]
    fn marker_takes_the_highest() {
        let e = LdapEntry {
            dn: "x".into(),
            attributes: BTreeMap::from([("uSNChanged".into(), serde_json::json!(["9", "10"]))]),
        };
        assert_eq!(marker_of(&e, "usnchanged").as_deref(), Some("10"));
        assert_eq!(marker_of(&e, "modifyTimestamp"), None);
    }
}
