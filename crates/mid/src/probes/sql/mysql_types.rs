//! MySQL and MariaDB values in JSON, read from the binary protocol of prepared
//! statements: integers little-endian by width, `DECIMAL` as its text (kept as a
//! string, every digit), dates and times as packed parts. The session runs in UTC
//! (`time_zone = '+00:00'`), so a `TIMESTAMP` is written as an instant (`…Z`) and a
//! `DATETIME` as the wall-clock time it stores.
//!
//! sqlx names the type from its protocol code and flags; the mapping follows those
//! names. A `TINYINT(1)` (`BOOLEAN`) is a boolean, non-zero being true, as
//! Connector/J reads it. The protocol flags text in a binary collation (`*_bin`)
//! as binary, and sqlx does not pass the character set on, so such columns — MariaDB's
//! `JSON`, a `LONGTEXT` in `utf8mb4_bin`, among them — arrive as base64; cast them
//! (`CAST(j AS CHAR)`) for text. MySQL's own `JSON` type arrives as JSON.

use super::values;
use serde_json::Value;
use sqlx::TypeInfo as _;
use sqlx::mysql::MySqlTypeInfo;

/// How one column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MyDecoder {
    Bool,
    Signed(usize),
    Unsigned(usize),
    Float,
    Double,
    Decimal,
    Text,
    Binary,
    Json,
    Date,
    Time,
    DateTime,
    Timestamp,
    Bit,
    Null,
}

/// The decoder for a column's type, or why there is none.
pub(super) fn decoder(ty: &MySqlTypeInfo) -> Result<MyDecoder, String> {
    use MyDecoder::*;
    Ok(match ty.name() {
        "BOOLEAN" => Bool,
        "TINYINT" => Signed(1),
        "TINYINT UNSIGNED" => Unsigned(1),
        "SMALLINT" => Signed(2),
        "SMALLINT UNSIGNED" | "YEAR" => Unsigned(2),
        "MEDIUMINT" | "INT" => Signed(4),
        "MEDIUMINT UNSIGNED" | "INT UNSIGNED" => Unsigned(4),
        "BIGINT" => Signed(8),
        "BIGINT UNSIGNED" => Unsigned(8),
        "FLOAT" => Float,
        "DOUBLE" => Double,
        "DECIMAL" => Decimal,
        "CHAR" | "VARCHAR" | "TINYTEXT" | "TEXT" | "MEDIUMTEXT" | "LONGTEXT" | "ENUM" | "SET" => {
            Text
        }
        "BINARY" | "VARBINARY" | "TINYBLOB" | "BLOB" | "MEDIUMBLOB" | "LONGBLOB" | "GEOMETRY" => {
            Binary
        }
        "JSON" => Json,
        "DATE" => Date,
        "TIME" => Time,
        "DATETIME" => DateTime,
        "TIMESTAMP" => Timestamp,
        "BIT" => Bit,
        "NULL" => Null,
        other => return Err(format!("type {other} has no JSON mapping")),
    })
}

