//! The file import probe, driven as the executor drives it: files written by each
//! test into its own temporary directory (and a workbook by a real xlsx writer), a
//! loopback HTTP server for the URL source (with and without range support), a
//! stand-in for the instance's output endpoint that records the pages the MID posts,
//! and one 1 GB CSV imported with the process's peak memory measured.

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use openmid_mid::config::{LocalSecretPolicy, MidConfig};
use openmid_mid::policy::{Denial, EgressPolicy, FileRefusal, PolicyConfig};
use openmid_mid::probes::{JobContext, ProbeContext, ProbeError};
use openmid_mid::session::client::InstanceClient;
use openmid_proto::command_output::{ChunkContent, OutputAck, OutputPost};
use openmid_proto::ecc::Topic;
use openmid_proto::file_import::{
    ColumnType, FileImport, FileImportRequest, FileImportResponse, FilePage,
};
use openmid_proto::mid::JobRef;
use openmid_proto::probe::Contract;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A policy reading files under `dir` and reaching loopback over HTTP.
fn policy(dir: &Path) -> EgressPolicy {
    let text = format!(
        "[http]\nallow_cidrs = [\"127.0.0.0/8\"]\n[file]\nallow_dirs = [{:?}]\n",
        dir.display().to_string()
    );
    let config: PolicyConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    EgressPolicy::new(config).unwrap_or_else(|e| panic!("{e}"))
}

fn context(policy: EgressPolicy, instance: Option<&FakeInstance>) -> ProbeContext {
    let ctx = ProbeContext::new(1 << 20, LocalSecretPolicy::default(), Arc::new(policy))
        .unwrap_or_else(|e| panic!("{e}"));
    match instance {
        Some(i) => ctx.with_instance(Arc::new(i.client())),
        None => ctx,
    }
}

fn job(name: &str) -> JobContext {
    JobContext::new(JobRef {
        output_id: name.to_string(),
        attempt: 1,
    })
}

async fn run(
    ctx: &ProbeContext,
    name: &str,
    payload: Value,
) -> Result<FileImportResponse, ProbeError> {
    let value = openmid_mid::probes::run(Topic::FileImport, payload.into(), None, &job(name), ctx)
        .await?
        .to_value();
    Ok(serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}")))
}

