//! The columns found so far and the type inferred for each. A file declares no
//! schema, so both are learned from the records: a new name (or position) appends a
//! column, and each value widens its column's type along the
//! [lattice](openmid_proto::file_import::ColumnType::join).
//!
//! Values of untyped formats (CSV, XML: everything is text) are recognised by their
//! text; values of typed formats (JSON, Excel) by their JSON type, with strings looked
//! at only for dates and timestamps.

use openmid_proto::file_import::ColumnType;
use serde_json::Value;
use std::collections::HashMap;

/// Most columns an import may have: every page carries the list, which must leave
/// room for rows under the chunk limit.
pub const MAX_COLUMNS: usize = 2_000;

/// Columns in order, their index by name, their types.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub columns: Vec<String>,
    pub types: Vec<ColumnType>,
    index: HashMap<String, usize>,
}

impl Schema {
    /// The schema a re-run continues with.
    pub fn resumed(columns: Vec<String>, types: Vec<ColumnType>) -> Self {
        let index = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect();
        Self {
            columns,
            types,
            index,
        }
    }

    /// The index of the column `name`, appended (and reported to `added`) if new;
    /// `None` past [`MAX_COLUMNS`].
    pub fn named(&mut self, name: &str, added: &mut Vec<String>) -> Option<usize> {
        if let Some(&i) = self.index.get(name) {
            return Some(i);
        }
        self.push(name.to_string(), added)
    }

    /// Makes sure columns `0..n` exist, naming new ones `c1, c2, …` by position.
    pub fn positions(&mut self, n: usize, added: &mut Vec<String>) -> bool {
        while self.columns.len() < n {
            let name = self.unique(format!("c{}", self.columns.len() + 1));
            if self.push(name, added).is_none() {
                return false;
            }
        }
        true
    }

    /// Appends a header's names (an empty name becomes `cN`, a repeated one `name_2`).
    pub fn header(&mut self, names: &[String], added: &mut Vec<String>) -> bool {
        for name in names {
            let name = if name.trim().is_empty() {
                format!("c{}", self.columns.len() + 1)
            } else {
                name.clone()
            };
            let name = self.unique(name);
            if self.push(name, added).is_none() {
                return false;
            }
        }
        true
    }

    /// Widens column `i`'s type by `value`.
    pub fn see(&mut self, i: usize, value: &Value, untyped: bool) {
        let t = classify(value, untyped);
        if let Some(slot) = self.types.get_mut(i) {
            *slot = slot.join(t);
        }
    }

    fn unique(&self, name: String) -> String {
        if !self.index.contains_key(&name) {
            return name;
        }
        (2..)
            .map(|n| format!("{name}_{n}"))
            .find(|candidate| !self.index.contains_key(candidate))
            .unwrap_or(name)
    }

    fn push(&mut self, name: String, added: &mut Vec<String>) -> Option<usize> {
        if self.columns.len() >= MAX_COLUMNS {
            return None;
        }
        let i = self.columns.len();
        self.index.insert(name.clone(), i);
        self.columns.push(name.clone());
        self.types.push(ColumnType::Null);
        added.push(name);
        Some(i)
    }
}

/// The type of one value.
pub fn classify(value: &Value, untyped: bool) -> ColumnType {
    match value {
        Value::Null => ColumnType::Null,
        Value::Bool(_) => ColumnType::Boolean,
        Value::Number(n) if n.is_i64() || n.is_u64() => ColumnType::Integer,
        Value::Number(_) => ColumnType::Number,
        Value::String(s) if untyped => classify_text(s),
        Value::String(s) => match classify_text(s) {
            t @ (ColumnType::Date | ColumnType::Timestamp) => t,
            _ => ColumnType::String,
        },
        Value::Array(_) | Value::Object(_) => ColumnType::String,
    }
}

/// The type of a text value. An empty one says nothing (a missing value). A number
/// with a leading zero (`007`) is text: reading it as a number would lose the zeros.
pub fn classify_text(s: &str) -> ColumnType {
    let s = s.trim();
    let Some(&first) = s.as_bytes().first() else {
        return ColumnType::Null;
    };
    // Every other type starts with a digit, a sign, a point, or t/f: most text is
    // told apart by its first byte, without scanning it.
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.' | b't' | b'T' | b'f' | b'F'))
    {
        return ColumnType::String;
    }
    if is_integer(s) {
        return ColumnType::Integer;
    }
    if is_number(s) {
        return ColumnType::Number;
    }
    if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
        return ColumnType::Boolean;
    }
    if is_date(s) {
        return ColumnType::Date;
    }
    if is_timestamp(s) {
        return ColumnType::Timestamp;
    }
    ColumnType::String
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn unsigned(s: &str) -> &str {
    s.strip_prefix(['-', '+']).unwrap_or(s)
}

fn is_integer(s: &str) -> bool {
    let d = unsigned(s);
    digits(d) && (d.len() == 1 || !d.starts_with('0')) && d.len() <= 19
}

