//! Reading a response envelope: the version from the Envelope's namespace, the Header
//! skipped, the Body's content as a tree of elements (bounded in depth) and its exact
//! byte range.

use super::encoding::decode_input;
use super::names::{push_reference, snippet, trim_xml};
use super::scope::{self, Binding};
use super::view::{element_json, fault_of};
use super::{MAX_DEPTH, ParsedEnvelope, SoapXmlError, XSI_NAMESPACE};
use openmid_proto::soap::SoapVersion;
use quick_xml::NsReader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, PrefixDeclaration, ResolveResult};
use serde_json::{Map, Value};
use std::ops::Range;

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
            fault: Some(fault_of(fault, version, &text, &body.scope)?),
        });
    }
    let raw = scope::self_contained(&text, body.inner.clone(), &body.elements, &body.scope)?;
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

/// An element of the response Body, kept only as far as the JSON view and Fault need.
pub(super) struct Element {
    /// Namespace URI, when the name is bound to one.
    pub(super) namespace: Option<String>,
    /// Local name.
    pub(super) local: String,
    /// Attributes by local name, without namespace declarations and `xsi:`/envelope ones.
    pub(super) attributes: Vec<(String, String)>,
    /// `xsi:nil="true"`.
    pub(super) nil: bool,
    /// Child elements in document order.
    pub(super) children: Vec<Element>,
    /// Decoded character data directly inside this element.
    pub(super) text: String,
    /// Byte range of the content between the start and end tags, in the decoded input.
    pub(super) inner: Range<usize>,
    /// Offset just after `<name` of the start tag, where declarations can be added.
    pub(super) name_end: usize,
    /// The namespace declarations on the start tag.
    pub(super) declarations: Vec<Binding>,
}

/// The Body's content.
struct BodyContent {
    inner: Range<usize>,
    elements: Vec<Element>,
    /// The namespace bindings in scope inside the Body (declared on the Envelope and
    /// the Body).
    scope: Vec<Binding>,
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
                        scope: Vec::new(),
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
        // The Body's start tag was just read, so its declarations are in scope.
        let scope = scope::in_scope(self.reader.resolver());
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
                    open.push(self.element(&start, at, position)?);
                }
                Event::Empty(start) => {
                    if open.len() >= MAX_DEPTH {
                        return Err(SoapXmlError::TooDeep { limit: MAX_DEPTH });
                    }
                    let position = self.position();
                    let element = self.element(&start, at, position)?;
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
                            scope,
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

    /// An element of the Body from its start tag, which begins at `tag_start`;
    /// `inner_start` is where its content begins (the end is set when its end tag is
    /// read).
    fn element(
        &self,
        start: &BytesStart<'_>,
        tag_start: usize,
        inner_start: usize,
    ) -> Result<Element, SoapXmlError> {
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
            name_end: tag_start + 1 + start.name().into_inner().len(),
            declarations: Vec::new(),
        };
        for attribute in start.attributes() {
            let qname = start.name().into_inner();
            let attribute = attribute.map_err(|e| {
                SoapXmlError::Malformed(format!(
                    "the response has a bad attribute in <{qname}>: {e}"
                ))
            })?;
            if let Some(declaration) = attribute.key.as_namespace_binding() {
                element.declarations.push(Binding {
                    prefix: match declaration {
                        PrefixDeclaration::Default => None,
                        PrefixDeclaration::Named(name) => Some(name.to_string()),
                    },
                    namespace: attribute.value.to_string(),
                });
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
