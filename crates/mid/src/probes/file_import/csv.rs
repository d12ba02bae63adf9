//! Delimited text, streamed with the `csv` crate. Records are read as bytes and each
//! field decoded in the request's encoding, so a field that is not valid text fails
//! its record only, and byte offsets stay those of the file (a re-run seeks there).
//! Records are read flexibly: one whose field count differs from the header's is a
//! row error here, not the end of the import.

use super::record::{At, Fields, Item, Parser, unreadable};
use super::text::TextEncoding;
use crate::probes::ProbeError;
use serde_json::Value;
use std::io::BufRead;

/// How to read one CSV source.
#[derive(Debug, Clone)]
pub struct CsvSettings {
    pub delimiter: u8,
    pub quote: u8,
    pub header: bool,
    pub skip_lines: u32,
    pub encoding: TextEncoding,
}

/// Where reading starts: the top, or a re-run's offset with the header known.
#[derive(Debug, Clone, Copy)]
pub struct CsvStart {
    /// Byte offset of the reader's first byte in the file.
    pub offset: u64,
    /// Its line, from 1.
    pub line: u64,
    /// Columns the header named (a re-run's), when starting past it.
    pub width: Option<usize>,
}

/// A CSV reader over a source positioned at `start`.
pub struct CsvParser<R: BufRead> {
    reader: csv::Reader<R>,
    record: csv::ByteRecord,
    settings: CsvSettings,
    header_due: bool,
    width: Option<usize>,
    base_offset: u64,
    base_line: u64,
}

impl<R: BufRead> CsvParser<R> {
    /// Reads from `source`; at the top of the file, skips `skip_lines` lines first.
    pub fn new(mut source: R, settings: CsvSettings, start: CsvStart) -> Result<Self, ProbeError> {
        let mut base_offset = start.offset;
        let mut base_line = start.line;
        let fresh = start.width.is_none() && start.offset == 0;
        if fresh {
            let mut line = Vec::new();
            for _ in 0..settings.skip_lines {
                line.clear();
                let n = source
                    .read_until(b'\n', &mut line)
                    .map_err(|e| unreadable(format!("reading line {base_line}: {e}")))?;
                if n == 0 {
                    break;
                }
                base_offset += n as u64;
                base_line += 1;
            }
        }
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(settings.delimiter)
            .quote(settings.quote)
            .from_reader(source);
        Ok(Self {
            reader,
            record: csv::ByteRecord::new(),
            header_due: fresh && settings.header,
            width: start.width.filter(|_| settings.header),
            settings,
            base_offset,
            base_line,
        })
    }

    fn decode(&self) -> Result<Vec<String>, String> {
        self.record
            .iter()
            .enumerate()
            .map(|(i, field)| {
                self.settings
                    .encoding
                    .decode(field)
                    .map_err(|e| format!("field {}: {e}", i + 1))
            })
            .collect()
    }
}

