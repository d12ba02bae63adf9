//! The audit log.

use crate::*;
use openmid_proto::audit::AuditPage;

/// Filters of [`ApiClient::list_audit`]; each `None` means any.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact action, or `thing.*`.
    pub action: Option<String>,
    /// What this MID ran.
    pub mid: Option<String>,
    /// At or after: RFC 3339 or epoch milliseconds.
    pub since: Option<String>,
    /// Before: RFC 3339 or epoch milliseconds.
    pub until: Option<String>,
    /// Entries older than this id (a page's `next_before`).
    pub before: Option<i64>,
    /// Page size.
    pub limit: Option<u32>,
}

impl ApiClient {
    /// One page of the audit log, newest first.
    pub async fn list_audit(&self, q: &AuditQuery) -> Result<AuditPage, ClientError> {
        let mut params = Vec::new();
        for (name, value) in [
            ("actor", q.actor.clone()),
            ("action", q.action.clone()),
            ("mid", q.mid.clone()),
            ("since", q.since.clone()),
            ("until", q.until.clone()),
            ("before", q.before.map(|b| b.to_string())),
            ("limit", q.limit.map(|l| l.to_string())),
        ] {
            if let Some(value) = value {
                params.push(format!("{name}={}", encode(&value)));
            }
        }
        let mut path = "api/v1/audit".to_string();
        if !params.is_empty() {
            path.push('?');
            path.push_str(&params.join("&"));
        }
        self.get(&path).await
    }
}
