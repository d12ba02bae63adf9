//! Pages of a SQL result as they arrive on the `rows` stream, printed for people (a
//! table per page) or for scripts (JSON lines, one object per row keyed by column
//! name), with a progress line per page on stderr.

use anyhow::{Context, Result};
use openmid_proto::sql::{Column, SqlPage};
use std::io::Write;

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RowsFormat {
    /// A table per page.
    #[default]
    Table,
    /// One JSON object per row.
    JsonLines,
}

/// Prints pages in order, remembering the columns of page 0.
#[derive(Debug, Default)]
pub struct RowsPrinter {
    format: RowsFormat,
    columns: Vec<Column>,
    rows: u64,
    pages: u64,
}

impl RowsPrinter {
    /// A printer in `format`.
    pub fn new(format: RowsFormat) -> Self {
        Self {
            format,
            ..Self::default()
        }
    }

    /// Prints one page (the data of one `rows` chunk) to stdout.
    pub fn page(&mut self, data: &[u8]) -> Result<()> {
        let mut out = std::io::stdout().lock();
        self.page_to(&mut out, data)?;
        out.flush()?;
        Ok(())
    }

    /// Writes one page to `out`.
    fn page_to(&mut self, out: &mut impl Write, data: &[u8]) -> Result<()> {
        let page: SqlPage = serde_json::from_slice(data).context("a page of rows")?;
        if let Some(columns) = page.columns {
            self.columns = columns;
        }
        self.rows += page.rows.len() as u64;
        self.pages += 1;
        match self.format {
            RowsFormat::JsonLines => {
                for row in &page.rows {
                    let object: serde_json::Map<String, serde_json::Value> = self
                        .columns
                        .iter()
                        .map(|c| c.name.clone())
                        .chain((self.columns.len()..row.len()).map(|i| format!("column{i}")))
                        .zip(row.iter().cloned())
                        .collect();
                    writeln!(out, "{}", serde_json::Value::Object(object))?;
                }
            }
            RowsFormat::Table => {
                let mut t = comfy_table::Table::new();
                t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
                t.set_header(self.columns.iter().map(|c| c.name.clone()));
                for row in &page.rows {
                    t.add_row(row.iter().map(cell));
                }
                writeln!(out, "{t}")?;
                eprintln!("[openmid: page {} · {} rows so far]", page.page, self.rows);
            }
        }
        out.flush()?;
        Ok(())
    }
}

/// A value as a table cell: text as is, `NULL` for null, JSON otherwise.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "NULL".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE0: &[u8] = br#"{"page": 0, "first_row": 0, "columns": [
        {"name": "id", "type_name": "int4", "json": "number"},
        {"name": "name", "type_name": "text", "json": "string"}],
        "rows": [[1, "a"], [2, null]]}"#;
    const PAGE1: &[u8] = br#"{"page": 1, "first_row": 2, "rows": [[3, "c"]]}"#;

    fn printed(format: RowsFormat, pages: &[&[u8]]) -> String {
        let mut printer = RowsPrinter::new(format);
        let mut out = Vec::new();
        for p in pages {
            printer.page_to(&mut out, p).expect("a page");
        }
        String::from_utf8(out).expect("text")
    }

    #[test]
    fn json_lines_are_objects_keyed_by_the_first_page_columns() {
        assert_eq!(
            printed(RowsFormat::JsonLines, &[PAGE0, PAGE1]),
            "{\"id\":1,\"name\":\"a\"}\n{\"id\":2,\"name\":null}\n{\"id\":3,\"name\":\"c\"}\n"
        );
    }

    #[test]
    fn tables_show_null_as_null_and_keep_the_header() {
        let text = printed(RowsFormat::Table, &[PAGE0, PAGE1]);
        assert_eq!(text.matches("name").count(), 2, "a header per page: {text}");
        assert!(text.contains("NULL") && text.contains('c'), "{text}");
    }

    #[test]
    fn a_page_that_is_not_one_is_an_error() {
        let mut printer = RowsPrinter::default();
        for bad in [&b"not json"[..], b"{}", b"{\"page\": 0}"] {
            assert!(printer.page_to(&mut Vec::new(), bad).is_err());
        }
    }
}
