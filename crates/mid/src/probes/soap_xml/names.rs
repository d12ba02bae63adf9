//! The XML 1.0 lexical rules building and parsing share: characters, names and
//! references come from proto (the instance checks Bodies with the same rules), plus
//! whitespace handling and the snippets shown in messages.

pub(super) use openmid_proto::soap::xml::{is_ncname, is_xml_char, push_reference};

pub(super) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

pub(super) fn trim_xml(s: &str) -> &str {
    s.trim_matches(is_xml_space)
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
