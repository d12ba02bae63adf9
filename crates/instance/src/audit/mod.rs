//! The audit log: who did what, from where, and how it ended. Admin API calls are
//! recorded in one place (a middleware on the admin router, [`crate::api`]); what a
//! MID ran (commands, SSH commands, SQL statements) is recorded in one place too, when
//! its result is recorded ([`crate::dispatch`]). The dashboard records its own actions
//! with [`record_session_action`]. Entries are appended, listed and purged by age:
//! nothing changes one.

pub mod admin;
pub mod jobs;

use crate::ecc::{AuditRow, NewAuditEntry, Store};
use openmid_proto::audit::AuditEntry;
use openmid_proto::time::{now_ms, rfc3339};

/// Entries purged per statement, so retention never holds the writer long.
pub const PURGE_BATCH: u32 = 500;

/// Hex digits of a fingerprint: enough to tell tokens and sessions apart, far too few
/// to help anyone guess one.
const FINGERPRINT_HEX: usize = 12;

fn short_hash(secret: &str) -> String {
    let mut hex = crate::auth::hash_token(secret);
    hex.truncate(FINGERPRINT_HEX);
    hex
}

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The admin token, by its short fingerprint (never the token).
    Token(String),
    /// A dashboard session, by a short hash of its id (never the id).
    Session(String),
    /// A MID, for what it ran.
    Mid(String),
    /// A call refused for a missing or wrong token.
    Unauthenticated,
}

impl Actor {
    /// The actor of a call made with the admin `token`.
    pub fn token(token: &str) -> Self {
        Actor::Token(short_hash(token))
    }

    /// The actor of a dashboard session whose id (a secret: its cookie) is `session_id`.
    pub fn session(session_id: &str) -> Self {
        Actor::Session(short_hash(session_id))
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Token(fp) => write!(f, "token:{fp}"),
            Actor::Session(h) => write!(f, "session:{h}"),
            Actor::Mid(name) => write!(f, "mid:{name}"),
            Actor::Unauthenticated => f.write_str("unauthenticated"),
        }
    }
}

/// `ok` for a status below 400, `failed` from there.
pub fn outcome_of_status(status: u16) -> &'static str {
    if status < 400 { "ok" } else { "failed" }
}

/// Appends an entry; a store failure is logged, never passed on (the action itself
/// happened, and its answer must not be lost for its record).
pub async fn append(store: &dyn Store, entry: NewAuditEntry) {
    if let Err(e) = store.append_audit(&entry).await {
        tracing::error!(action = %entry.action, actor = %entry.actor, error = %e, "could not write an audit entry");
    }
}

/// Records an action of a dashboard session: `action` as `thing.verb`
/// (`mid.validate`, `alias.delete` …), its `target`, the `peer` it came from and the
/// HTTP status it ended with.
pub async fn record_session_action(
    store: &dyn Store,
    session_id: &str,
    action: &str,
    target: Option<&str>,
    peer: Option<std::net::IpAddr>,
    status: u16,
) {
    append(
        store,
        NewAuditEntry {
            at: now_ms(),
            actor: Actor::session(session_id).to_string(),
            action: action.to_string(),
            target: target.map(str::to_string),
            peer: peer.map(|p| p.to_string()),
            outcome: outcome_of_status(status).to_string(),
            status: Some(i64::from(status)),
            ..NewAuditEntry::default()
        },
    )
    .await;
}

/// An entry as the API shows it.
pub fn to_api(row: AuditRow) -> AuditEntry {
    let e = row.entry;
    AuditEntry {
        id: row.id,
        at: rfc3339(e.at),
        at_ms: e.at,
        actor: e.actor,
        action: e.action,
        target: e.target,
        from: e.peer,
        outcome: e.outcome,
        status: e.status,
        mid: e.mid,
        output_id: e.output_id,
        topic: e.topic,
        detail: e.detail,
        rows: e.rows,
        error: e.error,
    }
}

/// Deletes entries older than `days`, [`PURGE_BATCH`] at a time. Returns how many
/// went. `days == 0` keeps them for ever.
pub async fn purge(store: &dyn Store, days: u32, now: i64) -> Result<u64, crate::ecc::StoreError> {
    if days == 0 {
        return Ok(0);
    }
    let before = now.saturating_sub(i64::from(days).saturating_mul(86_400_000));
    let mut total = 0;
    loop {
        let deleted = store.purge_audit(before, PURGE_BATCH).await?;
        total += deleted;
        if deleted < u64::from(PURGE_BATCH) {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_never_carry_the_secret() {
        let token = "s3cr3t-admin-token-value";
        let actor = Actor::token(token).to_string();
        assert!(actor.starts_with("token:"));
        assert_eq!(actor.len(), "token:".len() + FINGERPRINT_HEX);
        assert!(!actor.contains(token));
        assert_eq!(actor, Actor::token(token).to_string());
        assert_ne!(actor, Actor::token("another").to_string());
        let session = Actor::session("cookie-value").to_string();
        assert!(session.starts_with("session:") && !session.contains("cookie-value"));
        assert_eq!(Actor::Mid("m1".into()).to_string(), "mid:m1");
    }
}
