//! The `soapAction` of an operation, read from a WSDL 1.1 document's bindings.
//!
//! Services check the action, and its value follows no rule a client can guess
//! (`http://tempuri.org/Add`, `urn:x#Add`, `Add`, a version suffix), so when the alias
//! names the service's WSDL the probe asks it. Only the bindings are read
//! (`wsdl:binding/wsdl:operation/soap:operation/@soapAction`); the WSDL comes from the
//! target, so DOCTYPE is refused here too and nothing is expanded.

use super::encoding::decode_input;
use super::{SoapXmlError, names::trim_xml};
use openmid_proto::soap::SoapVersion;
use quick_xml::NsReader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};

/// WSDL 1.1's namespace.
const WSDL_NS: &str = "http://schemas.xmlsoap.org/wsdl/";
/// WSDL's SOAP 1.1 binding extension.
const WSDL_SOAP11_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
/// WSDL's SOAP 1.2 binding extension.
const WSDL_SOAP12_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";

/// One `soap:operation` of a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsdlAction {
    /// The binding's SOAP version (from the extension's namespace).
    pub version: SoapVersion,
    /// The operation's `name`.
    pub operation: String,
    /// Its `soapAction` (empty when the attribute is absent, as WSDL says).
    pub soap_action: String,
}

/// Every `soap:operation` / `soap12:operation` of every binding, in document order.
pub fn wsdl_actions(wsdl: &[u8]) -> Result<Vec<WsdlAction>, SoapXmlError> {
    let text = decode_input(wsdl)?;
    let mut reader = NsReader::from_str(&text);
    // Per open element: is it a wsdl:binding, or a wsdl:operation (with its name)?
    enum Open {
        Binding,
        Operation(String),
        Other,
    }
    let mut open: Vec<Open> = Vec::new();
    let mut found = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| {
            SoapXmlError::Malformed(format!(
                "the WSDL is not well-formed XML (at byte {}): {e}",
                reader.error_position()
            ))
        })?;
        let (start, empty) = match event {
            Event::Start(start) => (start, false),
            Event::Empty(start) => (start, true),
            Event::End(_) => {
                open.pop();
                continue;
            }
            Event::DocType(_) => return Err(SoapXmlError::Doctype),
            Event::Eof => break,
            _ => continue,
        };
        let (namespace, local) = reader.resolver().resolve_element(start.name());
        let namespace = match namespace {
            ResolveResult::Bound(Namespace(ns)) => ns,
            _ => "",
        };
        let local = local.into_inner();
        let in_binding = matches!(open.last(), Some(Open::Binding));
        let this = match (namespace, local) {
            (WSDL_NS, "binding") => Open::Binding,
            (WSDL_NS, "operation") if in_binding => {
                Open::Operation(attribute(&start, "name")?.unwrap_or_default())
            }
            (WSDL_SOAP11_NS | WSDL_SOAP12_NS, "operation") => {
                let parent = open.last();
                let grandparent = open.iter().rev().nth(1);
                if let (Some(Open::Operation(name)), Some(Open::Binding)) = (parent, grandparent) {
                    found.push(WsdlAction {
                        version: if namespace == WSDL_SOAP11_NS {
                            SoapVersion::V1_1
                        } else {
                            SoapVersion::V1_2
                        },
                        operation: name.clone(),
                        soap_action: attribute(&start, "soapAction")?.unwrap_or_default(),
                    });
                }
                Open::Other
            }
            _ => Open::Other,
        };
        if !empty {
            open.push(this);
        }
    }
    Ok(found)
}

/// The action of `operation` for `version`: from a binding of that version, else from
/// any binding naming the operation (the action rarely differs between them).
pub fn soap_action_for(
    actions: &[WsdlAction],
    operation: &str,
    version: SoapVersion,
) -> Option<String> {
    let named = || actions.iter().filter(|a| a.operation == operation);
    named()
        .find(|a| a.version == version)
        .or_else(|| named().next())
        .map(|a| a.soap_action.clone())
}

/// The value of the unprefixed attribute `name` of `start`, unescaped and trimmed.
fn attribute(start: &BytesStart<'_>, name: &str) -> Result<Option<String>, SoapXmlError> {
    for attribute in start.attributes() {
        let attribute = attribute
            .map_err(|e| SoapXmlError::Malformed(format!("the WSDL has a bad attribute: {e}")))?;
        if attribute.key.into_inner() == name {
            let value = attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| SoapXmlError::Malformed(format!("the WSDL's {name}: {e}")))?;
            return Ok(Some(trim_xml(&value).to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WSDL: &str = r#"<?xml version="1.0"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/" xmlns:s="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:s12="http://schemas.xmlsoap.org/wsdl/soap12/" xmlns:tns="urn:t" targetNamespace="urn:t">
  <portType name="P"><operation name="Add"><input message="tns:AddIn"/></operation></portType>
  <binding name="B11" type="tns:P">
    <s:binding transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="Add"><s:operation soapAction=" http://tempuri.org/Add?a=1&amp;b=2 " style="document"/></operation>
    <operation name="Ping"><s:operation/></operation>
  </binding>
  <binding name="B12" type="tns:P">
    <s12:binding transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="Add"><s12:operation soapAction="urn:add12"/></operation>
    <operation name="Only12"><s12:operation soapAction="urn:only12"></s12:operation></operation>
  </binding>
</definitions>"#;

    #[test]
    fn actions_come_from_the_binding_of_the_version() {
        let actions = wsdl_actions(WSDL.as_bytes()).expect("parses");
        assert_eq!(actions.len(), 4, "{actions:?}");
        let action = |op, v| soap_action_for(&actions, op, v);
        assert_eq!(
            action("Add", SoapVersion::V1_1).as_deref(),
            Some("http://tempuri.org/Add?a=1&b=2")
        );
        assert_eq!(
            action("Add", SoapVersion::V1_2).as_deref(),
            Some("urn:add12")
        );
        assert_eq!(action("Ping", SoapVersion::V1_1).as_deref(), Some(""));
        assert_eq!(
            action("Only12", SoapVersion::V1_1).as_deref(),
            Some("urn:only12")
        );
        assert_eq!(action("Missing", SoapVersion::V1_1), None);
    }

    #[test]
    fn hostile_or_broken_wsdls_are_errors() {
        assert!(matches!(
            wsdl_actions(b"<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><d>&x;</d>"),
            Err(SoapXmlError::Doctype)
        ));
        assert!(wsdl_actions(b"<definitions><binding></definitions>").is_err());
        assert_eq!(
            wsdl_actions(b"<html>not a wsdl</html>").expect("xml"),
            vec![]
        );
    }

    proptest! {
        #[test]
        fn reading_a_wsdl_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = wsdl_actions(&bytes);
        }
    }
}
