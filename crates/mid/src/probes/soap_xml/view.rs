//! What a caller gets out of a parsed Body: the JSON view of its first element, or the
//! Fault taken apart.

use super::SoapXmlError;
use super::names::trim_xml;
use super::parse::Element;
use super::scope::{self, Binding};
use openmid_proto::soap::{FaultCode, SoapFault, SoapVersion};
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
) -> Result<SoapFault, SoapXmlError> {
    let text_of = |element: &Element| trim_xml(&element.text).to_string();
    let in_fault = scope::within(body_scope, &fault.declarations);
    let inner_xml = |element: Option<&Element>| -> Result<Option<String>, SoapXmlError> {
        let Some(element) = element else {
            return Ok(None);
        };
        let inside = scope::within(&in_fault, &element.declarations);
        let xml = scope::self_contained(text, element.inner.clone(), &element.children, &inside)?;
        let xml = trim_xml(&xml);
        Ok((!xml.is_empty()).then(|| xml.to_string()))
    };
    Ok(match version {
        SoapVersion::V1_1 => {
            let code = child(fault, "faultcode")
                .map(|c| fault_code(c, &in_fault))
                .unwrap_or_default();
            SoapFault {
                code: code.value,
                code_namespace: code.namespace,
                code_local: code.local,
                subcode: None,
                subcodes: Vec::new(),
                reason: child(fault, "faultstring").map(text_of).unwrap_or_default(),
                actor: child(fault, "faultactor")
                    .map(text_of)
                    .filter(|s| !s.is_empty()),
                detail: inner_xml(child(fault, "detail"))?,
            }
        }
        SoapVersion::V1_2 => {
            // Code/Value, then Subcode/Value, Subcode/Subcode/Value, …: each Value read
            // in the scope of the elements around it.
            let mut chain = Vec::new();
            let mut level =
                child(fault, "Code").map(|c| (c, scope::within(&in_fault, &c.declarations)));
            while let Some((element, around)) = level {
                if let Some(value) = child(element, "Value") {
                    chain.push(fault_code(value, &around));
                }
                level =
                    child(element, "Subcode").map(|s| (s, scope::within(&around, &s.declarations)));
            }
            let mut chain = chain.into_iter();
            let code = chain.next().unwrap_or_default();
            let subcodes: Vec<FaultCode> = chain.collect();
            SoapFault {
                code: code.value,
                code_namespace: code.namespace,
                code_local: code.local,
                subcode: subcodes.first().map(|s| s.value.clone()),
                subcodes,
                reason: child(fault, "Reason")
                    .and_then(|r| child(r, "Text"))
                    .map(text_of)
                    .unwrap_or_default(),
                actor: child(fault, "Role").map(text_of).filter(|s| !s.is_empty()),
                detail: inner_xml(child(fault, "Detail"))?,
            }
        }
    })
}

/// A code element's text as a qualified name resolved in the scope around it plus its
/// own declarations. The namespace is unescaped (`&amp;` in the declaration is `&`).
fn fault_code(element: &Element, around: &[Binding]) -> FaultCode {
    let value = trim_xml(&element.text).to_string();
    let (prefix, local) = match value.split_once(':') {
        Some((prefix, local)) => (Some(prefix), local),
        None => (None, value.as_str()),
    };
    let inside = scope::within(around, &element.declarations);
    let namespace = scope::resolve(&inside, prefix).map(|raw| {
        quick_xml::escape::unescape(raw).map_or_else(|_| raw.to_string(), |ns| ns.into_owned())
    });
    FaultCode {
        local: local.to_string(),
        namespace,
        value,
    }
}
