//! The XML half of the `SOAPProbe`: building a request Body from an operation and its
//! JSON parameters, wrapping it in an envelope, and taking a response envelope apart
//! into its Body, a JSON view of the Body's first element, or a Fault.
//!
//! These are pure functions so the HTTP half stays small and every XML edge case can be
//! tested without a server. Responses come from services we do not control, so parsing
//! never panics, refuses DOCTYPE declarations outright (nothing is ever expanded beyond
//! the five predefined entities and character references, which rules out XXE and
//! billion-laughs), and bounds element nesting.

use openmid_proto::soap::{SoapFault, SoapVersion};
use quick_xml::NsReader;
use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, BytesText, Event};
use quick_xml::name::{Namespace, PrefixDeclaration, ResolveResult};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::ops::Range;

/// Deepest element nesting accepted, both when building a Body from parameters and
/// when turning a response Body into JSON. Real SOAP payloads stay far below it; the
/// bound is there so hostile input cannot exhaust the stack or memory.
pub const MAX_DEPTH: usize = 256;

/// The prefix [`envelope`] binds to the envelope namespace; [`check_body_xml`] lets a
/// caller's Body use it because it is declared around the Body.
const ENVELOPE_PREFIX: &str = "soap";

/// Attributes in this namespace (`xsi:type`, `xsi:nil`, …) describe typing, not data,
/// so they are kept out of the JSON view (`xsi:nil="true"` turns an element into null).
const XSI_NAMESPACE: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Why building or reading SOAP XML failed. Messages say where (JSON path or byte
/// offset) and what was expected, so they can go into the probe's error as is.
#[derive(Debug, thiserror::Error)]
pub enum SoapXmlError {
    /// An operation, parameter or attribute name is not a valid XML name (NCName).
    #[error("{field}: {value:?} is not a valid XML name")]
    InvalidName {
        /// Where the name came from: `operation` or the parameter's JSON path.
        field: String,
        /// The name as given.
        value: String,
    },
    /// A value holds a character that XML 1.0 cannot carry, even escaped.
    #[error("{path}: character U+{code:04X} is not allowed in XML 1.0")]
    InvalidChar {
        /// JSON path of the value (or `namespace`).
        path: String,
        /// The character's code point.
        code: u32,
    },
    /// The parameters have a shape with no XML form (e.g. an object as an attribute
    /// value, an array directly inside an array).
    #[error("{0}")]
    Json(String),
    /// The XML is not well-formed, or the response is not a SOAP envelope.
    #[error("{0}")]
    Malformed(String),
    /// The document has a DOCTYPE declaration; refused so no entity can be defined.
    #[error(
        "the XML has a DOCTYPE declaration, which is refused (it could define entities: XXE, billion laughs)"
    )]
    Doctype,
    /// The root is an `Envelope`, but in neither SOAP namespace.
    #[error(
        "SOAP Envelope in unknown namespace {found:?}; expected \"http://schemas.xmlsoap.org/soap/envelope/\" (1.1) or \"http://www.w3.org/2003/05/soap-envelope\" (1.2)"
    )]
    VersionMismatch {
        /// The namespace the Envelope was in.
        found: String,
    },
    /// Elements are nested deeper than [`MAX_DEPTH`].
    #[error("XML elements are nested deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
}

/// A response envelope taken apart.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEnvelope {
    /// The version, from the Envelope's namespace.
    pub version: SoapVersion,
    /// The Body's inner XML exactly as it appeared in the response (None for a Fault).
    ///
    /// It is a slice of the document, so prefixes declared on the Envelope (or Body) are
    /// not declared inside it: a caller re-parsing it with a namespace-aware parser has
    /// to supply those bindings.
    pub body: Option<String>,
    /// The Body's first element as `{ "<local name>": value }` (None for a Fault or an
    /// empty Body). A leaf's value is its text; an element with children or attributes
    /// is an object of children by local name (repeated ones as arrays), attributes as
    /// `"@name"`, and a leaf's text as `"#text"` when it also has attributes. Empty
    /// elements and `xsi:nil` ones are null. Mixed text next to children is dropped;
    /// `xsi:*`, `xmlns` and SOAP-envelope attributes (`encodingStyle`) are left out.
    pub result: Option<Value>,
    /// The Fault, when the Body holds one.
    pub fault: Option<SoapFault>,
}

// ---------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------

/// Builds the Body content `<operation xmlns="namespace">…</operation>` from JSON
/// parameters.
///
/// Each parameter becomes a child element: strings, numbers and booleans its escaped
/// text, null an empty element, an object nested elements, an array the element repeated
/// once per item (an empty array: no element). A key starting with `@` becomes an
/// attribute of the enclosing element; its value must be a string, number or boolean.
/// An empty string and null both come out as an empty element, which
/// [`parse_response`] reads back as null. Element order follows the map's order.
pub fn operation_body(
    operation: &str,
    namespace: Option<&str>,
    params: &Map<String, Value>,
) -> Result<String, SoapXmlError> {
    if !is_ncname(operation) {
        return Err(SoapXmlError::InvalidName {
            field: "operation".into(),
            value: operation.into(),
        });
    }
    // `xmlns=""` would only undeclare a default namespace that is not there.
    let namespace = namespace.filter(|ns| !ns.is_empty());
    if namespace.is_some() && params.contains_key("@xmlns") {
        // Two `xmlns` attributes on one element would be ill-formed.
        return Err(SoapXmlError::Json(
            "params.@xmlns: conflicts with `namespace`; give the namespace once".into(),
        ));
    }
    let mut out = String::new();
    out.push('<');
    out.push_str(operation);
    if let Some(ns) = namespace {
        out.push_str(" xmlns=\"");
        push_escaped(&mut out, ns, true).map_err(|c| invalid_char("namespace", c))?;
        out.push('"');
    }
    write_object_rest(&mut out, operation, params, "params", 1)?;
    Ok(out)
}

/// Wraps Body content in a SOAP envelope of `version`. `body_xml` is inserted as is:
/// it is the caller's XML (check it first with [`check_body_xml`] if it came from
/// outside). The envelope prefix is `soap`.
pub fn envelope(version: SoapVersion, body_xml: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><{p}:Envelope xmlns:{p}=\"{ns}\"><{p}:Body>{body_xml}</{p}:Body></{p}:Envelope>",
        p = ENVELOPE_PREFIX,
        ns = version.envelope_namespace(),
    )
}

