//! The audit log's rows and the store concern that keeps them: appended, listed newest
//! first, and purged by age only — there is no operation that changes an entry.

use super::StoreError;
use async_trait::async_trait;

/// One entry to append (the store gives its id).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewAuditEntry {
    /// Epoch milliseconds.
    pub at: i64,
    /// Who ([`openmid_proto::audit::AuditEntry::actor`]).
    pub actor: String,
    /// What, `thing.verb`.
    pub action: String,
    /// Which thing.
    pub target: Option<String>,
    /// The peer address.
    pub peer: Option<String>,
    /// `ok` or `failed`.
    pub outcome: String,
    /// HTTP status or exit status.
    pub status: Option<i64>,
    /// The MID that ran it.
    pub mid: Option<String>,
    /// The ECC output.
    pub output_id: Option<String>,
    /// The output's topic.
    pub topic: Option<String>,
    /// Command line or statement text.
    pub detail: Option<String>,
    /// Rows of a statement.
    pub rows: Option<i64>,
    /// Why it failed, when it says (a probe's error, an API error's message).
    pub error: Option<String>,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Increasing with time.
    pub id: i64,
    /// The entry.
    pub entry: NewAuditEntry,
}

/// Every `audit_log` column but the id, in the order the backends read them.
macro_rules! audit_columns {
    () => {
        "at, actor, action, target, peer, outcome, status, mid, output_id, topic, detail, rows_count, error"
    };
}
pub(crate) use audit_columns;

/// Filters of [`AuditStore::list_audit`]; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact action, or every action of a thing with `thing.*`.
    pub action: Option<String>,
    /// Exact MID.
    pub mid: Option<String>,
    /// At or after (epoch ms).
    pub since: Option<i64>,
    /// Before (epoch ms).
    pub until: Option<i64>,
    /// Only ids below this (the previous page's last).
    pub before: Option<i64>,
    /// Page size.
    pub limit: u32,
}

impl AuditFilter {
    /// The action filter as SQL `LIKE` pattern parts: `(exact, prefix)`, one of them
    /// set when the filter is.
    pub(crate) fn action_parts(&self) -> (Option<String>, Option<String>) {
        match self.action.as_deref() {
            None => (None, None),
            Some(a) => match a.strip_suffix(".*") {
                Some(thing) => (None, Some(format!("{thing}."))),
                None => (Some(a.to_string()), None),
            },
        }
    }
}

/// The audit log.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an entry; returns its id.
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<i64, StoreError>;
    /// Entries matching `filter`, newest (highest id) first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError>;
    /// Deletes up to `limit` of the oldest entries made before `before`; returns how
    /// many went.
    async fn purge_audit(&self, before: i64, limit: u32) -> Result<u64, StoreError>;
}
