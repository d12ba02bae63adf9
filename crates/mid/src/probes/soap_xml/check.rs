//! Checking a caller's Body fragment before it is sent.

use super::names::{is_qname, is_xml_char, push_reference};
use super::{ENVELOPE_PREFIX, SoapXmlError};
use openmid_proto::soap::SoapVersion;
use quick_xml::NsReader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, BytesText, Event};
use quick_xml::name::{Namespace, PrefixDeclaration, ResolveResult};

/// Checks that a caller-supplied Body fragment is well-formed XML content: balanced
/// elements (several top-level ones and text are fine), valid names, declared prefixes
/// (`soap` counts as declared: [`envelope`] declares it), only predefined entities, no
/// DOCTYPE or XML declaration. A broken Body is refused here rather than sent.
pub fn check_body_xml(body_xml: &str) -> Result<(), SoapXmlError> {
    let mut reader = NsReader::from_str(body_xml);
    reader
        .resolver_mut()
        .add(
            PrefixDeclaration::Named(ENVELOPE_PREFIX),
            Namespace(SoapVersion::V1_1.envelope_namespace()),
        )
        .map_err(|e| SoapXmlError::Malformed(format!("body XML: {e}")))?;
    let fail =
        |at: u64, what: String| SoapXmlError::Malformed(format!("body XML at byte {at}: {what}"));
    let mut open: Vec<String> = Vec::new();
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| fail(reader.error_position(), e.to_string()))?;
        match event {
            Event::Start(start) => {
                check_start(&reader, &start).map_err(|what| fail(at, what))?;
                open.push(start.name().into_inner().to_string());
            }
            Event::Empty(start) => check_start(&reader, &start).map_err(|what| fail(at, what))?,
            Event::End(end) => {
                if open.pop().is_none() {
                    return Err(fail(
                        at,
                        format!(
                            "</{}> closes an element that was not opened",
                            end.name().into_inner()
                        ),
                    ));
                }
            }
            Event::Text(text) => check_text(&text).map_err(|what| fail(at, what))?,
            Event::CData(data) => {
                if let Some(c) = data.chars().find(|c| !is_xml_char(*c)) {
                    return Err(fail(
                        at,
                        format!("character U+{:04X} is not allowed in XML 1.0", u32::from(c)),
                    ));
                }
            }
            Event::GeneralRef(reference) => {
                push_reference(&mut String::new(), &reference).map_err(|what| fail(at, what))?;
            }
            Event::Decl(_) => {
                return Err(fail(
                    at,
                    "an XML declaration cannot appear inside the Body".into(),
                ));
            }
            Event::DocType(_) => return Err(SoapXmlError::Doctype),
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    match open.last() {
        Some(name) => Err(SoapXmlError::Malformed(format!(
            "body XML: <{name}> is not closed"
        ))),
        None => Ok(()),
    }
}

/// Checks a start tag of a caller's Body: names, prefixes and attribute values.
fn check_start(reader: &NsReader<&[u8]>, start: &BytesStart<'_>) -> Result<(), String> {
    let qname = start.name().into_inner();
    if !is_qname(qname) {
        return Err(format!("<{qname}>: not a valid XML name"));
    }
    if let (ResolveResult::Unknown(prefix), _) = reader.resolver().resolve_element(start.name()) {
        return Err(format!(
            "<{qname}>: namespace prefix `{prefix}` is not declared"
        ));
    }
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| format!("<{qname}>: {e}"))?;
        let key = attribute.key.into_inner();
        if !is_qname(key) {
            return Err(format!(
                "<{qname}>: attribute name {key:?} is not a valid XML name"
            ));
        }
        if attribute.key.as_namespace_binding().is_none()
            && let (ResolveResult::Unknown(prefix), _) =
                reader.resolver().resolve_attribute(attribute.key)
        {
            return Err(format!(
                "<{qname}>: namespace prefix `{prefix}` of attribute {key} is not declared"
            ));
        }
        if attribute.value.contains('<') {
            return Err(format!("<{qname}>: `<` in the value of attribute {key}"));
        }
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("<{qname}>: attribute {key}: {e}"))?;
        if let Some(c) = value.chars().find(|c| !is_xml_char(*c)) {
            return Err(format!(
                "<{qname}>: attribute {key}: character U+{:04X} is not allowed in XML 1.0",
                u32::from(c)
            ));
        }
    }
    Ok(())
}

/// Checks character data of a caller's Body (references arrive as separate events).
fn check_text(text: &BytesText<'_>) -> Result<(), String> {
    if let Some(c) = text.chars().find(|c| !is_xml_char(*c)) {
        return Err(format!(
            "character U+{:04X} is not allowed in XML 1.0",
            u32::from(c)
        ));
    }
    if text.contains("]]>") {
        return Err("`]]>` is not allowed in text; escape the `>`".into());
    }
    Ok(())
}
