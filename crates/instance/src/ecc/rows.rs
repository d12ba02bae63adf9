//! Row shapes as the database returns them, and their checked conversion into
//! [`Record`] and [`MidRow`]. Shared by every backend.

use super::{MidRow, Record, StoreError};
use openmid_proto::ecc::{Priority, Queue, State, Topic};
use openmid_proto::mid::MidStatus;

/// `ecc` table row.
#[derive(Debug)]
pub(crate) struct EccRow {
    id: String,
    queue: String,
    agent: String,
    topic: String,
    name: String,
    source: String,
    payload: String,
    state: String,
    priority: i64,
    response_to: Option<String>,
    correlator: Option<String>,
    attempt: i64,
    max_attempts: i64,
    at_most_once: bool,
    error: Option<String>,
    claimed_by: Option<String>,
    lease_expires_at: Option<i64>,
    created_at: i64,
    claimed_at: Option<i64>,
    processed_at: Option<i64>,
    duration_ms: Option<i64>,
    assigned_to: Option<String>,
    selection: Option<String>,
    application: Option<String>,
}

impl EccRow {
    /// Reads a row selected with every column (`SELECT *`).
    pub(crate) fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            queue: row.get("queue")?,
            agent: row.get("agent")?,
            topic: row.get("topic")?,
            name: row.get("name")?,
            source: row.get("source")?,
            payload: row.get("payload")?,
            state: row.get("state")?,
            priority: row.get("priority")?,
            response_to: row.get("response_to")?,
            correlator: row.get("correlator")?,
            attempt: row.get("attempt")?,
            max_attempts: row.get("max_attempts")?,
            at_most_once: row.get("at_most_once")?,
            error: row.get("error")?,
            claimed_by: row.get("claimed_by")?,
            lease_expires_at: row.get("lease_expires_at")?,
            created_at: row.get("created_at")?,
            claimed_at: row.get("claimed_at")?,
            processed_at: row.get("processed_at")?,
            duration_ms: row.get("duration_ms")?,
            assigned_to: row.get("assigned_to")?,
            selection: row.get("selection")?,
            application: row.get("application")?,
        })
    }
}

fn corrupt(id: &str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        id: id.to_string(),
        detail: detail.to_string(),
    }
}

impl TryFrom<EccRow> for Record {
    type Error = StoreError;

    fn try_from(row: EccRow) -> Result<Self, StoreError> {
        let queue: Queue = row.queue.parse().map_err(|e| corrupt(&row.id, e))?;
        let state: State = row.state.parse().map_err(|e| corrupt(&row.id, e))?;
        let topic: Topic = row.topic.parse().map_err(|e| corrupt(&row.id, e))?;
        let priority = Priority::from_rank(row.priority)
            .ok_or_else(|| corrupt(&row.id, format!("priority {}", row.priority)))?;
        let attempt = u32::try_from(row.attempt).map_err(|e| corrupt(&row.id, e))?;
        let max_attempts = u32::try_from(row.max_attempts).map_err(|e| corrupt(&row.id, e))?;
        Ok(Record {
            id: row.id,
            queue,
            agent: row.agent,
            topic,
            name: row.name,
            source: row.source,
            payload: row.payload,
            state,
            priority,
            response_to: row.response_to,
            correlator: row.correlator,
            attempt,
            max_attempts,
            at_most_once: row.at_most_once,
            error: row.error,
            claimed_by: row.claimed_by,
            lease_expires_at: row.lease_expires_at,
            created_at: row.created_at,
            claimed_at: row.claimed_at,
            processed_at: row.processed_at,
            duration_ms: row.duration_ms,
            assigned_to: row.assigned_to,
            selection: row.selection,
            application: row.application,
        })
    }
}

/// Converts a batch of rows, failing on the first corrupt one.
pub(crate) fn records(rows: Vec<EccRow>) -> Result<Vec<Record>, StoreError> {
    rows.into_iter().map(Record::try_from).collect()
}

/// `mids` table row.
#[derive(Debug)]
pub(crate) struct MidDbRow {
    id: String,
    name: String,
    secret_hash: String,
    public_key: String,
    status: String,
    status_reason: Option<String>,
    version: String,
    hostname: String,
    protocol_version: i64,
    enrolled_at: i64,
    validated_at: Option<i64>,
    last_seen_at: Option<i64>,
    declared_profile: String,
    admin_profile: Option<String>,
    health: Option<String>,
    rekey_requested: bool,
}

impl MidDbRow {
    /// Reads a row selected with every column (`SELECT *`).
    pub(crate) fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            name: row.get("name")?,
            secret_hash: row.get("secret_hash")?,
            public_key: row.get("public_key")?,
            status: row.get("status")?,
            status_reason: row.get("status_reason")?,
            version: row.get("version")?,
            hostname: row.get("hostname")?,
            protocol_version: row.get("protocol_version")?,
            enrolled_at: row.get("enrolled_at")?,
            validated_at: row.get("validated_at")?,
            last_seen_at: row.get("last_seen_at")?,
            declared_profile: row.get("declared_profile")?,
            admin_profile: row.get("admin_profile")?,
            health: row.get("health")?,
            rekey_requested: row.get("rekey_requested")?,
        })
    }
}

impl TryFrom<MidDbRow> for MidRow {
    type Error = StoreError;

    fn try_from(row: MidDbRow) -> Result<Self, StoreError> {
        let status = MidStatus::parse(&row.status)
            .ok_or_else(|| corrupt(&row.id, format!("status {}", row.status)))?;
        let protocol_version =
            u32::try_from(row.protocol_version).map_err(|e| corrupt(&row.id, e))?;
        let declared_profile =
            serde_json::from_str(&row.declared_profile).map_err(|e| corrupt(&row.id, e))?;
        let admin_profile = row
            .admin_profile
            .map(|p| serde_json::from_str(&p))
            .transpose()
            .map_err(|e| corrupt(&row.id, e))?;
        let health = row
            .health
            .map(|h| serde_json::from_str(&h))
            .transpose()
            .map_err(|e| corrupt(&row.id, e))?;
        Ok(MidRow {
            id: row.id,
            name: row.name,
            secret_hash: row.secret_hash,
            public_key: row.public_key,
            status,
            status_reason: row.status_reason,
            version: row.version,
            hostname: row.hostname,
            protocol_version,
            enrolled_at: row.enrolled_at,
            validated_at: row.validated_at,
            last_seen_at: row.last_seen_at,
            declared_profile,
            admin_profile,
            health,
            rekey_requested: row.rekey_requested,
        })
    }
}

/// `mid_status_history` row.
#[derive(Debug)]
pub(crate) struct HistoryDbRow {
    pub(crate) id: String,
    pub(crate) at: i64,
    pub(crate) from_status: Option<String>,
    pub(crate) to_status: String,
    pub(crate) reason: String,
}

impl HistoryDbRow {
    /// Reads a row selected with every column (`SELECT *`).
    pub(crate) fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get("id")?,
            at: row.get("at")?,
            from_status: row.get("from_status")?,
            to_status: row.get("to_status")?,
            reason: row.get("reason")?,
        })
    }
}

impl TryFrom<HistoryDbRow> for super::StatusChangeRow {
    type Error = StoreError;

    fn try_from(row: HistoryDbRow) -> Result<Self, StoreError> {
        let parse =
            |s: &str| MidStatus::parse(s).ok_or_else(|| corrupt(&row.id, format!("status {s}")));
        Ok(super::StatusChangeRow {
            at: row.at,
            from: row.from_status.as_deref().map(parse).transpose()?,
            to: parse(&row.to_status)?,
            reason: row.reason.clone(),
        })
    }
}
