//! XML, streamed with quick-xml: each element at the record path is one record. Its
//! attributes become `@name` columns; a child element's text a column by its name, a
//! nested one's `parent/child` (their attributes `child/@name`); a child repeated
//! within one record an array; the record's own text `#text`. Values are text.
//!
//! Only the record being read is held in memory. Malformed XML cannot be read past,
//! so it ends the job, naming the byte.

use super::record::{At, Fields, Item, Parser, unreadable};
use crate::probes::ProbeError;
use openmid_proto::soap::xml::push_reference;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use serde_json::Value;
use std::io::BufRead;

/// Deepest element nesting read.
const MAX_DEPTH: usize = 256;

/// The record being read.
struct Open {
    fields: Vec<(String, Value)>,
    /// Names of the open elements inside the record, and the text of each (the
    /// record's own is `texts[0]`).
    path: Vec<String>,
    texts: Vec<String>,
}

impl Open {
    fn add(&mut self, name: String, value: String) {
        match self.fields.iter_mut().find(|(n, _)| *n == name) {
            Some((_, Value::Array(values))) => values.push(Value::String(value)),
            Some((_, existing)) => {
                let first = std::mem::take(existing);
                *existing = Value::Array(vec![first, Value::String(value)]);
            }
            None => self.fields.push((name, Value::String(value))),
        }
    }

    fn column(&self, leaf: &str) -> String {
        let mut parts: Vec<&str> = self.path.iter().map(String::as_str).collect();
        parts.push(leaf);
        parts.retain(|p| !p.is_empty());
        parts.join("/")
    }
}

/// Streams the records of an XML document.
pub struct XmlParser<R: BufRead> {
    reader: quick_xml::Reader<R>,
    record_path: Vec<String>,
    stack: Vec<String>,
    open: Option<Open>,
    buf: Vec<u8>,
}

impl<R: BufRead> XmlParser<R> {
    /// Records at `record_path` (`/catalog/book`).
    pub fn new(source: R, record_path: &str) -> Self {
        let mut reader = quick_xml::Reader::from_reader(source);
        reader.config_mut().trim_text(false);
        Self {
            reader,
            record_path: record_path.split('/').skip(1).map(str::to_string).collect(),
            stack: Vec::new(),
            open: None,
            buf: Vec::new(),
        }
    }

    fn broken(&self, what: impl std::fmt::Display) -> ProbeError {
        unreadable(format!(
            "XML: {what} (at byte {})",
            self.reader.buffer_position()
        ))
    }

    /// An element starts: a record's, a child's within one, or one on the way.
    fn start(&mut self, e: &BytesStart<'_>, empty: bool) -> Result<Option<Item>, ProbeError> {
        let name = e.name().into_inner().to_string();
        let attributes = attributes(e).map_err(|m| self.broken(m))?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.broken(format!("elements nest deeper than {MAX_DEPTH}")));
        }
        self.stack.push(name.clone());
        if let Some(open) = &mut self.open {
            open.path.push(name);
            open.texts.push(String::new());
            for (k, v) in attributes {
                let column = open.column(&format!("@{k}"));
                open.add(column, v);
            }
            if empty {
                return Ok(self.end());
            }
            return Ok(None);
        }
        if self.stack == self.record_path {
            let mut open = Open {
                fields: Vec::new(),
                path: Vec::new(),
                texts: vec![String::new()],
            };
            for (k, v) in attributes {
                open.add(format!("@{k}"), v);
            }
            self.open = Some(open);
            if empty {
                return Ok(self.end());
            }
        } else if empty {
            self.stack.pop();
        }
        Ok(None)
    }

    /// An element ends: a child's text becomes a column, a record's end its item.
    fn end(&mut self) -> Option<Item> {
        self.stack.pop();
        let open = self.open.as_mut()?;
        let text = open.texts.pop().unwrap_or_default();
        let text = text.trim();
        match open.path.pop() {
            Some(child) => {
                if !text.is_empty() {
                    let column = open.column(&child);
                    open.add(column, text.to_string());
                }
                None
            }
            None => {
                let text = text.to_string();
                let mut open = self.open.take()?;
                if !text.is_empty() {
                    open.add("#text".into(), text);
                }
                Some(Item::Record(Fields::Named(open.fields), At::default()))
            }
        }
    }

    fn text(&mut self, text: &str) {
        if let Some(t) = self.open.as_mut().and_then(|o| o.texts.last_mut()) {
            t.push_str(text);
        }
    }
}

