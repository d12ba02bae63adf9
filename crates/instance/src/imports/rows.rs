//! Reading an import set's rows: by page (`after` a row number), its refused records,
//! and the whole set as CSV or JSON lines, streamed.
//!
//! Rows are found by their page: pages are numbered without gaps (a page's chunk
//! `seq` is its number) and each says where it starts, so the page holding row `n`
//! is found by a binary search over the stored pages — a few reads, however far into
//! a large import set the client is.

use super::Imports;
use super::finish::{corrupt, kind_of};
use super::pages::{self, Kind, Page};
use crate::dispatch::{DispatchError, Dispatcher, invalid};
use crate::ecc::{ImportSetRow, Store};
use bytes::Bytes;
use futures::Stream;
use openmid_proto::command_output::{ChunkContent, DecodedChunk};
use openmid_proto::import::{
    ImportErrorsPage, ImportRow, ImportRowsPage, ImportState, MAX_ROWS_PER_PAGE,
};
use std::sync::Arc;

/// Most bytes of pages read from the store at once.
const READ_BYTES: usize = 8 * 1024 * 1024;
/// Most refused records one errors answer lists.
pub const MAX_ERRORS: usize = 10_000;

/// How a download is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadFormat {
    /// RFC 4180 CSV with a header row (the import set's columns).
    Csv,
    /// One JSON object per row and line.
    Jsonl,
}

/// A download: its content type and body.
pub struct Download {
    /// `text/csv` or `application/x-ndjson`.
    pub content_type: &'static str,
    /// A file name to offer.
    pub file_name: String,
    /// The body, written as it is read.
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>,
}

/// One run's pages, for reading.
struct Pages {
    kind: Kind,
    output_id: String,
    attempt: u32,
    /// SQL pages name their columns on page 0 only.
    sql_columns: Option<Vec<String>>,
}

impl Pages {
    async fn open(store: &dyn Store, set: &ImportSetRow) -> Result<Pages, DispatchError> {
        let kind = kind_of(set)?;
        let output = store.get_record(&set.output_id).await?.ok_or_else(|| {
            DispatchError::NotFound(format!("the rows of import set `{}` are gone", set.id))
        })?;
        let mut pages = Pages {
            kind,
            output_id: output.id,
            attempt: output.attempt,
            sql_columns: None,
        };
        if kind == Kind::Sql
            && let Some(first) = pages.chunk(store, 0).await?
        {
            pages.sql_columns = Some(pages.decode(&first)?.columns);
        }
        Ok(pages)
    }

    async fn chunk(
        &self,
        store: &dyn Store,
        seq: u64,
    ) -> Result<Option<DecodedChunk>, DispatchError> {
        let chunks = store
            .output_chunks(
                &self.output_id,
                self.attempt,
                seq.checked_sub(1),
                1,
                usize::MAX,
            )
            .await?;
        Ok(chunks.into_iter().next().filter(|c| c.seq == seq))
    }

    async fn chunks_after(
        &self,
        store: &dyn Store,
        after: Option<u64>,
    ) -> Result<Vec<DecodedChunk>, DispatchError> {
        Ok(store
            .output_chunks(&self.output_id, self.attempt, after, 256, READ_BYTES)
            .await?)
    }

    fn decode(&self, chunk: &DecodedChunk) -> Result<Page, DispatchError> {
        match &chunk.content {
            ChunkContent::Data(data) => {
                pages::decode(self.kind, chunk.seq, data, self.sql_columns.as_deref())
                    .map_err(|e| corrupt(&self.output_id, e))
            }
            ChunkContent::Truncated(_) => Ok(Page::default()),
        }
    }

    /// The number of the page holding row index `index` (from 0), if any is stored.
    async fn page_of(&self, store: &dyn Store, index: u64) -> Result<Option<u64>, DispatchError> {
        let Some(last) = store
            .last_output_chunk(&self.output_id, self.attempt)
            .await?
        else {
            return Ok(None);
        };
        let (mut lo, mut hi) = (0u64, last.seq);
        // The last page whose first row is at or before `index`.
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            let first = match self.chunk(store, mid).await? {
                Some(DecodedChunk {
                    content: ChunkContent::Data(data),
                    seq,
                    ..
                }) => {
                    pages::span(self.kind, seq, &data)
                        .map_err(|e| corrupt(&self.output_id, e))?
                        .first_row
                }
                _ => u64::MAX,
            };
            if first <= index {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(Some(lo))
    }
}

impl Imports<'_> {
    /// Up to `limit` rows after row number `after` (rows are numbered from 1; 0
    /// starts at the first).
    pub async fn rows(
        &self,
        id: &str,
        after: u64,
        limit: u32,
    ) -> Result<ImportRowsPage, DispatchError> {
        if !(1..=MAX_ROWS_PER_PAGE).contains(&limit) {
            return Err(invalid("limit", format!("must be 1–{MAX_ROWS_PER_PAGE}")));
        }
        let set = self.refresh(self.set_row(id).await?).await?;
        let state = ImportState::parse(&set.state).unwrap_or(ImportState::Error);
        let store = self.dispatcher.store();
        let pages = Pages::open(store, &set).await?;
        let mut rows = Vec::new();
        if let Some(start) = pages.page_of(store, after).await? {
            let mut next = start.checked_sub(1);
            'pages: loop {
                let chunks = pages.chunks_after(store, next).await?;
                let Some(last) = chunks.last() else { break };
                next = Some(last.seq);
                for chunk in &chunks {
                    let page = pages.decode(chunk)?;
                    for (i, values) in page.rows.into_iter().enumerate() {
                        let row = page.first_row + i as u64 + 1;
                        if row <= after {
                            continue;
                        }
                        rows.push(ImportRow { row, values });
                        if rows.len() >= limit as usize {
                            break 'pages;
                        }
                    }
                }
            }
        }
        Ok(ImportRowsPage {
            import_set: set.id,
            state,
            next_after: rows.last().map(|r| r.row),
            rows,
        })
    }

    /// The source records the run refused, in source order (at most
    /// [`MAX_ERRORS`]).
    pub async fn errors(&self, id: &str) -> Result<ImportErrorsPage, DispatchError> {
        let set = self.refresh(self.set_row(id).await?).await?;
        let store = self.dispatcher.store();
        let pages = Pages::open(store, &set).await?;
        let mut errors = Vec::new();
        if set.errors > 0 || set.state == ImportState::Running.as_str() {
            let mut next = None;
            loop {
                let chunks = pages.chunks_after(store, next).await?;
                let Some(last) = chunks.last() else { break };
                next = Some(last.seq);
                for chunk in &chunks {
                    if let ChunkContent::Data(data) = &chunk.content
                        && pages::may_have_errors(pages.kind, data)
                    {
                        errors.extend(pages.decode(chunk)?.errors);
                    }
                }
                if errors.len() >= MAX_ERRORS {
                    errors.truncate(MAX_ERRORS);
                    break;
                }
            }
        }
        Ok(ImportErrorsPage {
            import_set: set.id,
            errors,
        })
    }
}