fn ok(r: Result<FileImportResponse, ProbeError>) -> FileImportResponse {
    r.unwrap_or_else(|e| panic!("the import failed: {e}"))
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn at(path: &Path, format: Value) -> Value {
    json!({"source": {"path": path.display().to_string()}, "format": format})
}

fn with(mut payload: Value, extra: Value) -> Value {
    if let (Some(map), Some(more)) = (payload.as_object_mut(), extra.as_object()) {
        map.extend(more.clone());
    }
    payload
}

/// All rows of `pages`, each padded to the final column count.
fn rows(pages: &[FilePage]) -> Vec<Vec<Value>> {
    let width = pages.last().map_or(0, |p| p.columns.len());
    pages
        .iter()
        .flat_map(|p| p.rows.iter().cloned())
        .map(|mut r| {
            r.resize(width, Value::Null);
            r
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_with_header_quotes_and_a_bad_row() {
    let dir = scratch();
    let data = "id,name,note\n007,\"Smith, J\",\"two\nlines\"\n2,short\n3,Ann,\"say \"\"hi\"\"\"\n";
    let path = write(dir.path(), "people.csv", data.as_bytes());
    let instance = FakeInstance::start().await;
    let ctx = context(policy(dir.path()), Some(&instance));
    let r = ok(run(&ctx, "csv", at(&path, json!({"type": "csv"}))).await);
    assert_eq!((r.rows, r.errors, r.pages, r.truncated), (2, 1, 1, false));
    assert_eq!(r.bytes_read, data.len() as u64);
    let bad = &r.first_errors[0];
    assert_eq!((bad.record, bad.line), (2, Some(4)), "{bad:?}");
    assert!(bad.reason.contains("2 fields"), "{}", bad.reason);
    let pages = instance.pages();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].columns_added, ["id", "name", "note"]);
    assert_eq!(
        pages[0].rows,
        vec![
            vec![json!("007"), json!("Smith, J"), json!("two\nlines")],
            vec![json!("3"), json!("Ann"), json!("say \"hi\"")],
        ]
    );
    assert_eq!(pages[0].errors, r.first_errors);
    assert_eq!(
        (pages[0].records_done, pages[0].next_offset),
        (3, Some(data.len() as u64))
    );
    // `007` and `3`: text, since a leading zero would be lost as a number.
    assert_eq!(pages[0].types[0], ColumnType::String);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_is_inferred_per_column() {
    let dir = scratch();
    let data = "i;f;b;d;t;s;e\n1;1.5;true;2024-01-02;2024-01-02T03:04:05Z;x;\n-2;3;FALSE;2024-02-29;2024-01-02;7;\n";
    let path = write(dir.path(), "types.csv", data.as_bytes());
    let ctx = context(policy(dir.path()), None);
    let r = ok(run(
        &ctx,
        "schema",
        at(&path, json!({"type": "csv", "delimiter": ";"})),
    )
    .await);
    let types: Vec<(&str, ColumnType)> = r
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.column_type))
        .collect();
    use ColumnType::*;
    let want = [
        ("i", Integer),
        ("f", Number),
        ("b", Boolean),
        ("d", Date),
        ("t", Timestamp),
        ("s", String),
        ("e", Null),
    ];
    assert_eq!(types, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_without_header_latin1_and_skipped_lines() {
    let dir = scratch();
    let mut data = b"exported by tool\n\n".to_vec();
    data.extend(b"Jos\xe9,1\nM\xfcller,2,extra\n");
    let path = write(dir.path(), "l1.csv", &data);
    let instance = FakeInstance::start().await;
    let ctx = context(policy(dir.path()), Some(&instance));
    let payload = with(
        at(
            &path,
            json!({"type": "csv", "header": false, "skip_lines": 2}),
        ),
        json!({"encoding": "latin1"}),
    );
    let r = ok(run(&ctx, "latin1", payload).await);
    assert_eq!((r.rows, r.errors), (2, 0));
    let pages = instance.pages();
    assert_eq!(pages[0].columns, ["c1", "c2", "c3"]);
    assert_eq!(rows(&pages)[0], [json!("José"), json!("1"), Value::Null]);
    assert_eq!(
        rows(&pages)[1],
        [json!("Müller"), json!("2"), json!("extra")]
    );
    // As UTF-8 the same bytes are row errors, and the import goes on.
    let r = ok(run(
        &ctx,
        "utf8",
        at(
            &path,
            json!({"type": "csv", "header": false, "skip_lines": 2}),
        ),
    )
    .await);
    assert_eq!((r.rows, r.errors), (0, 2));
    assert!(
        r.first_errors[0].reason.contains("UTF-8"),
        "{:?}",
        r.first_errors
    );
    assert_eq!(r.first_errors[0].line, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xlsx_cells_keep_their_types() {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let dir = scratch();
    let path = dir.path().join("book.xlsx");
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("Data").unwrap_or_else(|e| panic!("{e}"));
    let date = Format::new().set_num_format("yyyy-mm-dd");
    let stamp = Format::new().set_num_format("yyyy-mm-dd hh:mm:ss");
    for (c, h) in ["name", "qty", "price", "ok", "day", "at"]
        .iter()
        .enumerate()
    {
        sheet
            .write_string(0, c as u16, *h)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let day = ExcelDateTime::from_ymd(2024, 3, 15).unwrap_or_else(|e| panic!("{e}"));
    let moment =
        ExcelDateTime::parse_from_str("2024-03-15 13:45:30").unwrap_or_else(|e| panic!("{e}"));
    let step = |r: Result<&mut rust_xlsxwriter::Worksheet, rust_xlsxwriter::XlsxError>| {
        r.map(|_| ()).unwrap_or_else(|e| panic!("{e}"))
    };
    step(sheet.write_string(1, 0, "bolt"));
    step(sheet.write_number(1, 1, 12));
    step(sheet.write_number(1, 2, 0.25));
    step(sheet.write_boolean(1, 3, true));
    step(sheet.write_datetime_with_format(1, 4, &day, &date));
    step(sheet.write_datetime_with_format(1, 5, &moment, &stamp));
    step(sheet.write_string(2, 0, "nut"));
    step(sheet.write_number(2, 1, 3));
    book.save(&path).unwrap_or_else(|e| panic!("{e}"));

    let instance = FakeInstance::start().await;
    let ctx = context(policy(dir.path()), Some(&instance));
    let r = ok(run(
        &ctx,
        "xlsx",
        at(&path, json!({"type": "excel", "sheet": "Data"})),
    )
    .await);
    assert_eq!((r.rows, r.errors), (2, 0));
    let pages = instance.pages();
    assert_eq!(
        pages[0].columns_added,
        ["name", "qty", "price", "ok", "day", "at"]
    );
    assert_eq!(
        pages[0].rows[0],
        [
            json!("bolt"),
            json!(12),
            json!(0.25),
            json!(true),
            json!("2024-03-15"),
            json!("2024-03-15T13:45:30")
        ]
    );
    assert_eq!(pages[0].rows[1], [json!("nut"), json!(3)]);
    use ColumnType::*;
    let types: Vec<ColumnType> = r.columns.iter().map(|c| c.column_type).collect();
    assert_eq!(types, [String, Integer, Number, Boolean, Date, Timestamp]);
    let missing = run(
        &ctx,
        "sheet",
        at(&path, json!({"type": "excel", "sheet": "Nope"})),
    )
    .await;
    assert!(
        matches!(&missing, Err(e) if e.to_string().contains("no sheet `Nope`")),
        "{missing:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_records_at_a_path() {
    let dir = scratch();
    let doc = r#"<?xml version="1.0"?>
<catalog>
  <book id="1"><title>A &amp; B</title><tag>x</tag><tag>y</tag><pub><year>2020</year></pub></book>
  <book id="2"><title>C</title><price>9.5</price></book>
</catalog>"#;
    let path = write(dir.path(), "c.xml", doc.as_bytes());
    let instance = FakeInstance::start().await;
    let ctx = context(policy(dir.path()), Some(&instance));
    let r = ok(run(
        &ctx,
        "xml",
        at(
            &path,
            json!({"type": "xml", "record_path": "/catalog/book"}),
        ),
    )
    .await);
    assert_eq!(r.rows, 2);
    let pages = instance.pages();
    assert_eq!(
        pages[0].columns,
        ["@id", "title", "tag", "pub/year", "price"]
    );
    assert_eq!(
        rows(&pages)[0],
        [
            json!("1"),
            json!("A & B"),
            json!(["x", "y"]),
            json!("2020"),
            Value::Null
        ]
    );
    assert_eq!(
        rows(&pages)[1],
        [
            json!("2"),
            json!("C"),
            Value::Null,
            Value::Null,
            json!("9.5")
        ]
    );
    let broken = write(
        dir.path(),
        "bad.xml",
        b"<catalog><book id=\"1\"><title>A</book></catalog>",
    );
    let e = run(
        &ctx,
        "badxml",
        at(
            &broken,
            json!({"type": "xml", "record_path": "/catalog/book"}),
        ),
    )
    .await;
    assert!(
        matches!(&e, Err(ProbeError::Target(m)) if m.contains("at byte")),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_array_at_a_path() {
    let dir = scratch();
    let doc = r#"{"meta": {"n": 3, "items": "not these"}, "data": {"items": [
        {"id": 1, "name": "a", "tags": ["x"]},
        {"id": 2.5, "extra": {"deep": true}},
        "not an object",
        {"id": 3, "name": null}
    ]}}"#;
    let path = write(dir.path(), "d.json", doc.as_bytes());
    let instance = FakeInstance::start().await;
    let ctx = context(policy(dir.path()), Some(&instance));
    let r = ok(run(
        &ctx,
        "json",
        at(&path, json!({"type": "json", "record_path": "/data/items"})),
    )
    .await);
    assert_eq!((r.rows, r.errors), (3, 1));
    assert_eq!(r.first_errors[0].record, 3);
    let pages = instance.pages();
    assert_eq!(pages[0].columns, ["id", "name", "tags", "extra"]);
    assert_eq!(
        rows(&pages)[1],
        [json!(2.5), Value::Null, Value::Null, json!({"deep": true})]
    );
    assert_eq!(r.columns[0].column_type, ColumnType::Number);
    let cut = write(dir.path(), "cut.json", &doc.as_bytes()[..doc.len() / 2]);
    let e = run(
        &ctx,
        "cut",
        at(&cut, json!({"type": "json", "record_path": "/data/items"})),
    )
    .await;
    assert!(
        matches!(&e, Err(ProbeError::Target(m)) if m.contains("byte")),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_with_a_bad_line() {
    let dir = scratch();
    let data = "{\"a\": 1, \"b\": \"x\"}\n{\"a\": 2\n\n[1, 2]\n{\"c\": \"2024-05-06\", \"a\": 3}\n";
    let path = write(dir.path(), "e.jsonl", data.as_bytes());
    let instance = FakeInstance::start().await;
    let ctx = context(policy(dir.path()), Some(&instance));
    let r = ok(run(&ctx, "jsonl", at(&path, json!({"type": "jsonl"}))).await);
    assert_eq!((r.rows, r.errors), (2, 2));
    let lines: Vec<Option<u64>> = r.first_errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(2), Some(4)]);
    assert_eq!(
        rows(&instance.pages())[1],
        [json!(3), Value::Null, json!("2024-05-06")]
    );
    let types: Vec<ColumnType> = r.columns.iter().map(|c| c.column_type).collect();
    assert_eq!(
        types,
        [ColumnType::Integer, ColumnType::String, ColumnType::Date]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_outside_allow_dirs_are_refused() {
    let root = scratch();
    let allowed = root.path().join("imports");
    std::fs::create_dir(&allowed).unwrap_or_else(|e| panic!("{e}"));
    let secret = write(root.path(), "secret.csv", b"k\nv\n");
    let link = allowed.join("innocent.csv");
    std::os::unix::fs::symlink(&secret, &link).unwrap_or_else(|e| panic!("{e}"));
    let ctx = context(policy(&allowed), None);
    for (name, path) in [("outside", &secret), ("link", &link)] {
        let before = ctx.policy.denials().file;
        let r = run(&ctx, name, at(path, json!({"type": "csv"}))).await;
        let Err(ProbeError::Policy(Denial::File { reason, .. })) = &r else {
            panic!("{name}: {r:?}");
        };
        assert!(matches!(reason, FileRefusal::Outside(_)), "{reason:?}");
        let text = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("policy.file.allow_dirs"), "{text}");
        assert_eq!(ctx.policy.denials().file, before + 1);
    }
    // The default policy reads no file at all.
    let ctx = context(EgressPolicy::default(), None);
    let r = run(&ctx, "default", at(&secret, json!({"type": "csv"}))).await;
    assert!(
        matches!(
            &r,
            Err(ProbeError::Policy(Denial::File {
                reason: FileRefusal::NoneAllowed,
                ..
            }))
        ),
        "{r:?}"
    );
}

fn numbered_csv(rows: usize) -> String {
    let mut data = String::from("n,word\n");
    for i in 0..rows {
        data.push_str(&format!("{i},\"w{i}\nx\"\n"));
    }
    data
}

/// The stored pages up to `k`, and the request the instance would hand the next
/// attempt (its resume filled from page `k`, as the instance does).
fn resumed(payload: &Value, pages: &[FilePage], k: usize) -> Value {
    let mut req: FileImportRequest =
        serde_json::from_value(payload.clone()).unwrap_or_else(|e| panic!("{e}"));
    let line = serde_json::to_vec(&pages[k]).unwrap_or_else(|e| panic!("{e}"));
    FileImport::resume(&mut req, &line).unwrap_or_else(|e| panic!("{e}"));
    serde_json::to_value(&req).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_by_byte_offset_gives_exactly_the_remaining_rows() {
    let dir = scratch();
    let data = numbered_csv(95);
    let path = write(dir.path(), "n.csv", data.as_bytes());
    let first = FakeInstance::start().await;
    let ctx = context(policy(dir.path()), Some(&first));
    let payload = with(at(&path, json!({"type": "csv"})), json!({"page_rows": 10}));
    let r = ok(run(&ctx, "whole", payload.clone()).await);
    assert_eq!((r.rows, r.pages), (95, 10));
    let all = first.pages();
    let next = resumed(&payload, &all, 3);
    assert_eq!(next["resume"]["byte_offset"], json!(all[3].next_offset));

    let second = FakeInstance::start().await;
    let ctx = context(policy(dir.path()), Some(&second));
    let r = ok(run(&ctx, "resumed", next).await);
    let later = second.pages();
    assert_eq!(
        (r.rows, r.pages, later[0].page, later[0].first_row),
        (95, 10, 4, 40)
    );
    assert_eq!(rows(&later), rows(&all[4..]));
    // Only the rest of the file was read.
    assert_eq!(
        r.bytes_read,
        data.len() as u64 - all[3].next_offset.unwrap_or(0)
    );
    assert!(later[0].columns_added.is_empty());
    assert_eq!(later[0].columns, ["n", "word"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_resumes_by_skipping_stored_records() {
    let dir = scratch();
    let mut doc = String::from("<r>");
    for i in 0..25 {
        doc.push_str(&format!("<i n=\"{i}\"/>"));
    }
    doc.push_str("</r>");
    let path = write(dir.path(), "r.xml", doc.as_bytes());
    let first = FakeInstance::start().await;
    let ctx = context(policy(dir.path()), Some(&first));
    let payload = with(
        at(&path, json!({"type": "xml", "record_path": "/r/i"})),
        json!({"page_rows": 10}),
    );
    ok(run(&ctx, "xml1", payload.clone()).await);
    let all = first.pages();
    let second = FakeInstance::start().await;
    let ctx = context(policy(dir.path()), Some(&second));
    let r = ok(run(&ctx, "xml2", resumed(&payload, &all, 0)).await);
    assert_eq!(r.rows, 25);
    assert_eq!(rows(&second.pages()), rows(&all[1..]));
}

/// A loopback file server: `/f` serves the bytes, honouring `Range: bytes=N-` only
/// when `ranges`; it notes each request's range.
struct FileServer {
    url: String,
    ranges_seen: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Served {
    data: Arc<Vec<u8>>,
    ranges: bool,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl FileServer {
    async fn start(data: Vec<u8>, ranges: bool) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Served {
            data: Arc::new(data),
            ranges,
            seen: seen.clone(),
        };
        let app = axum::Router::new()
            .route("/f", get(serve))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/f"),
            ranges_seen: seen,
            task,
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(State(s): State<Served>, headers: HeaderMap) -> impl IntoResponse {
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    s.seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(range.clone());
    let len = s.data.len();
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    match start {
        Some(n) if s.ranges && n < len => (
            StatusCode::PARTIAL_CONTENT,
            [("content-range", format!("bytes {n}-{}/{len}", len - 1))],
            s.data[n..].to_vec(),
        ),
        _ => (
            StatusCode::OK,
            [("x-full", "1".to_string())],
            s.data.to_vec(),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_source_resumes_by_range_or_by_skipping() {
    let data = numbered_csv(42);
    for ranges in [true, false] {
        let server = FileServer::start(data.clone().into_bytes(), ranges).await;
        let dir = scratch();
        let first = FakeInstance::start().await;
        let ctx = context(policy(dir.path()), Some(&first));
        let payload = json!({"source": {"url": server.url, "headers": {"X-Test": "1"}},
            "format": {"type": "csv"}, "page_rows": 8});
        let r = ok(run(&ctx, "url", payload.clone()).await);
        assert_eq!((r.rows, r.bytes_read), (42, data.len() as u64));
        let all = first.pages();
        let next = resumed(&payload, &all, 2);
        let offset = all[2].next_offset.unwrap_or(0);
        let second = FakeInstance::start().await;
        let ctx = context(policy(dir.path()), Some(&second));
        let r = ok(run(&ctx, "url2", next).await);
        assert_eq!(r.rows, 42, "ranges: {ranges}");
        assert_eq!(rows(&second.pages()), rows(&all[3..]), "ranges: {ranges}");
        let seen = server
            .ranges_seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        assert_eq!(seen, [None, Some(format!("bytes={offset}-"))]);
        // With ranges only the rest crossed the wire; without, the whole file did.
        let expected = if ranges {
            data.len() as u64 - offset
        } else {
            data.len() as u64
        };
        assert_eq!(r.bytes_read, expected, "ranges: {ranges}");
    }
    // Loopback is refused unless the policy allows it, as for REST.
    let server = FileServer::start(b"a\n1\n".to_vec(), true).await;
    let ctx = context(EgressPolicy::default(), None);
    let r = run(
        &ctx,
        "refused",
        json!({"source": {"url": server.url}, "format": {"type": "csv"}}),
    )
    .await;
    assert!(matches!(&r, Err(ProbeError::Policy(_))), "{r:?}");
}

/// A server that sends the start of a CSV and then nothing more.
async fn stalling_server() -> (String, tokio::task::JoinHandle<()>) {
    async fn stall() -> axum::body::Body {
        let start = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(
            b"a,b\n1,2\n",
        ))]);
        axum::body::Body::from_stream(futures::StreamExt::chain(start, futures::stream::pending()))
    }
    let app = axum::Router::new().route("/f", get(stall));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/f"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_import_stops_on_cancel_and_at_its_deadline() {
    let (url, server) = stalling_server().await;
    let dir = scratch();
    let ctx = context(policy(dir.path()), None);
    let payload = json!({"source": {"url": url}, "format": {"type": "csv"}});
    let job = job("cancel");
    let cancel = job.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let r =
        openmid_mid::probes::run(Topic::FileImport, payload.clone().into(), None, &job, &ctx).await;
    assert!(matches!(r, Err(ProbeError::Cancelled)), "{r:?}");
    assert!(started.elapsed().as_secs() < 5);
    let started = Instant::now();
    let r = run(&ctx, "deadline", with(payload, json!({"timeout_ms": 400}))).await;
    assert!(matches!(r, Err(ProbeError::Timeout(400))), "{r:?}");
    assert!(started.elapsed().as_secs() < 5);
    server.abort();
}

/// This process's peak resident memory (kB), from `/proc/self/status`.
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gigabyte_csv_streams_in_bounded_memory() {
    // The stand-in instance runs in this process too: its memory counts in the peak.
    const TARGET: u64 = 1 << 30;
    let dir = scratch();
    let path = dir.path().join("big.csv");
    let started = Instant::now();
    let mut rows = 0u64;
    {
        let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let filler = "x".repeat(1000);
        out.write_all(b"id,name,payload\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut written = 16u64;
        while written < TARGET {
            let line = format!("{rows},\"row {rows}\",{filler}\n");
            out.write_all(line.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
            written += line.len() as u64;
            rows += 1;
        }
        out.flush().unwrap_or_else(|e| panic!("{e}"));
    }
    let written_in = started.elapsed();
    // Reset the peak to the current resident size (Linux `clear_refs` value 5), so
    // the peak measured next is the import's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = peak_rss_kb();
    let instance = FakeInstance::started(false).await;
    let ctx = context(policy(dir.path()), Some(&instance));
    let started = Instant::now();
    let r = ok(run(&ctx, "big", at(&path, json!({"type": "csv"}))).await);
    let took = started.elapsed();
    let growth_kb = peak_rss_kb().saturating_sub(before);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&path);
    eprintln!(
        "1 GiB CSV: {rows} rows written in {:.1} s, imported in {:.1} s ({:.0} MB/s), {} pages, peak RSS growth {} kB",
        written_in.as_secs_f64(),
        took.as_secs_f64(),
        TARGET as f64 / 1e6 / took.as_secs_f64(),
        r.pages,
        growth_kb
    );
    assert_eq!((r.rows, r.errors), (rows, 0));
    assert_eq!(r.bytes_read, size);
    // Every page reached the instance (the probe waits for its sink to deliver).
    assert_eq!(instance.counts(), (r.pages, rows));
    assert!(growth_kb < 64 * 1024, "peak RSS grew by {growth_kb} kB");
}

/// What the stand-in instance saw.
#[derive(Default)]
struct Seen {
    /// The pages, when kept.
    pages: Vec<FilePage>,
    /// Pages and rows received.
    count: u64,
    rows: u64,
}

/// The instance's `POST /mid/v1/results/{output}/{attempt}/output`: checks every page
/// and keeps it, or only counts (for the large import).
struct FakeInstance {
    url: String,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct FakeState {
    seen: Arc<Mutex<Seen>>,
    keep: bool,
}

impl FakeInstance {
    async fn start() -> Self {
        Self::started(true).await
    }

    async fn started(keep: bool) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = FakeState {
            seen: seen.clone(),
            keep,
        };
        let app = axum::Router::new()
            .route("/mid/v1/results/{output}/{attempt}/output", post(receive))
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            seen,
            task,
        }
    }

    fn client(&self) -> InstanceClient {
        let text = format!(
            "name = \"file-test\"\ninstance_url = \"{}\"\nstate_dir = \"/tmp/openmid-file-test\"\n",
            self.url
        );
        let config: MidConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        InstanceClient::new(&config).unwrap_or_else(|e| panic!("{e}"))
    }

    fn pages(&self) -> Vec<FilePage> {
        self.seen
            .lock()
            .map(|s| s.pages.clone())
            .unwrap_or_default()
    }

    fn counts(&self) -> (u64, u64) {
        self.seen
            .lock()
            .map(|s| (s.count, s.rows))
            .unwrap_or_default()
    }
}

impl Drop for FakeInstance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<FakeState>,
    UrlPath((_output, _attempt)): UrlPath<(String, u32)>,
    axum::Json(post): axum::Json<OutputPost>,
) -> axum::Json<OutputAck> {
    let chunks = post.decode().unwrap_or_else(|e| panic!("{e}"));
    let mut seen = state.seen.lock().unwrap_or_else(|e| e.into_inner());
    for chunk in &chunks {
        let ChunkContent::Data(data) = &chunk.content else {
            panic!("a page is data");
        };
        assert!(data.ends_with(b"\n"), "a page is one line");
        assert!(data.len() <= openmid_proto::command_output::MAX_CHUNK_BYTES);
        let page: FilePage = serde_json::from_slice(data).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(chunk.seq, page.page, "one chunk per page, numbered by page");
        seen.count += 1;
        seen.rows += page.rows.len() as u64;
        if state.keep {
            seen.pages.push(page);
        }
    }
    axum::Json(OutputAck {
        stored: chunks.len() as u64,
        duplicate: 0,
    })
}
