//! Payloads of the `FileImport` topic: a file the MID reads — from its own host or from
//! an internal HTTP(S) URL — parsed as CSV, Excel, XML, JSON or JSON lines, its records
//! streamed back in pages.
//!
//! A file can be far larger than one message, so records travel as pages, the way SQL
//! rows do: each page is one chunk of the output's `rows` stream
//! ([`OutputStream::Rows`]), its data one JSON line holding a [`FilePage`]. A file has
//! no declared schema, so the columns are discovered as records come (each page names
//! the ones it adds) and their types are inferred from the values seen (each page
//! carries the types so far; the last page's are the run's schema).
//!
//! A record that cannot be read (a CSV line with the wrong number of fields, a JSON
//! line that does not parse) is reported in its page's `errors` and skipped; the import
//! goes on. A document that cannot be read any further (malformed XML, a truncated JSON
//! array) ends the job.
//!
//! A job re-run on another MID after some pages were stored continues where they end
//! ([`FileResume`]): CSV and JSON lines by byte offset (a seek, or an HTTP range
//! request), the other formats by reading again and skipping the records already
//! stored.
//!
//! [`OutputStream::Rows`]: crate::command_output::OutputStream::Rows

use crate::credential::CredentialRef;
use crate::probe::{FieldError, Target, field_error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Records per page unless the request says otherwise.
pub const DEFAULT_PAGE_ROWS: u32 = 1000;
/// Most records a page may be asked to hold.
pub const MAX_PAGE_ROWS: u32 = 10_000;
/// Longest an import runs when the request gives no `timeout_ms`: one hour.
pub const DEFAULT_TIMEOUT_MS: u64 = 3600 * 1000;
/// Longest `timeout_ms` a request may ask for.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// Longest path or URL.
pub const MAX_LOCATION_BYTES: usize = 4096;
/// Largest `ca_pem`.
pub const MAX_CA_PEM_BYTES: usize = 256 * 1024;
/// Most row errors a result lists ([`FileImportResponse::first_errors`]).
pub const MAX_FIRST_ERRORS: usize = 100;
/// Encodings a request may name (labels, compared without case). `latin1` is read as
/// windows-1252, as the WHATWG encoding standard (and every browser) does.
pub const ENCODINGS: [&str; 7] = [
    "utf-8",
    "utf8",
    "latin1",
    "iso-8859-1",
    "windows-1252",
    "cp1252",
    "us-ascii",
];

/// Where the file is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SourceFields", into = "SourceFields")]
pub enum FileSource {
    /// A file on the MID's host, read only inside `policy.file.allow_dirs`.
    Path {
        /// Absolute path.
        path: String,
    },
    /// An internal HTTP(S) URL (the instance fills it from an HTTP alias), fetched
    /// under `policy.http` as a REST call is.
    Url {
        /// Absolute `http(s)` URL.
        url: String,
        /// Request headers.
        headers: BTreeMap<String, String>,
        /// The credential to authenticate with.
        credential: Option<CredentialRef>,
        /// PEM CA certificates the server's certificate must chain to.
        ca_pem: Option<String>,
    },
}

/// [`FileSource`] as written: `{"path": …}` or `{"url": …, "headers": …, …}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credential: Option<CredentialRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_pem: Option<String>,
}

impl TryFrom<SourceFields> for FileSource {
    type Error = String;

    fn try_from(f: SourceFields) -> Result<Self, String> {
        match (f.path, f.url) {
            (Some(path), None) => {
                if !f.headers.is_empty() || f.credential.is_some() || f.ca_pem.is_some() {
                    return Err(
                        "source: `headers`, `credential` and `ca_pem` go with a `url`, not a `path`"
                            .into(),
                    );
                }
                Ok(Self::Path { path })
            }
            (None, Some(url)) => Ok(Self::Url {
                url,
                headers: f.headers,
                credential: f.credential,
                ca_pem: f.ca_pem,
            }),
            (Some(_), Some(_)) => Err("source: give `path` or `url`, not both".into()),
            (None, None) => Err("source: give `path` (a file on the MID) or `url`".into()),
        }
    }
}

