//! Rows into pages. Each row is written as JSON as soon as it is read and dropped; a
//! page holds at most `page_rows` of them and is cut sooner when its JSON line would
//! pass [`MAX_CHUNK_BYTES`] (a row alone larger than that fails the job: rows are never
//! cut). A full page goes to the [`PageSink`] before the next row is read, so memory
//! holds one page whatever the result's size, and the sink's wait is the driver's
//! back-pressure.
//!
//! The pager also applies a re-run's [`SqlResume`]: page numbers and row indexes
//! continue from it, and without a keyset the first `rows_done` rows are skipped.

use super::super::output_stream::PageSink;
use crate::probes::ProbeError;
use openmid_proto::command_output::MAX_CHUNK_BYTES;
use openmid_proto::sql::{Column, SqlRequest};
use serde_json::Value;

/// Bytes of a page line besides its rows, columns and key (`{"page":…,"first_row":…,
/// "columns":,"rows":[],"last_key":}\n` with 20-digit numbers), rounded up.
const LINE_OVERHEAD: usize = 128;

/// What the driver does after a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Read the next row.
    More,
    /// `max_rows` was reached and another row came: stop reading.
    Full,
}

/// Pages of one attempt.
pub(super) struct Pager {
    sink: PageSink,
    page_rows: usize,
    max_rows: Option<u64>,
    keyset: Vec<String>,
    key_index: Vec<usize>,
    columns: Option<Vec<Column>>,
    columns_json: String,
    skip: u64,
    /// Index of the next row kept, over all attempts.
    next_row: u64,
    next_page: u64,
    rows: Vec<String>,
    bytes: usize,
    last_key: Option<String>,
    first_page: Option<Vec<Vec<Value>>>,
    first_page_open: bool,
    truncated: bool,
}

impl Pager {
    /// Pages for `req`, sent to `sink`.
    pub fn new(req: &SqlRequest, sink: PageSink) -> Self {
        let (next_page, rows_done, keyed) = match &req.resume {
            Some(r) => (r.next_page, r.rows_done, r.after_key.is_some()),
            None => (0, 0, false),
        };
        Self {
            sink,
            page_rows: req.page_rows() as usize,
            max_rows: req.max_rows,
            keyset: req.keyset.clone(),
            key_index: Vec::new(),
            columns: None,
            columns_json: String::new(),
            // With a key the statement itself continues after the stored rows.
            skip: if keyed { 0 } else { rows_done },
            next_row: rows_done,
            next_page,
            rows: Vec::new(),
            bytes: 0,
            last_key: None,
            first_page: Some(Vec::new()),
            first_page_open: true,
            truncated: false,
        }
    }

    /// Whether the columns are known yet.
    pub fn has_columns(&self) -> bool {
        self.columns.is_some()
    }

