//! A small XML reader for the service's requests (elements, text, namespaces).

use super::*;

/// An element of a parsed request: expanded name, child elements and text content.
#[derive(Debug)]
pub(super) struct Element {
    pub(super) ns: Option<String>,
    pub(super) name: String,
    pub(super) children: Vec<Element>,
    pub(super) text: String,
}

impl Element {
    /// Text of the child `name`, in the calc namespace or unqualified.
    pub(super) fn param(&self, name: &str) -> Result<&str, Fault> {
        self.children
            .iter()
            .find(|c| c.name == name && matches!(c.ns.as_deref(), None | Some(CALC_NS)))
            .map(|c| c.text.as_str())
            .ok_or_else(|| Fault::client(format!("{}: missing element {name}", self.name)))
    }

    /// Text of the child `name`, which must be unqualified (no namespace).
    pub(super) fn unqualified_param(&self, name: &str) -> Result<&str, Fault> {
        let child = self
            .children
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Fault::client(format!("{}: missing element {name}", self.name)))?;
        match &child.ns {
            None => Ok(child.text.as_str()),
            Some(ns) => Err(Fault::refined(
                "SchemaValidationError",
                format!(
                    "{}: element {name} must be unqualified (elementFormDefault=\"unqualified\"), found it in {ns}",
                    self.name
                ),
            )),
        }
    }

    pub(super) fn integer(&self, name: &str) -> Result<i64, Fault> {
        self.param(name)?
            .trim()
            .parse()
            .map_err(|_| Fault::client(format!("{}: {name} is not an integer", self.name)))
    }
}

/// Parses `xml` into a tree of elements with resolved namespaces. DTDs are refused
/// (SOAP forbids them), as are entity references other than XML's predefined ones.
pub(super) fn parse(xml: &str) -> Result<Element, String> {
    let mut reader = NsReader::from_str(xml);
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(|e| e.to_string())?;
        let ns = match ns {
            ResolveResult::Bound(ns) => Some(ns.0.to_string()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => return Err(format!("unbound prefix {prefix}")),
        };
        let text = match event {
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                return Err(format!(
                    "element {} after the root element",
                    e.local_name().into_inner()
                ));
            }
            Event::Start(e) => {
                if open.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                open.push(Element {
                    ns,
                    name: e.local_name().into_inner().to_string(),
                    children: Vec::new(),
                    text: String::new(),
                });
                continue;
            }
            Event::Empty(e) => {
                let element = Element {
                    ns,
                    name: e.local_name().into_inner().to_string(),
                    children: Vec::new(),
                    text: String::new(),
                };
                close(&mut open, &mut root, element);
                continue;
            }
            Event::End(_) => {
                let element = open.pop().ok_or("unexpected end tag")?;
                close(&mut open, &mut root, element);
                continue;
            }
            Event::Text(t) => t.xml10_content().into_owned(),
            Event::CData(c) => c.xml10_content().into_owned(),
            Event::GeneralRef(r) => match r.resolve_char_ref().map_err(|e| e.to_string())? {
                Some(c) => c.to_string(),
                None => resolve_predefined_entity(&r)
                    .ok_or_else(|| format!("unknown entity &{};", &*r))?
                    .to_string(),
            },
            Event::DocType(_) => return Err("DTDs are not allowed in SOAP messages".into()),
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => continue,
        };
        match open.last_mut() {
            Some(element) => element.text.push_str(&text),
            None if text.trim().is_empty() => {}
            None => return Err("text outside the root element".into()),
        }
    }
    if let Some(element) = open.last() {
        return Err(format!("element {} is not closed", element.name));
    }
    root.ok_or_else(|| "no root element".to_string())
}

/// Attaches a finished element to its parent, or makes it the root.
pub(super) fn close(open: &mut [Element], root: &mut Option<Element>, element: Element) {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}