impl From<FileSource> for SourceFields {
    fn from(s: FileSource) -> Self {
        match s {
            FileSource::Path { path } => Self {
                path: Some(path),
                ..Self::default()
            },
            FileSource::Url {
                url,
                headers,
                credential,
                ca_pem,
            } => Self {
                url: Some(url),
                headers,
                credential,
                ca_pem,
                ..Self::default()
            },
        }
    }
}

/// How the file is parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FileFormat {
    /// Delimited text. Values stay strings exactly as read (`007` stays `007`).
    Csv {
        /// Field delimiter, one ASCII character (default `,`).
        #[serde(default = "default_delimiter")]
        delimiter: char,
        /// Quote character, one ASCII character (default `"`).
        #[serde(default = "default_quote")]
        quote: char,
        /// The first record names the columns (default true); without one they are
        /// `c1, c2, …`.
        #[serde(default = "yes")]
        header: bool,
        /// Lines skipped before the header (or the first record).
        #[serde(default)]
        skip_lines: u32,
    },
    /// A workbook: xlsx, xlsm, xlsb, xls or ods. Cells keep their types (numbers,
    /// booleans, dates as ISO 8601 strings, empty cells null).
    Excel {
        /// The sheet's name (default the first).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sheet: Option<String>,
        /// The first row names the columns (default true).
        #[serde(default = "yes")]
        header: bool,
    },
    /// XML: each element at `record_path` is one record; its attributes are `@name`
    /// columns, child elements with text are columns by name (nested ones
    /// `parent/child`, a repeated child an array), its own text `#text`. Values are
    /// strings.
    Xml {
        /// Absolute element path, e.g. `/catalog/book`.
        record_path: String,
    },
    /// A JSON document: the records are the elements of the array at `record_path`.
    /// Values keep their JSON types.
    Json {
        /// A JSON pointer (RFC 6901) to the array of records, e.g. `/data/items`;
        /// default the top level.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        record_path: Option<String>,
    },
    /// JSON lines: one object per line.
    Jsonl,
}

impl Default for FileFormat {
    /// CSV with a header, comma-delimited, double-quoted.
    fn default() -> Self {
        Self::Csv {
            delimiter: default_delimiter(),
            quote: default_quote(),
            header: true,
            skip_lines: 0,
        }
    }
}

fn default_delimiter() -> char {
    ','
}

fn default_quote() -> char {
    '"'
}

fn yes() -> bool {
    true
}

impl FileFormat {
    /// Whether a re-run continues by byte offset (its records can be found from any
    /// record boundary) rather than by reading again and skipping.
    pub fn resumes_by_offset(&self) -> bool {
        matches!(self, Self::Csv { .. } | Self::Jsonl)
    }
}

/// Input of a `FileImport` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileImportRequest {
    /// Where the file is.
    pub source: FileSource,
    /// How to parse it.
    pub format: FileFormat,
    /// Its text encoding (default `utf-8`; `latin1`/`iso-8859-1`/`windows-1252`).
    /// Excel files carry their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Records per page (default 1000, at most 10 000); a page is also cut once its
    /// line passes 512 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_rows: Option<u32>,
    /// Stop after this many rows (over all attempts); the result is then `truncated`
    /// if there were more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u64>,
    /// Longest the whole import may take (default one hour, at most 24 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Where a re-run continues (filled by the instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<FileResume>,
}

/// Where a re-run continues: what its earlier attempts stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileResume {
    /// The number of the first page this attempt sends.
    pub next_page: u64,
    /// Rows stored by the earlier attempts.
    pub rows_done: u64,
    /// Source records consumed by the earlier attempts, bad ones included.
    pub records_done: u64,
    /// Byte offset in the file just after the last stored record (CSV and JSON lines):
    /// where this attempt starts reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_offset: Option<u64>,
    /// The columns so far, in order.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Their inferred types so far.
    #[serde(default)]
    pub types: Vec<ColumnType>,
    /// The line at `byte_offset` (1-based), so row errors keep naming the file's lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

