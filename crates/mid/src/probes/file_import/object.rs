//! A JSON object as a record: its members in the order written (serde_json's own map
//! sorts them), so columns appear in the file's order. Shared by the JSON and JSON
//! lines formats.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// An object's members, in order.
pub struct Ordered(pub Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Members)
    }
}

/// One record's text as an object, or why it is not one.
pub fn record(text: &[u8]) -> Result<Vec<(String, Value)>, String> {
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return match serde_json::from_slice::<Value>(text) {
            Ok(v) => Err(format!("is {}, not a JSON object", kind(&v))),
            Err(e) => Err(format!("is not JSON: {e}")),
        };
    }
    serde_json::from_slice::<Ordered>(text)
        .map(|o| o.0)
        .map_err(|e| format!("is not JSON: {e}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_their_order() {
        let got = record(br#"{"z": 1, "a": {"n": [1]}}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got[0].0, "z");
        assert_eq!(got[1].1, serde_json::json!({"n": [1]}));
        assert!(record(b"[1]").is_err_and(|e| e.contains("an array")));
        assert!(record(b"{\"a\":").is_err_and(|e| e.contains("not JSON")));
    }
}