/// A decimal number (`-1.5`, `.5`, `2.`, `1e-9`), in one pass that stops at the
/// first byte that cannot belong to one (most text fails on its first byte).
fn is_number(s: &str) -> bool {
    let b = unsigned(s).as_bytes();
    let run = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    };
    let whole = run(0);
    if whole > 1 && b[0] == b'0' {
        return false;
    }
    let mut i = whole;
    let mut fraction = 0;
    if i < b.len() && b[i] == b'.' {
        let end = run(i + 1);
        fraction = end - i - 1;
        i = end;
    }
    if whole == 0 && fraction == 0 {
        return false;
    }
    if i < b.len() && matches!(b[i], b'e' | b'E') {
        i += 1;
        if i < b.len() && matches!(b[i], b'+' | b'-') {
            i += 1;
        }
        let end = run(i);
        if end == i {
            return false;
        }
        i = end;
    }
    i == b.len()
}

fn number_in(s: &str, len: usize, max: u32) -> Option<u32> {
    (s.len() == len && digits(s))
        .then(|| s.parse::<u32>().ok())
        .flatten()
        .filter(|&n| n <= max)
}

/// `YYYY-MM-DD`, a real calendar day.
pub fn is_date(s: &str) -> bool {
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Some(y), Some(m), Some(d)) = (
        number_in(y, 4, 9999),
        number_in(m, 2, 12),
        number_in(d, 2, 31),
    ) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    m >= 1 && d >= 1 && d <= days[(m - 1) as usize]
}

/// `YYYY-MM-DD[T ]HH:MM[:SS[.fraction]][Z|±HH:MM]`.
pub fn is_timestamp(s: &str) -> bool {
    if s.len() < 16 || !s.is_char_boundary(10) {
        return false;
    }
    let (date, rest) = s.split_at(10);
    if !is_date(date) {
        return false;
    }
    let Some(time) = rest.strip_prefix(['T', 't', ' ']) else {
        return false;
    };
    let (time, zone) = match time.find(['Z', 'z', '+', '-']) {
        Some(i) => (&time[..i], Some(&time[i..])),
        None => (time, None),
    };
    let zone_ok = zone.is_none_or(|z| {
        if z.eq_ignore_ascii_case("z") {
            return true;
        }
        let z = &z[1..];
        let (h, m) = z
            .split_once(':')
            .unwrap_or((z.get(..2).unwrap_or(""), z.get(2..).unwrap_or("")));
        number_in(h, 2, 23).is_some() && number_in(m, 2, 59).is_some()
    });
    let (clock, fraction) = match time.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (time, None),
    };
    let mut hms = clock.split(':');
    let ok = match (hms.next(), hms.next(), hms.next(), hms.next()) {
        (Some(h), Some(m), sec, None) => {
            number_in(h, 2, 23).is_some()
                && number_in(m, 2, 59).is_some()
                && sec.is_none_or(|x| number_in(x, 2, 60).is_some())
                && (fraction.is_none() || sec.is_some())
        }
        _ => false,
    };
    ok && zone_ok && fraction.is_none_or(|f| digits(f) && f.len() <= 9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnType::*;

    #[test]
    fn text_is_recognised() {
        for (text, t) in [
            ("42", Integer),
            ("-7", Integer),
            ("0", Integer),
            ("007", String),
            ("1.5", Number),
            ("-0.25e-3", Number),
            (".5", Number),
            ("1e9", Number),
            ("2.", Number),
            ("1e+5", Number),
            ("1e", String),
            ("e5", String),
            ("-", String),
            ("TRUE", Boolean),
            ("false", Boolean),
            ("2024-02-29", Date),
            ("2023-02-29", String),
            ("2024-13-01", String),
            ("2024-01-02T03:04:05Z", Timestamp),
            ("2024-01-02 03:04", Timestamp),
            ("2024-01-02T03:04:05.123456+02:00", Timestamp),
            ("2024-01-02T25:00:00", String),
            ("", Null),
            ("  ", Null),
            ("abc", String),
            ("NaN", String),
            ("1.2.3", String),
        ] {
            assert_eq!(classify_text(text), t, "{text:?}");
        }
    }

    #[test]
    fn typed_values_keep_their_json_type() {
        use serde_json::json;
        assert_eq!(classify(&json!(5), false), Integer);
        assert_eq!(classify(&json!(5.5), false), Number);
        assert_eq!(classify(&json!("5"), false), String);
        assert_eq!(classify(&json!("5"), true), Integer);
        assert_eq!(classify(&json!("2024-01-01"), false), Date);
        assert_eq!(classify(&json!({"a": 1}), false), String);
    }

    #[test]
    fn columns_are_unique_and_bounded() {
        let mut s = Schema::default();
        let mut added = Vec::new();
        assert!(s.header(&["a".into(), "a".into(), "".into()], &mut added));
        assert_eq!(added, ["a", "a_2", "c3"]);
        assert_eq!(s.named("a_2", &mut added), Some(1));
        assert!(s.positions(5, &mut added));
        assert_eq!(s.columns, ["a", "a_2", "c3", "c4", "c5"]);
    }
}
