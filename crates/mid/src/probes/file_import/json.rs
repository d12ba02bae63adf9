//! A JSON document whose records are the elements of one array, streamed: a small
//! scanner walks to the array at `record_path` and finds each element's bytes —
//! tracking strings, escapes and nesting, nothing more — and only the element is
//! handed to serde_json. Memory holds one element, never the document.
//!
//! An element that serde_json refuses (a bad number, invalid text) is a row error;
//! the scanner knows where it ends, so the import goes on. A document whose structure
//! breaks (truncated, a missing comma) cannot be read further: the job fails, naming
//! the byte.

use super::object;
use super::record::{At, Fields, Item, Parser, unreadable};
use crate::probes::ProbeError;
use std::io::BufRead;

/// Largest element read.
pub const MAX_ELEMENT_BYTES: usize = 64 * 1024 * 1024;

/// Where the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not yet at the array.
    Start,
    /// Inside the array, before an element (`first`: none read yet).
    InArray { first: bool },
    /// The record path held one object: it was the only record.
    Done,
}

/// Streams the records of a JSON document.
pub struct JsonParser<R: BufRead> {
    source: R,
    pos: u64,
    path: Vec<String>,
    state: State,
    element: Vec<u8>,
}

impl<R: BufRead> JsonParser<R> {
    /// Records of the array at the JSON pointer `record_path` (empty: the top level).
    pub fn new(source: R, record_path: &str) -> Self {
        let path = record_path
            .split('/')
            .skip(1)
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        Self {
            source,
            pos: 0,
            path,
            state: State::Start,
            element: Vec::new(),
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, ProbeError> {
        let pos = self.pos;
        let buf = self
            .source
            .fill_buf()
            .map_err(|e| unreadable(format!("reading at byte {pos}: {e}")))?;
        Ok(buf.first().copied())
    }

    fn bump(&mut self) {
        self.source.consume(1);
        self.pos += 1;
    }

    fn skip_ws(&mut self) -> Result<Option<u8>, ProbeError> {
        while let Some(b) = self.peek()? {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Ok(Some(b));
            }
            self.bump();
        }
        Ok(None)
    }

    fn broken(&self, what: &str) -> ProbeError {
        unreadable(format!("JSON: {what} at byte {}", self.pos))
    }

    /// Reads one value, keeping its bytes in `self.element` when `keep`.
    fn value(&mut self, keep: bool) -> Result<(), ProbeError> {
        let start = self.pos;
        let ends_inside = |p: &Self| {
            unreadable(format!(
                "JSON: the document ends inside the value starting at byte {start} (truncated?) at byte {}",
                p.pos
            ))
        };
        let first = self.peek()?.ok_or_else(|| ends_inside(self))?;
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        let scalar = !matches!(first, b'{' | b'[' | b'"');
        loop {
            let Some(b) = self.peek()? else {
                if scalar && !in_string {
                    return Ok(());
                }
                return Err(ends_inside(self));
            };
            if scalar && matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                return Ok(());
            }
            self.bump();
            if keep {
                if self.element.len() >= MAX_ELEMENT_BYTES {
                    return Err(unreadable(format!(
                        "JSON: the record starting at byte {start} is larger than {MAX_ELEMENT_BYTES} bytes"
                    )));
                }
                self.element.push(b);
            }
            if scalar {
                continue;
            }
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => {
                        in_string = false;
                        if depth == 0 {
                            return Ok(());
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
    }

    /// Walks from the top to the value at the record path; leaves the scanner at it.
    fn descend(&mut self) -> Result<(), ProbeError> {
        let path = std::mem::take(&mut self.path);
        for (depth, segment) in path.iter().enumerate() {
            let shown = || format!("/{}", path[..=depth].join("/"));
            match self.skip_ws()? {
                Some(b'{') => self.bump(),
                _ => {
                    return Err(self.broken(&format!(
                        "record_path {}: expected an object holding `{segment}`",
                        shown()
                    )));
                }
            }
            loop {
                match self.skip_ws()? {
                    Some(b'"') => {}
                    Some(b'}') => {
                        return Err(unreadable(format!(
                            "JSON: record_path {}: the object has no member `{segment}`",
                            shown()
                        )));
                    }
                    _ => return Err(self.broken("expected a member name")),
                }
                self.element.clear();
                self.value(true)?;
                let key: String = serde_json::from_slice(&self.element)
                    .map_err(|e| self.broken(&format!("bad member name ({e})")))?;
                if self.skip_ws()? != Some(b':') {
                    return Err(self.broken("expected `:`"));
                }
                self.bump();
                self.skip_ws()?;
                if &key == segment {
                    break;
                }
                self.value(false)?;
                match self.skip_ws()? {
                    Some(b',') => self.bump(),
                    Some(b'}') => {}
                    _ => return Err(self.broken("expected `,` or `}`")),
                }
            }
        }
        Ok(())
    }

    /// The element just read as an item.
    fn item(&mut self) -> Item {
        let fields = object::record(&self.element);
        self.element.clear();
        match fields {
            Ok(members) => Item::Record(Fields::Named(members), At::default()),
            Err(reason) => Item::Bad(format!("the element {reason}"), At::default()),
        }
    }
}

impl<R: BufRead + Send> Parser for JsonParser<R> {
    fn next_item(&mut self) -> Result<Option<Item>, ProbeError> {
        match self.state {
            State::Done => Ok(None),
            State::Start => {
                self.descend()?;
                match self.skip_ws()? {
                    Some(b'[') => {
                        self.bump();
                        self.state = State::InArray { first: true };
                        self.next_item()
                    }
                    Some(b'{') => {
                        self.element.clear();
                        self.value(true)?;
                        self.state = State::Done;
                        Ok(Some(self.item()))
                    }
                    None => Err(self.broken("the document is empty")),
                    Some(_) => Err(self.broken("record_path holds neither an array nor an object")),
                }
            }
            State::InArray { first } => {
                match self.skip_ws()? {
                    Some(b']') => {
                        self.bump();
                        self.state = State::Done;
                        return Ok(None);
                    }
                    Some(b',') if !first => {
                        self.bump();
                        self.skip_ws()?;
                    }
                    None => {
                        return Err(self.broken("the document ends inside the array (truncated?)"));
                    }
                    Some(_) if !first => return Err(self.broken("expected `,` or `]`")),
                    Some(_) => {}
                }
                if matches!(self.peek()?, Some(b']') | None) {
                    return Err(self.broken("expected an element"));
                }
                self.state = State::InArray { first: false };
                self.element.clear();
                self.value(true)?;
                Ok(Some(self.item()))
            }
        }
    }
}

/// Reads every item (for tests: the scanner against serde_json).
#[cfg(test)]
fn all(data: &[u8], path: &str) -> Result<Vec<Item>, ProbeError> {
    let mut p = JsonParser::new(data, path);
    let mut out = Vec::new();
    while let Some(i) = p.next_item()? {
        out.push(i);
        assert!(out.len() <= data.len() + 1);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn values(items: &[Item]) -> Vec<Value> {
        items
            .iter()
            .map(|i| match i {
                Item::Record(Fields::Named(m), _) => Value::Object(m.iter().cloned().collect()),
                other => json!({"bad": format!("{other:?}")}),
            })
            .collect()
    }

    #[test]
    fn finds_the_array_at_the_path() {
        let doc = br#"{"meta": {"skip": [1, {"x": "]"}], "s": "a\"}"}, "data": {"items": [{"a": 1}, {"b": [true, null]}, 5, {"c": "\u00e9"}]}}"#;
        let got = all(doc, "/data/items").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.len(), 4);
        assert_eq!(
            values(&got[..2]),
            vec![json!({"a": 1}), json!({"b": [true, null]})]
        );
        assert!(matches!(&got[2], Item::Bad(r, _) if r.contains("a number")));
        assert_eq!(values(&got[3..]), vec![json!({"c": "é"})]);
        assert_eq!(all(b" [ ] ", "").map(|v| v.len()).ok(), Some(0));
        let one = all(br#"{"a": 1}"#, "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(values(&one), vec![json!({"a": 1})]);
    }

    #[test]
    fn broken_documents_name_the_byte() {
        for (doc, path, says) in [
            (&br#"[{"a": 1}, {"b": 2"#[..], "", "truncated"),
            (br#"[{"a": 1} {"b": 2}]"#, "", "expected `,`"),
            (br#"{"data": 1}"#, "/items", "no member `items`"),
            (br#"[{"a": 1},]"#, "", "expected an element"),
        ] {
            let e = all(doc, path)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains(says) && e.contains("byte") || e.contains(says),
                "{e}"
            );
        }
    }

    fn element() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z\"\\\\\\]\\[{}, é\n]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z\"]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = all(&data, "");
            let _ = all(&data, "/a");
        }

        #[test]
        fn the_scanner_agrees_with_serde_json(records in proptest::collection::vec(
            proptest::collection::btree_map("[a-z]{1,3}", element(), 0..4), 0..8), pretty in any::<bool>()) {
            let array: Vec<Value> = records.into_iter().map(|m| Value::Object(m.into_iter().collect())).collect();
            let doc = json!({"head": array.clone(), "rows": array});
            let text = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }
                .unwrap_or_default();
            let got = all(&text, "/rows").unwrap_or_else(|e| panic!("{e}"));
            let want = doc["rows"].as_array().cloned().unwrap_or_default();
            prop_assert_eq!(values(&got), want);
        }
    }
}
