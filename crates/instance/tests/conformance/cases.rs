//! The cases of the store's conformance suite: each gets a fresh, empty store.

use openmid_instance::ecc::{
    AliasRow, Cancelled, ChunksStored, Claim, CredentialKey, CredentialRow, DeviceRow,
    DiscoveryRunRow, DiscoveryScheduleRow, EnrollError, EnrollmentTokenRow, IdempotencyKey, MidKey,
    MidRow, Record, SessionChange, Store, StoreError,
};
use openmid_proto::api::{ClusterKind, MidHealth};
use openmid_proto::command_output::{ChunkContent, DecodedChunk, OutputStream};
use openmid_proto::ecc::{Priority, Queue, State, Topic};
use openmid_proto::mid::{AckOutcome, Capacity, JobRef, MidProfile, MidStatus, WorkResult};
use std::sync::Arc;

const NOW: i64 = 1_700_000_000_000;

fn output(id: &str, to: &str, priority: Priority) -> Record {
    Record {
        id: id.into(),
        queue: Queue::Output,
        agent: format!("mid.server.{to}"),
        topic: Topic::RESTProbe,
        name: format!("job {id}"),
        source: "conformance".into(),
        payload: "{\"n\":1}".into(),
        state: State::Ready,
        priority,
        response_to: None,
        correlator: Some(format!("corr-{id}")),
        attempt: 0,
        max_attempts: 2,
        at_most_once: false,
        error: None,
        claimed_by: None,
        lease_expires_at: None,
        created_at: NOW,
        claimed_at: None,
        processed_at: None,
        duration_ms: None,
        assigned_to: Some(to.into()),
        selection: Some("named".into()),
        application: None,
    }
}

fn free(interactive: u32, expedited: u32, standard: u32) -> Capacity {
    Capacity {
        interactive,
        expedited,
        standard,
    }
}

async fn claim(store: &Arc<dyn Store>, mid: &str, capacity: Capacity, now: i64) -> Vec<Record> {
    store
        .claim_ready_outputs(&Claim {
            mid_name: mid,
            capacity,
            now,
            lease_until: now + 30_000,
        })
        .await
        .expect("claim")
}

fn result(id: &str, attempt: u32, error: Option<&str>) -> WorkResult {
    WorkResult {
        output_id: id.into(),
        attempt,
        payload: serde_json::json!({"status": 200, "attempt": attempt}),
        error: error.map(str::to_string),
        started_at_ms: NOW,
        duration_ms: 5,
    }
}

async fn record(store: &Arc<dyn Store>, mid: &str, r: WorkResult, now: i64) -> AckOutcome {
    let mut out = store
        .record_results(mid, &[r], now)
        .await
        .expect("record results");
    assert_eq!(out.len(), 1, "one outcome per result");
    out.remove(0).outcome
}

async fn state(store: &Arc<dyn Store>, id: &str) -> Record {
    store
        .get_record(id)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{id} exists"))
}

pub async fn claims_take_the_most_urgent_first_up_to_capacity(store: Arc<dyn Store>) {
    for (id, p) in [
        ("01-std", Priority::Standard),
        ("02-int", Priority::Interactive),
        ("03-std", Priority::Standard),
        ("04-exp", Priority::Expedited),
        ("05-std", Priority::Standard),
    ] {
        store
            .insert_output(&output(id, "a", p))
            .await
            .expect("insert");
    }
    let got = claim(&store, "a", free(4, 4, 2), NOW).await;
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["02-int", "04-exp", "01-std", "03-std"],
        "priority, then age; capacity per pool"
    );
    for r in &got {
        assert_eq!(r.state, State::Processing);
        assert_eq!(r.attempt, 1);
        assert_eq!(r.claimed_by.as_deref(), Some("a"));
        assert_eq!(r.lease_expires_at, Some(NOW + 30_000));
        assert_eq!(r.claimed_at, Some(NOW));
    }
    let rest = claim(&store, "a", free(4, 4, 4), NOW).await;
    assert_eq!(
        rest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["05-std"]
    );
    assert!(
        claim(&store, "a", free(4, 4, 4), NOW).await.is_empty(),
        "nothing is claimed twice"
    );
    assert!(claim(&store, "a", free(0, 0, 0), NOW).await.is_empty());
}

pub async fn claims_take_only_what_is_assigned_to_the_mid(store: Arc<dyn Store>) {
    store
        .insert_output(&output("x1", "a", Priority::Standard))
        .await
        .expect("insert");
    store
        .insert_output(&output("x2", "b", Priority::Standard))
        .await
        .expect("insert");
    let a = claim(&store, "a", free(1, 1, 5), NOW).await;
    assert_eq!(a.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["x1"]);
    // Moving an output needs it still ready and still where the mover saw it.
    assert!(
        !store
            .assign_output("x2", Some("a"), Some("c"), "moved")
            .await
            .expect("assign")
    );
    assert!(
        store
            .assign_output("x2", Some("b"), Some("c"), "moved")
            .await
            .expect("assign")
    );
    assert!(claim(&store, "b", free(1, 1, 5), NOW).await.is_empty());
    let c = claim(&store, "c", free(1, 1, 5), NOW).await;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].selection.as_deref(), Some("moved"));
    let load = store.load_by_mid().await.expect("load");
    assert_eq!(load.get("a").map(|l| l.processing), Some(1));
    assert_eq!(load.get("c").map(|l| l.processing), Some(1));
}

