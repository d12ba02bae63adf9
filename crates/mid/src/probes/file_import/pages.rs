//! Items into pages, on the parsing thread. Each record becomes a row aligned to the
//! columns so far and is written as JSON at once; a page holds at most `page_rows`
//! rows and is cut sooner once its line passes [`SOFT_PAGE_BYTES`] (so it stays well
//! under [`MAX_CHUNK_BYTES`]). A full page is handed to `emit`, which blocks while the
//! instance is behind: memory holds about one page whatever the file's size.
//!
//! The pager also applies a re-run's [`FileResume`]: page numbers, row and record
//! counts and the schema continue from it, and when the parser starts from the top
//! again (formats without offsets) the first `records_done` records are skipped.

use super::record::{At, Fields, Item};
use super::schema::Schema;
use crate::probes::ProbeError;
use openmid_proto::command_output::MAX_CHUNK_BYTES;
use openmid_proto::file_import::{FileResume, MAX_FIRST_ERRORS, RowError};
use serde_json::Value;

/// A page is cut once its line passes this.
pub const SOFT_PAGE_BYTES: usize = 512 * 1024;
/// Bytes of a page line besides its rows, errors, columns and types.
const LINE_OVERHEAD: usize = 256;
/// Longest reason kept for a row error.
const MAX_REASON: usize = 300;

/// The job stopped (cancelled, timed out, or the receiver is gone).
#[derive(Debug)]
pub struct Stopped;

/// What the pager needs to know of the request.
pub struct PagerSettings {
    /// Rows per page.
    pub page_rows: usize,
    /// Rows over all attempts to stop at.
    pub max_rows: Option<u64>,
    /// Values are text to recognise (CSV, XML).
    pub untyped: bool,
    /// The parser starts at the top (no byte offset), so stored records are skipped.
    pub skip_stored: bool,
}

/// What an import came to.
#[derive(Debug, Default)]
pub struct Finished {
    pub rows: u64,
    pub errors: u64,
    pub pages: u64,
    pub schema: Schema,
    pub first_errors: Vec<RowError>,
    pub truncated: bool,
}

/// Pages of one attempt.
pub struct Pager<E: FnMut(Vec<u8>) -> Result<(), Stopped>> {
    emit: E,
    settings: PagerSettings,
    schema: Schema,
    /// Skip this many records (a re-run from the top).
    skip: u64,
    next_page: u64,
    next_row: u64,
    records: u64,
    errors_before: u64,
    errors_now: u64,
    rows: Vec<String>,
    bytes: usize,
    page_errors: Vec<RowError>,
    first_errors: Vec<RowError>,
    added: Vec<String>,
    header_seen: bool,
    last: At,
    truncated: bool,
    sent_any: bool,
}

impl<E: FnMut(Vec<u8>) -> Result<(), Stopped>> Pager<E> {
    /// Pages continuing `resume` (if any), handed to `emit`.
    pub fn new(settings: PagerSettings, resume: Option<&FileResume>, emit: E) -> Self {
        let (schema, next_page, rows, records) = match resume {
            Some(r) => (
                Schema::resumed(r.columns.clone(), r.types.clone()),
                r.next_page,
                r.rows_done,
                r.records_done,
            ),
            None => (Schema::default(), 0, 0, 0),
        };
        Self {
            skip: if settings.skip_stored { records } else { 0 },
            header_seen: resume.is_some_and(|r| !r.columns.is_empty()),
            emit,
            settings,
            schema,
            next_page,
            next_row: rows,
            records,
            errors_before: records - rows.min(records),
            errors_now: 0,
            rows: Vec::new(),
            bytes: 0,
            page_errors: Vec::new(),
            first_errors: Vec::new(),
            added: Vec::new(),
            last: At::default(),
            truncated: false,
            sent_any: false,
        }
    }

    /// Takes one item; `Ok(false)` once `max_rows` is reached and a further row came
    /// (stop reading).
    pub fn push(&mut self, item: Item) -> Result<bool, PushError> {
        match item {
            Item::Header(names) => {
                // A re-run knows the header already.
                if !std::mem::replace(&mut self.header_seen, true)
                    && !self.schema.header(&names, &mut self.added)
                {
                    return Err(PushError::Fatal(too_many_columns()));
                }
                Ok(true)
            }
            Item::Bad(reason, at) => {
                if self.skip > 0 {
                    self.skip -= 1;
                    return Ok(true);
                }
                self.records += 1;
                self.error(reason, at);
                self.maybe_flush()?;
                Ok(true)
            }
            Item::Record(fields, at) => {
                if self.skip > 0 {
                    self.skip -= 1;
                    return Ok(true);
                }
                if self
                    .settings
                    .max_rows
                    .is_some_and(|max| self.next_row >= max)
                {
                    self.truncated = true;
                    return Ok(false);
                }
                self.records += 1;
                let row = self.row(fields)?;
                let json = serde_json::to_string(&row).unwrap_or_default();
                if json.len() + self.fixed_bytes() > MAX_CHUNK_BYTES {
                    let reason = format!(
                        "the record is {} bytes as JSON, more than a page may hold ({MAX_CHUNK_BYTES} bytes)",
                        json.len()
                    );
                    self.error(reason, at);
                } else {
                    if !self.rows.is_empty()
                        && self.bytes + json.len() + self.fixed_bytes() > MAX_CHUNK_BYTES
                    {
                        self.flush()?;
                    }
                    self.bytes += json.len() + 1;
                    self.rows.push(json);
                    self.next_row += 1;
                    self.last = at;
                }
                self.maybe_flush()?;
                Ok(true)
            }
        }
    }

