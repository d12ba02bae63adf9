//! The writes that apply the queue's rules ([`crate::ecc::rules`]) on PostgreSQL, in
//! the caller's transaction: each locks the row a rule decides on, reads what the
//! rule needs, asks it, and writes what it says.

use super::ecc_row;
use crate::ecc::rows::ecc_columns;
use crate::ecc::{IdempotentHit, Record, RecordedResult, StoreError, rules};
use openmid_proto::ecc::State;
use openmid_proto::mid::{AckOutcome, WorkResult};
use sqlx::{PgConnection, Row};

/// Writes a new record.
pub(super) async fn insert_record(c: &mut PgConnection, r: &Record) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO ecc (",
        ecc_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)"
    ))
    .bind(&r.id)
    .bind(r.queue.as_str())
    .bind(&r.agent)
    .bind(r.topic.as_str())
    .bind(&r.name)
    .bind(&r.source)
    .bind(&r.payload)
    .bind(r.state.as_str())
    .bind(r.priority.rank())
    .bind(&r.response_to)
    .bind(&r.correlator)
    .bind(i64::from(r.attempt))
    .bind(i64::from(r.max_attempts))
    .bind(r.at_most_once)
    .bind(&r.error)
    .bind(&r.claimed_by)
    .bind(r.lease_expires_at)
    .bind(r.created_at)
    .bind(r.claimed_at)
    .bind(r.processed_at)
    .bind(r.duration_ms)
    .bind(&r.assigned_to)
    .bind(&r.selection)
    .bind(&r.application)
    .bind(&r.traceparent)
    .execute(c)
    .await?;
    Ok(())
}

/// Records one result: the input record, and the output finished — or says why not.
pub(super) async fn record_result(
    c: &mut PgConnection,
    mid_name: &str,
    result: &WorkResult,
    now: i64,
) -> Result<RecordedResult, StoreError> {
    let output = ecc_row(
        &mut *c,
        sqlx::query(concat!(
            "SELECT ",
            ecc_columns!(),
            " FROM ecc WHERE id = $1 AND queue = 'output' FOR UPDATE"
        ))
        .bind(&result.output_id),
    )
    .await?;
    let recorded: Option<u32> = match &output {
        Some(o) if o.state != State::Processing => sqlx::query_scalar::<_, i64>(
            "SELECT attempt FROM ecc WHERE queue = 'input' AND response_to = $1",
        )
        .bind(&o.id)
        .fetch_optional(&mut *c)
        .await?
        .map(|a| u32::try_from(a).unwrap_or(u32::MAX)),
        _ => None,
    };
    let outcome = rules::result_outcome(output.as_ref(), recorded, mid_name, result.attempt);
    let (AckOutcome::Recorded, Some(output)) = (outcome, output) else {
        return Ok(RecordedResult {
            outcome,
            finished: None,
            caller_audited: false,
        });
    };
    let cancelled = take_cancel_request(c, &output.id).await?;
    let finished = rules::finish(
        output,
        mid_name,
        rules::ResultToRecord {
            attempt: result.attempt,
            payload: result.payload.to_string(),
            error: result.error.clone(),
            duration_ms: i64::try_from(result.duration_ms).unwrap_or(i64::MAX),
        },
        cancelled,
        uuid::Uuid::now_v7().to_string(),
        now,
    );
    insert_record(c, &finished.input).await?;
    sqlx::query(
        "UPDATE ecc SET state = $1, error = $2, processed_at = $3, lease_expires_at = NULL WHERE id = $4",
    )
    .bind(finished.output.state.as_str())
    .bind(&finished.output.error)
    .bind(now)
    .bind(&finished.output.id)
    .execute(&mut *c)
    .await?;
    Ok(RecordedResult {
        outcome,
        finished: Some(finished),
        caller_audited: false,
    })
}

/// The reason an output was cancelled, if it was; the request is settled with it.
pub(super) async fn take_cancel_request(
    c: &mut PgConnection,
    output_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("DELETE FROM cancel_requests WHERE output_id = $1 RETURNING reason")
            .bind(output_id)
            .fetch_optional(c)
            .await?,
    )
}

/// The submission `key` was used for since `not_before`.
pub(super) async fn idempotent_hit(
    c: &mut PgConnection,
    key: &str,
    not_before: i64,
) -> Result<Option<IdempotentHit>, StoreError> {
    sqlx::query(
        "SELECT output_id, request_hash FROM idempotency_keys WHERE key = $1 AND created_at >= $2",
    )
    .bind(key)
    .bind(not_before)
    .fetch_optional(c)
    .await?
    .map(|r| {
        Ok(IdempotentHit {
            output_id: r.try_get(0)?,
            request_hash: r.try_get(1)?,
        })
    })
    .transpose()
}

/// Ends the leases of `outputs` (selected `FOR UPDATE` by the caller) as
/// [`rules::lease_end`] says.
pub(super) async fn end_leases(
    c: &mut PgConnection,
    outputs: Vec<Record>,
    why: &str,
    now: i64,
) -> Result<Vec<Record>, StoreError> {
    let mut changed = Vec::with_capacity(outputs.len());
    for output in outputs {
        let cancel = take_cancel_request(c, &output.id).await?;
        let end = rules::lease_end(&output, cancel.as_deref(), why);
        let query = match &end {
            rules::LeaseEnd::Retry => sqlx::query(concat!(
                "UPDATE ecc SET state = 'ready', lease_expires_at = NULL WHERE id = $1 AND state = 'processing' AND attempt = $2 RETURNING ",
                ecc_columns!()
            ))
            .bind(&output.id)
            .bind(i64::from(output.attempt)),
            rules::LeaseEnd::Cancelled(error) => sqlx::query(concat!(
                "UPDATE ecc SET state = 'cancelled', error = $2, processed_at = $3, lease_expires_at = NULL WHERE id = $1 AND state = 'processing' RETURNING ",
                ecc_columns!()
            ))
            .bind(&output.id)
            .bind(error.clone())
            .bind(now),
            rules::LeaseEnd::Failed(error) => sqlx::query(concat!(
                "UPDATE ecc SET state = 'error', error = $3, processed_at = $4, lease_expires_at = NULL WHERE id = $1 AND state = 'processing' AND attempt = $2 RETURNING ",
                ecc_columns!()
            ))
            .bind(&output.id)
            .bind(i64::from(output.attempt))
            .bind(error.clone())
            .bind(now),
        };
        changed.extend(ecc_row(&mut *c, query).await?);
    }
    Ok(changed)
}