pub async fn a_result_is_recorded_exactly_once(store: Arc<dyn Store>) {
    store
        .insert_output(&output("r1", "a", Priority::Standard))
        .await
        .expect("insert");
    claim(&store, "a", free(1, 1, 1), NOW).await;
    assert_eq!(
        record(&store, "a", result("r1", 1, None), NOW + 10).await,
        AckOutcome::Recorded
    );
    assert_eq!(
        record(&store, "a", result("r1", 1, None), NOW + 20).await,
        AckOutcome::Duplicate
    );
    assert_eq!(
        record(&store, "a", result("nope", 1, None), NOW).await,
        AckOutcome::Unknown
    );
    let out = state(&store, "r1").await;
    assert_eq!(out.state, State::Processed);
    assert_eq!(out.processed_at, Some(NOW + 10));
    assert_eq!(out.lease_expires_at, None);
    let input = store
        .input_for("r1")
        .await
        .expect("read")
        .expect("an input");
    assert_eq!(input.queue, Queue::Input);
    assert_eq!(input.response_to.as_deref(), Some("r1"));
    assert_eq!(input.correlator.as_deref(), Some("corr-r1"));
    assert_eq!(input.attempt, 1);
    let payload: serde_json::Value = serde_json::from_str(&input.payload).expect("json");
    assert_eq!(payload["status"], 200);
    // An error result ends the output in error, with the text.
    store
        .insert_output(&output("r2", "a", Priority::Standard))
        .await
        .expect("insert");
    claim(&store, "a", free(1, 1, 1), NOW).await;
    assert_eq!(
        record(
            &store,
            "a",
            result("r2", 1, Some("connection refused")),
            NOW
        )
        .await,
        AckOutcome::Recorded
    );
    let out = state(&store, "r2").await;
    assert_eq!(
        (out.state, out.error.as_deref()),
        (State::Error, Some("connection refused"))
    );
}

pub async fn a_superseded_attempt_is_discarded(store: Arc<dyn Store>) {
    store
        .insert_output(&output("s1", "a", Priority::Standard))
        .await
        .expect("insert");
    claim(&store, "a", free(1, 1, 1), NOW).await;
    // Another MID, or an attempt it does not hold, is not recorded.
    assert_eq!(
        record(&store, "b", result("s1", 1, None), NOW).await,
        AckOutcome::Superseded
    );
    assert_eq!(
        record(&store, "a", result("s1", 2, None), NOW).await,
        AckOutcome::Superseded
    );
    // The lease lapses; attempt 2 goes to b and is recorded; a's late result is not.
    let lapsed = store.expire_leases(NOW + 31_000).await.expect("expire");
    assert_eq!(lapsed.len(), 1);
    assert!(
        store
            .assign_output("s1", Some("a"), Some("b"), "failover")
            .await
            .expect("assign")
    );
    claim(&store, "b", free(1, 1, 1), NOW + 31_000).await;
    assert_eq!(
        record(&store, "b", result("s1", 2, None), NOW + 32_000).await,
        AckOutcome::Recorded
    );
    assert_eq!(
        record(&store, "a", result("s1", 1, None), NOW + 33_000).await,
        AckOutcome::Superseded
    );
    let input = store.input_for("s1").await.expect("read").expect("input");
    assert_eq!((input.attempt, input.source.as_str()), (2, "b"));
}

pub async fn a_lapsed_lease_retries_then_fails(store: Arc<dyn Store>) {
    store
        .insert_output(&output("l1", "a", Priority::Standard))
        .await
        .expect("insert");
    claim(&store, "a", free(1, 1, 1), NOW).await;
    assert!(
        store
            .expire_leases(NOW + 29_000)
            .await
            .expect("expire")
            .is_empty(),
        "not yet"
    );
    let back = store.expire_leases(NOW + 31_000).await.expect("expire");
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].state, back[0].attempt), (State::Ready, 1));
    claim(&store, "a", free(1, 1, 1), NOW + 31_000).await;
    let ended = store.expire_leases(NOW + 62_000).await.expect("expire");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].state, State::Error);
    let error = ended[0].error.clone().unwrap_or_default();
    assert!(error.contains("attempt 2 of 2"), "says why: {error}");
    assert!(
        claim(&store, "a", free(1, 1, 1), NOW + 62_000)
            .await
            .is_empty()
    );
}