/// The whole import set `id`, streamed as it is read from the store. CSV needs the
/// columns, so it waits for the run to end; JSON lines can be taken while it runs
/// (the rows stored so far).
pub async fn download(
    dispatcher: Arc<Dispatcher>,
    id: &str,
    format: DownloadFormat,
) -> Result<Download, DispatchError> {
    let imports = dispatcher.imports();
    let row = imports.refresh(imports.set_row(id).await?).await?;
    let set = super::show(row.clone())?;
    if format == DownloadFormat::Csv && set.state == ImportState::Running {
        return Err(DispatchError::Conflict(format!(
            "import set `{id}` is still running: its CSV header needs every column; download it when it ends, or take JSON lines (?format=jsonl) now"
        )));
    }
    let pages = Pages::open(dispatcher.store(), &row).await?;
    let columns: Vec<String> = set.columns.iter().map(|c| c.name.clone()).collect();
    let (content_type, ext) = match format {
        DownloadFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        DownloadFormat::Jsonl => ("application/x-ndjson", "jsonl"),
    };
    let header = match format {
        DownloadFormat::Csv => {
            let mut writer = csv_writer(Vec::new());
            let _ = writer.write_record(&columns);
            Some(writer.into_inner().unwrap_or_default())
        }
        DownloadFormat::Jsonl => None,
    };
    struct Walk {
        dispatcher: Arc<Dispatcher>,
        pages: Pages,
        columns: Vec<String>,
        format: DownloadFormat,
        next: Option<u64>,
        header: Option<Vec<u8>>,
        done: bool,
    }
    let walk = Walk {
        dispatcher: dispatcher.clone(),
        pages,
        columns,
        format,
        next: None,
        header,
        done: false,
    };
    let body = futures::stream::unfold(walk, |mut walk| async move {
        if walk.done {
            return None;
        }
        let mut out = walk.header.take().unwrap_or_default();
        // `out` moves into the CSV writer for this batch and back out of it.
        let chunks = match walk
            .pages
            .chunks_after(walk.dispatcher.store(), walk.next)
            .await
        {
            Ok(chunks) => chunks,
            Err(e) => {
                walk.done = true;
                return Some((Err(std::io::Error::other(e.to_string())), walk));
            }
        };
        match chunks.last() {
            Some(last) => walk.next = Some(last.seq),
            None => walk.done = true,
        }
        let mut csv =
            (walk.format == DownloadFormat::Csv).then(|| csv_writer(std::mem::take(&mut out)));
        for chunk in &chunks {
            let page = match walk.pages.decode(chunk) {
                Ok(page) => page,
                Err(e) => {
                    walk.done = true;
                    return Some((Err(std::io::Error::other(e.to_string())), walk));
                }
            };
            for row in page.rows {
                match &mut csv {
                    None => {
                        if serde_json::to_writer(&mut out, &row).is_ok() {
                            out.push(b'\n');
                        }
                    }
                    Some(writer) => {
                        let cells = walk.columns.iter().map(|c| csv_cell(row.get(c)));
                        let _ = writer.write_record(cells);
                    }
                }
            }
        }
        if let Some(writer) = csv {
            out = writer.into_inner().unwrap_or_default();
        }
        if out.is_empty() && walk.done {
            return None;
        }
        Some((Ok(Bytes::from(out)), walk))
    });
    Ok(Download {
        content_type,
        file_name: format!("{}-{}.{ext}", set.source, set.id),
        body: Box::pin(body),
    })
}

/// A cell's text: strings as they are, null as nothing, anything else as JSON.
fn csv_cell(value: Option<&serde_json::Value>) -> Vec<u8> {
    match value {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) => s.as_bytes().to_vec(),
        Some(other) => other.to_string().into_bytes(),
    }
}

/// A CSV writer appending to `out`: RFC 4180 quoting, records ended by `\n`.
fn csv_writer(out: Vec<u8>) -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(out)
}
