//! Workbooks (xlsx, xlsm, xlsb, xls, ods) through calamine. A workbook is a zip or
//! compound file that cannot be read as a stream, so it is loaded whole — up to
//! [`MAX_WORKBOOK_BYTES`], refused clearly beyond — and its sheet walked row by row.
//! Cells keep their types: numbers (an integral float as an integer, as the sheet
//! shows it), booleans, text, dates as ISO 8601 strings, empty cells as null.

use super::record::{At, Fields, Item, Parser, unreadable};
use crate::probes::ProbeError;
use calamine::{Data, Reader};
use serde_json::Value;
use std::io::{Cursor, Read};
use std::sync::Arc;

/// Largest workbook loaded.
pub const MAX_WORKBOOK_BYTES: u64 = 256 * 1024 * 1024;

/// The rows of one sheet.
pub struct ExcelParser {
    range: calamine::Range<Data>,
    next: usize,
    header: bool,
}

impl ExcelParser {
    /// Loads the workbook from `source` and picks `sheet` (default the first).
    pub fn load(
        source: &mut dyn Read,
        sheet: Option<&str>,
        header: bool,
    ) -> Result<Self, ProbeError> {
        let mut bytes = Vec::new();
        source
            .take(MAX_WORKBOOK_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| unreadable(format!("reading the workbook: {e}")))?;
        if bytes.len() as u64 > MAX_WORKBOOK_BYTES {
            return Err(ProbeError::Target(format!(
                "the workbook is larger than {} MiB, the most an Excel import loads; export it as CSV to import it streamed",
                MAX_WORKBOOK_BYTES >> 20
            )));
        }
        let data: Arc<[u8]> = bytes.into();
        let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(data)).map_err(|e| {
            ProbeError::Target(format!(
                "not a workbook calamine can read (xlsx, xls, xlsb, ods): {e}"
            ))
        })?;
        let names = book.sheet_names();
        let name = match sheet {
            Some(s) => names
                .iter()
                .find(|n| n.as_str() == s)
                .cloned()
                .ok_or_else(|| {
                    ProbeError::InvalidInput(format!(
                        "format.sheet: the workbook has no sheet `{s}` (its sheets: {})",
                        names.join(", ")
                    ))
                })?,
            None => names
                .first()
                .cloned()
                .ok_or_else(|| ProbeError::Target("the workbook has no sheets".into()))?,
        };
        let range = book
            .worksheet_range(&name)
            .map_err(|e| ProbeError::Target(format!("reading sheet `{name}`: {e}")))?;
        Ok(Self {
            range,
            next: 0,
            header,
        })
    }
}

impl Parser for ExcelParser {
    fn next_item(&mut self) -> Result<Option<Item>, ProbeError> {
        loop {
            if self.next >= self.range.height() {
                return Ok(None);
            }
            let r = self.next;
            self.next += 1;
            let empty = Data::Empty;
            let row: Vec<&Data> = (0..self.range.width())
                .map(|c| self.range.get((r, c)).unwrap_or(&empty))
                .collect();
            if std::mem::take(&mut self.header) {
                let names = row.iter().map(|c| match *c {
                    Data::Empty => String::new(),
                    other => match cell(other) {
                        Value::String(s) => s,
                        v => v.to_string(),
                    },
                });
                return Ok(Some(Item::Header(names.collect())));
            }
            if row.iter().all(|c| matches!(c, Data::Empty)) {
                continue;
            }
            let values = row.iter().map(|c| cell(c)).collect();
            return Ok(Some(Item::Record(
                Fields::Positional(values),
                At::default(),
            )));
        }
    }
}

/// A cell as JSON.
pub fn cell(c: &Data) -> Value {
    match c {
        Data::Empty => Value::Null,
        Data::Int(i) => Value::from(*i),
        Data::Float(f) => number(*f),
        Data::String(s) => Value::String(s.clone()),
        Data::Bool(b) => Value::Bool(*b),
        Data::DateTime(d) if d.is_datetime() => {
            let (y, mo, da, h, mi, s, ms) = d.to_ymd_hms_milli();
            Value::String(if (h, mi, s, ms) == (0, 0, 0, 0) {
                format!("{y:04}-{mo:02}-{da:02}")
            } else if ms == 0 {
                format!("{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}")
            } else {
                format!("{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}.{ms:03}")
            })
        }
        // A duration: its length in days, as the sheet stores it.
        Data::DateTime(d) => number(d.as_f64()),
        Data::DateTimeIso(s) | Data::DurationIso(s) => Value::String(s.clone()),
        Data::Error(e) => Value::String(format!("#{e:?}")),
    }
}

fn number(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        Value::from(f as i64)
    } else {
        serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cells_keep_their_types() {
        assert_eq!(cell(&Data::Float(42.0)), Value::from(42));
        assert_eq!(cell(&Data::Float(1.5)), Value::from(1.5));
        assert_eq!(cell(&Data::Float(f64::NAN)), Value::Null);
        assert_eq!(cell(&Data::Empty), Value::Null);
        let date =
            calamine::ExcelDateTime::new(45_292.0, calamine::ExcelDateTimeType::DateTime, false);
        assert_eq!(cell(&Data::DateTime(date)), Value::from("2024-01-01"));
        let noon =
            calamine::ExcelDateTime::new(45_292.5, calamine::ExcelDateTimeType::DateTime, false);
        assert_eq!(
            cell(&Data::DateTime(noon)),
            Value::from("2024-01-01T12:00:00")
        );
    }

    #[test]
    fn a_non_workbook_is_refused() {
        let e = ExcelParser::load(&mut &b"id,name\n1,a\n"[..], None, true).err();
        assert!(e.is_some_and(|e| e.to_string().contains("not a workbook")));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut zip = b"PK\x03\x04".to_vec();
            zip.extend(&data);
            for bytes in [&data, &zip] {
                if let Ok(mut p) = ExcelParser::load(&mut &bytes[..], None, true) {
                    while let Ok(Some(_)) = p.next_item() {}
                }
            }
        }
    }
}
