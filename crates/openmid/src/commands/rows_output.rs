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

    /// Prints one page (the data of one `rows` chunk).
    pub fn page(&mut self, data: &[u8]) -> Result<()> {
        let page: SqlPage = serde_json::from_slice(data).context("a page of rows")?;
        if let Some(columns) = page.columns {
            self.columns = columns;
        }
        self.rows += page.rows.len() as u64;
        self.pages += 1;
        let mut out = std::io::stdout().lock();
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