/// An element's attributes, unescaped (namespace declarations included, as written).
fn attributes(e: &BytesStart<'_>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for attribute in e.attributes() {
        let attribute = attribute.map_err(|e| format!("a bad attribute: {e}"))?;
        let key = attribute.key.into_inner().to_string();
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("a bad value for attribute {key}: {e}"))?;
        out.push((key, value.into_owned()));
    }
    Ok(out)
}

impl<R: BufRead + Send> Parser for XmlParser<R> {
    fn next_item(&mut self) -> Result<Option<Item>, ProbeError> {
        loop {
            self.buf.clear();
            let event = match self.reader.read_event_into(&mut self.buf) {
                Ok(event) => event.into_owned(),
                Err(e) => return Err(self.broken(e)),
            };
            let item = match event {
                Event::Start(e) => self.start(&e, false)?,
                Event::Empty(e) => self.start(&e, true)?,
                Event::End(_) => self.end(),
                Event::Text(t) => {
                    self.text(&t.xml10_content());
                    None
                }
                Event::CData(t) => {
                    self.text(&t.xml10_content());
                    None
                }
                Event::GeneralRef(r) => {
                    let mut s = String::new();
                    push_reference(&mut s, &r).map_err(|m| self.broken(m))?;
                    self.text(&s);
                    None
                }
                Event::Eof => {
                    if let Some(name) = self.stack.last() {
                        return Err(
                            self.broken(format!("the document ends inside <{name}> (truncated?)"))
                        );
                    }
                    return Ok(None);
                }
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_) => None,
            };
            if item.is_some() {
                return Ok(item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn all(data: &[u8], path: &str) -> Result<Vec<Vec<(String, Value)>>, ProbeError> {
        let mut p = XmlParser::new(data, path);
        let mut out = Vec::new();
        while let Some(item) = p.next_item()? {
            if let Item::Record(Fields::Named(f), _) = item {
                out.push(f);
            }
        }
        Ok(out)
    }

    #[test]
    fn records_at_the_path() {
        let doc = br#"<?xml version="1.0"?>
<catalog><meta><book id="not-a-record"/></meta>
  <book id="b1" lang="en">
    <title>Rust &amp; XML</title>
    <author>A</author><author>B</author>
    <price currency="EUR">12.50</price>
    <pub><year>2024</year><city>Oslo</city></pub>
    note
  </book>
  <book id="b2"/>
</catalog>"#;
        let got = all(doc, "/catalog/book").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), 2);
        let r: serde_json::Map<String, Value> = got[0].iter().cloned().collect();
        assert_eq!(
            Value::Object(r),
            json!({"@id": "b1", "@lang": "en", "title": "Rust & XML", "author": ["A", "B"],
                "price/@currency": "EUR", "price": "12.50", "pub/year": "2024", "pub/city": "Oslo",
                "#text": "note"})
        );
        assert_eq!(got[1], vec![("@id".to_string(), json!("b2"))]);
    }

    #[test]
    fn malformed_xml_names_the_byte() {
        for doc in [
            &b"<a><b>1</b><b>2</a>"[..],
            b"<a><b>1</b>",
            b"<a><b x=>1</b></a>",
        ] {
            let e = all(doc, "/a/b")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("at byte"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = all(&data, "/a/b");
        }

        #[test]
        fn arbitrary_markup_never_panics(data in r#"(<[ab]( x="[1&;]")?/?>|</[ab]>|[a&;<>]|<!\[CDATA\[x\]\]>){0,30}"#) {
            let _ = all(data.as_bytes(), "/a/b");
            let _ = all(data.as_bytes(), "/a");
        }
    }
}
