//! Entries into pages. Each entry is written as JSON as soon as it is read; a page
//! holds at most `page_size` of them and is cut sooner when its JSON line would pass
//! [`SOFT_PAGE_BYTES`] (an entry alone larger than [`MAX_CHUNK_BYTES`] fails the job:
//! entries are never cut). A full page goes to the [`PageSink`] before the next entry
//! is taken, so the sink's wait is the search's back-pressure.
//!
//! The pager also applies a re-run's [`LdapResume`]: page numbers, entry indexes and
//! the marker continue from it, the first `rows_done` entries are skipped, and the
//! last skipped one must be the last stored one — otherwise the directory's order
//! changed and continuing would duplicate or lose entries, so the job fails.

use super::super::output_stream::PageSink;
use super::entry::marker_of;
use crate::probes::ProbeError;
use openmid_proto::command_output::MAX_CHUNK_BYTES;
use openmid_proto::ldap::{LdapEntry, LdapRequest, LdapResume, marker_greater};

/// A page is cut once its line would pass this: well under the chunk limit, so a
/// slow instance holds a few pages rather than a few huge ones.
pub(super) const SOFT_PAGE_BYTES: usize = 512 * 1024;
/// Bytes of a page line besides its entries and marker, rounded up.
const LINE_OVERHEAD: usize = 128;

/// What the search does after an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Read the next entry.
    More,
    /// `max_entries` was reached and another entry came: stop reading.
    Full,
}

/// Pages of one attempt.
pub(super) struct Pager {
    sink: PageSink,
    page_size: usize,
    max_entries: Option<u64>,
    marker_attribute: Option<String>,
    resume: Option<LdapResume>,
    /// Entries still to skip (a re-run's stored ones).
    skip: u64,
    /// Index of the next entry kept, over all attempts.
    next_row: u64,
    next_page: u64,
    entries: Vec<String>,
    bytes: usize,
    marker_max: Option<String>,
    first_page: Vec<LdapEntry>,
    first_page_open: bool,
    truncated: bool,
}

impl Pager {
    /// Pages for `req`, sent to `sink`.
    pub fn new(req: &LdapRequest, sink: PageSink) -> Self {
        let resume = req.resume.clone();
        let (next_page, rows_done, marker_max) = match &resume {
            Some(r) => (r.next_page, r.rows_done, r.marker_max.clone()),
            None => (0, 0, None),
        };
        Self {
            sink,
            page_size: req.page_size() as usize,
            max_entries: req.max_entries,
            marker_attribute: req.marker_attribute.clone(),
            resume,
            skip: rows_done,
            next_row: rows_done,
            next_page,
            entries: Vec::new(),
            bytes: 0,
            marker_max,
            first_page: Vec::new(),
            first_page_open: true,
            truncated: false,
        }
    }

    /// Takes one entry.
    pub async fn push(&mut self, entry: LdapEntry) -> Result<Flow, ProbeError> {
        if self.skip > 0 {
            self.skip -= 1;
            if self.skip == 0 {
                self.check_resumed_at(&entry.dn)?;
            }
            return Ok(Flow::More);
        }
        if self.max_entries.is_some_and(|max| self.next_row >= max) {
            self.truncated = true;
            return Ok(Flow::Full);
        }
        let json = serde_json::to_string(&entry).unwrap_or_default();
        let marker = self
            .marker_attribute
            .as_deref()
            .and_then(|attribute| marker_of(&entry, attribute));
        let fixed = LINE_OVERHEAD + self.marker_max.as_ref().map_or(0, String::len);
        if fixed + json.len() + marker.as_ref().map_or(0, String::len) > MAX_CHUNK_BYTES {
            return Err(ProbeError::Target(format!(
                "entry {} (`{}`) is {} bytes as JSON, more than one page may hold ({MAX_CHUNK_BYTES} bytes): select fewer attributes",
                self.next_row,
                entry.dn,
                json.len()
            )));
        }
        if !self.entries.is_empty() && fixed + self.bytes + json.len() + 1 > SOFT_PAGE_BYTES {
            self.flush().await;
        }
        if let Some(value) = marker
            && self
                .marker_max
                .as_deref()
                .is_none_or(|max| marker_greater(&value, max))
        {
            self.marker_max = Some(value);
        }
        if self.first_page_open {
            self.first_page.push(entry);
        }
        self.bytes += json.len() + 1;
        self.entries.push(json);
        self.next_row += 1;
        if self.entries.len() >= self.page_size {
            self.flush().await;
        }
        Ok(Flow::More)
    }

