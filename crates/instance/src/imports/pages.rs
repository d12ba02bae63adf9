//! An import set's pages as rows: each chunk of a run's `rows` stream is one page of
//! its topic's shape ([`SqlPage`], [`LdapPage`], [`FilePage`]); this turns any of
//! them into numbered rows of named values, the one shape the import set shows.

use openmid_proto::file_import::FilePage;
use openmid_proto::import::ImportError;
use openmid_proto::ldap::LdapPage;
use openmid_proto::sql::SqlPage;
use serde_json::{Map, Value};

/// The kind of source, which decides the page shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`FilePage`].
    File,
    /// [`LdapPage`].
    Ldap,
    /// [`SqlPage`].
    Sql,
}

impl Kind {
    /// The kind named `file`, `ldap` or `sql`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "file" => Some(Self::File),
            "ldap" => Some(Self::Ldap),
            "sql" => Some(Self::Sql),
            _ => None,
        }
    }
}

/// A page that does not parse as its kind's.
#[derive(Debug, thiserror::Error)]
#[error("page {seq} of the run: {detail}")]
pub struct BadPage {
    /// Its number.
    pub seq: u64,
    /// What is wrong.
    pub detail: String,
}

/// One page, decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// Index of its first row in the import set, from 0.
    pub first_row: u64,
    /// Its rows.
    pub rows: Vec<Map<String, Value>>,
    /// The source records it refused.
    pub errors: Vec<ImportError>,
    /// The column names the page's rows use, in order (SQL: only page 0 says).
    pub columns: Vec<String>,
    /// The keyset values of its last row (SQL).
    pub last_key: Option<Vec<Value>>,
}

/// Where a page starts and how many rows it holds, without building the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Index of its first row.
    pub first_row: u64,
    /// Its rows.
    pub rows: u64,
}

/// The span of a page.
pub fn span(kind: Kind, seq: u64, data: &[u8]) -> Result<Span, BadPage> {
    #[derive(serde::Deserialize)]
    struct Rows {
        first_row: u64,
        #[serde(default)]
        rows: Vec<serde::de::IgnoredAny>,
        #[serde(default)]
        entries: Vec<serde::de::IgnoredAny>,
    }
    let _ = kind;
    let page: Rows = serde_json::from_slice(data).map_err(|e| bad(seq, e))?;
    Ok(Span {
        first_row: page.first_row,
        rows: (page.rows.len() + page.entries.len()) as u64,
    })
}

/// Decodes one page. SQL pages name their columns on page 0 only: pass them as
/// `sql_columns` for the others.
pub fn decode(
    kind: Kind,
    seq: u64,
    data: &[u8],
    sql_columns: Option<&[String]>,
) -> Result<Page, BadPage> {
    match kind {
        Kind::Sql => {
            let page: SqlPage = serde_json::from_slice(data).map_err(|e| bad(seq, e))?;
            let columns: Vec<String> = match (&page.columns, sql_columns) {
                (Some(columns), _) => columns.iter().map(|c| c.name.clone()).collect(),
                (None, Some(columns)) => columns.to_vec(),
                (None, None) => Vec::new(),
            };
            let rows = page
                .rows
                .into_iter()
                .map(|values| zip(&columns, values))
                .collect();
            Ok(Page {
                first_row: page.first_row,
                rows,
                errors: Vec::new(),
                columns,
                last_key: page.last_key,
            })
        }
        Kind::Ldap => {
            let page: LdapPage = serde_json::from_slice(data).map_err(|e| bad(seq, e))?;
            let mut columns = vec!["dn".to_string()];
            let rows = page
                .entries
                .into_iter()
                .map(|entry| {
                    let mut row = Map::new();
                    row.insert("dn".into(), Value::String(entry.dn));
                    for (name, value) in entry.attributes {
                        if !columns.contains(&name) {
                            columns.push(name.clone());
                        }
                        row.insert(name, value);
                    }
                    row
                })
                .collect();
            Ok(Page {
                first_row: page.first_row,
                rows,
                errors: Vec::new(),
                columns,
                last_key: None,
            })
        }
        Kind::File => {
            let page: FilePage = serde_json::from_slice(data).map_err(|e| bad(seq, e))?;
            let rows = page
                .rows
                .into_iter()
                .map(|values| zip(&page.columns, values))
                .collect();
            Ok(Page {
                first_row: page.first_row,
                rows,
                errors: page
                    .errors
                    .into_iter()
                    .map(|e| ImportError {
                        record: e.record,
                        line: e.line,
                        reason: e.reason,
                    })
                    .collect(),
                columns: page.columns,
                last_key: None,
            })
        }
    }
}

