//! The stored shape of a dashboard session.

/// A dashboard session as stored: never the session id itself, only its hash, so a
/// copy of the database lets nobody in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSessionRow {
    /// SHA-256 of the session id (hex).
    pub id_hash: String,
    /// The CSRF token every state-changing form of this session carries.
    pub csrf_token: String,
    /// Logged in at (epoch ms).
    pub created_at: i64,
    /// Last request at (epoch ms).
    pub last_seen_at: i64,
    /// Not accepted from then on (epoch ms); moved on by use.
    pub expires_at: i64,
}
