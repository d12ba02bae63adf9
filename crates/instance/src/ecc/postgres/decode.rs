//! PostgreSQL rows into the backend-neutral row shapes of [`crate::ecc::rows`], by
//! column position (the same column lists as every backend).

use crate::ecc::rows::{EccRow, HistoryDbRow, MidDbRow};
use crate::ecc::{AliasRow, CredentialRow, StoreError};
use sqlx::Row;
use sqlx::postgres::PgRow;

/// A row selected as `ecc_columns!`.
pub(super) fn ecc(row: &PgRow) -> Result<EccRow, StoreError> {
    Ok(EccRow {
        id: row.try_get(0)?,
        queue: row.try_get(1)?,
        agent: row.try_get(2)?,
        topic: row.try_get(3)?,
        name: row.try_get(4)?,
        source: row.try_get(5)?,
        payload: row.try_get(6)?,
        state: row.try_get(7)?,
        priority: row.try_get(8)?,
        response_to: row.try_get(9)?,
        correlator: row.try_get(10)?,
        attempt: row.try_get(11)?,
        max_attempts: row.try_get(12)?,
        at_most_once: row.try_get(13)?,
        error: row.try_get(14)?,
        claimed_by: row.try_get(15)?,
        lease_expires_at: row.try_get(16)?,
        created_at: row.try_get(17)?,
        claimed_at: row.try_get(18)?,
        processed_at: row.try_get(19)?,
        duration_ms: row.try_get(20)?,
        assigned_to: row.try_get(21)?,
        selection: row.try_get(22)?,
        application: row.try_get(23)?,
        traceparent: row.try_get(24)?,
    })
}

/// A row selected as `mid_columns!`.
pub(super) fn mid(row: &PgRow) -> Result<MidDbRow, StoreError> {
    Ok(MidDbRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        secret_hash: row.try_get(2)?,
        public_key: row.try_get(3)?,
        status: row.try_get(4)?,
        status_reason: row.try_get(5)?,
        version: row.try_get(6)?,
        hostname: row.try_get(7)?,
        protocol_version: row.try_get(8)?,
        enrolled_at: row.try_get(9)?,
        validated_at: row.try_get(10)?,
        last_seen_at: row.try_get(11)?,
        declared_profile: row.try_get(12)?,
        admin_profile: row.try_get(13)?,
        health: row.try_get(14)?,
        rekey_requested: row.try_get(15)?,
    })
}

/// A row selected as `id, at, from_status, to_status, reason`.
pub(super) fn history(row: &PgRow) -> Result<HistoryDbRow, StoreError> {
    Ok(HistoryDbRow {
        id: row.try_get(0)?,
        at: row.try_get(1)?,
        from_status: row.try_get(2)?,
        to_status: row.try_get(3)?,
        reason: row.try_get(4)?,
    })
}

/// A row selected as the credential columns.
pub(super) fn credential(row: &PgRow) -> Result<CredentialRow, StoreError> {
    Ok(CredentialRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        description: row.try_get(2)?,
        kind: row.try_get(3)?,
        shown: row.try_get(4)?,
        sealed: row.try_get(5)?,
        key_id: row.try_get(6)?,
        created_at: row.try_get(7)?,
        updated_at: row.try_get(8)?,
    })
}

/// A row selected as the alias columns.
pub(super) fn alias(row: &PgRow) -> Result<AliasRow, StoreError> {
    Ok(AliasRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        credential: row.try_get(2)?,
        spec: row.try_get(3)?,
        created_at: row.try_get(4)?,
        updated_at: row.try_get(5)?,
    })
}
