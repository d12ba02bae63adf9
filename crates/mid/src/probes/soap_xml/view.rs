//! What a caller gets out of a parsed Body: the JSON view of its first element, or the
//! Fault taken apart.

use super::names::trim_xml;
use super::parse::Element;
use super::scope::{self, Binding};
use openmid_proto::soap::{SoapFault, SoapVersion};
use serde_json::{Map, Value};

/// The JSON view of an element (see [`ParsedEnvelope::result`]).
pub(super) fn element_json(element: &Element) -> Value {
    if element.nil && element.children.is_empty() {
        return Value::Null;
    }
    let mut object = Map::new();
    for (name, value) in &element.attributes {
        object.insert(format!("@{name}"), Value::String(value.clone()));
    }
    if element.children.is_empty() {
        if object.is_empty() {
            return if element.text.is_empty() {
                Value::Null
            } else {
                Value::String(element.text.clone())
            };
        }
        if !element.text.is_empty() {
            object.insert("#text".into(), Value::String(element.text.clone()));
        }
        return Value::Object(object);
    }
    for child in &element.children {
        let value = element_json(child);
        match object.get_mut(&child.local) {
            // Child values are never arrays, so an array here means "seen before".
            Some(Value::Array(items)) => items.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                object.insert(child.local.clone(), value);
            }
        }
    }
    Value::Object(object)
}

/// The first child of `parent` with local name `local`.
fn child<'e>(parent: &'e Element, local: &str) -> Option<&'e Element> {
    parent.children.iter().find(|c| c.local == local)
}

/// Takes a Fault element apart. Children are matched by local name: SOAP 1.1 leaves
/// them unqualified, SOAP 1.2 puts them in the envelope namespace, and some services
/// get this wrong either way.
///
/// `body_scope` is the namespace scope inside the Body: the detail comes back declaring what
/// it needs (see [`scope`]).
pub(super) fn fault_of(
    fault: &Element,
    version: SoapVersion,
    text: &str,
    body_scope: &[Binding],
) -> SoapFault {
    let text_of = |element: &Element| trim_xml(&element.text).to_string();
    let in_fault = scope::within(body_scope, &fault.declarations);
    let inner_xml = |element: &Element| {
        let inside = scope::within(&in_fault, &element.declarations);
        let xml = scope::self_contained(text, element.inner.clone(), &element.children, &inside);
        let xml = trim_xml(&xml);
        (!xml.is_empty()).then(|| xml.to_string())
    };
    match version {
        SoapVersion::V1_1 => SoapFault {
            code: child(fault, "faultcode").map(text_of).unwrap_or_default(),
            subcode: None,
            reason: child(fault, "faultstring").map(text_of).unwrap_or_default(),
            actor: child(fault, "faultactor")
                .map(text_of)
                .filter(|s| !s.is_empty()),
            detail: child(fault, "detail").and_then(inner_xml),
        },
        SoapVersion::V1_2 => {
            let code = child(fault, "Code");
            SoapFault {
                code: code
                    .and_then(|c| child(c, "Value"))
                    .map(text_of)
                    .unwrap_or_default(),
                subcode: code
                    .and_then(|c| child(c, "Subcode"))
                    .and_then(|s| child(s, "Value"))
                    .map(text_of),
                reason: child(fault, "Reason")
                    .and_then(|r| child(r, "Text"))
                    .map(text_of)
                    .unwrap_or_default(),
                actor: child(fault, "Role").map(text_of).filter(|s| !s.is_empty()),
                detail: child(fault, "Detail").and_then(inner_xml),
            }
        }
    }
}
