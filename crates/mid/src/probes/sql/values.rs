//! The JSON shapes both drivers write values in, so a `date` or a `number` column
//! reads the same whichever server it came from ([`Column::json`] documents them).
//! Pure functions of decoded parts; each driver's module reads the parts off its wire
//! format.
//!
//! [`Column::json`]: openmid_proto::sql::Column::json

use base64::Engine as _;
use serde_json::Value;

/// Microseconds in a day.
pub(super) const DAY_MICROS: i64 = 86_400_000_000;

/// A double as JSON: a number, or `NaN` / `Infinity` / `-Infinity` as strings (JSON
/// has no such numbers).
pub(super) fn float64(f: f64) -> Value {
    if f.is_nan() {
        Value::from("NaN")
    } else if f.is_infinite() {
        Value::from(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// A single-precision float as JSON, by its shortest decimal form: `0.1f32` is `0.1`,
/// not the `0.10000000149011612` a widening to `f64` would write.
pub(super) fn float32(f: f32) -> Value {
    if !f.is_finite() {
        return float64(f64::from(f));
    }
    float64(f.to_string().parse::<f64>().unwrap_or(f64::from(f)))
}

/// Binary as base64 (standard alphabet, padded).
pub(super) fn base64(bytes: &[u8]) -> Value {
    Value::from(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A year, month and day: `YYYY-MM-DD`, with a sign and more digits outside
/// 0000–9999 (ISO 8601's expanded form; 1 BC is year 0000).
pub(super) fn ymd(year: i64, month: u32, day: u32) -> String {
    if (0..=9999).contains(&year) {
        format!("{year:04}-{month:02}-{day:02}")
    } else if year < 0 {
        format!("-{:04}-{month:02}-{day:02}", -year)
    } else {
        format!("+{year}-{month:02}-{day:02}")
    }
}

/// The date `days` after 1970-01-01 (proleptic Gregorian).
pub(super) fn date_from_unix_days(days: i64) -> String {
    let (y, m, d) = openmid_proto::time::civil_from_days(days);
    ymd(y, m, d)
}

/// `.ffffff` with trailing zeros dropped; empty for a whole second.
pub(super) fn fraction(micros: u32) -> String {
    if micros == 0 {
        return String::new();
    }
    let digits = format!(".{micros:06}");
    digits.trim_end_matches('0').to_string()
}

/// `HH:MM:SS[.f]` of a time of day, `micros` after midnight (0 ≤ micros ≤ one day:
/// PostgreSQL allows `24:00:00`).
pub(super) fn time_of_day(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000) as u32;
    format!(
        "{:02}:{:02}:{:02}{}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60,
        fraction(frac)
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.f]`, `micros` after 1970-01-01T00:00:00; with a `Z` when
/// `utc` (the value is an instant).
pub(super) fn timestamp_from_unix_micros(micros: i64, utc: bool) -> String {
    let days = micros.div_euclid(DAY_MICROS);
    let rest = micros.rem_euclid(DAY_MICROS);
    format!(
        "{}T{}{}",
        date_from_unix_days(days),
        time_of_day(rest),
        if utc { "Z" } else { "" }
    )
}

/// A UTC offset in seconds east: `+HH:MM` (`+HH:MM:SS` when it has seconds).
pub(super) fn offset(east_secs: i32) -> String {
    let sign = if east_secs < 0 { '-' } else { '+' };
    let abs = east_secs.unsigned_abs();
    let (h, m, s) = (abs / 3600, (abs % 3600) / 60, abs % 60);
    if s == 0 {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}:{m:02}:{s:02}")
    }
}

/// An ISO 8601 duration of months, days and microseconds, each part with its own
/// sign as PostgreSQL's `iso_8601` interval style writes it (`P1Y2M-3DT4H5M6.5S`,
/// `PT0S` for zero).
pub(super) fn iso_duration(months: i32, days: i32, micros: i64) -> String {
    let mut out = String::from("P");
    let (years, months) = (months / 12, months % 12);
    for (n, unit) in [(years, 'Y'), (months, 'M'), (days, 'D')] {
        if n != 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if micros != 0 {
        out.push('T');
        let hours = micros / 3_600_000_000;
        let minutes = (micros % 3_600_000_000) / 60_000_000;
        let micros = micros % 60_000_000;
        if hours != 0 {
            out.push_str(&format!("{hours}H"));
        }
        if minutes != 0 {
            out.push_str(&format!("{minutes}M"));
        }
        if micros != 0 {
            let sign = if micros < 0 { "-" } else { "" };
            let abs = micros.unsigned_abs();
            out.push_str(&format!(
                "{sign}{}{}S",
                abs / 1_000_000,
                fraction((abs % 1_000_000) as u32)
            ));
        }
    }
    if out == "P" {
        out.push_str("T0S");
    }
    out
}

/// A UUID's 16 bytes as `8-4-4-4-12` lowercase hex.
pub(super) fn uuid(bytes: &[u8]) -> Result<Value, String> {
    if bytes.len() != 16 {
        return Err(format!("a uuid has 16 bytes, got {}", bytes.len()));
    }
    let h = hex::encode(bytes);
    Ok(Value::from(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )))
}

/// Text that must be UTF-8.
pub(super) fn text(bytes: &[u8]) -> Result<Value, String> {
    std::str::from_utf8(bytes)
        .map(Value::from)
        .map_err(|e| format!("text is not UTF-8: {e}"))
}

/// JSON text as the value it holds. Numbers are read as `serde_json` reads them:
/// integers up to 64 bits exactly, others as doubles.
pub(super) fn json(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shapes() {
        assert_eq!(float32(0.1), serde_json::json!(0.1));
        assert_eq!(float64(f64::NAN), Value::from("NaN"));
        assert_eq!(float64(f64::NEG_INFINITY), Value::from("-Infinity"));
        assert_eq!(date_from_unix_days(0), "1970-01-01");
        assert_eq!(date_from_unix_days(-719_528), "0000-01-01");
        assert_eq!(ymd(-43, 3, 15), "-0043-03-15");
        assert_eq!(ymd(10_000, 1, 1), "+10000-01-01");
        assert_eq!(time_of_day(DAY_MICROS), "24:00:00");
        assert_eq!(time_of_day(3_723_500_000), "01:02:03.5");
        assert_eq!(
            timestamp_from_unix_micros(-1, true),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(offset(-(5 * 3600 + 30 * 60)), "-05:30");
        assert_eq!(
            iso_duration(14, 3, 4 * 3_600_000_000 + 5_500_000),
            "P1Y2M3DT4H5.5S"
        );
        assert_eq!(iso_duration(0, -1, -61_000_000), "P-1DT-1M-1S");
        assert_eq!(iso_duration(0, 0, 0), "PT0S");
        assert_eq!(
            uuid(&[0xab; 16]).ok(),
            Some(Value::from("abababab-abab-abab-abab-abababababab"))
        );
    }

    proptest! {
        #[test]
        fn timestamps_are_date_and_time(micros in -200_000_000_000_000_000i64..200_000_000_000_000_000) {
            let ts = timestamp_from_unix_micros(micros, false);
            let (date, time) = ts.split_once('T').unwrap_or_default();
            prop_assert_eq!(date, date_from_unix_days(micros.div_euclid(DAY_MICROS)));
            prop_assert_eq!(time, time_of_day(micros.rem_euclid(DAY_MICROS)));
        }

        #[test]
        fn floats_round_trip(f in any::<f64>()) {
            match float64(f) {
                Value::Number(n) => prop_assert_eq!(n.as_f64(), Some(f)),
                Value::String(s) => prop_assert!(!f.is_finite(), "{s}"),
                other => prop_assert!(false, "{other}"),
            }
        }

        #[test]
        fn single_floats_keep_their_value(f in any::<f32>()) {
            if let Value::Number(n) = float32(f) {
                prop_assert_eq!(n.as_f64().map(|d| d as f32), Some(f));
            }
        }
    }
}