pub async fn an_at_most_once_output_is_never_rerun(store: Arc<dyn Store>) {
    let mut once = output("o1", "a", Priority::Standard);
    once.at_most_once = true;
    store.insert_output(&once).await.expect("insert");
    claim(&store, "a", free(1, 1, 1), NOW).await;
    let ended = store
        .release_leases_of("a", &[], "MID a restarted", NOW + 5)
        .await
        .expect("release");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].state, State::Error);
    assert!(
        ended[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("at-most-once")
    );
}

pub async fn renewing_tells_which_jobs_are_no_longer_held(store: Arc<dyn Store>) {
    store
        .insert_output(&output("n1", "a", Priority::Standard))
        .await
        .expect("insert");
    store
        .insert_output(&output("n2", "a", Priority::Standard))
        .await
        .expect("insert");
    claim(&store, "a", free(1, 1, 2), NOW).await;
    let jobs = [
        JobRef {
            output_id: "n1".into(),
            attempt: 1,
        },
        JobRef {
            output_id: "n2".into(),
            attempt: 7,
        },
        JobRef {
            output_id: "gone".into(),
            attempt: 1,
        },
    ];
    let lost = store
        .renew_leases("a", &jobs, NOW + 90_000)
        .await
        .expect("renew");
    let mut lost: Vec<&str> = lost.iter().map(|j| j.output_id.as_str()).collect();
    lost.sort();
    assert_eq!(lost, ["gone", "n2"]);
    assert_eq!(
        state(&store, "n1").await.lease_expires_at,
        Some(NOW + 90_000)
    );
    assert!(
        store
            .expire_leases(NOW + 60_000)
            .await
            .expect("expire")
            .iter()
            .all(|r| r.id != "n1")
    );
    assert!(
        store
            .extend_all_leases(NOW + 200_000)
            .await
            .expect("extend")
            >= 1
    );
    assert_eq!(
        state(&store, "n1").await.lease_expires_at,
        Some(NOW + 200_000)
    );
}

pub async fn releasing_a_mids_leases_keeps_what_it_still_runs(store: Arc<dyn Store>) {
    for id in ["k1", "k2", "k3"] {
        store
            .insert_output(&output(id, "a", Priority::Standard))
            .await
            .expect("insert");
    }
    claim(&store, "a", free(1, 1, 3), NOW).await;
    let keep = [JobRef {
        output_id: "k2".into(),
        attempt: 1,
    }];
    let released = store
        .release_leases_of("a", &keep, "MID a restarted", NOW + 1)
        .await
        .expect("release");
    let mut ids: Vec<&str> = released.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["k1", "k3"]);
    assert_eq!(state(&store, "k1").await.state, State::Ready);
    assert_eq!(state(&store, "k2").await.state, State::Processing);
}

pub async fn cancelling_ready_running_and_finished_outputs(store: Arc<dyn Store>) {
    for id in ["c1", "c2", "c3", "c4"] {
        store
            .insert_output(&output(id, "a", Priority::Standard))
            .await
            .expect("insert");
    }
    // c1 is cancelled while it waits; c2, c3 and c4 run.
    match store
        .cancel_output("c1", "by admin", NOW)
        .await
        .expect("cancel")
    {
        Some(Cancelled::Now(r)) => assert_eq!(r.state, State::Cancelled),
        other => panic!("a ready output is cancelled at once, got {other:?}"),
    }
    let claimed = claim(&store, "a", free(1, 1, 3), NOW).await;
    assert_eq!(claimed.len(), 3, "a cancelled output is not claimed");
    assert!(matches!(
        store
            .cancel_output("c2", "by admin", NOW)
            .await
            .expect("cancel"),
        Some(Cancelled::Stopping(_))
    ));
    assert!(matches!(
        store
            .cancel_output("c3", "by admin", NOW)
            .await
            .expect("cancel"),
        Some(Cancelled::Stopping(_))
    ));
    let running = store
        .cancelled_running("a")
        .await
        .expect("cancelled running");
    let mut ids: Vec<&str> = running.iter().map(|j| j.output_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["c2", "c3"]);
    // Its result ends it cancelled, keeping the answer; a lapsed lease ends it too.
    assert_eq!(
        record(&store, "a", result("c2", 1, None), NOW + 1).await,
        AckOutcome::Recorded
    );
    let c2 = state(&store, "c2").await;
    assert_eq!(
        (c2.state, c2.error.as_deref()),
        (State::Cancelled, Some("by admin"))
    );
    assert!(store.input_for("c2").await.expect("read").is_some());
    assert_eq!(
        record(&store, "a", result("c4", 1, None), NOW + 1).await,
        AckOutcome::Recorded
    );
    store.expire_leases(NOW + 31_000).await.expect("expire");
    let c3 = state(&store, "c3").await;
    assert_eq!(c3.state, State::Cancelled);
    assert!(c3.error.as_deref().unwrap_or("").starts_with("by admin"));
    assert!(matches!(
        store.cancel_output("c4", "late", NOW + 2).await.expect("cancel"),
        Some(Cancelled::AlreadyFinished(r)) if r.state == State::Processed
    ));
    assert!(
        store
            .cancel_output("missing", "x", NOW)
            .await
            .expect("cancel")
            .is_none()
    );
}

