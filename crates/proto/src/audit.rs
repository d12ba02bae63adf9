//! The audit log as the API shows it: who did what to which thing, from where, and how
//! it ended — admin calls, and every command, SSH command and SQL statement a MID ran.
//! Append-only: the API lists it and has no route that changes or deletes an entry;
//! retention alone removes old ones.

use serde::{Deserialize, Serialize};

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increasing with time; `before` pages by it.
    pub id: i64,
    /// When, RFC 3339.
    pub at: String,
    /// When, epoch milliseconds.
    pub at_ms: i64,
    /// Who: `token:<fingerprint>` (the admin token's short fingerprint, never the
    /// token), `session:<hash>` (a dashboard session), `mid:<name>` (what a MID ran),
    /// or `unauthenticated` (a call refused for its missing or wrong token).
    pub actor: String,
    /// What, as `thing.verb`: `mid.validate`, `alias.put`, `credential.delete`,
    /// `ecc.insert`, `action.run`, `enroll-token.create`, `command.run`,
    /// `ssh.run`, `sql.run` …
    pub action: String,
    /// Which thing (a name or id), when the action has one.
    pub target: Option<String>,
    /// The peer address the call came from (admin calls).
    pub from: Option<String>,
    /// `ok` or `failed`.
    pub outcome: String,
    /// The HTTP status of an admin call, or the exit status of a command.
    pub status: Option<i64>,
    /// The MID that ran it (commands and statements).
    pub mid: Option<String>,
    /// The ECC output it belongs to.
    pub output_id: Option<String>,
    /// The output's topic.
    pub topic: Option<String>,
    /// The command line or statement text (no credential, no environment values,
    /// no standard input, no bound parameters).
    pub detail: Option<String>,
    /// Rows a statement returned or changed.
    pub rows: Option<i64>,
    /// Why it failed, when that is known (the probe's error).
    pub error: Option<String>,
}

/// `GET /api/v1/audit`: one page, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditPage {
    /// The entries.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last one.
    pub next_before: Option<i64>,
}

/// Largest page.
pub const MAX_AUDIT_PAGE: u32 = 1000;
/// Page size when none is asked.
pub const DEFAULT_AUDIT_PAGE: u32 = 100;
