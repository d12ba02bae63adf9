//! The MID ↔ instance protocol's promises, driven by hand: validation gates work,
//! leases lapse and re-run with `attempt + 1`, results are recorded exactly once,
//! pickup is pushed.

use crate::support::{enrolled_client, instance, instance_with};
use openmid_mid::session::client::InstanceClient;
use openmid_proto::api::{NewOutput, RecordQuery};
use openmid_proto::ecc::{Queue, State, Topic};
use openmid_proto::mid::{
    AckOutcome, Capacity, HeartbeatRequest, JobRef, MidStatus, PollRequest, PollResponse,
    ResultsRequest, WorkResult,
};
use openmid_testkit::TestInstance;
use serde_json::json;
use std::time::{Duration, Instant};

fn output(mid: &str, at_most_once: bool, max_attempts: Option<u32>) -> NewOutput {
    NewOutput {
        durability: Default::default(),
        agent: format!("mid.server.{mid}"),
        topic: Topic::RESTProbe,
        name: None,
        source: None,
        payload: json!({"url": "http://127.0.0.1:9/"}).into(),
        priority: None,
        correlator: None,
        max_attempts,
        at_most_once,
        application: None,
    }
}

async fn poll(client: &InstanceClient, wait_ms: u64, known: MidStatus) -> PollResponse {
    client
        .poll(&PollRequest {
            capacity: Capacity {
                interactive: 8,
                expedited: 8,
                standard: 8,
            },
            wait_ms,
            known_status: Some(known),
        })
        .await
        .expect("poll")
}

fn result(id: &str, attempt: u32, body: &str) -> WorkResult {
    WorkResult {
        output_id: id.to_string(),
        attempt,
        payload: json!({"status": 200, "headers": {}, "body": body, "timings": {"headers_ms": 1.0, "total_ms": 1.0}}).into(),
        error: None,
        started_at_ms: 0,
        duration_ms: 1,
    }
}