pub async fn an_idempotency_key_makes_one_output(store: Arc<dyn Store>) {
    let key = |hash: &str| IdempotencyKey {
        key: "client-key-1".into(),
        request_hash: hash.into(),
        not_before: NOW - 1000,
        now: NOW,
    };
    assert!(
        store
            .insert_output_once(&output("i1", "a", Priority::Standard), &key("h1"))
            .await
            .expect("first")
            .is_none()
    );
    let hit = store
        .insert_output_once(&output("i2", "a", Priority::Standard), &key("h1"))
        .await
        .expect("second")
        .expect("the first submission");
    assert_eq!(
        (hit.output_id.as_str(), hit.request_hash.as_str()),
        ("i1", "h1")
    );
    assert!(
        store.get_record("i2").await.expect("read").is_none(),
        "nothing written the second time"
    );
    let found = store
        .find_idempotent("client-key-1", NOW - 1000)
        .await
        .expect("find");
    assert_eq!(found.map(|h| h.output_id), Some("i1".into()));
    assert!(
        store
            .find_idempotent("client-key-1", NOW + 1)
            .await
            .expect("find")
            .is_none(),
        "outside the window"
    );
    assert_eq!(
        store.purge_idempotency_keys(NOW + 1).await.expect("purge"),
        1
    );
}

fn chunk(seq: u64, data: &[u8]) -> DecodedChunk {
    DecodedChunk {
        stream: OutputStream::Stdout,
        seq,
        offset: seq * 10,
        content: ChunkContent::Data(data.to_vec()),
    }
}

pub async fn chunks_are_stored_once_and_only_for_the_holder(store: Arc<dyn Store>) {
    store
        .insert_output(&output("h1", "a", Priority::Standard))
        .await
        .expect("insert");
    claim(&store, "a", free(1, 1, 1), NOW).await;
    let stored = store
        .store_output_chunks("a", "h1", 1, vec![chunk(0, b"one"), chunk(1, b"two")])
        .await
        .expect("store");
    assert_eq!(
        stored,
        ChunksStored::Stored {
            stored: 2,
            duplicate: 0
        }
    );
    let again = store
        .store_output_chunks("a", "h1", 1, vec![chunk(1, b"XXX"), chunk(2, b"three")])
        .await
        .expect("store");
    assert_eq!(
        again,
        ChunksStored::Stored {
            stored: 1,
            duplicate: 1
        }
    );
    let not_held = store
        .store_output_chunks("b", "h1", 1, vec![chunk(3, b"four")])
        .await
        .expect("store");
    assert_eq!(
        not_held,
        ChunksStored::NotHeld {
            current_attempt: None
        },
        "another MID's post learns nothing of the output"
    );
    let all = store
        .output_chunks("h1", 1, None, 100, 1 << 20)
        .await
        .expect("read");
    let data: Vec<Vec<u8>> = all
        .iter()
        .map(|c| match &c.content {
            ChunkContent::Data(d) => d.clone(),
            ChunkContent::Truncated(_) => Vec::new(),
        })
        .collect();
    assert_eq!(
        data,
        [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()],
        "the first copy of seq 1 stays"
    );
    let after = store
        .output_chunks("h1", 1, Some(0), 1, 1 << 20)
        .await
        .expect("read");
    assert_eq!(after.iter().map(|c| c.seq).collect::<Vec<_>>(), [1]);
    let last = store
        .last_output_chunk("h1", 1)
        .await
        .expect("read")
        .expect("a last chunk");
    assert_eq!(last.seq, 2);
    // A resumed attempt carries the chunks on.
    store.expire_leases(NOW + 31_000).await.expect("expire");
    claim(&store, "a", free(1, 1, 1), NOW + 31_000).await;
    let carried = store.carry_output_chunks("h1", 2).await.expect("carry");
    assert_eq!(carried, Some(b"three".to_vec()));
    assert_eq!(
        store
            .output_chunks("h1", 2, None, 100, 1 << 20)
            .await
            .expect("read")
            .len(),
        3
    );
}

pub async fn purging_takes_finished_records_in_batches_and_keeps_open_ones(store: Arc<dyn Store>) {
    for i in 0..5 {
        store
            .insert_output(&output(&format!("p{i}"), "a", Priority::Standard))
            .await
            .expect("insert");
    }
    claim(&store, "a", free(1, 1, 5), NOW).await;
    for i in 0..4 {
        record(&store, "a", result(&format!("p{i}"), 1, None), NOW + 10).await;
    }
    // p4 still runs.
    let first = store.purge_finished(NOW + 100, 2).await.expect("purge");
    assert!(first > 0, "a batch went");
    let mut total = first;
    loop {
        let n = store.purge_finished(NOW + 100, 2).await.expect("purge");
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 8, "four outputs with their four inputs");
    assert!(store.get_record("p0").await.expect("read").is_none());
    assert!(
        store.get_record("p4").await.expect("read").is_some(),
        "a running output stays"
    );
    assert_eq!(store.purge_finished(NOW, 100).await.expect("purge"), 0);
}

