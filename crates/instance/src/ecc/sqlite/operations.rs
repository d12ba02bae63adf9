//! The write operations that apply the queue's rules ([`crate::ecc::rules`]: which
//! result is recorded, superseded or a duplicate; what a lapsed or released lease
//! becomes; enrollment's outcomes) inside the writer's transaction: each reads the
//! rows a rule needs, asks the rule, and writes what it says.

use super::*;
use crate::ecc::rules;

/// A result as the writer needs it: its payload already encoded, off the writer thread.
pub(super) struct EncodedResult {
    pub(super) output_id: String,
    pub(super) attempt: u32,
    pub(super) payload: String,
    pub(super) error: Option<String>,
    pub(super) duration_ms: i64,
}

/// Enrolls a MID with a one-time token, in the writer's transaction.
pub(super) fn enroll(c: &Connection, token_hash: &str, mid: MidRow) -> Result<MidRow, EnrollError> {
    let auto_validate: Option<bool> = c
        .prepare_cached(
            "SELECT auto_validate FROM enrollment_tokens WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
        )
        .and_then(|mut s| {
            s.query_row(params![token_hash, mid.enrolled_at], |r| r.get(0))
                .optional()
        })
        .map_err(StoreError::from)?;
    let taken: bool = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM mids WHERE name = ?)")
        .and_then(|mut s| s.query_row([&mid.name], |r| r.get(0)))
        .map_err(StoreError::from)?;
    let row = rules::enrollment(auto_validate, taken, mid)?;
    let written = (|| -> rusqlite::Result<()> {
        c.prepare_cached(
            "UPDATE enrollment_tokens SET used_by = ?, used_at = ? WHERE token_hash = ?",
        )?
        .execute(params![row.id, row.enrolled_at, token_hash])?;
        c.prepare_cached(
            "INSERT INTO mids (id, name, secret_hash, public_key, status, status_reason, version, hostname, protocol_version, enrolled_at, validated_at, last_seen_at, declared_profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?
        .execute(params![
            row.id,
            row.name,
            row.secret_hash,
            row.public_key,
            row.status.as_str(),
            row.status_reason,
            row.version,
            row.hostname,
            i64::from(row.protocol_version),
            row.enrolled_at,
            row.validated_at,
            row.last_seen_at,
            json(&row.declared_profile),
        ])?;
        insert_history(
            c,
            &row.id,
            None,
            row.status,
            row.status_reason.as_deref().unwrap_or("enrolled"),
            row.enrolled_at,
        )
    })();
    written.map_err(StoreError::from)?;
    Ok(row)
}

/// Records one result, in the writer's transaction: the input record, and the output
/// finished — or says why not (unknown output, repeat, superseded attempt).
pub(super) fn record_result(
    c: &Connection,
    mid_name: &str,
    result: EncodedResult,
    now: i64,
) -> Result<RecordedResult, StoreError> {
    let output = ecc_row(
        c,
        concat!(
            "SELECT ",
            ecc_columns!(),
            " FROM ecc WHERE id = ? AND queue = 'output'"
        ),
        [&result.output_id],
    )?;
    // Recording an input finishes its output in the same transaction, so an output
    // still `processing` has no input: look only for finished ones.
    let recorded: Option<u32> = match &output {
        Some(o) if o.state != State::Processing => c
            .prepare_cached("SELECT attempt FROM ecc WHERE queue = 'input' AND response_to = ?")?
            .query_row([&o.id], |r| r.get::<_, i64>(0))
            .optional()?
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
    let cancelled = take_cancel_request(c, &output.id)?;
    let finished = rules::finish(
        output,
        mid_name,
        rules::ResultToRecord {
            attempt: result.attempt,
            payload: result.payload,
            error: result.error,
            duration_ms: result.duration_ms,
        },
        cancelled,
        uuid::Uuid::now_v7().to_string(),
        now,
    );
    insert_record(c, &finished.input)?;
    c.prepare_cached(
        "UPDATE ecc SET state = ?, error = ?, processed_at = ?, lease_expires_at = NULL WHERE id = ?",
    )?
    .execute(params![
        finished.output.state.as_str(),
        finished.output.error,
        now,
        finished.output.id
    ])?;
    Ok(RecordedResult {
        outcome,
        finished: Some(finished),
        caller_audited: false,
    })
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

pub(super) fn insert_history(
    c: &Connection,
    mid_id: &str,
    from: Option<MidStatus>,
    to: MidStatus,
    reason: &str,
    now: i64,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO mid_status_history (id, mid_id, at, from_status, to_status, reason) VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        uuid::Uuid::now_v7().to_string(),
        mid_id,
        now,
        from.map(MidStatus::as_str),
        to.as_str(),
        reason
    ])?;
    Ok(())
}

/// The reason an output was cancelled, if it was; the request is settled with it.
pub(super) fn take_cancel_request(
    c: &Connection,
    output_id: &str,
) -> Result<Option<String>, StoreError> {
    Ok(
        c.prepare_cached("DELETE FROM cancel_requests WHERE output_id = ? RETURNING reason")?
            .query_row([output_id], |r| r.get(0))
            .optional()?,
    )
}

/// The submission `key` was used for since `not_before`.
pub(super) fn idempotent_hit(
    c: &Connection,
    key: &str,
    not_before: i64,
) -> Result<Option<IdempotentHit>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT output_id, request_hash FROM idempotency_keys WHERE key = ? AND created_at >= ?",
    )?
    .query_row(params![key, not_before], |r| {
        Ok(IdempotentHit {
            output_id: r.get(0)?,
            request_hash: r.get(1)?,
        })
    })
    .optional()?)
}

/// Ends the leases of `outputs`: back to `ready` for another attempt, or `error` when
/// attempts are used up or the output is at-most-once. `why` starts the error text.
pub(super) fn end_leases(
    c: &Connection,
    outputs: Vec<Record>,
    why: &str,
    now: i64,
) -> Result<Vec<Record>, StoreError> {
    let mut changed = Vec::with_capacity(outputs.len());
    for output in outputs {
        let cancel = take_cancel_request(c, &output.id)?;
        let end = rules::lease_end(&output, cancel.as_deref(), why);
        let row = match &end {
            rules::LeaseEnd::Retry => ecc_row(
                c,
                concat!(
                    "UPDATE ecc SET state = 'ready', lease_expires_at = NULL WHERE id = ? AND state = 'processing' AND attempt = ? RETURNING ",
                    ecc_columns!()
                ),
                params![output.id, i64::from(output.attempt)],
            )?,
            // A cancelled output ends as asked whatever its attempt: the cancel was
            // for the output, not one attempt of it.
            rules::LeaseEnd::Cancelled(error) => ecc_row(
                c,
                concat!(
                    "UPDATE ecc SET state = 'cancelled', error = ?, processed_at = ?, lease_expires_at = NULL WHERE id = ? AND state = 'processing' RETURNING ",
                    ecc_columns!()
                ),
                params![error, now, output.id],
            )?,
            rules::LeaseEnd::Failed(error) => ecc_row(
                c,
                concat!(
                    "UPDATE ecc SET state = 'error', error = ?, processed_at = ?, lease_expires_at = NULL WHERE id = ? AND state = 'processing' AND attempt = ? RETURNING ",
                    ecc_columns!()
                ),
                params![error, now, output.id, i64::from(output.attempt)],
            )?,
        };
        changed.extend(row);
    }
    Ok(changed)
}
