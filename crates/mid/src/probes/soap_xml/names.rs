//! The XML 1.0 lexical rules building, checking and parsing share: which characters
//! and names are allowed, whitespace, and what a reference stands for.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::BytesRef;

/// `Char` of XML 1.0 (surrogates cannot occur in a Rust `char`).
pub(super) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `NameStartChar` of XML 1.0 fifth edition, without `:` (namespaces reserve it).
pub(super) fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z'
        | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}'
        | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}'
        | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}'
        | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
}

/// `NameChar` of XML 1.0 fifth edition, without `:`.
pub(super) fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// A name without a prefix, as namespaces-in-XML defines it.
pub(super) fn is_ncname(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char)
}

/// A qualified name: `local` or `prefix:local`.
pub(super) fn is_qname(name: &str) -> bool {
    match name.split_once(':') {
        Some((prefix, local)) => is_ncname(prefix) && is_ncname(local),
        None => is_ncname(name),
    }
}

pub(super) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

pub(super) fn trim_xml(s: &str) -> &str {
    s.trim_matches(is_xml_space)
}

/// Appends what a `&…;` reference stands for. Without a DTD only the five predefined
/// entities exist, and a character reference must name a character XML allows.
pub(super) fn push_reference(out: &mut String, reference: &BytesRef<'_>) -> Result<(), String> {
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

/// The first characters of `text`, for messages about unexpected content.
pub(super) fn snippet(text: &str) -> String {
    let text = trim_xml(text);
    let mut shown: String = text.chars().take(40).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}