/// Writes one parameter as an element (or, for an array, one element per item).
fn write_element(
    out: &mut String,
    name: &str,
    value: &Value,
    path: &str,
    depth: usize,
) -> Result<(), SoapXmlError> {
    // Values built in code (not parsed) can nest without limit; recursion must not.
    if depth > MAX_DEPTH {
        return Err(SoapXmlError::TooDeep { limit: MAX_DEPTH });
    }
    if !is_ncname(name) {
        return Err(SoapXmlError::InvalidName {
            field: path.into(),
            value: name.into(),
        });
    }
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if item.is_array() {
                    return Err(SoapXmlError::Json(format!(
                        "{item_path}: an array inside an array has no XML form; wrap the inner array in an object"
                    )));
                }
                write_element(out, name, item, &item_path, depth)?;
            }
        }
        Value::Object(map) => {
            out.push('<');
            out.push_str(name);
            write_object_rest(out, name, map, path, depth)?;
        }
        Value::Null => {
            out.push('<');
            out.push_str(name);
            out.push_str("/>");
        }
        scalar => {
            let text = scalar_text(scalar).unwrap_or_default();
            out.push('<');
            out.push_str(name);
            out.push('>');
            push_escaped(out, &text, false).map_err(|c| invalid_char(path, c))?;
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
    Ok(())
}

/// Finishes an element whose `<name` is already written: its `@` attributes, then its
/// children and end tag (or `/>` when it has none).
fn write_object_rest(
    out: &mut String,
    name: &str,
    map: &Map<String, Value>,
    path: &str,
    depth: usize,
) -> Result<(), SoapXmlError> {
    for (key, value) in map {
        let Some(attribute) = key.strip_prefix('@') else {
            continue;
        };
        let attribute_path = format!("{path}.{key}");
        if !is_ncname(attribute) {
            return Err(SoapXmlError::InvalidName {
                field: attribute_path,
                value: attribute.into(),
            });
        }
        let Some(text) = scalar_text(value) else {
            return Err(SoapXmlError::Json(format!(
                "{attribute_path}: an attribute value must be a string, number or boolean, found {}",
                json_kind(value)
            )));
        };
        out.push(' ');
        out.push_str(attribute);
        out.push_str("=\"");
        push_escaped(out, &text, true).map_err(|c| invalid_char(&attribute_path, c))?;
        out.push('"');
    }
    out.push('>');
    let content_start = out.len();
    for (key, value) in map.iter().filter(|(key, _)| !key.starts_with('@')) {
        write_element(out, key, value, &format!("{path}.{key}"), depth + 1)?;
    }
    // Children may all be empty arrays, so emptiness is only known after writing them.
    if out.len() == content_start {
        out.truncate(content_start - 1);
        out.push_str("/>");
        return Ok(());
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
    Ok(())
}

/// The text of a string, number or boolean; None for null, arrays and objects.
fn scalar_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// How a JSON value is called in messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Appends `text` escaped for element content or a double-quoted attribute value, or
/// returns the first character XML 1.0 cannot carry.
fn push_escaped(out: &mut String, text: &str, attribute: bool) -> Result<(), char> {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // A literal CR would be folded into LF by the receiver's end-of-line handling.
            '\r' => out.push_str("&#xD;"),
            // Attribute-value normalisation turns literal tabs and newlines into spaces.
            '\t' if attribute => out.push_str("&#x9;"),
            '\n' if attribute => out.push_str("&#xA;"),
            c if is_xml_char(c) => out.push(c),
            c => return Err(c),
        }
    }
    Ok(())
}

fn invalid_char(path: &str, c: char) -> SoapXmlError {
    SoapXmlError::InvalidChar {
        path: path.into(),
        code: u32::from(c),
    }
}

/// `Char` of XML 1.0 (surrogates cannot occur in a Rust `char`).
fn is_xml_char(c: char) -> bool {
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
fn is_ncname(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char)
}

/// A qualified name: `local` or `prefix:local`.
fn is_qname(name: &str) -> bool {
    match name.split_once(':') {
        Some((prefix, local)) => is_ncname(prefix) && is_ncname(local),
        None => is_ncname(name),
    }
}

fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn trim_xml(s: &str) -> &str {
    s.trim_matches(is_xml_space)
}

