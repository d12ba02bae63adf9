//! The file import contract's checks, field by field, and its resume.

use super::*;
use crate::probe::Contract;
use proptest::prelude::*;
use serde_json::json;

fn base() -> serde_json::Value {
    json!({
        "source": {"path": "/srv/imports/x.csv"},
        "format": {"type": "csv"},
    })
}

fn with(extra: serde_json::Value) -> serde_json::Value {
    let mut v = base();
    if let (Some(map), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in more {
            map.insert(k.clone(), x.clone());
        }
    }
    v
}

fn field_of(payload: serde_json::Value) -> Option<String> {
    crate::probe::decode::<FileImport>(&payload)
        .err()
        .map(|e| e.field)
}

#[test]
fn defaults_and_shapes() {
    let req = crate::probe::decode::<FileImport>(&base()).expect("valid");
    assert_eq!(req.format, FileFormat::default());
    assert_eq!((req.page_rows(), req.timeout_ms()), (1000, 3_600_000));
    assert_eq!(FileImport::target(&req), None);
    let url = with(json!({"source": {"url": "https://files.corp:8443/a.jsonl",
        "headers": {"X-Key": "1"}, "credential": {"id": "c", "name": "n"}},
        "format": {"type": "jsonl"}}));
    let req = crate::probe::decode::<FileImport>(&url).expect("valid");
    let target = FileImport::target(&req).expect("target");
    assert_eq!(
        (target.host.as_str(), target.port),
        ("files.corp", Some(8443))
    );
    assert_eq!(
        FileImport::credential(&req).map(|c| c.id.as_str()),
        Some("c")
    );
    // Round trip keeps the shape.
    let back = serde_json::to_value(&req).expect("encode");
    assert_eq!(back["source"]["url"], "https://files.corp:8443/a.jsonl");
    assert!(back["source"].get("path").is_none());
    let xml = with(json!({"format": {"type": "xml", "record_path": "/catalog/book"}}));
    assert_eq!(field_of(xml), None);
    let excel = with(json!({"format": {"type": "excel", "sheet": "Data"}}));
    assert_eq!(field_of(excel), None);
}

#[test]
fn errors_name_their_field() {
    for (extra, field) in [
        (json!({"source": {"path": "relative.csv"}}), "source.path"),
        (json!({"source": {"url": "ftp://h/x"}}), "source.url"),
        (
            json!({"source": {"url": "http://h/x", "headers": {"Range": "bytes=1-"}}}),
            "source.headers",
        ),
        (
            json!({"source": {"url": "http://h/x", "headers": {"bad name": "1"}}}),
            "source.headers",
        ),
        (
            json!({"source": {"url": "http://h/x", "ca_pem": "nope"}}),
            "source.ca_pem",
        ),
        (
            json!({"format": {"type": "csv", "delimiter": "é"}}),
            "format.delimiter",
        ),
        (
            json!({"format": {"type": "csv", "quote": ","}}),
            "format.quote",
        ),
        (
            json!({"format": {"type": "xml", "record_path": "book"}}),
            "format.record_path",
        ),
        (
            json!({"format": {"type": "xml", "record_path": "/a//b"}}),
            "format.record_path",
        ),
        (
            json!({"format": {"type": "json", "record_path": "data"}}),
            "format.record_path",
        ),
        (
            json!({"format": {"type": "excel", "sheet": ""}}),
            "format.sheet",
        ),
        (json!({"encoding": "utf-16"}), "encoding"),
        (
            json!({"format": {"type": "excel"}, "encoding": "latin1"}),
            "encoding",
        ),
        (json!({"page_rows": 0}), "page_rows"),
        (json!({"page_rows": 10_001}), "page_rows"),
        (json!({"max_rows": 0}), "max_rows"),
        (json!({"timeout_ms": 0}), "timeout_ms"),
        (json!({"timeout_ms": MAX_TIMEOUT_MS + 1}), "timeout_ms"),
        (
            json!({"resume": {"next_page": 1, "rows_done": 5, "records_done": 4}}),
            "resume.rows_done",
        ),
        (
            json!({"resume": {"next_page": 1, "rows_done": 1, "records_done": 1, "columns": ["a"]}}),
            "resume.types",
        ),
        (
            json!({"format": {"type": "xml", "record_path": "/a"},
                "resume": {"next_page": 1, "rows_done": 1, "records_done": 1, "byte_offset": 9}}),
            "resume.byte_offset",
        ),
        (
            json!({"source": {"path": "/x", "url": "http://h/"}}),
            "payload",
        ),
        (
            json!({"source": {"path": "/x", "headers": {"a": "b"}}}),
            "payload",
        ),
        (json!({"format": {"type": "parquet"}}), "payload"),
        (json!({"surprise": 1}), "payload"),
    ] {
        assert_eq!(
            field_of(with(extra.clone())).as_deref(),
            Some(field),
            "{extra}"
        );
    }
}