fn mid(id: &str, name: &str) -> MidRow {
    MidRow {
        id: id.into(),
        name: name.into(),
        secret_hash: format!("hash-{id}"),
        public_key: "pk".into(),
        status: MidStatus::ValidationPending,
        status_reason: None,
        version: "1.0".into(),
        hostname: "host".into(),
        protocol_version: 1,
        enrolled_at: NOW,
        validated_at: None,
        last_seen_at: None,
        declared_profile: MidProfile::default(),
        admin_profile: None,
        health: None,
        rekey_requested: false,
    }
}

fn token(hash: &str, auto_validate: bool, expires_at: i64) -> EnrollmentTokenRow {
    EnrollmentTokenRow {
        token_hash: hash.into(),
        expires_at,
        auto_validate,
        note: None,
        created_at: NOW - 10,
    }
}

pub async fn enrollment_outcomes_and_status_history(store: Arc<dyn Store>) {
    store
        .insert_enrollment_token(&token("t-auto", true, NOW + 1000))
        .await
        .expect("token");
    store
        .insert_enrollment_token(&token("t-manual", false, NOW + 1000))
        .await
        .expect("token");
    store
        .insert_enrollment_token(&token("t-old", true, NOW - 1))
        .await
        .expect("token");
    let a = store
        .enroll_mid("t-auto", &mid("m-a", "a"))
        .await
        .expect("enrolls");
    assert_eq!(a.status, MidStatus::Up);
    assert!(
        matches!(
            store.enroll_mid("t-auto", &mid("m-x", "x")).await,
            Err(EnrollError::TokenInvalid)
        ),
        "a token is used once"
    );
    assert!(
        matches!(
            store.enroll_mid("t-old", &mid("m-y", "y")).await,
            Err(EnrollError::TokenInvalid)
        ),
        "an expired token is refused"
    );
    assert!(matches!(
        store.enroll_mid("t-manual", &mid("m-a2", "a")).await,
        Err(EnrollError::NameTaken(n)) if n == "a"
    ));
    let b = store
        .enroll_mid("t-manual", &mid("m-b", "b"))
        .await
        .expect("enrolls");
    assert_eq!(b.status, MidStatus::ValidationPending);
    let got = store
        .get_mid(MidKey::Name("b"))
        .await
        .expect("read")
        .expect("b");
    assert_eq!(
        (got.id.as_str(), got.secret_hash.as_str()),
        ("m-b", "hash-m-b")
    );
    assert!(
        store
            .get_mid(MidKey::Id("m-a"))
            .await
            .expect("read")
            .is_some()
    );
    // Status moves only from the states asked, and every move is in the history.
    let refused = store
        .set_mid_status("b", &[MidStatus::Up], MidStatus::Paused, "pause", NOW + 1)
        .await
        .expect("set");
    assert_eq!(
        refused.map(|m| m.status),
        Some(MidStatus::ValidationPending)
    );
    store
        .set_mid_status("b", &[], MidStatus::Up, "validated by admin", NOW + 2)
        .await
        .expect("set");
    let history = store.mid_history("m-b", 10).await.expect("history");
    let moves: Vec<(Option<MidStatus>, MidStatus)> =
        history.iter().map(|h| (h.from, h.to)).collect();
    assert_eq!(
        moves,
        [
            (Some(MidStatus::ValidationPending), MidStatus::Up),
            (None, MidStatus::ValidationPending)
        ],
        "newest first"
    );
    assert_eq!(history[0].reason, "validated by admin");
    let names: Vec<String> = store
        .list_mids()
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    // A deleted MID's waiting work ends in error.
    store
        .insert_output(&output("d1", "b", Priority::Standard))
        .await
        .expect("insert");
    assert_eq!(
        store.delete_mid("m-b", "b", NOW + 3).await.expect("delete"),
        1
    );
    assert_eq!(state(&store, "d1").await.state, State::Error);
    assert!(
        store
            .get_mid(MidKey::Name("b"))
            .await
            .expect("read")
            .is_none()
    );
}

fn health() -> MidHealth {
    MidHealth {
        version: "1.0".into(),
        uptime_ms: 10,
        running_by_pool: Capacity::default(),
        pool_sizes: free(2, 2, 8),
        queued: 0,
        outbox_len: 3,
        outbox_bytes: 300,
        cpu_percent: Some(1.5),
        rss_bytes: Some(10 << 20),
        policy_denials: 2,
        reported_at: "2023-11-14T22:13:20Z".into(),
    }
}