/// Whether a page may hold refused records (a cheap look before a full parse:
/// `errors` is left out of a page that has none).
pub fn may_have_errors(kind: Kind, data: &[u8]) -> bool {
    kind == Kind::File && memchr::memmem::find(data, b"\"errors\":[").is_some()
}

/// Values by column name; a null is left out (a column a row lacks), so a sparse
/// source stays small.
fn zip(columns: &[String], values: Vec<Value>) -> Map<String, Value> {
    let mut row = Map::new();
    for (name, value) in columns.iter().zip(values) {
        if !value.is_null() {
            row.insert(name.clone(), value);
        }
    }
    row
}

fn bad(seq: u64, e: serde_json::Error) -> BadPage {
    BadPage {
        seq,
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_becomes_named_rows() {
        let sql = json!({"page": 0, "first_row": 0,
            "columns": [{"name": "id", "type_name": "int4", "json": "number"}, {"name": "host", "type_name": "text", "json": "string"}],
            "rows": [[1, "a"], [2, null]], "last_key": [2]});
        let page = decode(Kind::Sql, 0, sql.to_string().as_bytes(), None).expect("sql");
        assert_eq!(
            page.rows[0],
            json!({"id": 1, "host": "a"})
                .as_object()
                .cloned()
                .expect("o")
        );
        assert_eq!(
            page.rows[1],
            json!({"id": 2}).as_object().cloned().expect("o")
        );
        assert_eq!(page.last_key, Some(vec![json!(2)]));
        let later = json!({"page": 1, "first_row": 2, "rows": [[3, "c"]]});
        let cols = page.columns.clone();
        let page = decode(Kind::Sql, 1, later.to_string().as_bytes(), Some(&cols)).expect("sql");
        assert_eq!(page.first_row, 2);
        assert_eq!(page.rows[0]["host"], "c");

        let ldap = json!({"page": 0, "first_row": 0, "entries": [
            {"dn": "uid=a,dc=x", "attributes": {"mail": ["a@x", "b@x"], "cn": "A"}}]});
        let page = decode(Kind::Ldap, 0, ldap.to_string().as_bytes(), None).expect("ldap");
        assert_eq!(page.rows[0]["dn"], "uid=a,dc=x");
        assert_eq!(page.rows[0]["mail"], json!(["a@x", "b@x"]));
        assert_eq!(
            span(Kind::Ldap, 0, ldap.to_string().as_bytes())
                .expect("span")
                .rows,
            1
        );
    }

    #[test]
    fn a_page_that_is_not_its_kinds_is_an_error_not_a_panic() {
        for kind in [Kind::File, Kind::Ldap, Kind::Sql] {
            for data in [&b"{"[..], b"[]", b"{\"page\": -1}", b"\xff"] {
                assert!(decode(kind, 3, data, None).is_err());
                assert!(span(kind, 3, data).is_err());
            }
        }
    }

    proptest::proptest! {
        /// A page is what a MID sent: any bytes give a page or an error, never a panic.
        #[test]
        fn arbitrary_pages_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300), seq in 0u64..5) {
            for kind in [Kind::File, Kind::Ldap, Kind::Sql] {
                let _ = decode(kind, seq, &data, Some(&["a".to_string()]));
                let _ = span(kind, seq, &data);
                let _ = may_have_errors(kind, &data);
            }
        }

        /// Pages shaped like the probes' with arbitrary values decode to as many rows.
        #[test]
        fn well_formed_pages_keep_every_row(values in proptest::collection::vec(proptest::option::of("\\PC{0,8}"), 0..40), first in 0u64..1_000_000) {
            let rows: Vec<Value> = values.iter().map(|v| json!([v])).collect();
            let page = json!({"page": 1, "first_row": first, "columns": ["c"], "rows": rows, "types": ["string"], "records_done": first + values.len() as u64, "columns_added": []});
            let decoded = decode(Kind::File, 1, page.to_string().as_bytes(), None);
            let decoded = decoded.map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert_eq!(decoded.rows.len(), values.len());
            proptest::prop_assert_eq!(decoded.first_row, first);
        }
    }
}