#[test]
fn types_form_a_lattice() {
    use ColumnType::*;
    assert_eq!(Integer.join(Number), Number);
    assert_eq!(Null.join(Date), Date);
    assert_eq!(Date.join(Timestamp), Timestamp);
    assert_eq!(Integer.join(Date), String);
    assert_eq!(Boolean.join(Integer), String);
    assert_eq!(Boolean.join(Boolean), Boolean);
    let all = [Null, Integer, Number, Boolean, Date, Timestamp, String];
    for a in all {
        for b in all {
            assert_eq!(a.join(b), b.join(a));
            for c in all {
                assert_eq!(a.join(b).join(c), a.join(b.join(c)));
            }
        }
    }
}

fn page(format_offsets: bool) -> FilePage {
    FilePage {
        page: 3,
        first_row: 2990,
        columns_added: vec![],
        columns: vec!["id".into(), "name".into()],
        rows: vec![vec![json!("1")]; 10],
        errors: vec![],
        types: vec![ColumnType::Integer, ColumnType::String],
        next_offset: format_offsets.then_some(123_456),
        next_line: format_offsets.then_some(3_004),
        records_done: 3003,
    }
}

#[test]
fn resume_continues_after_the_last_page() {
    let mut req: FileImportRequest = serde_json::from_value(base()).expect("request");
    let line = serde_json::to_vec(&page(true)).expect("page");
    FileImport::resume(&mut req, &line).expect("resume");
    let r = req.resume.clone().expect("set");
    assert_eq!((r.next_page, r.rows_done, r.records_done), (4, 3000, 3003));
    assert_eq!((r.byte_offset, r.line), (Some(123_456), Some(3_004)));
    assert_eq!(r.columns, ["id", "name"]);
    assert!(req.validate().is_ok());

    let mut xml: FileImportRequest = serde_json::from_value(with(
        json!({"format": {"type": "xml", "record_path": "/a/b"}}),
    ))
    .expect("request");
    FileImport::resume(&mut xml, &line).expect("resume");
    assert_eq!(xml.resume.as_ref().and_then(|r| r.byte_offset), None);
    assert!(xml.validate().is_ok());

    assert!(FileImport::resume(&mut req, b"not json").is_err());
}

proptest! {
    #[test]
    fn decoding_arbitrary_payloads_never_panics(text in "\\PC{0,200}", n in any::<u64>()) {
        let payloads = [
            json!({"source": {"path": text.clone()}, "format": {"type": "csv", "delimiter": text.chars().next().unwrap_or(',')}}),
            json!({"source": {"url": text.clone()}, "format": {"type": "json", "record_path": text.clone()}, "max_rows": n}),
            json!({"source": {"path": "/x"}, "format": {"type": "xml", "record_path": text.clone()}, "encoding": text.clone()}),
            json!({"source": {"path": "/x"}, "format": {"type": "jsonl"},
                "resume": {"next_page": n, "rows_done": n / 2, "records_done": n, "byte_offset": n, "line": n}}),
        ];
        for p in payloads {
            let _ = crate::probe::decode::<FileImport>(&p);
        }
    }

    #[test]
    fn resume_from_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                                page_no in any::<u64>(), first in any::<u64>(), done in any::<u64>()) {
        let mut req: FileImportRequest = serde_json::from_value(base()).expect("request");
        let _ = FileImport::resume(&mut req, &bytes);
        let mut p = page(true);
        p.page = page_no;
        p.first_row = first;
        p.records_done = done;
        let line = serde_json::to_vec(&p).expect("page");
        if FileImport::resume(&mut req, &line).is_ok() {
            let r = req.resume.as_ref().expect("set");
            prop_assert!(r.rows_done <= r.records_done);
        }
    }
}
