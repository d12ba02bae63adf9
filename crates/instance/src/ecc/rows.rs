//! Row shapes as the database returns them, and their checked conversion into
//! [`Record`] and [`MidRow`]. Shared by every backend.

use super::{MidRow, Record, StoreError};
use openmid_proto::ecc::{Priority, Queue, State, Topic};
use openmid_proto::mid::MidStatus;

/// Every `ecc` column, in the order [`EccRow::from_row`] reads them (by position:
/// looking columns up by name was a sizeable share of the instance's CPU).
macro_rules! ecc_columns {
    () => {
        "id, queue, agent, topic, name, source, payload, state, priority, response_to, correlator, attempt, max_attempts, at_most_once, error, claimed_by, lease_expires_at, created_at, claimed_at, processed_at, duration_ms, assigned_to, selection, application"
    };
}
pub(crate) use ecc_columns;

/// Every `mids` column, in the order [`MidDbRow::from_row`] reads them.
macro_rules! mid_columns {
    () => {
        "id, name, secret_hash, public_key, status, status_reason, version, hostname, protocol_version, enrolled_at, validated_at, last_seen_at, declared_profile, admin_profile, health, rekey_requested"
    };
}
pub(crate) use mid_columns;

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
    /// Reads a row selected as [`ecc_columns`].
    pub(crate) fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            queue: row.get(1)?,
            agent: row.get(2)?,
            topic: row.get(3)?,
            name: row.get(4)?,
            source: row.get(5)?,
            payload: row.get(6)?,
            state: row.get(7)?,
            priority: row.get(8)?,
            response_to: row.get(9)?,
            correlator: row.get(10)?,
            attempt: row.get(11)?,
            max_attempts: row.get(12)?,
            at_most_once: row.get(13)?,
            error: row.get(14)?,
            claimed_by: row.get(15)?,
            lease_expires_at: row.get(16)?,
            created_at: row.get(17)?,
            claimed_at: row.get(18)?,
            processed_at: row.get(19)?,
            duration_ms: row.get(20)?,
            assigned_to: row.get(21)?,
            selection: row.get(22)?,
            application: row.get(23)?,
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
    /// Reads a row selected as [`mid_columns`].
    pub(crate) fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            name: row.get(1)?,
            secret_hash: row.get(2)?,
            public_key: row.get(3)?,
            status: row.get(4)?,
            status_reason: row.get(5)?,
            version: row.get(6)?,
            hostname: row.get(7)?,
            protocol_version: row.get(8)?,
            enrolled_at: row.get(9)?,
            validated_at: row.get(10)?,
            last_seen_at: row.get(11)?,
            declared_profile: row.get(12)?,
            admin_profile: row.get(13)?,
            health: row.get(14)?,
            rekey_requested: row.get(15)?,
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
    /// Reads a row selected as `id, at, from_status, to_status, reason`.
    pub(crate) fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            at: row.get(1)?,
            from_status: row.get(2)?,
            to_status: row.get(3)?,
            reason: row.get(4)?,
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
