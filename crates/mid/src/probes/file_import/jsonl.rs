//! JSON lines: one object per line, read line by line. A line that does not parse, is
//! not an object or is not valid text is a row error; blank lines are no records.
//! Every record starts at a line, so a re-run seeks to the stored offset.

use super::object;
use super::record::{At, Fields, Item, Parser, unreadable};
use super::text::TextEncoding;
use crate::probes::ProbeError;
use std::io::BufRead;

/// Longest line read; a longer one is a row error (and skipped to its end).
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// A JSON lines reader over a source positioned at byte `offset`, line `line`.
pub struct JsonlParser<R: BufRead> {
    source: R,
    encoding: TextEncoding,
    offset: u64,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> JsonlParser<R> {
    /// Reads from `source`, whose first byte is at `offset` on line `line`.
    pub fn new(source: R, encoding: TextEncoding, offset: u64, line: u64) -> Self {
        Self {
            source,
            encoding,
            offset,
            line,
            buf: Vec::new(),
        }
    }

    /// Reads one line into `buf` (at most [`MAX_LINE_BYTES`] kept); its length in
    /// the file and whether it was cut.
    fn read_line(&mut self) -> std::io::Result<(usize, bool)> {
        self.buf.clear();
        let mut total = 0;
        let mut cut = false;
        loop {
            let chunk = self.source.fill_buf()?;
            if chunk.is_empty() {
                return Ok((total, cut));
            }
            let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let room = MAX_LINE_BYTES.saturating_sub(self.buf.len());
            if take > room {
                cut = true;
            }
            self.buf.extend_from_slice(&chunk[..take.min(room)]);
            self.source.consume(take);
            total += take;
            if done {
                return Ok((total, cut));
            }
        }
    }
}

impl<R: BufRead + Send> Parser for JsonlParser<R> {
    fn next_item(&mut self) -> Result<Option<Item>, ProbeError> {
        loop {
            let (n, cut) = self
                .read_line()
                .map_err(|e| unreadable(format!("reading line {}: {e}", self.line)))?;
            if n == 0 {
                return Ok(None);
            }
            let line = self.line;
            self.offset += n as u64;
            self.line += 1;
            let at = At {
                line: Some(line),
                end_offset: Some(self.offset),
                end_line: Some(self.line),
            };
            if cut {
                let reason = format!("the line is longer than {MAX_LINE_BYTES} bytes");
                return Ok(Some(Item::Bad(reason, at)));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let text = match self.encoding.decode(&self.buf) {
                Ok(text) => text,
                Err(reason) => return Ok(Some(Item::Bad(reason, at))),
            };
            return Ok(Some(match object::record(text.as_bytes()) {
                Ok(members) => Item::Record(Fields::Named(members), at),
                Err(reason) => Item::Bad(format!("the line {reason}"), at),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items(data: &[u8], offset: u64, line: u64) -> Vec<Item> {
        let mut p = JsonlParser::new(data, TextEncoding::Utf8, offset, line);
        let mut out = Vec::new();
        while let Some(i) = p.next_item().unwrap_or_else(|e| panic!("{e}")) {
            out.push(i);
        }
        out
    }

    #[test]
    fn objects_blank_lines_and_bad_lines() {
        let got = items(b"{\"a\":1}\n\n[1]\n{oops\n{\"b\":\"x\"}", 0, 1);
        assert_eq!(got.len(), 4);
        let Item::Bad(reason, at) = &got[1] else {
            panic!("{:?}", got[1])
        };
        assert!(reason.contains("not a JSON object"), "{reason}");
        assert_eq!(at.line, Some(3));
        assert!(matches!(&got[2], Item::Bad(_, at) if at.line == Some(4)));
        let Item::Record(_, at) = &got[3] else {
            panic!("{:?}", got[3])
        };
        assert_eq!((at.end_offset, at.end_line), (Some(28), Some(6)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let got = items(&data, 0, 1);
            prop_assert!(got.len() <= data.len());
        }

        #[test]
        fn resuming_at_an_offset_reads_the_suffix(values in proptest::collection::vec(any::<(i32, String)>(), 1..20), cut in any::<prop::sample::Index>()) {
            let mut data = Vec::new();
            for (n, s) in &values {
                data.extend(serde_json::to_vec(&serde_json::json!({"n": n, "s": s})).unwrap_or_default());
                data.push(b'\n');
            }
            let all = items(&data, 0, 1);
            let k = cut.index(all.len());
            let at = match &all[k] { Item::Record(_, a) | Item::Bad(_, a) => *a, Item::Header(_) => unreachable!() };
            let offset = at.end_offset.unwrap_or(0);
            let rest = items(&data[offset as usize..], offset, at.end_line.unwrap_or(1));
            prop_assert_eq!(rest, all[k + 1..].to_vec());
        }
    }
}