/// A column's type, inferred from the values seen (nulls, and empty CSV fields, are
/// ignored). The types form a lattice — `integer ⊂ number ⊂ string`,
/// `date ⊂ timestamp ⊂ string`, `boolean ⊂ string` — and a column's type is the
/// least one holding all its values; `null` while none was seen.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// No value seen yet (only nulls).
    #[default]
    Null,
    /// Whole numbers.
    Integer,
    /// Numbers.
    Number,
    /// `true` / `false`.
    Boolean,
    /// `YYYY-MM-DD`.
    Date,
    /// RFC 3339 / ISO 8601 date and time.
    Timestamp,
    /// Anything else (and mixes of the above).
    String,
}

impl ColumnType {
    /// The least type holding values of both.
    pub fn join(self, other: Self) -> Self {
        use ColumnType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, x) | (x, Null) => x,
            (Integer, Number) | (Number, Integer) => Number,
            (Date, Timestamp) | (Timestamp, Date) => Timestamp,
            _ => String,
        }
    }
}

/// A record that could not be read; it was skipped and the import went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RowError {
    /// The record's number in the file, from 1 (bad records counted).
    pub record: u64,
    /// The line it starts on, from 1 (CSV and JSON lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// What is wrong with it.
    pub reason: String,
}

/// One page of records: the data of one chunk of the `rows` stream, as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePage {
    /// Its number, from 0, continued across attempts.
    pub page: u64,
    /// Index of its first row in the whole import, from 0.
    pub first_row: u64,
    /// Columns first seen in this page, to append in order to the column list (page 0
    /// starts with the header's).
    pub columns_added: Vec<String>,
    /// The whole column list so far — what a re-run, handed only the last stored page,
    /// continues with.
    pub columns: Vec<String>,
    /// The rows, each one value per column of the list so far, in its order (`null`
    /// where a record lacks a column; a shorter row means its trailing columns are
    /// null).
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Records of this page that could not be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RowError>,
    /// The inferred type of every column so far (the last page's are the schema).
    pub types: Vec<ColumnType>,
    /// Byte offset just after the page's last record (CSV and JSON lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
    /// The line just after the page's last record (CSV and JSON lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_line: Option<u64>,
    /// Source records consumed so far over all attempts, bad ones included.
    pub records_done: u64,
}

/// One column of the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaColumn {
    /// Its name.
    pub name: String,
    /// Its inferred type.
    #[serde(rename = "type")]
    pub column_type: ColumnType,
}

/// Result of a `FileImport` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileImportResponse {
    /// Rows imported, over all attempts.
    pub rows: u64,
    /// Records skipped as unreadable, over all attempts.
    pub errors: u64,
    /// Pages sent, over all attempts (the next page number).
    pub pages: u64,
    /// The schema: every column with its inferred type.
    pub columns: Vec<SchemaColumn>,
    /// Bytes this attempt read from the source.
    pub bytes_read: u64,
    /// This attempt's first row errors (up to 100).
    pub first_errors: Vec<RowError>,
    /// Reading stopped at `max_rows` and there were more records.
    pub truncated: bool,
    /// When the attempt started, RFC 3339.
    pub started_at: String,
    /// How long it ran.
    pub duration_ms: u64,
}

impl FileImportRequest {
    /// Records per page.
    pub fn page_rows(&self) -> u32 {
        self.page_rows.unwrap_or(DEFAULT_PAGE_ROWS)
    }

    /// The whole job's time limit.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }

    /// Checks what can be checked without the file; errors name the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        self.check_source()?;
        self.check_format()?;
        if let Some(e) = &self.encoding
            && !ENCODINGS.iter().any(|k| k.eq_ignore_ascii_case(e))
        {
            return Err(field_error(
                "encoding",
                format!(
                    "`{e}` is not supported: use one of {}",
                    ENCODINGS.join(", ")
                ),
            ));
        }
        if let Some(rows) = self.page_rows
            && !(1..=MAX_PAGE_ROWS).contains(&rows)
        {
            return Err(field_error(
                "page_rows",
                format!("must be 1–{MAX_PAGE_ROWS}, got {rows}"),
            ));
        }
        if self.max_rows == Some(0) {
            return Err(field_error("max_rows", "must be at least 1"));
        }
        if let Some(t) = self.timeout_ms
            && !(1..=MAX_TIMEOUT_MS).contains(&t)
        {
            return Err(field_error(
                "timeout_ms",
                format!("must be 1–{MAX_TIMEOUT_MS}, got {t}"),
            ));
        }
        if let Some(r) = &self.resume {
            self.check_resume(r)?;
        }
        Ok(())
    }

    fn check_source(&self) -> Result<(), FieldError> {
        match &self.source {
            FileSource::Path { path } => {
                if path.len() > MAX_LOCATION_BYTES || path.contains('\0') {
                    return Err(field_error(
                        "source.path",
                        format!("must be at most {MAX_LOCATION_BYTES} bytes without NUL"),
                    ));
                }
                if !path.starts_with('/') {
                    return Err(field_error("source.path", "must be an absolute path"));
                }
            }
            FileSource::Url {
                url,
                headers,
                ca_pem,
                ..
            } => {
                if url.len() > MAX_LOCATION_BYTES {
                    return Err(field_error(
                        "source.url",
                        format!("must be at most {MAX_LOCATION_BYTES} bytes"),
                    ));
                }
                crate::probe::check_http_url("source.url", url)?;
                crate::probe::check_headers(headers).map_err(|e| FieldError {
                    field: format!("source.{}", e.field),
                    ..e
                })?;
                if headers.keys().any(|k| k.eq_ignore_ascii_case("range")) {
                    return Err(field_error(
                        "source.headers",
                        "`Range` is set by the probe itself (a re-run continues by range)",
                    ));
                }
                if let Some(pem) = ca_pem
                    && (pem.len() > MAX_CA_PEM_BYTES
                        || !pem.contains("-----BEGIN CERTIFICATE-----"))
                {
                    return Err(field_error(
                        "source.ca_pem",
                        format!("must be PEM certificates (at most {MAX_CA_PEM_BYTES} bytes)"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_format(&self) -> Result<(), FieldError> {
        match &self.format {
            FileFormat::Csv {
                delimiter, quote, ..
            } => {
                for (field, c) in [("format.delimiter", delimiter), ("format.quote", quote)] {
                    if !c.is_ascii() || *c == '\n' || *c == '\r' {
                        return Err(field_error(
                            field,
                            "must be one ASCII character other than a line break",
                        ));
                    }
                }
                if delimiter == quote {
                    return Err(field_error(
                        "format.quote",
                        "must differ from the delimiter",
                    ));
                }
            }
            FileFormat::Excel { sheet, .. } => {
                if sheet
                    .as_ref()
                    .is_some_and(|s| s.is_empty() || s.len() > 255)
                {
                    return Err(field_error("format.sheet", "must be 1–255 bytes"));
                }
            }
            FileFormat::Xml { record_path } => {
                let segments: Vec<&str> = record_path.split('/').skip(1).collect();
                if !record_path.starts_with('/')
                    || segments.is_empty()
                    || segments
                        .iter()
                        .any(|s| s.is_empty() || s.contains(['@', '#', '*', '[', ' ']))
                    || record_path.len() > 1024
                {
                    return Err(field_error(
                        "format.record_path",
                        "must be an absolute element path such as /catalog/book (names only, no wildcards)",
                    ));
                }
            }
            FileFormat::Json { record_path } => {
                if let Some(p) = record_path
                    && ((!p.is_empty() && !p.starts_with('/')) || p.len() > 1024)
                {
                    return Err(field_error(
                        "format.record_path",
                        "must be a JSON pointer such as /data/items (or empty for the top level)",
                    ));
                }
            }
            FileFormat::Jsonl => {}
        }
        if self.encoding.is_some() && matches!(self.format, FileFormat::Excel { .. }) {
            return Err(field_error(
                "encoding",
                "does not apply to Excel workbooks, which carry their own",
            ));
        }
        Ok(())
    }

    fn check_resume(&self, r: &FileResume) -> Result<(), FieldError> {
        if r.rows_done > r.records_done {
            return Err(field_error(
                "resume.rows_done",
                "is more than resume.records_done",
            ));
        }
        if r.columns.len() != r.types.len() {
            return Err(field_error(
                "resume.types",
                format!(
                    "has {} types for {} columns",
                    r.types.len(),
                    r.columns.len()
                ),
            ));
        }
        if r.byte_offset.is_some() && !self.format.resumes_by_offset() {
            return Err(field_error(
                "resume.byte_offset",
                "only CSV and JSON lines continue by offset",
            ));
        }
        if r.line == Some(0) {
            return Err(field_error("resume.line", "lines count from 1"));
        }
        Ok(())
    }
}

/// The `FileImport` topic.
pub struct FileImport;

impl crate::probe::Contract for FileImport {
    const TOPIC: crate::ecc::Topic = crate::ecc::Topic::FileImport;
    type Request = FileImportRequest;
    type Response = FileImportResponse;

    fn validate(req: &FileImportRequest) -> Result<(), FieldError> {
        req.validate()
    }

    /// The URL's host; a file on the MID's own host touches no network target.
    fn target(req: &FileImportRequest) -> Option<Target> {
        match &req.source {
            FileSource::Url { url, .. } => Target::of_url(url),
            FileSource::Path { .. } => None,
        }
    }

    fn credential(req: &FileImportRequest) -> Option<&CredentialRef> {
        match &req.source {
            FileSource::Url { credential, .. } => credential.as_ref(),
            FileSource::Path { .. } => None,
        }
    }

    /// Always bounded: the default applies when the request gives none.
    fn timeout(req: &FileImportRequest) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(req.timeout_ms()))
    }

    /// An import that moved to another MID continues after the last page the
    /// instance stored: by byte offset for CSV and JSON lines, else by skipping the
    /// records already stored.
    const RESUMES: bool = true;

    fn resume(req: &mut FileImportRequest, last: &[u8]) -> Result<(), FieldError> {
        let page: FilePage = serde_json::from_slice(last).map_err(|e| {
            field_error(
                "resume",
                format!("the last stored page does not parse: {e}"),
            )
        })?;
        if page.columns.len() != page.types.len() {
            return Err(field_error(
                "resume",
                "the last stored page has as many types as columns",
            ));
        }
        let rows_done = page.first_row.saturating_add(page.rows.len() as u64);
        if rows_done > page.records_done {
            return Err(field_error(
                "resume",
                "the last stored page counts more rows than records",
            ));
        }
        let by_offset = req.format.resumes_by_offset();
        req.resume = Some(FileResume {
            next_page: page.page.saturating_add(1),
            rows_done,
            records_done: page.records_done,
            byte_offset: page.next_offset.filter(|_| by_offset),
            columns: page.columns,
            types: page.types,
            line: page.next_line.filter(|&l| by_offset && l > 0),
        });
        Ok(())
    }
}

/// `POST /api/v1/actions/file_import`: a MID imports a file — one on its own host
/// (`path`), or one behind an HTTP alias (`alias` + `url_path`). Records stream back in
/// pages while it runs (`GET /api/v1/actions/{id}/output`, stream `rows`); the result
/// holds the schema and the counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FileImportAction {
    /// An absolute path on the MID's host (inside its `policy.file.allow_dirs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// An alias of kind `http`, whose base URL (and credential) the file is fetched
    /// from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The path under the alias's base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_path: Option<String>,
    /// Which MIDs read a `path`: `mid.server.NAME`, `mid.cluster.NAME` or `mid.auto`
    /// (with `alias`, the alias's execution settings decide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// How to parse it.
    pub format: FileFormat,
    /// Its text encoding (default `utf-8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Records per page (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_rows: Option<u32>,
    /// Stop after this many rows (the result says `truncated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u64>,
    /// Longest run in milliseconds (default one hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Never run it twice: after a lost MID it ends in `error` instead.
    #[serde(default)]
    pub at_most_once: bool,
    /// Caller's correlator for the output record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlator: Option<String>,
}

#[cfg(test)]
mod tests;
