//! The write operations that carry the queue's rules — which result is recorded,
//! superseded or a duplicate; what a lapsed or released lease becomes; what a
//! cancelled output ends as; enrollment's outcomes — each run inside the writer's
//! transaction by the [`Store`](super::Store) methods that need them.

use super::*;

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
    let Some(auto_validate) = auto_validate else {
        return Err(EnrollError::TokenInvalid);
    };
    let taken: bool = c
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM mids WHERE name = ?)")
        .and_then(|mut s| s.query_row([&mid.name], |r| r.get(0)))
        .map_err(StoreError::from)?;
    if taken {
        return Err(EnrollError::NameTaken(mid.name.clone()));
    }
    let mut row = mid;
    if auto_validate {
        row.status = MidStatus::Up;
        row.status_reason = Some("validated by its enrollment token".into());
        row.validated_at = Some(row.enrolled_at);
    } else {
        row.status = MidStatus::ValidationPending;
        row.status_reason = Some("waiting for an admin to validate it".into());
    }
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
    let Some(output) = ecc_row(
        c,
        concat!(
            "SELECT ",
            ecc_columns!(),
            " FROM ecc WHERE id = ? AND queue = 'output'"
        ),
        [&result.output_id],
    )?
    else {
        return Ok(RecordedResult {
            outcome: AckOutcome::Unknown,
            finished: None,
        });
    };
    // Recording an input finishes its output in the same transaction, so an output
    // still `processing` has no input: look only for finished ones.
    let answered: Option<i64> = if output.state == State::Processing {
        None
    } else {
        c.prepare_cached("SELECT attempt FROM ecc WHERE queue = 'input' AND response_to = ?")?
            .query_row([&output.id], |r| r.get(0))
            .optional()?
    };
    let outcome = match answered {
        Some(attempt) if attempt == i64::from(result.attempt) => AckOutcome::Duplicate,
        Some(_) => AckOutcome::Superseded,
        None if output.state == State::Processing
            && output.attempt == result.attempt
            && output.claimed_by.as_deref() == Some(mid_name) =>
        {
            AckOutcome::Recorded
        }
        None => AckOutcome::Superseded,
    };
    if outcome != AckOutcome::Recorded {
        return Ok(RecordedResult {
            outcome,
            finished: None,
        });
    }
    // A cancelled output ends `cancelled` whatever its MID made of it; the input keeps
    // what the run produced until it stopped.
    let cancelled = take_cancel_request(c, &output.id)?;
    let state = if result.error.is_some() {
        State::Error
    } else {
        State::Processed
    };
    let (output_state, output_error) = match &cancelled {
        Some(reason) => (State::Cancelled, Some(reason.clone())),
        None => (state, result.error.clone()),
    };
    let input = Record {
        id: uuid::Uuid::now_v7().to_string(),
        queue: Queue::Input,
        agent: format!("mid.server.{mid_name}"),
        topic: output.topic,
        name: output.name.clone(),
        source: mid_name.to_string(),
        payload: result.payload,
        state,
        priority: output.priority,
        response_to: Some(output.id.clone()),
        correlator: output.correlator.clone(),
        attempt: result.attempt,
        max_attempts: output.max_attempts,
        at_most_once: output.at_most_once,
        error: result.error.clone(),
        claimed_by: None,
        lease_expires_at: None,
        created_at: now,
        claimed_at: None,
        processed_at: Some(now),
        duration_ms: Some(result.duration_ms),
        assigned_to: None,
        selection: None,
        application: output.application.clone(),
    };
    insert_record(c, &input)?;
    c.prepare_cached(
        "UPDATE ecc SET state = ?, error = ?, processed_at = ?, lease_expires_at = NULL WHERE id = ?",
    )?
    .execute(params![output_state.as_str(), output_error, now, output.id])?;
    Ok(RecordedResult {
        outcome,
        finished: Some(Finished {
            output: Record {
                state: output_state,
                error: output_error,
                processed_at: Some(now),
                lease_expires_at: None,
                ..output
            },
            input,
        }),
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
        if let Some(reason) = take_cancel_request(c, &output.id)? {
            // Cancelled while it ran, and its MID is gone: it ends as asked.
            changed.extend(ecc_row(
                c,
                concat!(
                    "UPDATE ecc SET state = 'cancelled', error = ?, processed_at = ?, lease_expires_at = NULL WHERE id = ? AND state = 'processing' RETURNING ",
                    ecc_columns!()
                ),
                params![format!("{reason}; {why} before its MID reported"), now, output.id],
            )?);
            continue;
        }
        let holder = output.claimed_by.as_deref().unwrap_or("?");
        let failure = if output.at_most_once {
            Some(format!(
                "{why} while MID {holder} held attempt {}; at-most-once outputs are not re-run",
                output.attempt
            ))
        } else if output.attempt >= output.max_attempts {
            Some(format!(
                "{why} on attempt {} of {} (last held by MID {holder}); no attempts left",
                output.attempt, output.max_attempts
            ))
        } else {
            None
        };
        let attempt = i64::from(output.attempt);
        let row = match &failure {
            Some(reason) => ecc_row(
                c,
                concat!(
                    "UPDATE ecc SET state = 'error', error = ?, processed_at = ?, lease_expires_at = NULL WHERE id = ? AND state = 'processing' AND attempt = ? RETURNING ",
                    ecc_columns!()
                ),
                params![reason, now, output.id, attempt],
            )?,
            None => ecc_row(
                c,
                concat!(
                    "UPDATE ecc SET state = 'ready', lease_expires_at = NULL WHERE id = ? AND state = 'processing' AND attempt = ? RETURNING ",
                    ecc_columns!()
                ),
                params![output.id, attempt],
            )?,
        };
        changed.extend(row);
    }
    Ok(changed)
}
