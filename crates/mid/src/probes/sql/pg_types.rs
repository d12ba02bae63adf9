//! PostgreSQL values in JSON. sqlx asks for every result column in PostgreSQL's
//! binary format, so each supported type is read here from its binary form — exactly:
//! a `numeric` keeps all its digits, dates outside chrono's range and the infinities
//! survive, arrays keep their dimensions. A type without a decoder is refused by
//! column before any row is read, saying how to cast it.

use super::values;
use serde_json::Value;
use sqlx::TypeInfo as _;
use sqlx::postgres::{PgTypeInfo, PgTypeKind};

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_DAYS: i64 = 10_957;
/// The same in microseconds.
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS * values::DAY_MICROS;
/// PostgreSQL allows at most six array dimensions.
const MAX_DIMS: usize = 6;

/// How one column (or array element) is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PgDecoder {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    Text,
    Bytea,
    Uuid,
    Json,
    Jsonb,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Interval,
    Inet,
    Mac,
    Bits,
    /// `void` (what `pg_sleep()` returns): always null.
    Void,
    Array(Box<PgDecoder>),
}

/// The decoder for a column's type, or why there is none.
pub(super) fn decoder(ty: &PgTypeInfo) -> Result<PgDecoder, String> {
    match ty.kind() {
        PgTypeKind::Domain(base) => return decoder(base),
        PgTypeKind::Enum(_) => return Ok(PgDecoder::Text),
        PgTypeKind::Array(element) => {
            return Ok(PgDecoder::Array(Box::new(decoder(element)?)));
        }
        _ => {}
    }
    let oid = ty.oid().map(|o| o.0).unwrap_or_default();
    Ok(match oid {
        16 => PgDecoder::Bool,
        17 => PgDecoder::Bytea,
        // "char", name, text, xml, unknown, bpchar, varchar: their binary form is text.
        18 | 19 | 25 | 142 | 705 | 1042 | 1043 => PgDecoder::Text,
        20 => PgDecoder::Int8,
        21 => PgDecoder::Int2,
        23 => PgDecoder::Int4,
        26 => PgDecoder::Oid,
        114 => PgDecoder::Json,
        650 | 869 => PgDecoder::Inet,
        700 => PgDecoder::Float4,
        701 => PgDecoder::Float8,
        774 | 829 => PgDecoder::Mac,
        1082 => PgDecoder::Date,
        1083 => PgDecoder::Time,
        1114 => PgDecoder::Timestamp,
        1184 => PgDecoder::TimestampTz,
        1186 => PgDecoder::Interval,
        1266 => PgDecoder::TimeTz,
        1560 | 1562 => PgDecoder::Bits,
        1700 => PgDecoder::Numeric,
        2278 => PgDecoder::Void,
        2950 => PgDecoder::Uuid,
        3802 => PgDecoder::Jsonb,
        _ if ty.name().eq_ignore_ascii_case("citext") => PgDecoder::Text,
        _ => return Err(format!("type {} has no JSON mapping", type_name(ty))),
    })
}

/// The type's name as PostgreSQL writes it (`int4`, `timestamptz`, `int4[]`, an
/// enum's own name).
pub(super) fn type_name(ty: &PgTypeInfo) -> String {
    let name = ty.name();
    // Built-in types (OIDs below 10 000) are named by sqlx in capitals.
    match ty.oid() {
        Some(oid) if oid.0 < 10_000 => name.to_ascii_lowercase(),
        _ => name.to_string(),
    }
}

