//! The rules without a database: every outcome a backend can be asked to write.

use super::*;
use openmid_proto::ecc::{Priority, Topic};
use openmid_proto::mid::MidProfile;

fn running(attempt: u32, max_attempts: u32, holder: &str) -> Record {
    Record {
        id: "out-1".into(),
        queue: Queue::Output,
        agent: "mid.server.a".into(),
        topic: Topic::RESTProbe,
        name: "call".into(),
        source: "api".into(),
        payload: "{}".into(),
        state: State::Processing,
        priority: Priority::Standard,
        response_to: None,
        correlator: Some("c".into()),
        attempt,
        max_attempts,
        at_most_once: false,
        error: None,
        claimed_by: Some(holder.into()),
        lease_expires_at: Some(10),
        created_at: 1,
        claimed_at: Some(2),
        processed_at: None,
        duration_ms: None,
        assigned_to: Some(holder.into()),
        selection: None,
        application: None,
        traceparent: None,
    }
}

fn result(attempt: u32, error: Option<&str>) -> ResultToRecord {
    ResultToRecord {
        attempt,
        payload: "{\"status\":200}".into(),
        error: error.map(str::to_string),
        duration_ms: 7,
    }
}

#[test]
fn only_the_holder_of_the_current_attempt_is_recorded() {
    let out = running(2, 3, "a");
    assert_eq!(
        result_outcome(Some(&out), None, "a", 2),
        AckOutcome::Recorded
    );
    assert_eq!(
        result_outcome(Some(&out), None, "a", 1),
        AckOutcome::Superseded
    );
    assert_eq!(
        result_outcome(Some(&out), None, "b", 2),
        AckOutcome::Superseded
    );
    assert_eq!(result_outcome(None, None, "a", 2), AckOutcome::Unknown);
}

#[test]
fn a_finished_output_takes_no_second_result() {
    let mut out = running(2, 3, "a");
    out.state = State::Processed;
    assert_eq!(
        result_outcome(Some(&out), Some(2), "a", 2),
        AckOutcome::Duplicate
    );
    assert_eq!(
        result_outcome(Some(&out), Some(2), "b", 1),
        AckOutcome::Superseded
    );
    // Finished without an input (cancelled or failed before a result): too late.
    out.state = State::Error;
    assert_eq!(
        result_outcome(Some(&out), None, "a", 2),
        AckOutcome::Superseded
    );
}

#[test]
fn a_result_finishes_the_output_and_makes_its_input() {
    let done = finish(
        running(1, 3, "a"),
        "a",
        result(1, None),
        None,
        "in-1".into(),
        50,
    );
    assert_eq!(done.output.state, State::Processed);
    assert_eq!(done.output.processed_at, Some(50));
    assert_eq!(done.output.lease_expires_at, None);
    assert_eq!(done.input.response_to.as_deref(), Some("out-1"));
    assert_eq!(done.input.agent, "mid.server.a");
    assert_eq!(done.input.correlator.as_deref(), Some("c"));
    assert_eq!(done.input.duration_ms, Some(7));

    let failed = finish(
        running(1, 3, "a"),
        "a",
        result(1, Some("refused")),
        None,
        "in-2".into(),
        50,
    );
    assert_eq!(failed.output.state, State::Error);
    assert_eq!(failed.input.state, State::Error);
    assert_eq!(failed.output.error.as_deref(), Some("refused"));
}

#[test]
fn a_cancel_asked_while_it_ran_ends_it_cancelled_but_keeps_the_answer() {
    let done = finish(
        running(1, 3, "a"),
        "a",
        result(1, None),
        Some("cancelled by admin".into()),
        "in-1".into(),
        50,
    );
    assert_eq!(done.output.state, State::Cancelled);
    assert_eq!(done.output.error.as_deref(), Some("cancelled by admin"));
    assert_eq!(done.input.state, State::Processed);
    assert_eq!(done.input.payload, "{\"status\":200}");
}

#[test]
fn a_lapsed_lease_retries_until_attempts_run_out() {
    assert_eq!(
        lease_end(&running(1, 3, "a"), None, "lease lapsed"),
        LeaseEnd::Retry
    );
    let last = lease_end(&running(3, 3, "a"), None, "lease lapsed");
    assert_eq!(last.state(), State::Error);
    assert!(
        last.error()
            .is_some_and(|e| e.contains("attempt 3 of 3") && e.contains("MID a"))
    );
}

#[test]
fn at_most_once_is_never_rerun_and_a_cancel_wins() {
    let mut once = running(1, 3, "a");
    once.at_most_once = true;
    let end = lease_end(&once, None, "MID a restarted");
    assert_eq!(end.state(), State::Error);
    assert!(end.error().is_some_and(|e| e.contains("at-most-once")));
    let end = lease_end(&once, Some("cancelled by admin"), "lease lapsed");
    assert_eq!(end.state(), State::Cancelled);
    assert_eq!(
        end.error(),
        Some("cancelled by admin; lease lapsed before its MID reported")
    );
}

fn new_mid() -> MidRow {
    MidRow {
        id: "m1".into(),
        name: "a".into(),
        secret_hash: "h".into(),
        public_key: "k".into(),
        status: MidStatus::ValidationPending,
        status_reason: None,
        version: "0".into(),
        hostname: "h".into(),
        protocol_version: 1,
        enrolled_at: 5,
        validated_at: None,
        last_seen_at: None,
        declared_profile: MidProfile::default(),
        admin_profile: None,
        health: None,
        rekey_requested: false,
    }
}

#[test]
fn enrollment_outcomes() {
    assert!(matches!(
        enrollment(None, false, new_mid()),
        Err(EnrollError::TokenInvalid)
    ));
    // A bad token says nothing about names.
    assert!(matches!(
        enrollment(None, true, new_mid()),
        Err(EnrollError::TokenInvalid)
    ));
    assert!(
        matches!(enrollment(Some(true), true, new_mid()), Err(EnrollError::NameTaken(n)) if n == "a")
    );
    let up = enrollment(Some(true), false, new_mid()).expect("enrolls");
    assert_eq!((up.status, up.validated_at), (MidStatus::Up, Some(5)));
    let pending = enrollment(Some(false), false, new_mid()).expect("enrolls");
    assert_eq!(
        (pending.status, pending.validated_at),
        (MidStatus::ValidationPending, None)
    );
}