pub async fn a_heartbeat_from_a_new_process_says_so(store: Arc<dyn Store>) {
    store
        .insert_enrollment_token(&token("t", true, NOW + 1000))
        .await
        .expect("token");
    store
        .enroll_mid("t", &mid("m-a", "a"))
        .await
        .expect("enroll");
    let declared = MidProfile::default();
    let first = store
        .record_heartbeat("m-a", &health(), &declared, Some("s1"), NOW + 1)
        .await
        .expect("heartbeat");
    assert_eq!(first, SessionChange::New { previous: None });
    let same = store
        .record_heartbeat("m-a", &health(), &declared, Some("s1"), NOW + 2)
        .await
        .expect("heartbeat");
    assert_eq!(same, SessionChange::Same);
    let restarted = store
        .record_heartbeat("m-a", &health(), &declared, Some("s2"), NOW + 3)
        .await
        .expect("heartbeat");
    assert_eq!(
        restarted,
        SessionChange::New {
            previous: Some("s1".into())
        }
    );
    let row = store
        .get_mid(MidKey::Id("m-a"))
        .await
        .expect("read")
        .expect("a");
    assert_eq!(row.last_seen_at, Some(NOW + 3));
    assert_eq!(row.health.map(|h| h.outbox_len), Some(3));
}

pub async fn clusters_keep_their_members_in_order(store: Arc<dyn Store>) {
    let members = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    store
        .put_cluster(
            "east",
            ClusterKind::Failover,
            &members(&["b", "a", "c"]),
            NOW,
        )
        .await
        .expect("put");
    store
        .put_cluster("west", ClusterKind::LoadBalance, &members(&["a"]), NOW)
        .await
        .expect("put");
    let east = store
        .get_cluster("east")
        .await
        .expect("read")
        .expect("east");
    assert_eq!(east.members, ["b", "a", "c"]);
    assert_eq!(east.kind, ClusterKind::Failover);
    store
        .put_cluster(
            "east",
            ClusterKind::LoadBalance,
            &members(&["c", "b"]),
            NOW + 1,
        )
        .await
        .expect("replace");
    let east = store
        .get_cluster("east")
        .await
        .expect("read")
        .expect("east");
    assert_eq!(
        (east.kind, east.members.clone()),
        (ClusterKind::LoadBalance, members(&["c", "b"]))
    );
    let names: Vec<String> = store
        .list_clusters()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["east", "west"]);
    assert!(store.delete_cluster("east").await.expect("delete"));
    assert!(!store.delete_cluster("east").await.expect("delete"));
}

fn credential(name: &str) -> CredentialRow {
    CredentialRow {
        id: format!("cred-{name}"),
        name: name.into(),
        description: None,
        kind: "basic".into(),
        shown: "{\"username\":\"svc\"}".into(),
        sealed: vec![1, 2, 3, 4],
        key_id: "k1".into(),
        created_at: NOW,
        updated_at: NOW,
    }
}

fn alias(name: &str, credential: Option<&str>) -> AliasRow {
    AliasRow {
        id: format!("alias-{name}"),
        name: name.into(),
        credential: credential.map(str::to_string),
        spec: "{\"base_url\":\"https://svc.internal\"}".into(),
        created_at: NOW,
        updated_at: NOW,
    }
}

pub async fn credentials_in_use_and_aliases_without_credentials(store: Arc<dyn Store>) {
    let first = store.put_credential(&credential("svc")).await.expect("put");
    let mut changed = credential("svc");
    changed.id = "another-id".into();
    changed.sealed = vec![9, 9];
    changed.created_at = NOW + 5;
    let replaced = store.put_credential(&changed).await.expect("replace");
    assert_eq!(
        (replaced.id.as_str(), replaced.created_at),
        (first.id.as_str(), NOW),
        "id and creation kept"
    );
    let read = store
        .get_credential(CredentialKey::Name("svc"))
        .await
        .expect("read")
        .expect("svc");
    assert_eq!(read.sealed, [9, 9]);
    assert!(
        store
            .get_credential(CredentialKey::Id(&first.id))
            .await
            .expect("read")
            .is_some()
    );
    assert!(matches!(
        store.put_alias(&alias("api", Some("nope"))).await,
        Err(StoreError::MissingCredential(n)) if n == "nope"
    ));
    store
        .put_alias(&alias("api", Some("svc")))
        .await
        .expect("alias");
    assert!(matches!(
        store.delete_credential("svc").await,
        Err(StoreError::InUse(_))
    ));
    assert_eq!(
        store
            .get_alias("api")
            .await
            .expect("read")
            .and_then(|a| a.credential),
        Some("svc".into())
    );
    assert!(store.delete_alias("api").await.expect("delete"));
    assert!(store.delete_credential("svc").await.expect("delete"));
    assert!(store.list_credentials().await.expect("list").is_empty());
    assert!(store.list_aliases().await.expect("list").is_empty());
}