impl PgDecoder {
    /// The column's `json` mapping.
    pub(super) fn json_kind(&self) -> String {
        match self {
            Self::Bool => "boolean".into(),
            Self::Int2 | Self::Int4 | Self::Int8 | Self::Oid | Self::Float4 | Self::Float8 => {
                "number".into()
            }
            Self::Numeric => "decimal".into(),
            Self::Text | Self::Inet | Self::Mac | Self::Bits => "string".into(),
            Self::Bytea => "base64".into(),
            Self::Uuid => "uuid".into(),
            Self::Json | Self::Jsonb => "json".into(),
            Self::Date => "date".into(),
            Self::Time | Self::TimeTz => "time".into(),
            Self::Timestamp => "timestamp".into(),
            Self::TimestampTz => "timestamptz".into(),
            Self::Interval => "interval".into(),
            Self::Void => "null".into(),
            Self::Array(element) => format!("array<{}>", element.json_kind()),
        }
    }

    /// One non-null value from its binary form.
    pub(super) fn decode(&self, b: &[u8]) -> Result<Value, String> {
        Ok(match self {
            Self::Bool => Value::Bool(fixed::<1>(b)?[0] != 0),
            Self::Int2 => Value::from(i16::from_be_bytes(fixed(b)?)),
            Self::Int4 => Value::from(i32::from_be_bytes(fixed(b)?)),
            Self::Int8 => Value::from(i64::from_be_bytes(fixed(b)?)),
            Self::Oid => Value::from(u32::from_be_bytes(fixed(b)?)),
            Self::Float4 => values::float32(f32::from_be_bytes(fixed(b)?)),
            Self::Float8 => values::float64(f64::from_be_bytes(fixed(b)?)),
            Self::Numeric => Value::from(numeric(b)?),
            Self::Text => values::text(b)?,
            Self::Bytea => values::base64(b),
            Self::Uuid => values::uuid(b)?,
            Self::Json => values::json(b)?,
            Self::Jsonb => match b.split_first() {
                Some((1, rest)) => values::json(rest)?,
                _ => return Err("unknown jsonb format version".into()),
            },
            Self::Date => Value::from(match i32::from_be_bytes(fixed(b)?) {
                i32::MAX => "infinity".to_string(),
                i32::MIN => "-infinity".to_string(),
                days => values::date_from_unix_days(i64::from(days) + PG_EPOCH_DAYS),
            }),
            Self::Time => Value::from(values::time_of_day(i64::from_be_bytes(fixed(b)?))),
            Self::TimeTz => {
                let [t @ .., z0, z1, z2, z3] = fixed::<12>(b)?;
                let micros = i64::from_be_bytes(t);
                // Stored as seconds west of UTC.
                let west = i32::from_be_bytes([z0, z1, z2, z3]);
                Value::from(format!(
                    "{}{}",
                    values::time_of_day(micros),
                    values::offset(west.saturating_neg())
                ))
            }
            Self::Timestamp | Self::TimestampTz => {
                Value::from(match i64::from_be_bytes(fixed(b)?) {
                    i64::MAX => "infinity".to_string(),
                    i64::MIN => "-infinity".to_string(),
                    micros => values::timestamp_from_unix_micros(
                        micros.saturating_add(PG_EPOCH_MICROS),
                        *self == Self::TimestampTz,
                    ),
                })
            }
            Self::Interval => {
                let b = fixed::<16>(b)?;
                let micros = i64::from_be_bytes(b[..8].try_into().unwrap_or_default());
                let days = i32::from_be_bytes(b[8..12].try_into().unwrap_or_default());
                let months = i32::from_be_bytes(b[12..].try_into().unwrap_or_default());
                Value::from(values::iso_duration(months, days, micros))
            }
            Self::Inet => Value::from(inet(b)?),
            Self::Mac => {
                if b.len() != 6 && b.len() != 8 {
                    return Err(format!("a MAC address has 6 or 8 bytes, got {}", b.len()));
                }
                Value::from(
                    b.iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                )
            }
            Self::Bits => Value::from(bits(b)?),
            Self::Void => Value::Null,
            Self::Array(element) => array(element, b)?,
        })
    }
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

/// A cursor over a binary value that fails instead of reading past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the value ends early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(fixed(self.take(2)?)?))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(fixed(self.take(4)?)?))
    }
}

