//! The ECC queue's cases: claims, results, leases, cancels, idempotency, chunks, purging.

use super::*;

pub async fn claims_take_the_most_urgent_first_up_to_capacity(store: Arc<dyn Store>) {
    // Inserted out of id order: age is the id's order, not the insertion's.
    for (id, p) in [
        ("05-std", Priority::Standard),
        ("02-int", Priority::Interactive),
        ("03-std", Priority::Standard),
        ("04-exp", Priority::Expedited),
        ("01-std", Priority::Standard),
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
