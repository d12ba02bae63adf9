//! Row shapes as the database returns them (text and integers, the same columns in
//! every backend), and their checked conversion into [`Record`] and [`MidRow`]. Each
//! backend fills them from its own row type (SQLite's in `sqlite/decode.rs`).

use super::{ClusterRow, Load, MidRow, Record, StoreError};
use openmid_proto::api::ClusterKind;
use openmid_proto::ecc::{Priority, Queue, State, Topic};
use openmid_proto::mid::MidStatus;
use std::collections::HashMap;

/// Every `ecc` column, in the order the backends read them into [`EccRow`] (by position:
/// looking columns up by name was a sizeable share of the instance's CPU).
macro_rules! ecc_columns {
    () => {
        "id, queue, agent, topic, name, source, payload, state, priority, response_to, correlator, attempt, max_attempts, at_most_once, error, claimed_by, lease_expires_at, created_at, claimed_at, processed_at, duration_ms, assigned_to, selection, application, traceparent"
    };
}
pub(crate) use ecc_columns;

/// Every `mids` column, in the order the backends read them into [`MidDbRow`].
macro_rules! mid_columns {
    () => {
        "id, name, secret_hash, public_key, status, status_reason, version, hostname, protocol_version, enrolled_at, validated_at, last_seen_at, declared_profile, admin_profile, health, rekey_requested"
    };
}
pub(crate) use mid_columns;

/// `ecc` table row.
#[derive(Debug)]
pub(crate) struct EccRow {
    pub(crate) id: String,
    pub(crate) queue: String,
    pub(crate) agent: String,
    pub(crate) topic: String,
    pub(crate) name: String,
    pub(crate) source: String,
    pub(crate) payload: String,
    pub(crate) state: String,
    pub(crate) priority: i64,
    pub(crate) response_to: Option<String>,
    pub(crate) correlator: Option<String>,
    pub(crate) attempt: i64,
    pub(crate) max_attempts: i64,
    pub(crate) at_most_once: bool,
    pub(crate) error: Option<String>,
    pub(crate) claimed_by: Option<String>,
    pub(crate) lease_expires_at: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) claimed_at: Option<i64>,
    pub(crate) processed_at: Option<i64>,
    pub(crate) duration_ms: Option<i64>,
    pub(crate) assigned_to: Option<String>,
    pub(crate) selection: Option<String>,
    pub(crate) application: Option<String>,
    pub(crate) traceparent: Option<String>,
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
            traceparent: row.traceparent,
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
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) secret_hash: String,
    pub(crate) public_key: String,
    pub(crate) status: String,
    pub(crate) status_reason: Option<String>,
    pub(crate) version: String,
    pub(crate) hostname: String,
    pub(crate) protocol_version: i64,
    pub(crate) enrolled_at: i64,
    pub(crate) validated_at: Option<i64>,
    pub(crate) last_seen_at: Option<i64>,
    pub(crate) declared_profile: String,
    pub(crate) admin_profile: Option<String>,
    pub(crate) health: Option<String>,
    pub(crate) rekey_requested: bool,
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

/// The per-MID load from `(mid, 'ready' | 'processing', count)` rows, as every
/// backend's `load_by_mid` selects them.
pub(crate) fn load_by_mid(rows: Vec<(String, String, i64)>) -> HashMap<String, Load> {
    let mut load: HashMap<String, Load> = HashMap::new();
    for (mid, state, count) in rows {
        let entry = load.entry(mid).or_default();
        let count = u64::try_from(count).unwrap_or(0);
        if state == "ready" {
            entry.ready += count;
        } else {
            entry.processing += count;
        }
    }
    load
}

/// Clusters with their members in order from `(cluster, kind, member)` rows ordered
/// by cluster then rank (a cluster without members comes with a `None` member).
pub(crate) fn clusters(
    rows: Vec<(String, String, Option<String>)>,
) -> Result<Vec<ClusterRow>, StoreError> {
    let mut out: Vec<ClusterRow> = Vec::new();
    for (name, kind, member) in rows {
        if out.last().is_none_or(|c| c.name != name) {
            let kind = ClusterKind::parse(&kind)
                .ok_or_else(|| corrupt(&name, format!("cluster kind {kind}")))?;
            out.push(ClusterRow {
                name: name.clone(),
                kind,
                members: Vec::new(),
            });
        }
        if let (Some(member), Some(cluster)) = (member, out.last_mut()) {
            cluster.members.push(member);
        }
    }
    Ok(out)
}