/// `numeric`'s binary form as its decimal text: base-10000 digits with a weight (the
/// power of 10000 of the first digit), a sign and a display scale.
pub(super) fn numeric(b: &[u8]) -> Result<String, String> {
    let mut r = Reader(b);
    let ndigits = usize::from(r.u16()?);
    let weight = i32::from(r.u16()? as i16);
    let sign = r.u16()?;
    let dscale = usize::from(r.u16()?);
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        other => return Err(format!("unknown numeric sign 0x{other:04x}")),
    }
    let mut digits = Vec::with_capacity(ndigits);
    for _ in 0..ndigits {
        let d = r.u16()?;
        if d >= 10_000 {
            return Err(format!("numeric digit {d} is not below 10000"));
        }
        digits.push(d);
    }
    let digit = |i: i32| -> u16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        out.push_str(&digit(0).to_string());
        for i in 1..=weight {
            out.push_str(&format!("{:04}", digit(i)));
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut frac = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        frac.truncate(dscale);
        out.push_str(&frac);
    }
    Ok(out)
}

/// `inet` / `cidr`: family, prefix bits, whether it is a `cidr`, address bytes;
/// written as PostgreSQL writes them (`10.0.0.1`, `10.0.0.0/8`, `fd00::1/64`).
fn inet(b: &[u8]) -> Result<String, String> {
    let [family, bits, is_cidr, len, addr @ ..] = b else {
        return Err("the value ends early".into());
    };
    let (ip, max): (std::net::IpAddr, u8) = match (family, len, addr.len()) {
        (2, 4, 4) => (std::net::Ipv4Addr::from(fixed::<4>(addr)?).into(), 32),
        (3, 16, 16) => (std::net::Ipv6Addr::from(fixed::<16>(addr)?).into(), 128),
        _ => return Err("not an inet value".into()),
    };
    Ok(if *is_cidr != 0 || *bits != max {
        format!("{ip}/{bits}")
    } else {
        ip.to_string()
    })
}

/// `bit` / `varbit`: a bit count and the bits, most significant first, as `0101…`.
fn bits(b: &[u8]) -> Result<String, String> {
    let mut r = Reader(b);
    let n = usize::try_from(r.i32()?).map_err(|_| "negative bit length".to_string())?;
    let bytes = r.take(n.div_ceil(8))?;
    Ok((0..n)
        .map(|i| {
            if bytes[i / 8] & (0x80 >> (i % 8)) != 0 {
                '1'
            } else {
                '0'
            }
        })
        .collect())
}

/// An array's binary form: dimensions, then every element (length-prefixed, `-1` for
/// null) in row-major order, written as nested JSON arrays.
pub(super) fn array(element: &PgDecoder, b: &[u8]) -> Result<Value, String> {
    let mut r = Reader(b);
    let ndim = usize::try_from(r.i32()?).map_err(|_| "negative dimension count".to_string())?;
    let _has_nulls = r.i32()?;
    let _element_oid = r.i32()?;
    if ndim == 0 {
        return Ok(Value::Array(Vec::new()));
    }
    if ndim > MAX_DIMS {
        return Err(format!("{ndim} dimensions, PostgreSQL allows {MAX_DIMS}"));
    }
    let mut dims = Vec::with_capacity(ndim);
    let mut count: usize = 1;
    for _ in 0..ndim {
        let len = usize::try_from(r.i32()?).map_err(|_| "negative dimension".to_string())?;
        let _lower_bound = r.i32()?;
        count = count
            .checked_mul(len)
            .filter(|c| *c <= r.0.len() / 4)
            .ok_or("more elements than the value holds")?;
        dims.push(len);
    }
    let mut flat = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.i32()?;
        flat.push(match usize::try_from(len) {
            Ok(len) => element.decode(r.take(len)?)?,
            Err(_) => Value::Null,
        });
    }
    if !r.0.is_empty() {
        return Err("bytes left after the last element".into());
    }
    Ok(nest(&dims, &mut flat.into_iter()))
}