pub async fn settings_round_trip(store: Arc<dyn Store>) {
    assert_eq!(store.get_setting("k").await.expect("read"), None);
    store.put_setting("k", "v1").await.expect("put");
    store.put_setting("k", "v2").await.expect("put");
    assert_eq!(
        store.get_setting("k").await.expect("read").as_deref(),
        Some("v2")
    );
}

fn metric_batch(seq: u64, t0: i64, values: &[f64]) -> openmid_proto::metrics::SampleBatch {
    use openmid_proto::metrics::{NAME_LABEL, Sample, SeriesSamples};
    openmid_proto::metrics::SampleBatch {
        seq,
        series: vec![SeriesSamples {
            labels: std::collections::BTreeMap::from([
                (NAME_LABEL.to_string(), "up".to_string()),
                ("job".to_string(), "node".to_string()),
            ]),
            samples: values
                .iter()
                .enumerate()
                .map(|(i, v)| Sample {
                    t_ms: t0 + i as i64,
                    value: *v,
                })
                .collect(),
        }],
    }
}

pub async fn a_metric_batch_is_stored_once_and_sample_ids_are_never_reused(store: Arc<dyn Store>) {
    let first = metric_batch(1, 1000, &[1.0, f64::NAN]);
    assert!(!store.store_samples("m1", &first, 5).await.expect("store"));
    assert!(
        store.store_samples("m1", &first, 6).await.expect("again"),
        "a re-sent batch is known"
    );
    assert!(
        !store
            .store_samples("m2", &metric_batch(1, 1000, &[7.0]), 6)
            .await
            .expect("other MID")
    );
    let series = store.find_series(Some("up"), 10).await.expect("series");
    assert_eq!(series.len(), 2, "one series per MID and label set");
    let m1 = series.iter().find(|s| s.mid == "m1").expect("m1");
    let samples = store
        .read_samples(m1.id, 0, 10_000, 100)
        .await
        .expect("read");
    assert_eq!(samples.len(), 2, "stored once: {samples:?}");
    assert!(samples[1].1.is_nan(), "NaN comes back as NaN");
    let all = store.samples_after(0, 100).await.expect("all");
    let last = all.last().map(|s| s.id).expect("some");
    assert_eq!(store.purge_samples(i64::MAX, 100).await.expect("purge"), 3);
    assert!(
        !store
            .store_samples("m1", &metric_batch(2, 2000, &[3.0]), 7)
            .await
            .expect("after purge")
    );
    let next = store.samples_after(0, 100).await.expect("after");
    assert!(
        next[0].id > last,
        "ids go on after the table emptied: {} <= {last}",
        next[0].id
    );
}

fn discovery_run(
    id: &str,
    state: &str,
    schedule: Option<&str>,
    started_at: i64,
) -> DiscoveryRunRow {
    DiscoveryRunRow {
        id: id.into(),
        request: "{\"agent\":\"mid.server.a\",\"targets\":[\"198.18.0.0/30\"]}".into(),
        state: state.into(),
        started_at,
        finished_at: None,
        ping_output: format!("ping-{id}"),
        scan_output: None,
        jobs: Some("{\"ping\":[]}".into()),
        schedule: schedule.map(str::to_string),
        hosts_alive: 0,
        devices_new: 0,
        devices_updated: 0,
        detail: None,
    }
}

fn device(id: &str, address: &str, class: &str, run: &str, seen: i64) -> DeviceRow {
    DeviceRow {
        id: id.into(),
        address: address.into(),
        class: class.into(),
        evidence: "[]".into(),
        open_ports: "[{\"port\":22}]".into(),
        name: Some(format!("host-{address}")),
        identity: Some("{}".into()),
        rtt_ms: Some(0.5),
        first_seen: seen,
        last_seen: seen,
        last_run: run.into(),
    }
}