/// Appends what a `&…;` reference stands for. Without a DTD only the five predefined
/// entities exist, and a character reference must name a character XML allows.
fn push_reference(out: &mut String, reference: &BytesRef<'_>) -> Result<(), String> {
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
fn snippet(text: &str) -> String {
    let text = trim_xml(text);
    let mut shown: String = text.chars().take(40).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

// ---------------------------------------------------------------------------------
// Checking a caller's Body
// ---------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------
// Parsing a response
// ---------------------------------------------------------------------------------

/// Takes a response envelope apart: version, Body (raw and as JSON) or Fault.
///
/// Namespace-aware, so any prefix (or a default namespace) works; the version comes from
/// the Envelope's namespace. A Header is skipped. The input must be UTF-8, UTF-16 with a
/// byte-order mark, or declared ISO-8859-1. DOCTYPE declarations are refused, and the
/// Body may nest at most [`MAX_DEPTH`] elements deep.
pub fn parse_response(xml: &[u8]) -> Result<ParsedEnvelope, SoapXmlError> {
    let text = decode_input(xml)?;
    let mut cursor = Cursor::new(&text);
    let version = cursor.envelope_start()?;
    let body = cursor.envelope_children(version)?;
    cursor.trailing()?;
    let first = body.elements.first();
    if let Some(fault) = first.filter(|el| {
        el.local == "Fault" && el.namespace.as_deref() == Some(version.envelope_namespace())
    }) {
        return Ok(ParsedEnvelope {
            version,
            body: None,
            result: None,
            fault: Some(fault_of(fault, version, &text)),
        });
    }
    let raw = text.get(body.inner.clone()).unwrap_or_default().to_string();
    let result = first.map(|el| {
        let mut object = Map::new();
        object.insert(el.local.clone(), element_json(el));
        Value::Object(object)
    });
    Ok(ParsedEnvelope {
        version,
        body: Some(raw),
        result,
        fault: None,
    })
}

/// Turns the response bytes into text. quick-xml reads UTF-8 only; the other encodings
/// SOAP services realistically send are converted here.
fn decode_input(xml: &[u8]) -> Result<Cow<'_, str>, SoapXmlError> {
    if let Some(rest) = xml.strip_prefix(b"\xEF\xBB\xBF") {
        return utf8(rest);
    }
    if let Some(rest) = xml.strip_prefix(b"\xFF\xFE") {
        return utf16(rest, u16::from_le_bytes);
    }
    if let Some(rest) = xml.strip_prefix(b"\xFE\xFF") {
        return utf16(rest, u16::from_be_bytes);
    }
    match utf8(xml) {
        Err(_) if declares_latin1(xml) => {
            Ok(Cow::Owned(xml.iter().map(|&b| char::from(b)).collect()))
        }
        other => other,
    }
}

fn utf8(bytes: &[u8]) -> Result<Cow<'_, str>, SoapXmlError> {
    std::str::from_utf8(bytes).map(Cow::Borrowed).map_err(|e| {
        SoapXmlError::Malformed(format!(
            "the response is not valid UTF-8 (at byte {}); only UTF-8, UTF-16 with a byte-order mark and ISO-8859-1 are read",
            e.valid_up_to()
        ))
    })
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<Cow<'static, str>, SoapXmlError> {
    let bad = || SoapXmlError::Malformed("the response is not valid UTF-16".into());
    if !bytes.len().is_multiple_of(2) {
        return Err(bad());
    }
    let units = bytes.chunks_exact(2).map(|pair| unit([pair[0], pair[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map(Cow::Owned)
        .map_err(|_| bad())
}

/// Whether the XML declaration names ISO-8859-1. Only the declaration is looked at,
/// and it is ASCII whatever the encoding.
fn declares_latin1(xml: &[u8]) -> bool {
    let head = xml.get(..xml.len().min(256)).unwrap_or_default();
    if !head.starts_with(b"<?xml") {
        return false;
    }
    let Some(end) = head.windows(2).position(|w| w == b"?>") else {
        return false;
    };
    let declaration =
        String::from_utf8_lossy(head.get(..end).unwrap_or_default()).to_ascii_lowercase();
    ["iso-8859-1", "iso_8859-1", "latin1", "latin-1"]
        .iter()
        .any(|name| declaration.contains(name))
}

/// An element of the response Body, kept only as far as the JSON view and Fault need.
struct Element {
    namespace: Option<String>,
    local: String,
    /// Attributes by local name, without namespace declarations and `xsi:`/envelope ones.
    attributes: Vec<(String, String)>,
    /// `xsi:nil="true"`.
    nil: bool,
    children: Vec<Element>,
    /// Decoded character data directly inside this element.
    text: String,
    /// Byte range of the content between the start and end tags, in the decoded input.
    inner: Range<usize>,
}

/// The Body's content.
struct BodyContent {
    inner: Range<usize>,
    elements: Vec<Element>,
}

/// The reader over the whole response, with the checks every event needs.
struct Cursor<'a> {
    reader: NsReader<&'a [u8]>,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            reader: NsReader::from_str(text),
        }
    }

    /// Offset in the input after the last event read.
    fn position(&self) -> usize {
        usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX)
    }

    /// The next event and the offset it starts at. DOCTYPE is refused here so that it
    /// is refused wherever it appears.
    fn next(&mut self) -> Result<(usize, Event<'a>), SoapXmlError> {
        let at = self.position();
        match self.reader.read_event() {
            Ok(Event::DocType(doctype)) => {
                if trim_xml(&doctype)
                    .get(..4)
                    .is_some_and(|word| word.eq_ignore_ascii_case("html"))
                {
                    Err(SoapXmlError::Malformed(
                        "expected a SOAP Envelope, found an HTML page (<!DOCTYPE html>)".into(),
                    ))
                } else {
                    Err(SoapXmlError::Doctype)
                }
            }
            Ok(event) => Ok((at, event)),
            Err(e) => Err(SoapXmlError::Malformed(format!(
                "the response is not well-formed XML (at byte {}): {e}",
                self.reader.error_position()
            ))),
        }
    }

    /// Reads up to the root element, which must be a SOAP Envelope, and returns the
    /// version its namespace names.
    fn envelope_start(&mut self) -> Result<SoapVersion, SoapXmlError> {
        let expected = |found: String| {
            SoapXmlError::Malformed(format!("expected a SOAP Envelope, found {found}"))
        };
        let (root, empty) = loop {
            match self.next()?.1 {
                Event::Start(start) => break (start, false),
                Event::Empty(start) => break (start, true),
                Event::Text(text) if trim_xml(&text).is_empty() => {}
                Event::Text(text) => return Err(expected(format!("text \"{}\"", snippet(&text)))),
                Event::GeneralRef(_) | Event::CData(_) => return Err(expected("text".into())),
                Event::End(end) => return Err(expected(format!("</{}>", end.name().into_inner()))),
                Event::Eof => return Err(expected("no element (empty response)".into())),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            }
        };
        let qname = root.name().into_inner();
        let (namespace, local) = self.reader.resolver().resolve_element(root.name());
        let version = match namespace {
            ResolveResult::Bound(Namespace(ns)) if local.as_ref() == "Envelope" => {
                if ns == SoapVersion::V1_1.envelope_namespace() {
                    SoapVersion::V1_1
                } else if ns == SoapVersion::V1_2.envelope_namespace() {
                    SoapVersion::V1_2
                } else {
                    return Err(SoapXmlError::VersionMismatch { found: ns.into() });
                }
            }
            ResolveResult::Unknown(prefix) if local.as_ref() == "Envelope" => {
                return Err(expected(format!(
                    "<{qname}> with undeclared prefix `{prefix}`"
                )));
            }
            _ if local.as_ref() == "Envelope" => {
                return Err(expected(format!("<{qname}> without the SOAP namespace")));
            }
            _ => return Err(expected(format!("<{qname}>"))),
        };
        if empty {
            return Err(SoapXmlError::Malformed(
                "the SOAP Envelope has no Body".into(),
            ));
        }
        Ok(version)
    }

    /// Reads the Envelope's children up to its end tag: skips the Header (and anything
    /// after the Body, which SOAP 1.1 allows), reads the Body.
    fn envelope_children(&mut self, version: SoapVersion) -> Result<BodyContent, SoapXmlError> {
        let envelope_ns = version.envelope_namespace();
        let mut body: Option<BodyContent> = None;
        loop {
            let (start, empty) = match self.next()?.1 {
                Event::Start(start) => (start, false),
                Event::Empty(start) => (start, true),
                // Start and end tags must match, and children are read whole, so this is
                // the Envelope's end.
                Event::End(_) => break,
                Event::Eof => {
                    return Err(SoapXmlError::Malformed(
                        "the response ends inside the SOAP Envelope (truncated?)".into(),
                    ));
                }
                _ => continue,
            };
            let qname = start.name().into_inner();
            let (namespace, local) = self.reader.resolver().resolve_element(start.name());
            let in_envelope_ns =
                matches!(namespace, ResolveResult::Bound(Namespace(ns)) if ns == envelope_ns);
            let local = local.into_inner();
            if in_envelope_ns && local == "Body" {
                if body.is_some() {
                    return Err(SoapXmlError::Malformed(
                        "the SOAP Envelope has two Bodies".into(),
                    ));
                }
                body = Some(if empty {
                    let at = self.position();
                    BodyContent {
                        inner: at..at,
                        elements: Vec::new(),
                    }
                } else {
                    self.body_content(qname)?
                });
            } else if body.is_none() && !(in_envelope_ns && local == "Header") {
                return Err(SoapXmlError::Malformed(format!(
                    "expected the SOAP Header or Body, found <{qname}>"
                )));
            } else if !empty {
                self.skip_element()?;
            }
        }
        body.ok_or_else(|| SoapXmlError::Malformed("the SOAP Envelope has no Body".into()))
    }

    /// After the Envelope only comments, processing instructions and whitespace may come.
    fn trailing(&mut self) -> Result<(), SoapXmlError> {
        loop {
            match self.next()?.1 {
                Event::Eof => return Ok(()),
                Event::Text(text) if trim_xml(&text).is_empty() => {}
                Event::Comment(_) | Event::PI(_) => {}
                Event::Text(text) => {
                    return Err(SoapXmlError::Malformed(format!(
                        "unexpected text after the SOAP Envelope: \"{}\"",
                        snippet(&text)
                    )));
                }
                _ => {
                    return Err(SoapXmlError::Malformed(
                        "unexpected content after the SOAP Envelope".into(),
                    ));
                }
            }
        }
    }

    /// Skips the rest of an element whose start tag was just read.
    fn skip_element(&mut self) -> Result<(), SoapXmlError> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next()?.1 {
                Event::Start(_) => depth += 1,
                Event::End(_) => depth -= 1,
                Event::Eof => {
                    return Err(SoapXmlError::Malformed(
                        "the response ends inside the SOAP Header (truncated?)".into(),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads the Body's content up to its end tag, building the element tree.
    fn body_content(&mut self, body_qname: &str) -> Result<BodyContent, SoapXmlError> {
        let inner_start = self.position();
        let mut open: Vec<Element> = Vec::new();
        let mut top: Vec<Element> = Vec::new();
        loop {
            let (at, event) = self.next()?;
            match event {
                Event::Start(start) => {
                    if open.len() >= MAX_DEPTH {
                        return Err(SoapXmlError::TooDeep { limit: MAX_DEPTH });
                    }
                    let position = self.position();
                    open.push(self.element(&start, position)?);
                }
                Event::Empty(start) => {
                    if open.len() >= MAX_DEPTH {
                        return Err(SoapXmlError::TooDeep { limit: MAX_DEPTH });
                    }
                    let position = self.position();
                    let element = self.element(&start, position)?;
                    attach(&mut open, &mut top, element);
                }
                Event::End(_) => match open.pop() {
                    Some(mut element) => {
                        element.inner.end = at;
                        attach(&mut open, &mut top, element);
                    }
                    None => {
                        return Ok(BodyContent {
                            inner: inner_start..at,
                            elements: top,
                        });
                    }
                },
                Event::Text(text) => {
                    if let Some(element) = open.last_mut() {
                        element.text.push_str(&text.xml10_content());
                    }
                }
                Event::CData(data) => {
                    if let Some(element) = open.last_mut() {
                        element.text.push_str(&data.xml10_content());
                    }
                }
                Event::GeneralRef(reference) => {
                    let mut scratch = String::new();
                    let text = match open.last_mut() {
                        Some(element) => &mut element.text,
                        None => &mut scratch,
                    };
                    push_reference(text, &reference).map_err(|what| {
                        SoapXmlError::Malformed(format!(
                            "the response is not well-formed XML (at byte {at}): {what}"
                        ))
                    })?;
                }
                Event::Eof => {
                    let name = open
                        .last()
                        .map(|element| element.local.as_str())
                        .unwrap_or(body_qname);
                    return Err(SoapXmlError::Malformed(format!(
                        "the response ends inside <{name}> (truncated?)"
                    )));
                }
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_) => {}
            }
        }
    }

    /// An element of the Body from its start tag; `inner_start` is where its content
    /// begins (the end is set when its end tag is read).
    fn element(&self, start: &BytesStart<'_>, inner_start: usize) -> Result<Element, SoapXmlError> {
        let resolver = self.reader.resolver();
        let (namespace, local) = resolver.resolve_element(start.name());
        let namespace = match namespace {
            ResolveResult::Bound(Namespace(ns)) => Some(ns.to_string()),
            // An undeclared prefix is the sender's mistake; the data is still readable.
            ResolveResult::Unbound | ResolveResult::Unknown(_) => None,
        };
        let mut element = Element {
            namespace,
            local: local.into_inner().to_string(),
            attributes: Vec::new(),
            nil: false,
            children: Vec::new(),
            text: String::new(),
            inner: inner_start..inner_start,
        };
        for attribute in start.attributes() {
            let qname = start.name().into_inner();
            let attribute = attribute.map_err(|e| {
                SoapXmlError::Malformed(format!(
                    "the response has a bad attribute in <{qname}>: {e}"
                ))
            })?;
            if attribute.key.as_namespace_binding().is_some() {
                continue;
            }
            let value = attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| {
                    SoapXmlError::Malformed(format!(
                        "the response has a bad value for attribute {} of <{qname}>: {e}",
                        attribute.key.into_inner()
                    ))
                })?;
            let (attribute_ns, attribute_local) = resolver.resolve_attribute(attribute.key);
            let attribute_local = attribute_local.into_inner();
            match attribute_ns {
                ResolveResult::Bound(Namespace(XSI_NAMESPACE)) => {
                    if attribute_local == "nil" && matches!(trim_xml(&value), "true" | "1") {
                        element.nil = true;
                    }
                }
                ResolveResult::Bound(Namespace(ns))
                    if ns == SoapVersion::V1_1.envelope_namespace()
                        || ns == SoapVersion::V1_2.envelope_namespace() => {}
                _ => element
                    .attributes
                    .push((attribute_local.to_string(), value.into_owned())),
            }
        }
        Ok(element)
    }
}

/// Adds a finished element to its parent, or to the Body's top level.
fn attach(open: &mut [Element], top: &mut Vec<Element>, element: Element) {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => top.push(element),
    }
}

/// The JSON view of an element (see [`ParsedEnvelope::result`]).
fn element_json(element: &Element) -> Value {
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
fn fault_of(fault: &Element, version: SoapVersion, text: &str) -> SoapFault {
    let text_of = |element: &Element| trim_xml(&element.text).to_string();
    let inner_xml = |element: &Element| {
        text.get(element.inner.clone())
            .map(trim_xml)
            .filter(|xml| !xml.is_empty())
            .map(str::to_string)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NS11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
    const NS12: &str = "http://www.w3.org/2003/05/soap-envelope";

    fn params(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn parse(xml: &str) -> ParsedEnvelope {
        parse_response(xml.as_bytes()).expect("parses")
    }

    fn parse_err(xml: &str) -> String {
        match parse_response(xml.as_bytes()) {
            Ok(parsed) => panic!("parsed {parsed:?} from {xml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn round_trip_1_1() {
        let p = params(json!({
            "symbol": "ACME",
            "qty": 3,
            "flag": true,
            "none": null,
            "nested": { "@id": 7, "a": "x", "b": { "c": "deep" } },
            "list": ["a", "b"],
            "rows": [{ "n": 1 }, { "n": 2 }],
        }));
        let body = operation_body("GetQuote", Some("urn:stock"), &p).expect("body");
        check_body_xml(&body).expect("own body is well-formed");
        let parsed = parse(&envelope(SoapVersion::V1_1, &body));
        assert_eq!(parsed.version, SoapVersion::V1_1);
        assert_eq!(parsed.body.as_deref(), Some(body.as_str()));
        assert_eq!(parsed.fault, None);
        assert_eq!(
            parsed.result,
            Some(json!({ "GetQuote": {
                "symbol": "ACME",
                "qty": "3",
                "flag": "true",
                "none": null,
                "nested": { "@id": "7", "a": "x", "b": { "c": "deep" } },
                "list": ["a", "b"],
                "rows": [{ "n": "1" }, { "n": "2" }],
            }}))
        );
    }

    #[test]
    fn round_trip_1_2_with_attributes_on_the_operation() {
        let p = params(json!({ "@version": "2", "@strict": false, "item": "é & <ü>" }));
        let body = operation_body("Lookup", Some("urn:x?a=1&b=\"2\""), &p).expect("body");
        assert_eq!(
            body,
            "<Lookup xmlns=\"urn:x?a=1&amp;b=&quot;2&quot;\" strict=\"false\" version=\"2\">\
             <item>é &amp; &lt;ü&gt;</item></Lookup>"
        );
        let parsed = parse(&envelope(SoapVersion::V1_2, &body));
        assert_eq!(parsed.version, SoapVersion::V1_2);
        assert_eq!(
            parsed.result,
            Some(json!({ "Lookup": { "@version": "2", "@strict": "false", "item": "é & <ü>" } }))
        );
    }

    #[test]
    fn operation_without_params_or_namespace() {
        let body = operation_body("Ping", None, &Map::new()).expect("body");
        assert_eq!(body, "<Ping/>");
        let parsed = parse(&envelope(SoapVersion::V1_1, &body));
        assert_eq!(parsed.result, Some(json!({ "Ping": null })));
        assert_eq!(
            operation_body("Ping", Some(""), &Map::new()).expect("body"),
            "<Ping/>"
        );
    }

    #[test]
    fn envelope_is_exact() {
        assert_eq!(
            envelope(SoapVersion::V1_1, "<a/>"),
            format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{NS11}\"><soap:Body><a/></soap:Body></soap:Envelope>"
            )
        );
        assert!(envelope(SoapVersion::V1_2, "").contains(NS12));
    }

    #[test]
    fn text_escaping_covers_every_special_character() {
        let p = params(json!({ "s": "<&>\"'\r\n\tx", "@a": "\t\n\r<&>\"'" }));
        let body = operation_body("Op", None, &p).expect("body");
        assert_eq!(
            body,
            "<Op a=\"&#x9;&#xA;&#xD;&lt;&amp;&gt;&quot;&apos;\">\
             <s>&lt;&amp;&gt;&quot;&apos;&#xD;\n\tx</s></Op>"
        );
        let parsed = parse(&envelope(SoapVersion::V1_1, &body));
        assert_eq!(
            parsed.result,
            Some(json!({ "Op": { "@a": "\t\n\r<&>\"'", "s": "<&>\"'\r\n\tx" } }))
        );
    }

    #[test]
    fn bad_names_are_refused_with_their_path() {
        let err = operation_body("1op", None, &Map::new()).expect_err("bad operation");
        assert!(
            matches!(&err, SoapXmlError::InvalidName { field, value } if field == "operation" && value == "1op")
        );
        assert!(operation_body("ns:op", None, &Map::new()).is_err());
        for (p, path, name) in [
            (json!({ "a b": 1 }), "params.a b", "a b"),
            (json!({ "ns:x": 1 }), "params.ns:x", "ns:x"),
            (json!({ "": 1 }), "params.", ""),
            (
                json!({ "outer": { "in-ok": { "9bad": 1 } } }),
                "params.outer.in-ok.9bad",
                "9bad",
            ),
            (
                json!({ "list": [{ "ok": 1 }, { "x y": 2 }] }),
                "params.list[1].x y",
                "x y",
            ),
            (
                json!({ "o": { "@bad name": "v" } }),
                "params.o.@bad name",
                "bad name",
            ),
        ] {
            match operation_body("Op", None, &params(p)) {
                Err(SoapXmlError::InvalidName { field, value }) => {
                    assert_eq!((field.as_str(), value.as_str()), (path, name));
                }
                other => panic!("{path}: {other:?}"),
            }
        }
        // Non-ASCII names are fine.
        operation_body("Opé", None, &params(json!({ "名前": "x", "a.b-c_d": 1 }))).expect("ok");
    }

    #[test]
    fn characters_xml_cannot_carry_are_refused_with_their_path() {
        for (p, path, code) in [
            (json!({ "s": "a\u{0}b" }), "params.s", 0),
            (json!({ "o": { "t": "\u{8}" } }), "params.o.t", 8),
            (json!({ "l": ["ok", "\u{1f}"] }), "params.l[1]", 0x1f),
            (json!({ "@a": "\u{ffff}" }), "params.@a", 0xffff),
        ] {
            match operation_body("Op", None, &params(p)) {
                Err(SoapXmlError::InvalidChar { path: got, code: c }) => {
                    assert_eq!((got.as_str(), c), (path, code));
                }
                other => panic!("{path}: {other:?}"),
            }
        }
        assert!(matches!(
            operation_body("Op", Some("urn:\u{1}"), &Map::new()),
            Err(SoapXmlError::InvalidChar { path, .. }) if path == "namespace"
        ));
    }

    #[test]
    fn shapes_without_an_xml_form_are_refused() {
        for p in [
            json!({ "@a": { "x": 1 } }),
            json!({ "@a": [1] }),
            json!({ "@a": null }),
            json!({ "l": [[1, 2]] }),
        ] {
            assert!(
                matches!(
                    operation_body("Op", None, &params(p.clone())),
                    Err(SoapXmlError::Json(_))
                ),
                "{p}"
            );
        }
        assert!(matches!(
            operation_body("Op", Some("urn:x"), &params(json!({ "@xmlns": "urn:y" }))),
            Err(SoapXmlError::Json(_))
        ));
        // On a nested element `@xmlns` switches that element's namespace.
        let body = operation_body(
            "Op",
            Some("urn:x"),
            &params(json!({ "c": { "@xmlns": "urn:y", "d": 1 } })),
        )
        .expect("body");
        assert_eq!(
            body,
            "<Op xmlns=\"urn:x\"><c xmlns=\"urn:y\"><d>1</d></c></Op>"
        );
        // Empty arrays give no element at all.
        assert_eq!(
            operation_body("Op", None, &params(json!({ "l": [] }))).expect("body"),
            "<Op/>"
        );
    }

    #[test]
    fn parameters_nested_too_deep_are_refused() {
        let mut value = json!("leaf");
        for _ in 0..(MAX_DEPTH + 5) {
            value = json!({ "n": value });
        }
        let p = params(json!({ "n": value }));
        assert!(matches!(
            operation_body("Op", None, &p),
            Err(SoapXmlError::TooDeep { .. })
        ));
    }

    #[test]
    fn fault_1_1_with_actor_and_detail() {
        let xml = format!(
            r#"<?xml version="1.0"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="{NS11}">
  <SOAP-ENV:Header><t:Trace xmlns:t="urn:t">abc</t:Trace></SOAP-ENV:Header>
  <SOAP-ENV:Body>
    <SOAP-ENV:Fault>
      <faultcode>SOAP-ENV:Client</faultcode>
      <faultstring xml:lang="en">Invalid symbol &amp; more</faultstring>
      <faultactor>http://svc/quote</faultactor>
      <detail>
        <e:Err xmlns:e="urn:e"><e:code>42</e:code></e:Err>
      </detail>
    </SOAP-ENV:Fault>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>"#
        );
        let parsed = parse(&xml);
        assert_eq!(parsed.version, SoapVersion::V1_1);
        assert_eq!(parsed.body, None);
        assert_eq!(parsed.result, None);
        assert_eq!(
            parsed.fault,
            Some(SoapFault {
                code: "SOAP-ENV:Client".into(),
                subcode: None,
                reason: "Invalid symbol & more".into(),
                actor: Some("http://svc/quote".into()),
                detail: Some(r#"<e:Err xmlns:e="urn:e"><e:code>42</e:code></e:Err>"#.into()),
            })
        );
    }

    #[test]
    fn fault_1_2_with_subcode_role_and_detail() {
        let xml = format!(
            r#"<env:Envelope xmlns:env="{NS12}" xmlns:m="urn:m">
  <env:Body>
    <env:Fault>
      <env:Code>
        <env:Value>env:Sender</env:Value>
        <env:Subcode><env:Value>m:MessageTimeout</env:Value></env:Subcode>
      </env:Code>
      <env:Reason>
        <env:Text xml:lang="en">Sender Timeout</env:Text>
        <env:Text xml:lang="de">Zeitüberschreitung</env:Text>
      </env:Reason>
      <env:Role>http://example.org/role</env:Role>
      <env:Detail><m:MaxTime>P5M</m:MaxTime></env:Detail>
    </env:Fault>
  </env:Body>
</env:Envelope>"#
        );
        let parsed = parse(&xml);
        assert_eq!(parsed.version, SoapVersion::V1_2);
        assert_eq!(
            parsed.fault,
            Some(SoapFault {
                code: "env:Sender".into(),
                subcode: Some("m:MessageTimeout".into()),
                reason: "Sender Timeout".into(),
                actor: Some("http://example.org/role".into()),
                detail: Some("<m:MaxTime>P5M</m:MaxTime>".into()),
            })
        );
    }

    #[test]
    fn minimal_fault_has_no_optional_parts() {
        let xml = format!(
            r#"<s:Envelope xmlns:s="{NS11}"><s:Body><s:Fault><faultcode>s:Server</faultcode><faultstring>boom</faultstring><detail/></s:Fault></s:Body></s:Envelope>"#
        );
        let fault = parse(&xml).fault.expect("fault");
        assert_eq!(
            (fault.code.as_str(), fault.reason.as_str()),
            ("s:Server", "boom")
        );
        assert_eq!(
            (fault.actor, fault.detail, fault.subcode),
            (None, None, None)
        );
    }

    #[test]
    fn a_fault_in_another_namespace_is_data() {
        let xml = format!(
            r#"<s:Envelope xmlns:s="{NS11}"><s:Body><Fault xmlns="urn:app"><why>x</why></Fault></s:Body></s:Envelope>"#
        );
        let parsed = parse(&xml);
        assert_eq!(parsed.fault, None);
        assert_eq!(parsed.result, Some(json!({ "Fault": { "why": "x" } })));
    }

    #[test]
    fn default_namespace_envelope_and_header() {
        let xml = format!(
            r#"<Envelope xmlns="{NS12}">
  <Header><Security xmlns="urn:sec"><Token>secret</Token><Body>not the body</Body></Security></Header>
  <Body><GetResponse xmlns="urn:app"><Value>1</Value></GetResponse></Body>
</Envelope>"#
        );
        let parsed = parse(&xml);
        assert_eq!(parsed.version, SoapVersion::V1_2);
        assert_eq!(
            parsed.result,
            Some(json!({ "GetResponse": { "Value": "1" } }))
        );
        assert_eq!(
            parsed.body.as_deref(),
            Some(r#"<GetResponse xmlns="urn:app"><Value>1</Value></GetResponse>"#)
        );
    }

    #[test]
    fn body_is_the_exact_inner_xml_with_prefixes_from_outside() {
        let inner = "\n  <m:R xmlns:x=\"urn:x\">a<!-- c --><![CDATA[<b>]]></m:R>\n  tail ";
        let xml = format!(
            r#"<e:Envelope xmlns:e="{NS11}" xmlns:m="urn:m"><e:Body>{inner}</e:Body></e:Envelope>"#
        );
        let parsed = parse(&xml);
        assert_eq!(parsed.body.as_deref(), Some(inner));
        assert_eq!(parsed.result, Some(json!({ "R": "a<b>" })));
    }

    #[test]
    fn empty_body() {
        for body in [
            "<soap:Body/>",
            "<soap:Body></soap:Body>",
            "<soap:Body>  </soap:Body>",
        ] {
            let xml = format!(r#"<soap:Envelope xmlns:soap="{NS11}">{body}</soap:Envelope>"#);
            let parsed = parse(&xml);
            assert_eq!(parsed.result, None, "{body}");
            assert_eq!(parsed.fault, None, "{body}");
            assert!(parsed.body.is_some_and(|b| b.trim().is_empty()), "{body}");
        }
    }

    #[test]
    fn entities_and_non_ascii_text_are_decoded() {
        let xml = format!(
            r#"<soap:Envelope xmlns:soap="{NS11}"><soap:Body><r xmlns="urn:r"><t>a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos; &#233;&#x263A;&#x1F600; Grüße 日本</t><crlf>x&#13;&#10;y</crlf></r></soap:Body></soap:Envelope>"#
        );
        assert_eq!(
            parse(&xml).result,
            Some(json!({ "r": {
                "t": "a & b <c> \"d\" 'e' é☺😀 Grüße 日本",
                "crlf": "x\r\ny",
            }}))
        );
    }

    #[test]
    fn repeated_children_become_arrays_and_attributes_keys() {
        let xml = format!(
            r#"<soap:Envelope xmlns:soap="{NS11}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soap:Body><ns:List xmlns:ns="urn:l" soap:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/" count="3">
  <ns:item id="1" xsi:type="xsd:string">one</ns:item>
  <ns:item id="2"/>
  <ns:item>three</ns:item>
  <ns:single><ns:x>1</ns:x></ns:single>
  <ns:nothing xsi:nil="true" id="9"/>
  <ns:empty></ns:empty>
  <ns:mixed>ignored<ns:k>v</ns:k>ignored too</ns:mixed>
  <ns:spaces>  </ns:spaces>
</ns:List></soap:Body></soap:Envelope>"#
        );
        assert_eq!(
            parse(&xml).result,
            Some(json!({ "List": {
                "@count": "3",
                "item": [ { "@id": "1", "#text": "one" }, { "@id": "2" }, "three" ],
                "single": { "x": "1" },
                "nothing": null,
                "empty": null,
                "mixed": { "k": "v" },
                "spaces": "  ",
            }}))
        );
    }

    #[test]
    fn other_encodings_are_read() {
        let xml = format!(
            r#"<soap:Envelope xmlns:soap="{NS11}"><soap:Body><r>Grüße</r></soap:Body></soap:Envelope>"#
        );
        let expected = Some(json!({ "r": "Grüße" }));
        let mut bom8 = b"\xEF\xBB\xBF".to_vec();
        bom8.extend_from_slice(xml.as_bytes());
        assert_eq!(parse_response(&bom8).expect("utf-8 bom").result, expected);
        let mut le = vec![0xFF, 0xFE];
        let mut be = vec![0xFE, 0xFF];
        for unit in xml.encode_utf16() {
            le.extend_from_slice(&unit.to_le_bytes());
            be.extend_from_slice(&unit.to_be_bytes());
        }
        assert_eq!(parse_response(&le).expect("utf-16le").result, expected);
        assert_eq!(parse_response(&be).expect("utf-16be").result, expected);
        let latin1: Vec<u8> = format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{xml}")
            .chars()
            .map(|c| u8::try_from(u32::from(c)).expect("latin-1"))
            .collect();
        assert_eq!(parse_response(&latin1).expect("latin-1").result, expected);
        let err = parse_response(&latin1[38..]).expect_err("undeclared latin-1");
        assert!(err.to_string().contains("UTF-8"), "{err}");
    }

    #[test]
    fn not_an_envelope() {
        assert!(parse_err("<html><head><title>502</title></head></html>").contains("found <html>"));
        assert!(
            parse_err("<!DOCTYPE html>\n<html><body>Bad Gateway</body></html>")
                .contains("HTML page")
        );
        assert!(parse_err("<!doctype html><html></html>").contains("Envelope"));
        assert!(parse_err(r#"<foo xmlns="urn:x"/>"#).contains("found <foo>"));
        assert!(parse_err("Service Unavailable").contains("found text \"Service Unavailable\""));
        assert!(parse_err("").contains("empty"));
        assert!(parse_err("   \n").contains("empty"));
        assert!(parse_err("<Envelope><Body/></Envelope>").contains("without the SOAP namespace"));
        assert!(parse_err("<s:Envelope><s:Body/></s:Envelope>").contains("undeclared prefix"));
        assert!(matches!(
            parse_response(br#"<s:Envelope xmlns:s="urn:not-soap"><s:Body/></s:Envelope>"#),
            Err(SoapXmlError::VersionMismatch { found }) if found == "urn:not-soap"
        ));
        assert!(parse_err(&format!(r#"<s:Envelope xmlns:s="{NS11}"/>"#)).contains("no Body"));
        assert!(
            parse_err(&format!(
                r#"<s:Envelope xmlns:s="{NS11}"><s:Header/></s:Envelope>"#
            ))
            .contains("no Body")
        );
        assert!(
            parse_err(&format!(
                r#"<s:Envelope xmlns:s="{NS11}"><x/><s:Body/></s:Envelope>"#
            ))
            .contains("found <x>")
        );
        assert!(
            parse_err(&format!(
                r#"<s:Envelope xmlns:s="{NS11}"><s:Body/><s:Body/></s:Envelope>"#
            ))
            .contains("two Bodies")
        );
        assert!(
            parse_err(&format!(
                r#"<s:Envelope xmlns:s="{NS11}"><s:Body/></s:Envelope>trailing"#
            ))
            .contains("after the SOAP Envelope")
        );
        assert!(
            parse_err(&format!(
                r#"<s:Envelope xmlns:s="{NS11}"><s:Body/></s:Envelope><again/>"#
            ))
            .contains("after the SOAP Envelope")
        );
    }

    #[test]
    fn doctype_is_refused() {
        let laughs = format!(
            r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<s:Envelope xmlns:s="{NS11}"><s:Body><r>&lol2;</r></s:Body></s:Envelope>"#
        );
        assert!(matches!(
            parse_response(laughs.as_bytes()),
            Err(SoapXmlError::Doctype)
        ));
        let xxe = format!(
            r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><s:Envelope xmlns:s="{NS11}"><s:Body><r>&x;</r></s:Body></s:Envelope>"#
        );
        assert!(matches!(
            parse_response(xxe.as_bytes()),
            Err(SoapXmlError::Doctype)
        ));
        assert!(matches!(
            check_body_xml("<!DOCTYPE r><r/>"),
            Err(SoapXmlError::Doctype)
        ));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for body in [
            "<r>",
            "<r></q>",
            "<r>&nbsp;</r>",
            "<r>&#0;</r>",
            "<r>&#1;</r>",
            "<r>& </r>",
            "<r a=\"1\" a=\"2\"/>",
            "<r a=\"&bogus;\"/>",
        ] {
            let xml =
                format!(r#"<s:Envelope xmlns:s="{NS11}"><s:Body>{body}</s:Body></s:Envelope>"#);
            assert!(parse_response(xml.as_bytes()).is_err(), "{body}");
        }
        assert!(
            parse_err(&format!(
                r#"<s:Envelope xmlns:s="{NS11}"><s:Body><r>&nbsp;</r>"#
            ))
            .contains("&nbsp;")
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let body = operation_body(
            "Op",
            Some("urn:x"),
            &params(json!({ "a": "é & ü", "b": [1, 2], "@c": "d" })),
        )
        .expect("body");
        let xml = envelope(SoapVersion::V1_2, &body);
        parse_response(xml.as_bytes()).expect("whole document parses");
        for cut in 0..xml.len() {
            assert!(
                parse_response(&xml.as_bytes()[..cut]).is_err(),
                "cut at {cut}: {}",
                &xml[..cut]
            );
        }
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused() {
        let nest = |depth: usize| {
            let body = format!("{}x{}", "<a>".repeat(depth), "</a>".repeat(depth));
            envelope(SoapVersion::V1_1, &body)
        };
        assert!(parse_response(nest(MAX_DEPTH).as_bytes()).is_ok());
        assert!(matches!(
            parse_response(nest(MAX_DEPTH + 1).as_bytes()),
            Err(SoapXmlError::TooDeep { limit: MAX_DEPTH })
        ));
        let empty_at_limit = envelope(
            SoapVersion::V1_1,
            &format!(
                "{}<b/>{}",
                "<a>".repeat(MAX_DEPTH),
                "</a>".repeat(MAX_DEPTH)
            ),
        );
        assert!(matches!(
            parse_response(empty_at_limit.as_bytes()),
            Err(SoapXmlError::TooDeep { .. })
        ));
        // A deep Header is only skipped, never built.
        let deep_header = format!(
            r#"<s:Envelope xmlns:s="{NS11}"><s:Header>{}{}</s:Header><s:Body><r>1</r></s:Body></s:Envelope>"#,
            "<h>".repeat(5000),
            "</h>".repeat(5000)
        );
        assert_eq!(parse(&deep_header).result, Some(json!({ "r": "1" })));
    }

    #[test]
    fn caller_bodies_are_checked() {
        for ok in [
            "",
            "plain text",
            "<a/><b>text</b> tail",
            "<m:Op xmlns:m=\"urn:m\" m:attr=\"1\"><m:x>&amp;&#233;</m:x></m:Op>",
            "<soap:Header/><x soap:encodingStyle=\"e\"/>",
            "<!-- note --><?pi data?><a><![CDATA[<raw>]]></a>",
            "<x xml:lang=\"en\"/>",
        ] {
            check_body_xml(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, needle) in [
            ("<a>", "not closed"),
            ("</a>", ""),
            ("<a></b>", ""),
            ("</soap:Body><soap:Body>", ""),
            ("<a>&nbsp;</a>", "&nbsp;"),
            ("<a>&#1;</a>", "U+0001"),
            ("<a>\u{1}</a>", "U+0001"),
            ("<a b=\"\u{1}\"/>", "U+0001"),
            ("<a b=\"&x;\"/>", ""),
            ("<a b=\"<\"/>", ""),
            ("<a b=\"1\" b=\"2\"/>", ""),
            ("<x:a/>", "`x`"),
            ("<a x:b=\"1\"/>", "`x`"),
            ("<1a/>", "valid XML name"),
            ("<a 1b=\"1\"/>", ""),
            ("<?xml version=\"1.0\"?><a/>", "declaration"),
            ("a ]]> b", "]]>"),
            ("<a>&</a>", ""),
        ] {
            match check_body_xml(bad) {
                Ok(()) => panic!("{bad} was accepted"),
                Err(e) => assert!(e.to_string().contains(needle), "{bad}: {e}"),
            }
        }
    }

    /// Strings a parameter might hold: anything, printable text, and XML-ish text.
    fn param_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "\\PC{0,24}",
            "[ \\t\\r\\n<>&;#x0-9\"'\\]\\[a-z!?-]{0,24}",
        ]
    }

    /// Noise that looks like XML, to get past the first few bytes more often.
    fn xmlish() -> impl Strategy<Value = String> {
        "[<>/:=\"' a-zA-Z&;#!?\\[\\]-]{0,200}"
    }

    proptest! {
        #[test]
        fn parse_response_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_response(&bytes);
        }

        #[test]
        fn parse_response_never_panics_on_xmlish_bodies(noise in xmlish(), v12 in any::<bool>()) {
            let version = if v12 { SoapVersion::V1_2 } else { SoapVersion::V1_1 };
            let _ = parse_response(envelope(version, &noise).as_bytes());
            let _ = parse_response(noise.as_bytes());
            let _ = check_body_xml(&noise);
        }

        #[test]
        fn string_params_round_trip(
            values in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_.-]{0,8}", param_string(), 0..5),
            attribute in proptest::option::of(param_string()),
            v12 in any::<bool>(),
        ) {
            let mut p = Map::new();
            for (k, v) in &values {
                p.insert(k.clone(), Value::String(v.clone()));
            }
            if let Some(a) = &attribute {
                p.insert("@attr".into(), Value::String(a.clone()));
            }
            let all_legal = values.values().chain(attribute.iter()).all(|s| s.chars().all(is_xml_char));
            let built = operation_body("Op", Some("urn:test"), &p);
            prop_assert_eq!(built.is_ok(), all_legal, "{:?}", built);
            let Ok(body) = built else { return Ok(()) };
            prop_assert!(check_body_xml(&body).is_ok());
            let version = if v12 { SoapVersion::V1_2 } else { SoapVersion::V1_1 };
            let parsed = parse_response(envelope(version, &body).as_bytes());
            prop_assert!(parsed.is_ok(), "{:?}", parsed);
            let parsed = parsed.expect("checked");
            // XML cannot tell an empty element from an empty string.
            let mut expected = Map::new();
            for (k, v) in &values {
                expected.insert(k.clone(), if v.is_empty() { Value::Null } else { Value::String(v.clone()) });
            }
            if let Some(a) = attribute {
                expected.insert("@attr".into(), Value::String(a));
            }
            let op = if expected.is_empty() { Value::Null } else { Value::Object(expected) };
            prop_assert_eq!(parsed.version, version);
            prop_assert_eq!(parsed.result, Some(json!({ "Op": op })));
        }
    }
}