fn nest(dims: &[usize], flat: &mut impl Iterator<Item = Value>) -> Value {
    match dims.split_first() {
        None => flat.next().unwrap_or(Value::Null),
        Some((&len, inner)) => Value::Array((0..len).map(|_| nest(inner, flat)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Encodes decimal text the way PostgreSQL does (test side of the round trip).
    fn encode_numeric(negative: bool, int: &str, frac: &str) -> Vec<u8> {
        let int = int.trim_start_matches('0');
        let pad_int = (4 - int.len() % 4) % 4;
        let int_digits = format!("{}{int}", "0".repeat(pad_int));
        let pad_frac = (4 - frac.len() % 4) % 4;
        let frac_digits = format!("{frac}{}", "0".repeat(pad_frac));
        let groups = |s: &str| -> Vec<u16> {
            s.as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap_or("0").parse().unwrap_or(0))
                .collect()
        };
        let mut digits = groups(&int_digits);
        let weight = digits.len() as i16 - 1;
        digits.extend(groups(&frac_digits));
        let mut out = Vec::new();
        out.extend((digits.len() as u16).to_be_bytes());
        out.extend(weight.to_be_bytes());
        out.extend(if negative { 0x4000u16 } else { 0 }.to_be_bytes());
        out.extend((frac.len() as u16).to_be_bytes());
        for d in digits {
            out.extend(d.to_be_bytes());
        }
        out
    }

    #[test]
    fn known_values() {
        assert_eq!(
            numeric(&encode_numeric(false, "12345", "678")),
            Ok("12345.678".into())
        );
        assert_eq!(
            numeric(&encode_numeric(true, "0", "0001")),
            Ok("-0.0001".into())
        );
        let nan = [0, 0, 0, 0, 0xC0, 0, 0, 0];
        assert_eq!(numeric(&nan), Ok("NaN".into()));
        assert_eq!(inet(&[2, 32, 0, 4, 10, 0, 0, 1]), Ok("10.0.0.1".into()));
        assert_eq!(inet(&[2, 8, 1, 4, 10, 0, 0, 0]), Ok("10.0.0.0/8".into()));
        assert_eq!(bits(&[0, 0, 0, 3, 0b1010_0000]), Ok("101".into()));
        let mut arr = vec![];
        for n in [2i32, 1, 23, 2, 1, 1, 1, 4, 7, -1] {
            arr.extend(n.to_be_bytes());
        }
        // 2-D, 2×1, one int4 7 and a null
        let value = array(&PgDecoder::Int4, &arr);
        assert_eq!(value, Ok(serde_json::json!([[7], [null]])));
        assert_eq!(
            PgDecoder::Date.decode(&(-10_957i32).to_be_bytes()),
            Ok(Value::from("1970-01-01"))
        );
        assert_eq!(
            PgDecoder::Timestamp.decode(&i64::MAX.to_be_bytes()),
            Ok(Value::from("infinity"))
        );
    }

    proptest! {
        #[test]
        fn numerics_keep_every_digit(negative in any::<bool>(), int in "[0-9]{0,40}", frac in "[0-9]{0,40}") {
            let written = numeric(&encode_numeric(negative, &int, &frac)).unwrap_or_default();
            let int_part = int.trim_start_matches('0');
            let int_part = if int_part.is_empty() { "0" } else { int_part };
            let mut expected = format!("{}{int_part}", if negative { "-" } else { "" });
            if !frac.is_empty() {
                expected.push('.');
                expected.push_str(&frac);
            }
            prop_assert_eq!(written, expected);
        }

        #[test]
        fn decoders_never_panic_on_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            for d in [PgDecoder::Numeric, PgDecoder::Inet, PgDecoder::Bits, PgDecoder::TimeTz,
                      PgDecoder::Interval, PgDecoder::Jsonb, PgDecoder::Mac,
                      PgDecoder::Array(Box::new(PgDecoder::Array(Box::new(PgDecoder::Text))))] {
                let _ = d.decode(&b);
            }
        }
    }
}
