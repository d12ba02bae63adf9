//! The SQL contract's checks, field by field.

use super::*;
use crate::probe::Contract;
use serde_json::json;

fn base() -> serde_json::Value {
    json!({
        "driver": "postgres",
        "host": "db.corp",
        "database": "cmdb",
        "credential": {"id": "c1", "name": "db"},
        "statement": "SELECT 1",
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
    crate::probe::decode::<Jdbc>(&payload)
        .err()
        .map(|e| e.field)
}

#[test]
fn defaults_and_contract() {
    let req: SqlRequest = serde_json::from_value(base()).expect("parses");
    assert_eq!(req.tls, TlsMode::Prefer);
    assert!(!req.write);
    assert_eq!((req.port(), req.page_rows()), (5432, 500));
    let t = Jdbc::target(&req).expect("target");
    assert_eq!((t.host.as_str(), t.port), ("db.corp", Some(5432)));
    assert_eq!(Jdbc::credential(&req).map(|c| c.id.as_str()), Some("c1"));
    assert_eq!(
        Jdbc::timeout(&req),
        Some(std::time::Duration::from_millis(DEFAULT_TIMEOUT_MS))
    );
    let mysql: SqlRequest =
        serde_json::from_value(with(json!({"driver": "mysql", "tls": "verify_full"})))
            .expect("parses");
    assert_eq!((mysql.port(), mysql.tls), (3306, TlsMode::VerifyFull));
}

#[test]
fn each_error_names_its_field() {
    let cases = [
        (json!({"surprise": 1}), "payload"),
        (json!({"driver": "oracle"}), "payload"),
        (json!({"host": ""}), "host"),
        (json!({"host": "/var/run/postgresql"}), "host"),
        (json!({"port": 0}), "port"),
        (json!({"database": ""}), "database"),
        (json!({"tls": "disable", "ca_pem": "x"}), "ca_pem"),
        (json!({"ca_pem": "not a certificate"}), "ca_pem"),
        (json!({"options": {"bad name": "1"}}), "options"),
        (
            json!({"options": {"statement_timeout": "0"}}),
            "options.statement_timeout",
        ),
        (
            json!({"options": {"work_mem": "a\u{0}"}}),
            "options.work_mem",
        ),
        (json!({"statement": "  "}), "statement"),
        (json!({"params": [1, [2]]}), "params[1]"),
        (json!({"params": [{"a": 1}]}), "params[0]"),
        (json!({"page_rows": 0}), "page_rows"),
        (json!({"page_rows": 10_001}), "page_rows"),
        (json!({"max_rows": 0}), "max_rows"),
        (json!({"keyset": ["id", "id"]}), "keyset[1]"),
        (json!({"keyset": ["a\"b"]}), "keyset[0]"),
        (
            json!({"keyset": ["id"], "resume": {"next_page": 1, "rows_done": 5, "after_key": [1, 2]}}),
            "resume.after_key",
        ),
        (
            json!({"keyset": ["id"], "resume": {"next_page": 1, "rows_done": 5}}),
            "resume.after_key",
        ),
        (
            json!({"keyset": ["id"], "resume": {"next_page": 1, "rows_done": 5, "after_key": [null]}}),
            "resume.after_key[0]",
        ),
        (
            json!({"write": true, "resume": {"next_page": 1, "rows_done": 5}}),
            "resume",
        ),
        (json!({"timeout_ms": 0}), "timeout_ms"),
    ];
    for (extra, field) in cases {
        assert_eq!(
            field_of(with(extra.clone())).as_deref(),
            Some(field),
            "{extra}"
        );
    }
    let mysql_tz = with(json!({"driver": "mysql", "options": {"time_zone": "+01:00"}}));
    assert_eq!(field_of(mysql_tz).as_deref(), Some("options.time_zone"));
    let pg_tz = with(json!({"options": {"TimeZone": "UTC", "search_path": "a,b"}}));
    assert_eq!(field_of(pg_tz), None);
}

#[test]
fn pages_and_responses_round_trip() {
    let page = SqlPage {
        page: 0,
        first_row: 0,
        columns: Some(vec![Column {
            name: "id".into(),
            type_name: "int4".into(),
            json: "number".into(),
        }]),
        rows: vec![vec![json!(1)], vec![json!(2)]],
        last_key: Some(vec![json!(2)]),
    };
    let line = serde_json::to_string(&page).unwrap_or_default();
    assert_eq!(serde_json::from_str::<SqlPage>(&line).ok(), Some(page));
    let later = SqlPage {
        page: 3,
        first_row: 1500,
        columns: None,
        rows: vec![],
        last_key: None,
    };
    let line = serde_json::to_string(&later).unwrap_or_default();
    assert!(
        !line.contains("columns") && !line.contains("last_key"),
        "{line}"
    );
}
