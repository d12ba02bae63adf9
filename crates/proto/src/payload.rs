//! A job's payload as JSON text, carried as the bytes it was written as.
//!
//! Why not a `serde_json::Value`: a payload crosses several hops (stored record, work
//! item, the MID's probe, its result, the outbox, the stored input), and a `Value` is
//! a tree of allocations built on every parse and walked on every encode. A
//! [`Payload`] is checked to be JSON once where it enters (a frame or body parsed with
//! it inside, or [`Payload::from_text`]), then copied as text: it is decoded only by
//! whoever needs its fields, straight into their own type, and encoded by copying.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// JSON text, known to be one valid JSON value.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// `null`.
    pub fn null() -> Self {
        Self(RawValue::NULL.to_owned())
    }

    /// `value` encoded.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self)
    }

    /// `text`, when it is one JSON value (whitespace around it is dropped).
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text).map(Self)
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The JSON text, owned, without a copy.
    pub fn into_string(self) -> String {
        let text: Box<str> = self.0.into();
        text.into_string()
    }

    /// Decodes the payload as `T`, straight from its text.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The whole payload as a tree, for the rare caller that edits it.
    pub fn to_value(&self) -> serde_json::Value {
        self.decode().unwrap_or(serde_json::Value::Null)
    }

    /// The top-level field `key` decoded as `T`: `None` when the payload is not an
    /// object, has no such field, or the field is not a `T`. The other fields are
    /// skipped over without being built, so this costs a scan of the text.
    pub fn field<T: de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let mut de = serde_json::Deserializer::from_str(self.0.get());
        Field {
            key,
            found: PhantomData,
        }
        .deserialize(&mut de)
        .ok()
        .flatten()
    }

    /// Whether the payload is an object with a top-level field `key` (of any value
    /// but `null`).
    pub fn has_field(&self, key: &str) -> bool {
        self.field::<IgnoredNonNull>(key).is_some()
    }
}

impl Default for Payload {
    fn default() -> Self {
        Self::null()
    }
}

impl From<&serde_json::Value> for Payload {
    fn from(value: &serde_json::Value) -> Self {
        // A Value always encodes.
        Self::encode(value).unwrap_or_else(|_| Self::null())
    }
}

impl From<serde_json::Value> for Payload {
    fn from(value: serde_json::Value) -> Self {
        Self::from(&value)
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads one field of an object and skips the rest.
struct Field<'k, T> {
    key: &'k str,
    found: PhantomData<T>,
}

impl<'de, T: de::DeserializeOwned> DeserializeSeed<'de> for Field<'_, T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Option<T>, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de, T: de::DeserializeOwned> Visitor<'de> for Field<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let mut found = None;
        while let Some(Key(name)) = map.next_key::<Key<'de>>()? {
            if found.is_none() && name == self.key {
                // A field of another type reads as absent, not as a broken payload.
                found = serde_json::from_value::<T>(map.next_value()?).ok();
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Option<T>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
}

/// An object key, borrowed from the text unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        de.deserialize_str(V)
    }
}

/// Any value but `null`, not kept.
struct IgnoredNonNull;

impl<'de> Deserialize<'de> for IgnoredNonNull {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let value = Option::<IgnoredAny>::deserialize(de)?;
        value
            .map(|_| IgnoredNonNull)
            .ok_or_else(|| de::Error::custom("null"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn text_is_kept_as_written() {
        let p = Payload::from_text(r#"{"b": 1,  "a":[true]}"#.to_string()).expect("json");
        assert_eq!(p.as_str(), r#"{"b": 1,  "a":[true]}"#);
        assert_eq!(
            serde_json::to_string(&p).expect("encodes"),
            r#"{"b": 1,  "a":[true]}"#
        );
        assert!(Payload::from_text("{".into()).is_err(), "not JSON");
        assert!(Payload::from_text("1 2".into()).is_err(), "two values");
        assert_eq!(Payload::null().as_str(), "null");
    }

    #[test]
    fn fields_are_read_without_the_rest() {
        let p = Payload::from(
            json!({"big": {"x": [1, 2, {"y": "z"}]}, "credential": {"id": "c1"}, "n": null}),
        );
        assert_eq!(
            p.field::<serde_json::Value>("credential"),
            Some(json!({"id": "c1"}))
        );
        assert_eq!(
            p.field::<u64>("credential"),
            None,
            "wrong type reads as absent"
        );
        assert!(p.has_field("big"));
        assert!(!p.has_field("n"), "null is absent");
        assert!(!p.has_field("missing"));
        assert!(!Payload::from(json!([1, {"big": 1}])).has_field("big"));
        assert!(!Payload::from(json!("big")).has_field("big"));
        let escaped = Payload::from_text(r#"{"cr\u0065dential": 5}"#.into()).expect("json");
        assert_eq!(
            escaped.field::<u64>("credential"),
            Some(5),
            "escaped keys match"
        );
    }

    proptest! {
        #[test]
        fn any_json_round_trips_and_finds_its_fields(
            keys in proptest::collection::btree_map("[a-z\"\\\\é]{0,6}", any::<i64>(), 0..6),
            wanted in "[a-z\"\\\\é]{0,6}",
        ) {
            let value = serde_json::to_value(&keys).expect("a map encodes");
            let p = Payload::from(&value);
            prop_assert_eq!(p.decode::<serde_json::Value>().ok(), Some(value.clone()));
            let back = Payload::from_text(p.as_str().to_string()).expect("its own text is JSON");
            prop_assert_eq!(&back, &p);
            prop_assert_eq!(p.field::<i64>(&wanted), keys.get(&wanted).copied());
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
            if let Ok(p) = Payload::from_text(text.clone()) {
                prop_assert_eq!(p.as_str(), text.as_str());
                let _ = p.field::<serde_json::Value>("a");
            }
        }
    }
}