impl MyDecoder {
    /// The column's `json` mapping.
    pub(super) fn json_kind(self) -> &'static str {
        use MyDecoder::*;
        match self {
            Bool => "boolean",
            Signed(_) | Unsigned(_) | Float | Double | Bit => "number",
            Decimal => "decimal",
            Text => "string",
            Binary => "base64",
            Json => "json",
            Date => "date",
            Time => "time",
            DateTime => "timestamp",
            Timestamp => "timestamptz",
            Null => "null",
        }
    }

    /// One non-null value from its binary-protocol bytes (date and time values with
    /// their length byte in front, as sqlx keeps them).
    pub(super) fn decode(self, b: &[u8]) -> Result<Value, String> {
        use MyDecoder::*;
        Ok(match self {
            Bool => Value::Bool(le_signed(b, 1)? != 0),
            Signed(n) => Value::from(le_signed(b, n)?),
            Unsigned(n) => Value::from(le_unsigned(b, n)?),
            Float => values::float32(f32::from_le_bytes(fixed(b)?)),
            Double => values::float64(f64::from_le_bytes(fixed(b)?)),
            Decimal => values::text(b)?,
            Text => values::text(b)?,
            Binary => values::base64(b),
            Json => values::json(b)?,
            Date => Value::from(date(b)?.0),
            DateTime | Timestamp => {
                let (date, time) = date(b)?;
                let zone = if self == Timestamp { "Z" } else { "" };
                Value::from(format!(
                    "{date}T{}{zone}",
                    time.as_deref().unwrap_or("00:00:00")
                ))
            }
            Time => Value::from(time(b)?),
            Bit => {
                if b.len() > 8 {
                    return Err(format!("BIT value of {} bytes", b.len()));
                }
                Value::from(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
            }
            Null => Value::Null,
        })
    }
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

fn le_unsigned(b: &[u8], n: usize) -> Result<u64, String> {
    if b.len() != n || n > 8 {
        return Err(format!("expected {n} bytes, got {}", b.len()));
    }
    Ok(b.iter()
        .rev()
        .fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

fn le_signed(b: &[u8], n: usize) -> Result<i64, String> {
    let raw = le_unsigned(b, n)?;
    let shift = 64 - 8 * n as u32;
    Ok(((raw << shift) as i64) >> shift)
}

/// `DATE`, `DATETIME`, `TIMESTAMP`: a length (0, 4, 7 or 11), year, month, day, then
/// hour, minute, second and microseconds as far as the length goes. Zero dates
/// (`0000-00-00`) are written as MySQL shows them.
fn date(b: &[u8]) -> Result<(String, Option<String>), String> {
    let Some((&len, rest)) = b.split_first() else {
        return Err("the value ends early".into());
    };
    if rest.len() != usize::from(len) || !matches!(len, 0 | 4 | 7 | 11) {
        return Err(format!("a date value of {len} bytes"));
    }
    if len == 0 {
        return Ok(("0000-00-00".into(), None));
    }
    let year = i64::from(u16::from_le_bytes([rest[0], rest[1]]));
    let date = values::ymd(year, u32::from(rest[2]), u32::from(rest[3]));
    if len == 4 {
        return Ok((date, None));
    }
    let micros = if len == 11 {
        u32::from_le_bytes([rest[7], rest[8], rest[9], rest[10]])
    } else {
        0
    };
    let time = format!(
        "{:02}:{:02}:{:02}{}",
        rest[4],
        rest[5],
        rest[6],
        values::fraction(micros)
    );
    Ok((date, Some(time)))
}

/// `TIME`, which is a signed duration up to ±838:59:59: a length (0, 8 or 12), a sign,
/// days, hours, minutes, seconds and microseconds; written `[-]HH:MM:SS[.f]` with the
/// days folded into the hours.
fn time(b: &[u8]) -> Result<String, String> {
    let Some((&len, rest)) = b.split_first() else {
        return Err("the value ends early".into());
    };
    if rest.len() != usize::from(len) || !matches!(len, 0 | 8 | 12) {
        return Err(format!("a time value of {len} bytes"));
    }
    if len == 0 {
        return Ok("00:00:00".into());
    }
    let negative = rest[0] != 0;
    let days = u64::from(u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]));
    let micros = if len == 12 {
        u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]])
    } else {
        0
    };
    Ok(format!(
        "{}{:02}:{:02}:{:02}{}",
        if negative { "-" } else { "" },
        days * 24 + u64::from(rest[5]),
        rest[6],
        rest[7],
        values::fraction(micros)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(MyDecoder::Signed(1).decode(&[0xff]), Ok(Value::from(-1)));
        assert_eq!(
            MyDecoder::Unsigned(8).decode(&[0xff; 8]),
            Ok(Value::from(u64::MAX))
        );
        assert_eq!(
            MyDecoder::Signed(4).decode(&(-5i32).to_le_bytes()),
            Ok(Value::from(-5))
        );
        let dt = [11, 0xe8, 0x07, 2, 29, 13, 5, 9, 0x20, 0xa1, 0x07, 0];
        assert_eq!(
            MyDecoder::Timestamp.decode(&dt),
            Ok(Value::from("2024-02-29T13:05:09.5Z"))
        );
        assert_eq!(
            MyDecoder::DateTime.decode(&[4, 0xe8, 0x07, 1, 2]),
            Ok(Value::from("2024-01-02T00:00:00"))
        );
        assert_eq!(MyDecoder::Date.decode(&[0]), Ok(Value::from("0000-00-00")));
        let t = [8, 1, 34, 0, 0, 0, 22, 59, 59];
        assert_eq!(MyDecoder::Time.decode(&t), Ok(Value::from("-838:59:59")));
        assert_eq!(MyDecoder::Bit.decode(&[1, 2]), Ok(Value::from(258)));
    }

    proptest! {
        #[test]
        fn integers_of_every_width(v in any::<i64>(), n in prop::sample::select(vec![1usize, 2, 4, 8])) {
            let shift = 64 - 8 * n as u32;
            let v = (v << shift) >> shift;
            let bytes = &v.to_le_bytes()[..n];
            prop_assert_eq!(MyDecoder::Signed(n).decode(bytes), Ok(Value::from(v)));
        }

        #[test]
        fn decoders_never_panic_on_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..16)) {
            for d in [MyDecoder::Date, MyDecoder::Time, MyDecoder::DateTime, MyDecoder::Bit,
                      MyDecoder::Signed(8), MyDecoder::Float, MyDecoder::Json] {
                let _ = d.decode(&b);
            }
        }
    }
}