async fn inputs_for(instance: &TestInstance, output_id: &str) -> usize {
    let page = instance
        .api
        .list_records(&RecordQuery {
            queue: Some("input".into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .expect("list");
    page.records
        .iter()
        .filter(|r| r.queue == Queue::Input && r.response_to.as_deref() == Some(output_id))
        .count()
}

#[tokio::test]
async fn an_unvalidated_mid_gets_no_work_until_validated() {
    let (instance, _dir) = instance().await;
    let client = enrolled_client(&instance, "pending", false).await;
    let out = instance
        .api
        .insert_output(&output("pending", false, None))
        .await
        .expect("insert");
    let answer = poll(&client, 300, MidStatus::ValidationPending).await;
    assert_eq!(answer.status, MidStatus::ValidationPending);
    assert!(answer.work.is_empty(), "a pending MID gets nothing");
    let record = instance.api.get_record(&out.id).await.expect("get");
    assert_eq!((record.state, record.attempt), (State::Ready, 0));

    // Validation wakes the waiting poll, which first reports the news…
    let waiting = tokio::spawn(async move {
        let first = poll(&client, 20_000, MidStatus::ValidationPending).await;
        let second = if first.work.is_empty() {
            poll(&client, 20_000, first.status).await
        } else {
            first.clone()
        };
        (first, second)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    instance
        .api
        .validate_mid("pending")
        .await
        .expect("validate");
    let (first, second) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("answered long before the poll's wait")
        .expect("task");
    // …and the work, in the same answer or the next.
    assert_eq!(
        (first.status, second.status),
        (MidStatus::Up, MidStatus::Up)
    );
    let work: Vec<_> = if first.work.is_empty() {
        second.work.iter().collect()
    } else {
        first.work.iter().collect()
    };
    assert_eq!(work.len(), 1);
    assert_eq!(
        (work[0].output_id.as_str(), work[0].attempt),
        (out.id.as_str(), 1)
    );
}

#[tokio::test]
async fn new_work_is_pushed_to_a_waiting_poll() {
    let (instance, _dir) = instance().await;
    let client = enrolled_client(&instance, "idle", true).await;
    let waiting = tokio::spawn(async move {
        let answer = poll(&client, 20_000, MidStatus::Up).await;
        (answer, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let inserted = Instant::now();
    let out = instance
        .api
        .insert_output(&output("idle", false, None))
        .await
        .expect("insert");
    let (answer, picked) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the poll answered long before its 20 s wait: pickup is pushed")
        .expect("task");
    assert_eq!(answer.work.len(), 1);
    assert_eq!(answer.work[0].output_id, out.id);
    eprintln!("pickup after insert: {:?}", picked - inserted);
}

#[tokio::test]
async fn results_are_recorded_exactly_once_and_superseded_attempts_discarded() {
    let (instance, _dir) = instance_with(|c| {
        c.lease_ms = 400;
        c.heartbeat_ms = 100;
    })
    .await;
    let client = enrolled_client(&instance, "flaky", true).await;
    let out = instance
        .api
        .insert_output(&output("flaky", false, None))
        .await
        .expect("insert");
    let first = poll(&client, 0, MidStatus::Up).await;
    assert_eq!(first.work[0].attempt, 1);

    // No heartbeat: the lease lapses and the output is handed out again as attempt 2.
    let second = poll(&client, 10_000, MidStatus::Up).await;
    assert_eq!(second.work.len(), 1, "the lapsed output came back");
    assert_eq!(
        (second.work[0].output_id.as_str(), second.work[0].attempt),
        (out.id.as_str(), 2)
    );

    let acks = client
        .post_results(&ResultsRequest {
            results: vec![result(&out.id, 1, "late"), result(&out.id, 2, "current")],
        })
        .await
        .expect("post");
    let outcomes: Vec<AckOutcome> = acks.acks.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, vec![AckOutcome::Superseded, AckOutcome::Recorded]);

    let again = client
        .post_results(&ResultsRequest {
            results: vec![
                result(&out.id, 2, "current"),
                result(&out.id, 1, "late"),
                result("no-such-output", 1, "?"),
            ],
        })
        .await
        .expect("re-post");
    let outcomes: Vec<AckOutcome> = again.acks.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            AckOutcome::Duplicate,
            AckOutcome::Superseded,
            AckOutcome::Unknown
        ]
    );

    let record = instance.api.get_record(&out.id).await.expect("get");
    assert_eq!((record.state, record.attempt), (State::Processed, 2));
    assert_eq!(
        inputs_for(&instance, &out.id).await,
        1,
        "one input, recorded once"
    );
    let input = instance
        .api
        .list_records(&RecordQuery {
            queue: Some("input".into()),
            ..Default::default()
        })
        .await
        .expect("list")
        .records
        .remove(0);
    assert_eq!(input.payload["body"], "current");
    assert_eq!(input.response_to.as_deref(), Some(out.id.as_str()));
    assert_eq!(input.state, State::Processed);
}

#[tokio::test]
async fn heartbeats_keep_a_lease_and_report_lost_ones() {
    let (instance, _dir) = instance_with(|c| {
        // Generous against a busy CI machine: a beat every 100 ms, a lease of 1 s.
        c.lease_ms = 1_000;
        c.heartbeat_ms = 100;
    })
    .await;
    let client = enrolled_client(&instance, "steady", true).await;
    let out = instance
        .api
        .insert_output(&output("steady", false, None))
        .await
        .expect("insert");
    let claimed = poll(&client, 0, MidStatus::Up).await;
    let job = JobRef {
        output_id: out.id.clone(),
        attempt: claimed.work[0].attempt,
    };
    let beat = |running: Vec<JobRef>| HeartbeatRequest {
        running,
        version: "t".into(),
        uptime_ms: 1,
        outbox_len: 0,
        outbox_bytes: 0,
        ..Default::default()
    };
    for _ in 0..25 {
        let answer = client
            .heartbeat(&beat(vec![job.clone()]))
            .await
            .expect("beat");
        assert!(answer.lost.is_empty());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let record = instance.api.get_record(&out.id).await.expect("get");
    assert_eq!(
        (record.state, record.attempt),
        (State::Processing, 1),
        "2.5 s > 2 leases, still held"
    );

    let stale = JobRef {
        output_id: out.id.clone(),
        attempt: 7,
    };
    let answer = client
        .heartbeat(&beat(vec![stale.clone()]))
        .await
        .expect("beat");
    assert_eq!(answer.lost, vec![stale]);
}

#[tokio::test]
async fn attempts_run_out_and_at_most_once_is_never_rerun() {
    let (instance, _dir) = instance_with(|c| {
        c.lease_ms = 300;
        c.heartbeat_ms = 100;
    })
    .await;
    let client = enrolled_client(&instance, "crashy", true).await;
    let once = instance
        .api
        .insert_output(&output("crashy", true, None))
        .await
        .expect("insert");
    let twice = instance
        .api
        .insert_output(&output("crashy", false, Some(2)))
        .await
        .expect("insert");
    let mut claims = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let a = instance.api.get_record(&once.id).await.expect("get");
        let b = instance.api.get_record(&twice.id).await.expect("get");
        if a.state == State::Error && b.state == State::Error {
            break;
        }
        let answer = poll(&client, 500, MidStatus::Up).await;
        claims.extend(answer.work.into_iter().map(|w| (w.output_id, w.attempt)));
    }
    let once_rec = instance.api.get_record(&once.id).await.expect("get");
    let twice_rec = instance.api.get_record(&twice.id).await.expect("get");
    assert_eq!(once_rec.state, State::Error);
    assert_eq!(once_rec.attempt, 1);
    assert!(
        once_rec
            .error
            .as_deref()
            .unwrap_or("")
            .contains("at-most-once"),
        "{:?}",
        once_rec.error
    );
    assert_eq!(twice_rec.state, State::Error);
    assert_eq!(twice_rec.attempt, 2);
    assert!(
        twice_rec
            .error
            .as_deref()
            .unwrap_or("")
            .contains("no attempts left"),
        "{:?}",
        twice_rec.error
    );
    let once_claims = claims.iter().filter(|(id, _)| *id == once.id).count();
    assert_eq!(once_claims, 1, "an at-most-once output is claimed once");
}