    fn row(&mut self, fields: Fields) -> Result<Vec<Value>, PushError> {
        let untyped = self.settings.untyped;
        let mut row: Vec<Value> = Vec::new();
        match fields {
            Fields::Positional(values) => {
                if !self.schema.positions(values.len(), &mut self.added) {
                    return Err(PushError::Fatal(too_many_columns()));
                }
                for (i, v) in values.iter().enumerate() {
                    self.schema.see(i, v, untyped);
                }
                row = values;
            }
            Fields::Named(values) => {
                for (name, v) in values {
                    let i = self
                        .schema
                        .named(&name, &mut self.added)
                        .ok_or_else(|| PushError::Fatal(too_many_columns()))?;
                    self.schema.see(i, &v, untyped);
                    if row.len() <= i {
                        row.resize(i + 1, Value::Null);
                    }
                    row[i] = v;
                }
            }
        }
        while row.last().is_some_and(Value::is_null) {
            row.pop();
        }
        Ok(row)
    }

    fn error(&mut self, mut reason: String, at: At) {
        if reason.len() > MAX_REASON {
            let mut cut = MAX_REASON;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
            reason.push('…');
        }
        let error = RowError {
            record: self.records,
            line: at.line,
            reason,
        };
        self.bytes += error.reason.len() + 64;
        if self.first_errors.len() < MAX_FIRST_ERRORS {
            self.first_errors.push(error.clone());
        }
        self.page_errors.push(error);
        self.errors_now += 1;
        self.last = at;
    }

    /// The columns and types lists, written on every page (a column twice at most:
    /// in `columns` and `columns_added`), with room for escaping.
    fn fixed_bytes(&self) -> usize {
        LINE_OVERHEAD
            + self
                .schema
                .columns
                .iter()
                .map(|c| (c.len() * 2 + 4) * 2)
                .sum::<usize>()
            + self.schema.types.len() * 12
    }