    /// The last skipped entry must be the last one stored.
    fn check_resumed_at(&self, dn: &str) -> Result<(), ProbeError> {
        let expected = self.resume.as_ref().and_then(|r| r.last_dn.as_deref());
        if expected.is_some_and(|want| !want.eq_ignore_ascii_case(dn)) {
            return Err(changed_order(format!(
                "entry {} is now `{dn}`, it was `{}`",
                self.next_row.saturating_sub(1),
                expected.unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Sends the page being filled, if it has entries.
    pub async fn flush(&mut self) {
        if self.entries.is_empty() {
            return;
        }
        let line = self.line();
        self.sink.page(line.as_bytes()).await;
        self.next_page += 1;
        self.entries.clear();
        self.bytes = 0;
        self.first_page_open = false;
    }

    /// The page as one JSON line (an [`LdapPage`](openmid_proto::ldap::LdapPage)),
    /// built from the entries' JSON as written.
    fn line(&self) -> String {
        let first_row = self.next_row - self.entries.len() as u64;
        let mut line = String::with_capacity(self.bytes + LINE_OVERHEAD);
        line.push_str(&format!(
            "{{\"page\":{},\"first_row\":{first_row},\"entries\":[",
            self.next_page
        ));
        line.push_str(&self.entries.join(","));
        line.push(']');
        if let Some(max) = &self.marker_max {
            line.push_str(",\"marker_max\":");
            line.push_str(&serde_json::to_string(max).unwrap_or_default());
        }
        line.push_str("}\n");
        line
    }

    /// Sends the last page and waits for the sink to deliver. A re-run whose search
    /// ended before reaching the stored entries fails: the directory changed.
    pub async fn finish(mut self) -> Result<Finished, ProbeError> {
        if self.skip > 0 {
            let _ = self.sink.finish().await;
            return Err(changed_order(format!(
                "the search now returns {} entries, {} were stored already",
                self.next_row - self.skip,
                self.next_row
            )));
        }
        self.flush().await;
        if !self.sink.finish().await {
            tracing::warn!("the last pages of an LDAP search did not reach the instance in time");
        }
        Ok(Finished {
            entries: self.next_row,
            pages: self.next_page,
            truncated: self.truncated,
            first_page: self.first_page,
            marker_max: self.marker_max,
        })
    }

    /// Gives up: waits (briefly, the job being stopped) for what was sent, sends
    /// nothing more.
    pub async fn abandon(self) {
        let _ = self.sink.finish().await;
    }
}

fn changed_order(detail: String) -> ProbeError {
    ProbeError::Target(format!(
        "the directory's order changed since the first attempt ({detail}); the import cannot continue exactly once — run it again"
    ))
}

/// What the pages came to.
pub(super) struct Finished {
    pub entries: u64,
    pub pages: u64,
    pub truncated: bool,
    pub first_page: Vec<LdapEntry>,
    pub marker_max: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmid_proto::ldap::LdapPage;
    use openmid_proto::mid::JobRef;
    use std::collections::BTreeMap;

    fn request(extra: serde_json::Value) -> LdapRequest {
        let mut v = serde_json::json!({"url": "ldap://d", "marker_attribute": "usn"});
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn pager(req: &LdapRequest) -> Pager {
        let job = JobRef {
            output_id: "o".into(),
            attempt: 1,
        };
        let sink = PageSink::new(None, &job, &tokio_util::sync::CancellationToken::new());
        Pager::new(req, sink)
    }

    fn entry(i: u64, value: &str) -> LdapEntry {
        LdapEntry {
            dn: format!("uid=u{i},dc=x"),
            attributes: BTreeMap::from([
                ("usn".into(), serde_json::json!(format!("{}", 100 - i))),
                ("v".into(), serde_json::json!(value)),
            ]),
        }
    }

    #[tokio::test]
    async fn pages_number_on_and_carry_the_marker() {
        let mut p = pager(&request(serde_json::json!({"page_size": 2})));
        for i in 0..3 {
            p.push(entry(i, "x")).await.ok();
        }
        let page: LdapPage = serde_json::from_str(&p.line()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((page.page, page.first_row, page.entries.len()), (1, 2, 1));
        assert_eq!(page.marker_max.as_deref(), Some("100"));
        let done = p.finish().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((done.entries, done.pages, done.first_page.len()), (3, 2, 2));
    }

    #[tokio::test]
    async fn resume_skips_checks_and_fails_on_a_changed_order() {
        let resume = serde_json::json!({"page_size": 2, "max_entries": 4,
            "resume": {"next_page": 1, "rows_done": 2, "last_dn": "UID=u1,dc=x", "marker_max": "500"}});
        let mut p = pager(&request(resume.clone()));
        let mut flows = Vec::new();
        for i in 0..5 {
            flows.push(p.push(entry(i, "x")).await.ok());
        }
        assert_eq!(flows.last(), Some(&Some(Flow::Full)));
        let done = p.finish().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((done.entries, done.pages, done.truncated), (4, 2, true));
        assert_eq!(done.first_page[0].dn, "uid=u2,dc=x");
        assert_eq!(done.marker_max.as_deref(), Some("500"));

        let mut p = pager(&request(resume.clone()));
        p.push(entry(0, "x")).await.ok();
        let err = p.push(entry(7, "x")).await;
        assert!(matches!(err, Err(ProbeError::Target(m)) if m.contains("order changed")));

        let mut p = pager(&request(resume));
        p.push(entry(0, "x")).await.ok();
        let err = p.finish().await.err().map(|e| e.to_string());
        assert!(err.is_some_and(|m| m.contains("run it again")));
    }

    #[tokio::test]
    async fn a_page_is_cut_before_its_soft_limit_and_a_huge_entry_fails() {
        let mut p = pager(&request(serde_json::json!({"page_size": 10_000})));
        let wide = "x".repeat(200_000);
        for i in 0..3 {
            p.push(entry(i, &wide)).await.ok();
        }
        assert_eq!((p.next_page, p.entries.len()), (1, 1));
        let huge = "x".repeat(MAX_CHUNK_BYTES);
        let err = p.push(entry(9, &huge)).await;
        assert!(matches!(err, Err(ProbeError::Target(m)) if m.contains("more than one page")));
    }
}