impl<R: BufRead + Send> Parser for CsvParser<R> {
    fn next_item(&mut self) -> Result<Option<Item>, ProbeError> {
        let more = self
            .reader
            .read_byte_record(&mut self.record)
            .map_err(|e| unreadable(format!("CSV: {e}")))?;
        if !more {
            return Ok(None);
        }
        let start = self.record.position().map_or(1, |p| p.line());
        let end = self.reader.position();
        let at = At {
            line: Some(self.base_line + start - 1),
            end_offset: Some(self.base_offset + end.byte()),
            end_line: Some(self.base_line + end.line() - 1),
        };
        let fields = match self.decode() {
            Ok(fields) => fields,
            Err(reason) => {
                if self.header_due {
                    return Err(unreadable(format!(
                        "the header (line {}): {reason}",
                        self.base_line + start - 1
                    )));
                }
                return Ok(Some(Item::Bad(reason, at)));
            }
        };
        if std::mem::take(&mut self.header_due) {
            self.width = Some(fields.len());
            return Ok(Some(Item::Header(fields)));
        }
        if let Some(width) = self.width
            && fields.len() != width
        {
            let reason = format!("has {} fields, the header has {width}", fields.len());
            return Ok(Some(Item::Bad(reason, at)));
        }
        let values = fields.into_iter().map(Value::String).collect();
        Ok(Some(Item::Record(Fields::Positional(values), at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings(header: bool) -> CsvSettings {
        CsvSettings {
            delimiter: b',',
            quote: b'"',
            header,
            skip_lines: 0,
            encoding: TextEncoding::Utf8,
        }
    }

    fn items(data: &[u8], settings: CsvSettings, start: CsvStart) -> Vec<Item> {
        let mut p = CsvParser::new(data, settings, start).unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        while let Some(item) = p.next_item().unwrap_or_else(|e| panic!("{e}")) {
            out.push(item);
        }
        out
    }

    const TOP: CsvStart = CsvStart {
        offset: 0,
        line: 1,
        width: None,
    };

    #[test]
    fn header_quotes_and_a_bad_row() {
        let data = b"id,name\n1,\"a, b\"\n2,\"multi\nline\"\n3\n4,x\n";
        let got = items(data, settings(true), TOP);
        assert_eq!(got[0], Item::Header(vec!["id".into(), "name".into()]));
        let Item::Record(Fields::Positional(v), at) = &got[1] else {
            panic!("{:?}", got[1])
        };
        assert_eq!(v, &[Value::from("1"), Value::from("a, b")]);
        assert_eq!(
            (at.line, at.end_offset, at.end_line),
            (Some(2), Some(17), Some(3))
        );
        let Item::Record(Fields::Positional(v), at) = &got[2] else {
            panic!("{:?}", got[2])
        };
        assert_eq!(v[1], Value::from("multi\nline"));
        assert_eq!((at.line, at.end_line), (Some(3), Some(5)));
        let Item::Bad(reason, at) = &got[3] else {
            panic!("{:?}", got[3])
        };
        assert!(reason.contains("1 fields"), "{reason}");
        assert_eq!(at.line, Some(5));
        assert!(matches!(&got[4], Item::Record(..)));
    }

    fn record_values(items: &[Item]) -> Vec<Vec<Value>> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Record(Fields::Positional(v), _) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400), header in any::<bool>()) {
            let mut p = CsvParser::new(&data[..], settings(header), TOP).unwrap_or_else(|e| panic!("{e}"));
            let mut n = 0;
            while let Ok(Some(_)) = p.next_item() {
                n += 1;
                prop_assert!(n <= data.len() + 1);
            }
        }

        #[test]
        fn written_records_read_back(rows in proptest::collection::vec(
            proptest::collection::vec("[a-z0-9 ,\"\n]{0,8}", 3), 1..20)) {
            let mut w = csv::Writer::from_writer(Vec::new());
            for r in &rows {
                w.write_record(r).unwrap_or_else(|e| panic!("{e}"));
            }
            let data = w.into_inner().unwrap_or_else(|e| panic!("{e}"));
            let got = record_values(&items(&data, settings(false), TOP));
            // A record of one empty field is written as an empty line, which CSV
            // readers skip; three fields never are.
            let want: Vec<Vec<Value>> = rows
                .iter()
                .map(|r| r.iter().map(|f| Value::from(f.as_str())).collect())
                .collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn resuming_at_an_offset_reads_the_suffix(rows in proptest::collection::vec(
            proptest::collection::vec("[a-z\"\n,]{0,6}", 2), 1..15), cut in any::<prop::sample::Index>()) {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["h1", "h2"]).unwrap_or_else(|e| panic!("{e}"));
            for r in &rows {
                w.write_record(r).unwrap_or_else(|e| panic!("{e}"));
            }
            let data = w.into_inner().unwrap_or_else(|e| panic!("{e}"));
            let all = items(&data, settings(true), TOP);
            let records: Vec<&Item> = all.iter().filter(|i| matches!(i, Item::Record(..))).collect();
            let k = cut.index(records.len());
            let Item::Record(_, at) = records[k] else { unreachable!() };
            let (offset, line) = (at.end_offset.unwrap_or(0), at.end_line.unwrap_or(1));
            let start = CsvStart { offset, line, width: Some(2) };
            let rest = items(&data[offset as usize..], settings(true), start);
            prop_assert_eq!(record_values(&rest), record_values(&all)[k + 1..].to_vec());
            let lines = |v: &[Item]| v.iter().filter_map(|i| match i { Item::Record(_, a) => a.line, _ => None }).collect::<Vec<_>>();
            prop_assert_eq!(lines(&rest), lines(&all)[k + 1..].to_vec());
        }
    }
}