    fn maybe_flush(&mut self) -> Result<(), PushError> {
        if self.rows.len() + self.page_errors.len() >= self.settings.page_rows
            || self.bytes + self.fixed_bytes() >= SOFT_PAGE_BYTES
        {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the page being filled, if it holds anything — or, as page 0, if there
    /// are columns (a header without rows).
    fn flush(&mut self) -> Result<(), PushError> {
        let header_only = !self.sent_any && self.next_page == 0 && !self.schema.columns.is_empty();
        if self.rows.is_empty() && self.page_errors.is_empty() && !header_only {
            return Ok(());
        }
        let line = self.line();
        if line.len() > MAX_CHUNK_BYTES {
            // The estimates above keep this from happening; a chunk past the limit
            // would be refused by the instance, so stop rather than send it.
            return Err(PushError::Fatal(ProbeError::Target(format!(
                "page {} came to {} bytes, more than a chunk may hold ({MAX_CHUNK_BYTES}); lower page_rows",
                self.next_page,
                line.len()
            ))));
        }
        (self.emit)(line.into_bytes()).map_err(|_| PushError::Stopped)?;
        self.sent_any = true;
        self.next_page += 1;
        self.rows.clear();
        self.page_errors.clear();
        self.added.clear();
        self.bytes = 0;
        Ok(())
    }

    /// The page as one JSON line (a [`FilePage`](openmid_proto::file_import::FilePage)),
    /// built from the rows' JSON as written.
    fn line(&self) -> String {
        let first_row = self.next_row - self.rows.len() as u64;
        let mut line = String::with_capacity(self.bytes + self.fixed_bytes());
        line.push_str(&format!(
            "{{\"page\":{},\"first_row\":{first_row},\"columns_added\":{},\"columns\":{},\"rows\":[",
            self.next_page,
            json(&self.added),
            json(&self.schema.columns),
        ));
        line.push_str(&self.rows.join(","));
        line.push(']');
        if !self.page_errors.is_empty() {
            line.push_str(",\"errors\":");
            line.push_str(&json(&self.page_errors));
        }
        line.push_str(",\"types\":");
        line.push_str(&json(&self.schema.types));
        if let Some(offset) = self.last.end_offset {
            line.push_str(&format!(",\"next_offset\":{offset}"));
        }
        if let Some(l) = self.last.end_line {
            line.push_str(&format!(",\"next_line\":{l}"));
        }
        line.push_str(&format!(",\"records_done\":{}}}\n", self.records));
        line
    }

    /// Sends the last page; the counts over all attempts.
    pub fn finish(mut self) -> Result<Finished, PushError> {
        self.flush()?;
        Ok(Finished {
            rows: self.next_row,
            errors: self.errors_before + self.errors_now,
            pages: self.next_page,
            schema: self.schema,
            first_errors: self.first_errors,
            truncated: self.truncated,
        })
    }
}

/// Why a push ended the import.
#[derive(Debug)]
pub enum PushError {
    /// The job stopped.
    Stopped,
    /// The import cannot go on.
    Fatal(ProbeError),
}

fn too_many_columns() -> ProbeError {
    ProbeError::Target(format!(
        "the file has more than {} distinct columns",
        super::schema::MAX_COLUMNS
    ))
}

/// A list as JSON text (the page's lists cannot fail to serialize).
fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmid_proto::file_import::{ColumnType, FilePage};
    use serde_json::json;

    fn settings(page_rows: usize) -> PagerSettings {
        PagerSettings {
            page_rows,
            max_rows: None,
            untyped: true,
            skip_stored: false,
        }
    }

    fn named(pairs: &[(&str, Value)]) -> Item {
        Item::Record(
            Fields::Named(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            ),
            At::default(),
        )
    }

    #[test]
    fn rows_align_to_the_columns_so_far() {
        let mut lines = Vec::new();
        let mut p = Pager::new(settings(2), None, |l| {
            lines.push(l);
            Ok(())
        });
        for item in [
            named(&[("a", json!("1"))]),
            named(&[("b", json!("x")), ("a", json!("2.5"))]),
            Item::Bad(
                "broken".into(),
                At {
                    line: Some(4),
                    ..At::default()
                },
            ),
            named(&[("c", json!("2024-01-01"))]),
        ] {
            p.push(item).unwrap_or_else(|_| panic!("push"));
        }
        let done = p.finish().unwrap_or_else(|_| panic!("finish"));
        assert_eq!((done.rows, done.errors, done.pages), (3, 1, 2));
        let pages: Vec<FilePage> = lines
            .iter()
            .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(pages[0].columns_added, ["a", "b"]);
        assert_eq!(
            pages[0].rows,
            vec![vec![json!("1")], vec![json!("2.5"), json!("x")]]
        );
        assert_eq!(pages[0].types, [ColumnType::Number, ColumnType::String]);
        assert_eq!(pages[1].columns_added, ["c"]);
        assert_eq!(
            pages[1].rows,
            vec![vec![Value::Null, Value::Null, json!("2024-01-01")]]
        );
        assert_eq!(
            pages[1].errors[0],
            RowError {
                record: 3,
                line: Some(4),
                reason: "broken".into()
            }
        );
        assert_eq!((pages[1].first_row, pages[1].records_done), (2, 4));
    }

    #[test]
    fn pages_stay_under_the_chunk_limit_and_a_huge_record_is_a_row_error() {
        let mut sizes = Vec::new();
        let mut p = Pager::new(settings(10_000), None, |l| {
            sizes.push(l.len());
            Ok(())
        });
        let wide = "x".repeat(200_000);
        for _ in 0..6 {
            p.push(named(&[("a", json!(wide))]))
                .unwrap_or_else(|_| panic!("push"));
        }
        let huge = "y".repeat(MAX_CHUNK_BYTES);
        p.push(named(&[("a", json!(huge))]))
            .unwrap_or_else(|_| panic!("push"));
        let done = p.finish().unwrap_or_else(|_| panic!("finish"));
        assert_eq!((done.rows, done.errors), (6, 1));
        assert!(
            done.first_errors[0]
                .reason
                .contains("more than a page may hold")
        );
        // Cut once past 512 KiB: three wide rows a page.
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n <= MAX_CHUNK_BYTES), "{sizes:?}");
    }

    #[test]
    fn a_resumed_run_skips_and_continues_counting() {
        let resume = FileResume {
            next_page: 5,
            rows_done: 9,
            records_done: 10,
            byte_offset: None,
            columns: vec!["a".into()],
            types: vec![ColumnType::Integer],
            line: None,
        };
        let mut lines = Vec::new();
        let s = PagerSettings {
            skip_stored: true,
            max_rows: Some(11),
            ..settings(100)
        };
        let mut p = Pager::new(s, Some(&resume), |l| {
            lines.push(l);
            Ok(())
        });
        for i in 0..20 {
            if !p
                .push(named(&[("a", json!(i.to_string()))]))
                .unwrap_or_else(|_| panic!("push"))
            {
                break;
            }
        }
        let done = p.finish().unwrap_or_else(|_| panic!("finish"));
        assert_eq!(
            (done.rows, done.errors, done.pages, done.truncated),
            (11, 1, 6, true)
        );
        let page: FilePage = serde_json::from_slice(&lines[0]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((page.page, page.first_row, page.records_done), (5, 9, 12));
        assert_eq!(page.rows, vec![vec![json!("10")], vec![json!("11")]]);
        assert!(page.columns_added.is_empty());
    }
}
