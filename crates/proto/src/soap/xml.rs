//! Well-formedness of SOAP XML fragments, I/O-free so both sides run the same check:
//! the instance at the API door (a broken `body` answers 422 naming the problem) and the
//! MID before it sends. Also the XML 1.0 lexical rules (characters, names, references)
//! the MID's envelope builder and parser share.
//!
//! Nothing is expanded beyond the five predefined entities and character references,
//! and a DOCTYPE is refused outright (no entity can be defined: no XXE, no billion
//! laughs).

use super::SoapVersion;
use quick_xml::NsReader;
use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, BytesText, Event};
use quick_xml::name::{Namespace, PrefixDeclaration, ResolveResult};

/// The prefix the MID's envelope binds to the envelope namespace, so a caller's Body
/// may use it (`soap:encodingStyle`, a `soap:Header` sibling) undeclared.
pub const ENVELOPE_PREFIX: &str = "soap";

/// Why a fragment is not well-formed. Messages say where (byte offset) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed: unbalanced, bad name, undeclared prefix, unknown entity, …
    #[error("{0}")]
    Malformed(String),
    /// A DOCTYPE declaration; refused so no entity can be defined.
    #[error(
        "the XML has a DOCTYPE declaration, which is refused (it could define entities: XXE, billion laughs)"
    )]
    Doctype,
}

/// Checks that a caller-supplied Body fragment is well-formed XML content: balanced
/// elements (several top-level ones and text are fine), valid names, declared prefixes
/// (`soap` counts as declared: the MID's envelope declares it, see
/// [`ENVELOPE_PREFIX`]), only predefined entities, no DOCTYPE or XML declaration.
///
/// The instance runs it at the API door and the MID again before sending, so a broken
/// Body is refused with its problem named instead of queued.
pub fn check_body(body_xml: &str) -> Result<(), XmlError> {
    check_fragment(
        body_xml,
        &[(ENVELOPE_PREFIX, SoapVersion::V1_1.envelope_namespace())],
    )
}

/// Checks that `xml` is well-formed XML content on its own, namespace-aware: like
/// [`check_body`], with `predeclared` (prefix, namespace) as the only bindings from
/// outside. With none, it tells whether a fragment parses without its document.
pub fn check_fragment(xml: &str, predeclared: &[(&str, &str)]) -> Result<(), XmlError> {
    let mut reader = NsReader::from_str(xml);
    for (prefix, namespace) in predeclared {
        reader
            .resolver_mut()
            .add(PrefixDeclaration::Named(prefix), Namespace(namespace))
            .map_err(|e| XmlError::Malformed(format!("XML: {e}")))?;
    }
    let fail = |at: u64, what: String| XmlError::Malformed(format!("XML at byte {at}: {what}"));
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
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    match open.last() {
        Some(name) => Err(XmlError::Malformed(format!("XML: <{name}> is not closed"))),
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

/// `Char` of XML 1.0 (surrogates cannot occur in a Rust `char`).
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `NameStartChar` of XML 1.0 fifth edition, without `:` (namespaces reserve it).
fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

/// `NameChar` of XML 1.0 fifth edition, without `:`.
fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// A name without a prefix, as namespaces-in-XML defines it.
pub fn is_ncname(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char)
}

/// A qualified name: `local` or `prefix:local`.
pub fn is_qname(name: &str) -> bool {
    match name.split_once(':') {
        Some((prefix, local)) => is_ncname(prefix) && is_ncname(local),
        None => is_ncname(name),
    }
}

/// Appends what a `&…;` reference stands for. Without a DTD only the five predefined
/// entities exist, and a character reference must name a character XML allows.
pub fn push_reference(out: &mut String, reference: &BytesRef<'_>) -> Result<(), String> {
    let name: &str = reference;
    match reference.resolve_char_ref() {
        Ok(Some(c)) if is_xml_char(c) => out.push(c),
        Ok(Some(c)) => {
            return Err(format!(
                "&{name}; refers to U+{:04X}, which XML 1.0 does not allow",
                u32::from(c)
            ));
        }
        Ok(None) => match resolve_predefined_entity(name) {
            Some(text) => out.push_str(text),
            None => {
                return Err(format!(
                    "&{name}; is not defined (without a DTD only &amp; &lt; &gt; &quot; &apos; and character references exist)"
                ));
            }
        },
        Err(e) => return Err(format!("&{name};: {e}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fragments_are_checked_with_only_the_bindings_given() {
        check_body("<soap:Header/><a/>").expect("soap is declared around a Body");
        assert!(check_fragment("<soap:Header/>", &[]).is_err());
        check_fragment("<t:a xmlns:t=\"urn:t\"><t:b t:c=\"1\"/></t:a> text", &[]).expect("ok");
        check_fragment("<t:a/>", &[("t", "urn:t")]).expect("predeclared");
        for bad in [
            "<a>",
            "<a></b>",
            "<t:a/>",
            "<a t:b=\"1\"/>",
            "<a>&nbsp;</a>",
            "<!DOCTYPE a><a/>",
        ] {
            assert!(check_fragment(bad, &[]).is_err(), "{bad}");
        }
        assert_eq!(check_body("<!DOCTYPE a><a/>"), Err(XmlError::Doctype));
    }

    proptest! {
        #[test]
        fn checking_never_panics(xml in "[<>/:=\"' a-zA-Z&;#!?\\[\\]-]{0,120}") {
            let _ = check_body(&xml);
            let _ = check_fragment(&xml, &[]);
        }
    }
}
