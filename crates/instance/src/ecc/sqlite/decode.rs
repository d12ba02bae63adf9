//! SQLite rows into the backend-neutral row shapes of [`crate::ecc::rows`], by column
//! position (looking columns up by name was a sizeable share of the instance's CPU).

use crate::ecc::rows::{EccRow, HistoryDbRow, MidDbRow};

impl EccRow {
    /// Reads a row selected as `ecc_columns!`.
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
            traceparent: row.get(24)?,
        })
    }
}

impl MidDbRow {
    /// Reads a row selected as `mid_columns!`.
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