pub async fn discovery_runs_file_devices_once_and_move_by_compare_and_set(store: Arc<dyn Store>) {
    store
        .insert_discovery_run(&discovery_run("r1", "pinging", Some("nightly"), NOW))
        .await
        .expect("insert");
    store
        .insert_discovery_run(&discovery_run("r2", "pinging", None, NOW + 1))
        .await
        .expect("insert");
    let mut r1 = store
        .get_discovery_run("r1")
        .await
        .expect("read")
        .expect("r1");
    assert_eq!(r1.schedule.as_deref(), Some("nightly"));
    r1.state = "scanning".into();
    r1.hosts_alive = 2;
    assert!(
        store
            .update_discovery_run(&r1, "pinging")
            .await
            .expect("move")
    );
    assert!(
        !store
            .update_discovery_run(&r1, "pinging")
            .await
            .expect("move"),
        "moves once"
    );
    let scanning = store
        .list_discovery_runs(Some("scanning"), None, 10)
        .await
        .expect("list");
    assert_eq!(
        scanning.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r1"]
    );
    let nightly = store
        .list_discovery_runs(None, Some("nightly"), 10)
        .await
        .expect("list");
    assert_eq!(nightly.len(), 1);
    let all = store
        .list_discovery_runs(None, None, 10)
        .await
        .expect("list");
    assert_eq!(
        all.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r2", "r1"],
        "newest first"
    );

    let mut done = r1.clone();
    done.state = "complete".into();
    done.finished_at = Some(NOW + 10);
    let first = [
        device("d1", "198.18.0.11", "linux_server", "r1", NOW + 10),
        device("d2", "198.18.0.12", "printer", "r1", NOW + 10),
    ];
    assert_eq!(
        store
            .file_devices(&first, &done, "scanning")
            .await
            .expect("file"),
        Some((2, 0))
    );
    assert_eq!(
        store
            .file_devices(&first, &done, "scanning")
            .await
            .expect("file"),
        None,
        "a run that moved on files nothing"
    );
    let run = store
        .get_discovery_run("r1")
        .await
        .expect("read")
        .expect("r1");
    assert_eq!(
        (run.state.as_str(), run.devices_new, run.devices_updated),
        ("complete", 2, 0)
    );

    // A second run sees one device again: it is updated in place, never duplicated.
    let mut r2 = store
        .get_discovery_run("r2")
        .await
        .expect("read")
        .expect("r2");
    r2.state = "complete".into();
    let again = [
        device("other-id", "198.18.0.11", "web_server", "r2", NOW + 20),
        device("d3", "198.18.0.13", "network_device", "r2", NOW + 20),
    ];
    assert_eq!(
        store
            .file_devices(&again, &r2, "pinging")
            .await
            .expect("file"),
        Some((1, 1))
    );
    let seen = store
        .get_device("198.18.0.11")
        .await
        .expect("read")
        .expect("by address");
    assert_eq!(
        (seen.id.as_str(), seen.first_seen, seen.last_seen),
        ("d1", NOW + 10, NOW + 20)
    );
    assert_eq!(
        (seen.class.as_str(), seen.last_run.as_str()),
        ("web_server", "r2")
    );
    assert_eq!(seen.name.as_deref(), Some("host-198.18.0.11"));
    assert!(
        store.get_device("d1").await.expect("read").is_some(),
        "by id too"
    );
    let printers = store
        .list_devices(Some("printer"), None, 10)
        .await
        .expect("list");
    assert_eq!(
        printers
            .iter()
            .map(|d| d.address.as_str())
            .collect::<Vec<_>>(),
        ["198.18.0.12"]
    );
    let after = store
        .list_devices(None, Some("198.18.0.11"), 10)
        .await
        .expect("list");
    assert_eq!(
        after.iter().map(|d| d.address.as_str()).collect::<Vec<_>>(),
        ["198.18.0.12", "198.18.0.13"]
    );
}

fn schedule(name: &str, next_run_at: Option<i64>) -> DiscoveryScheduleRow {
    DiscoveryScheduleRow {
        name: name.into(),
        spec: format!("{{\"name\":\"{name}\"}}"),
        created_at: NOW,
        updated_at: NOW,
        next_run_at,
        schedule_anchor: None,
        last_run: None,
    }
}

pub async fn discovery_schedules_fall_due_and_are_claimed_once(store: Arc<dyn Store>) {
    store
        .put_discovery_schedule(&schedule("b-later", Some(NOW + 500)))
        .await
        .expect("put");
    store
        .put_discovery_schedule(&schedule("a-soon", Some(NOW + 100)))
        .await
        .expect("put");
    store
        .put_discovery_schedule(&schedule("paused", None))
        .await
        .expect("put");
    let names: Vec<String> = store
        .list_discovery_schedules()
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a-soon", "b-later", "paused"]);
    let due: Vec<String> = store
        .due_discovery_schedules(NOW + 600, 10)
        .await
        .expect("due")
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(due, ["a-soon", "b-later"], "soonest first, paused never");
    assert!(
        store
            .reschedule_discovery_schedule(
                "a-soon",
                Some(NOW + 100),
                Some(NOW + 3600),
                Some(NOW + 100)
            )
            .await
            .expect("claim")
    );
    assert!(
        !store
            .reschedule_discovery_schedule("a-soon", Some(NOW + 100), Some(NOW + 7200), None)
            .await
            .expect("claim"),
        "a second scheduler cannot take the same due run"
    );
    let a = store
        .get_discovery_schedule("a-soon")
        .await
        .expect("read")
        .expect("a");
    assert_eq!(
        (a.next_run_at, a.schedule_anchor),
        (Some(NOW + 3600), Some(NOW + 100))
    );
    assert!(
        store
            .reschedule_discovery_schedule("paused", None, Some(NOW), None)
            .await
            .expect("resume a paused one")
    );
    assert!(
        store
            .delete_discovery_schedule("b-later")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_discovery_schedule("b-later")
            .await
            .expect("delete")
    );
    assert!(
        store
            .get_discovery_schedule("b-later")
            .await
            .expect("read")
            .is_none()
    );
}
