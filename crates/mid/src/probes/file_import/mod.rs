//! `FileImport`: a file — on the MID's host or behind an internal URL — parsed as
//! CSV, Excel, XML, JSON or JSON lines, its records streamed to the instance in pages.
//!
//! In order:
//! 1. the source is opened ([`source`]): a path only inside `policy.file.allow_dirs`
//!    (resolved, links followed), a URL under `policy.http` as REST calls are; a
//!    re-run of a CSV or JSON lines import starts at the stored byte offset;
//! 2. the format's parser ([`csv`], [`excel`], [`xml`], [`json`], [`jsonl`]) runs on
//!    a blocking thread and hands each item to the [pager](pages), which infers the
//!    [schema] and writes pages;
//! 3. each page crosses a one-slot channel to this task, which sends it through the
//!    [`PageSink`]: when the instance is slow the sink waits, the channel fills, the
//!    parser blocks, and reading stops — memory holds about a page and a read buffer,
//!    whatever the file's size;
//! 4. on cancellation or at the deadline the parser is told to stop and the job ends.

mod csv;
mod excel;
mod json;
mod jsonl;
mod object;
mod pages;
mod record;
mod schema;
mod source;
mod text;
mod xml;

use super::ProbeError;
use super::output_stream::PageSink;
use super::registry::{Call, Probe, Ran};
use openmid_proto::file_import::{FileFormat, FileImportRequest, FileImportResponse, SchemaColumn};
use pages::{Finished, Pager, PagerSettings, PushError};
use record::Parser;
use std::io::{BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use text::TextEncoding;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Read buffer of the parsers.
const READ_BUFFER: usize = 64 * 1024;

/// The `FileImport` entry of the [registry](super::registry). It watches the job's
/// cancellation and deadline itself: its parser runs on a thread that must be told.
pub struct FileImportProbe;

impl Probe for FileImportProbe {
    type Contract = openmid_proto::file_import::FileImport;
    const PROTOCOL: Option<crate::policy::Protocol> = Some(crate::policy::Protocol::Http);
    const WATCHES_CANCEL: bool = true;

    fn run<'a>(
        &'a self,
        req: FileImportRequest,
        call: Call<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Ran<FileImportResponse>, ProbeError>> {
        Box::pin(async move { Ok(Ran::response(run(req, call).await?)) })
    }
}

/// Runs one import.
pub async fn run(req: FileImportRequest, call: Call<'_>) -> Result<FileImportResponse, ProbeError> {
    let started_ms = openmid_proto::time::now_ms();
    let started = Instant::now();
    req.validate()
        .map_err(|e| ProbeError::InvalidInput(e.to_string()))?;
    let timeout_ms = req.timeout_ms();
    let deadline = call
        .deadline
        .unwrap_or_else(|| Instant::now() + Duration::from_millis(timeout_ms));
    let job = &call.job.cancel;
    let stop = job.child_token();
    let stopped = |job: &CancellationToken| {
        if job.is_cancelled() {
            ProbeError::Cancelled
        } else {
            ProbeError::Timeout(timeout_ms)
        }
    };
    let offset = req
        .resume
        .as_ref()
        .and_then(|r| r.byte_offset)
        .filter(|_| req.format.resumes_by_offset())
        .unwrap_or(0);
    let read = Arc::new(AtomicU64::new(0));
    let opening = source::open(&req.source, call.ctx, call.credential, offset, read.clone());
    let source = tokio::select! {
        s = opening => s?,
        () = job.cancelled() => return Err(ProbeError::Cancelled),
        () = tokio::time::sleep_until(deadline) => return Err(ProbeError::Timeout(timeout_ms)),
    };
    let next_page = req.resume.as_ref().map_or(0, |r| r.next_page);
    let mut sink =
        PageSink::new(call.ctx.instance.clone(), &call.job.id, &stop).starting_at(next_page);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1);
    let worker_stop = stop.clone();
    let worker = tokio::task::spawn_blocking(move || parse(req, source, offset, tx, &worker_stop));
    let forward = async {
        while let Some(line) = rx.recv().await {
            sink.page(&line).await;
        }
    };
    tokio::select! {
        () = forward => {}
        () = job.cancelled() => {
            stop.cancel();
            return Err(ProbeError::Cancelled);
        }
        () = tokio::time::sleep_until(deadline) => {
            stop.cancel();
            return Err(ProbeError::Timeout(timeout_ms));
        }
    }
    let finished = worker
        .await
        .map_err(|e| ProbeError::Target(format!("the import's parser failed: {e}")));
    let delivered = sink.finish().await;
    if !delivered {
        tracing::warn!("the last pages of a file import did not reach the instance in time");
    }
    let done = match finished? {
        Ok(done) => done,
        Err(_) if stop.is_cancelled() => return Err(stopped(job)),
        Err(e) => return Err(e),
    };
    let schema = done.schema;
    Ok(FileImportResponse {
        rows: done.rows,
        errors: done.errors,
        pages: done.pages,
        columns: schema
            .columns
            .into_iter()
            .zip(schema.types)
            .map(|(name, column_type)| SchemaColumn { name, column_type })
            .collect(),
        bytes_read: read.load(Ordering::Relaxed),
        first_errors: done.first_errors,
        truncated: done.truncated,
        started_at: openmid_proto::time::rfc3339(started_ms),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The parsing thread: source → parser → pager → `tx`.
fn parse(
    req: FileImportRequest,
    source: source::Source,
    offset: u64,
    tx: mpsc::Sender<Vec<u8>>,
    stop: &CancellationToken,
) -> Result<Finished, ProbeError> {
    let resume = req.resume.clone();
    let by_offset = offset > 0;
    let source::Source {
        reader,
        discard,
        pump: _pump,
    } = source;
    let mut raw = BufReader::with_capacity(READ_BUFFER, reader);
    if discard > 0 {
        let dropped = std::io::copy(&mut (&mut raw).take(discard), &mut std::io::sink())
            .map_err(|e| record::unreadable(format!("skipping to byte {discard}: {e}")))?;
        if dropped < discard {
            return Err(ProbeError::Target(format!(
                "the file is shorter ({dropped} bytes) than the stored pages' offset ({discard}): it changed since"
            )));
        }
    }
    let encoding = TextEncoding::of_label(req.encoding.as_deref());
    // Whole-document formats read UTF-8: another encoding is transcoded on the way.
    let document = |raw: BufReader<Box<dyn Read + Send>>| -> Box<dyn std::io::BufRead + Send> {
        match encoding {
            TextEncoding::Utf8 => Box::new(raw),
            TextEncoding::Windows1252 => Box::new(BufReader::with_capacity(
                READ_BUFFER,
                text::Utf8Reader::windows_1252(raw),
            )),
        }
    };
    let line = resume
        .as_ref()
        .and_then(|r| r.line)
        .filter(|_| by_offset)
        .unwrap_or(1);
    let (mut parser, untyped): (Box<dyn Parser>, bool) = match &req.format {
        FileFormat::Csv {
            delimiter,
            quote,
            header,
            skip_lines,
        } => {
            let settings = csv::CsvSettings {
                delimiter: *delimiter as u8,
                quote: *quote as u8,
                header: *header,
                skip_lines: *skip_lines,
                encoding,
            };
            let start = csv::CsvStart {
                offset,
                line,
                width: resume
                    .as_ref()
                    .filter(|_| by_offset)
                    .map(|r| r.columns.len()),
            };
            (Box::new(csv::CsvParser::new(raw, settings, start)?), true)
        }
        FileFormat::Jsonl => (
            Box::new(jsonl::JsonlParser::new(raw, encoding, offset, line)),
            false,
        ),
        FileFormat::Json { record_path } => (
            Box::new(json::JsonParser::new(
                document(raw),
                record_path.as_deref().unwrap_or(""),
            )),
            false,
        ),
        FileFormat::Xml { record_path } => (
            Box::new(xml::XmlParser::new(document(raw), record_path)),
            true,
        ),
        FileFormat::Excel { sheet, header } => (
            Box::new(excel::ExcelParser::load(
                &mut raw,
                sheet.as_deref(),
                *header,
            )?),
            false,
        ),
    };
    let settings = PagerSettings {
        page_rows: req.page_rows() as usize,
        max_rows: req.max_rows,
        untyped,
        skip_stored: !by_offset,
    };
    let emit = |line: Vec<u8>| {
        if stop.is_cancelled() {
            return Err(pages::Stopped);
        }
        tx.blocking_send(line).map_err(|_| pages::Stopped)
    };
    let mut pager = Pager::new(settings, resume.as_ref(), emit);
    let fail = |e: PushError| match e {
        PushError::Stopped => ProbeError::Cancelled,
        PushError::Fatal(e) => e,
    };
    while let Some(item) = parser.next_item()? {
        if stop.is_cancelled() {
            return Err(ProbeError::Cancelled);
        }
        if !pager.push(item).map_err(fail)? {
            break;
        }
    }
    pager.finish().map_err(fail)
}