    /// Sets the result's columns (before the first row); a keyset column the result
    /// lacks fails here.
    pub fn set_columns(&mut self, columns: Vec<Column>) -> Result<(), ProbeError> {
        self.key_index = self
            .keyset
            .iter()
            .map(|k| {
                columns.iter().position(|c| &c.name == k).ok_or_else(|| {
                    ProbeError::InvalidInput(format!(
                        "keyset: the result has no column `{k}` (its columns: {})",
                        columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        self.columns_json = serde_json::to_string(&columns).unwrap_or_default();
        self.columns = Some(columns);
        Ok(())
    }

    /// Takes one row.
    pub async fn push(&mut self, row: Vec<Value>) -> Result<Flow, ProbeError> {
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(Flow::More);
        }
        if self.max_rows.is_some_and(|max| self.next_row >= max) {
            self.truncated = true;
            return Ok(Flow::Full);
        }
        let json = serde_json::to_string(&row).unwrap_or_default();
        let key = (!self.key_index.is_empty()).then(|| {
            let key: Vec<&Value> = self.key_index.iter().map(|&i| &row[i]).collect();
            serde_json::to_string(&key).unwrap_or_default()
        });
        let fixed = LINE_OVERHEAD
            + key.as_ref().map_or(0, String::len)
            + if self.next_page == 0 {
                self.columns_json.len()
            } else {
                0
            };
        if fixed + json.len() > MAX_CHUNK_BYTES {
            return Err(ProbeError::Target(format!(
                "row {} is {} bytes as JSON, more than one page may hold ({MAX_CHUNK_BYTES} bytes): select fewer or smaller columns",
                self.next_row,
                json.len()
            )));
        }
        if !self.rows.is_empty() && fixed + self.bytes + json.len() + 1 > MAX_CHUNK_BYTES {
            self.flush().await;
        }
        if self.first_page_open
            && let Some(first) = &mut self.first_page
        {
            first.push(row);
        }
        self.bytes += json.len() + 1;
        self.rows.push(json);
        self.last_key = key;
        self.next_row += 1;
        if self.rows.len() >= self.page_rows {
            self.flush().await;
        }
        Ok(Flow::More)
    }

    /// Sends the page being filled, if it has rows — or, on page 0, if the result
    /// has columns, so a follower learns them even from an empty result.
    pub async fn flush(&mut self) {
        let empty_first =
            self.next_page == 0 && self.columns.as_ref().is_some_and(|c| !c.is_empty());
        if self.rows.is_empty() && !empty_first {
            return;
        }
        let line = self.line();
        self.sink.page(line.as_bytes()).await;
        self.next_page += 1;
        self.rows.clear();
        self.bytes = 0;
        self.first_page_open = false;
    }

    /// The page as one JSON line (a [`SqlPage`](openmid_proto::sql::SqlPage)), built
    /// from the rows' JSON as written.
    fn line(&self) -> String {
        let first_row = self.next_row - self.rows.len() as u64;
        let mut line = String::with_capacity(self.bytes + LINE_OVERHEAD + self.columns_json.len());
        line.push_str(&format!(
            "{{\"page\":{},\"first_row\":{first_row},",
            self.next_page
        ));
        if self.next_page == 0 && self.columns.is_some() {
            line.push_str("\"columns\":");
            line.push_str(&self.columns_json);
            line.push(',');
        }
        line.push_str("\"rows\":[");
        line.push_str(&self.rows.join(","));
        line.push(']');
        if let (Some(key), false) = (&self.last_key, self.rows.is_empty()) {
            line.push_str(",\"last_key\":");
            line.push_str(key);
        }
        line.push_str("}\n");
        line
    }

    /// Sends the last page and waits for the sink to deliver; the columns, rows read
    /// (over all attempts), pages sent (the next page's number), whether `max_rows`
    /// cut the result, and this attempt's first page.
    pub async fn finish(mut self) -> Finished {
        self.flush().await;
        let delivered = self.sink.finish().await;
        if !delivered {
            tracing::warn!("the last pages of a SQL result did not reach the instance in time");
        }
        Finished {
            columns: self.columns.unwrap_or_default(),
            rows: self.next_row,
            pages: self.next_page,
            truncated: self.truncated,
            first_page: self.first_page.unwrap_or_default(),
        }
    }

    /// Gives up: waits (briefly, the job being stopped) for what was sent, sends
    /// nothing more.
    pub async fn abandon(self) {
        let _ = self.sink.finish().await;
    }
}

/// What the pages came to.
pub(super) struct Finished {
    pub columns: Vec<Column>,
    pub rows: u64,
    pub pages: u64,
    pub truncated: bool,
    pub first_page: Vec<Vec<Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmid_proto::mid::JobRef;
    use openmid_proto::sql::SqlPage;

    fn request(extra: serde_json::Value) -> SqlRequest {
        let mut v = serde_json::json!({
            "driver": "postgres", "host": "db", "database": "d",
            "credential": {"id": "c", "name": "c"}, "statement": "SELECT 1",
        });
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn pager(req: &SqlRequest) -> Pager {
        let job = JobRef {
            output_id: "o".into(),
            attempt: 1,
        };
        let sink = PageSink::new(None, &job, &tokio_util::sync::CancellationToken::new());
        let mut p = Pager::new(req, sink);
        let col = |name: &str| Column {
            name: name.into(),
            type_name: "int8".into(),
            json: "number".into(),
        };
        p.set_columns(vec![col("id"), col("v")])
            .unwrap_or_else(|e| panic!("{e}"));
        p
    }

    #[tokio::test]
    async fn lines_are_pages_and_resume_continues() {
        let req = request(serde_json::json!({"keyset": ["id"], "page_rows": 2}));
        let mut p = pager(&req);
        for i in 0..3 {
            p.push(vec![Value::from(i), Value::from(i * 10)]).await.ok();
        }
        let line = p.line();
        let page: SqlPage = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!((page.page, page.first_row, page.columns), (1, 2, None));
        assert_eq!(page.rows, vec![vec![Value::from(2), Value::from(20)]]);
        assert_eq!(page.last_key, Some(vec![Value::from(2)]));
        let done = p.finish().await;
        assert_eq!((done.rows, done.pages, done.first_page.len()), (3, 2, 2));

        let req = request(serde_json::json!({"page_rows": 2, "max_rows": 4,
            "resume": {"next_page": 1, "rows_done": 2}}));
        let mut p = pager(&req);
        let mut flows = Vec::new();
        for i in 0..5 {
            flows.push(p.push(vec![Value::from(i), Value::Null]).await.ok());
        }
        // Two skipped, two kept (rows 2 and 3), the fifth finds max_rows reached.
        assert_eq!(flows.last(), Some(&Some(Flow::Full)));
        let done = p.finish().await;
        assert_eq!((done.rows, done.pages, done.truncated), (4, 2, true));
        assert_eq!(done.first_page[0][0], Value::from(2));
    }

    #[tokio::test]
    async fn a_page_is_cut_before_the_chunk_limit_and_a_huge_row_fails() {
        let req = request(serde_json::json!({"page_rows": 10_000}));
        let mut p = pager(&req);
        let wide = "x".repeat(300_000);
        for _ in 0..4 {
            p.push(vec![Value::from(1), Value::from(wide.clone())])
                .await
                .ok();
        }
        // Three rows fit under 1 MiB, the fourth started page 1.
        assert_eq!((p.next_page, p.rows.len()), (1, 1));
        assert!(p.line().len() <= MAX_CHUNK_BYTES);
        let huge = "x".repeat(MAX_CHUNK_BYTES);
        let err = p.push(vec![Value::from(1), Value::from(huge)]).await;
        assert!(matches!(err, Err(ProbeError::Target(m)) if m.contains("more than one page")));
    }
}
