//! The queue's and the registry's rules, as plain functions of what a backend read:
//! which result is recorded, superseded or a duplicate; what a lapsed or released
//! lease becomes; what an enrollment makes of a MID. Each backend reads the rows a
//! rule needs inside its own transaction, asks the rule, and writes what it says — so
//! SQLite and PostgreSQL cannot drift apart on what the queue means, and the rules are
//! tested once, here, without a database.

use super::{EnrollError, Finished, Record};
use openmid_proto::ecc::{Queue, State};
use openmid_proto::mid::{AckOutcome, MidStatus};

use super::MidRow;

/// What a posted result is, given the output it answers (`None`: no such output)
/// and the attempt of the input already recorded for it (`None`: none yet).
///
/// Recording an input finishes its output in the same transaction, so only a
/// finished output can have one: the same attempt again is a retried post
/// (`Duplicate`), another attempt lost the race (`Superseded`). An output still
/// running takes the result only from the MID holding that very attempt.
pub fn result_outcome(
    output: Option<&Record>,
    recorded_attempt: Option<u32>,
    mid_name: &str,
    attempt: u32,
) -> AckOutcome {
    let Some(output) = output else {
        return AckOutcome::Unknown;
    };
    match recorded_attempt {
        Some(a) if a == attempt => AckOutcome::Duplicate,
        Some(_) => AckOutcome::Superseded,
        None if output.state == State::Processing
            && output.attempt == attempt
            && output.claimed_by.as_deref() == Some(mid_name) =>
        {
            AckOutcome::Recorded
        }
        None => AckOutcome::Superseded,
    }
}

/// A result a MID posted, as the store records it.
#[derive(Debug, Clone)]
pub struct ResultToRecord {
    /// The attempt it answers.
    pub attempt: u32,
    /// The probe's answer, JSON text.
    pub payload: String,
    /// The probe's error, if it failed.
    pub error: Option<String>,
    /// How long the probe ran.
    pub duration_ms: i64,
}

/// The input a recorded result becomes and the output as it ends: `cancelled` (with
/// the cancel's reason) when a cancel was asked while it ran, else `processed` or
/// `error` as the probe said. The input keeps what the run produced either way.
pub fn finish(
    output: Record,
    mid_name: &str,
    result: ResultToRecord,
    cancel_reason: Option<String>,
    input_id: String,
    now: i64,
) -> Finished {
    let state = if result.error.is_some() {
        State::Error
    } else {
        State::Processed
    };
    let (output_state, output_error) = match cancel_reason {
        Some(reason) => (State::Cancelled, Some(reason)),
        None => (state, result.error.clone()),
    };
    let input = Record {
        id: input_id,
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
        error: result.error,
        claimed_by: None,
        lease_expires_at: None,
        created_at: now,
        claimed_at: None,
        processed_at: Some(now),
        duration_ms: Some(result.duration_ms),
        assigned_to: None,
        selection: None,
        application: output.application.clone(),
        traceparent: output.traceparent.clone(),
    };
    Finished {
        output: Record {
            state: output_state,
            error: output_error,
            processed_at: Some(now),
            lease_expires_at: None,
            ..output
        },
        input,
    }
}

/// What an output whose lease ended (lapsed, or released because its MID is gone or
/// restarted) becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEnd {
    /// Back to `ready` for another attempt.
    Retry,
    /// Ends `cancelled`: a cancel was asked while it ran and its MID never reported.
    Cancelled(String),
    /// Ends in `error`: attempts are used up, or it is at-most-once.
    Failed(String),
}

impl LeaseEnd {
    /// The state the output ends the lease in.
    pub fn state(&self) -> State {
        match self {
            Self::Retry => State::Ready,
            Self::Cancelled(_) => State::Cancelled,
            Self::Failed(_) => State::Error,
        }
    }

    /// The error text written, if the output ends.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Retry => None,
            Self::Cancelled(e) | Self::Failed(e) => Some(e),
        }
    }
}

/// What `output` becomes when its lease ends for `why` ("lease lapsed", "MID …
/// restarted"), given the reason of a cancel asked while it ran.
pub fn lease_end(output: &Record, cancel_reason: Option<&str>, why: &str) -> LeaseEnd {
    if let Some(reason) = cancel_reason {
        return LeaseEnd::Cancelled(format!("{reason}; {why} before its MID reported"));
    }
    let holder = output.claimed_by.as_deref().unwrap_or("?");
    if output.at_most_once {
        LeaseEnd::Failed(format!(
            "{why} while MID {holder} held attempt {}; at-most-once outputs are not re-run",
            output.attempt
        ))
    } else if output.attempt >= output.max_attempts {
        LeaseEnd::Failed(format!(
            "{why} on attempt {} of {} (last held by MID {holder}); no attempts left",
            output.attempt, output.max_attempts
        ))
    } else {
        LeaseEnd::Retry
    }
}

/// The MID an enrollment registers, given what the backend found: the token's
/// `auto_validate` flag when the token is unknown-to-be-bad (`None`: unknown,
/// expired or used — one answer for all three) and whether the name is taken.
pub fn enrollment(
    token_auto_validate: Option<bool>,
    name_taken: bool,
    mid: MidRow,
) -> Result<MidRow, EnrollError> {
    let Some(auto_validate) = token_auto_validate else {
        return Err(EnrollError::TokenInvalid);
    };
    if name_taken {
        return Err(EnrollError::NameTaken(mid.name));
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
    Ok(row)
}

#[cfg(test)]
mod tests;
