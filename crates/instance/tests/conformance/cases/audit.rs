//! The audit log and the trace a job carries: entries appended with growing ids,
//! listed newest first under every filter, paged by id, purged by age only (the
//! newest always kept, so an id is never given twice); and an output's
//! `traceparent` kept on it and on its input.

use super::*;
use openmid_instance::ecc::{AuditFilter, NewAuditEntry};

fn entry(at: i64, actor: &str, action: &str, mid: Option<&str>) -> NewAuditEntry {
    NewAuditEntry {
        at,
        actor: actor.into(),
        action: action.into(),
        target: Some(format!("t-{at}")),
        peer: Some("127.0.0.1".into()),
        outcome: "ok".into(),
        status: Some(200),
        mid: mid.map(str::to_string),
        output_id: mid.map(|_| format!("out-{at}")),
        topic: mid.map(|_| "Command".to_string()),
        detail: mid.map(|_| "/bin/echo 'it''s 100%_done'".to_string()),
        rows: mid.map(|_| 3),
        error: None,
    }
}

fn all() -> AuditFilter {
    AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    }
}

async fn ids(store: &Arc<dyn Store>, filter: AuditFilter) -> Vec<i64> {
    store
        .list_audit(&filter)
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

pub async fn the_audit_log_is_appended_filtered_paged_and_purged_by_age(store: Arc<dyn Store>) {
    let day = 86_400_000;
    let written = [
        entry(NOW - 10 * day, "token:aaa", "mid.validate", None),
        entry(NOW - 9 * day, "token:aaa", "alias.put", None),
        entry(NOW - day, "mid:m1", "command.run", Some("m1")),
        entry(NOW, "session:bbb", "mid.pause", None),
        entry(NOW + 1, "mid:m2", "sql.run", Some("m2")),
    ];
    let mut given = Vec::new();
    for e in &written {
        given.push(store.append_audit(e).await.expect("append"));
    }
    assert!(given.windows(2).all(|w| w[0] < w[1]), "ids grow: {given:?}");

    // Read back whole, newest first.
    let rows = store.list_audit(&all()).await.expect("list");
    assert_eq!(rows.len(), 5);
    let newest_first: Vec<&NewAuditEntry> = written.iter().rev().collect();
    assert_eq!(
        rows.iter().map(|r| &r.entry).collect::<Vec<_>>(),
        newest_first
    );
    assert_eq!(rows[0].id, given[4]);

    let f = |edit: fn(&mut AuditFilter)| {
        let mut filter = all();
        edit(&mut filter);
        filter
    };
    assert_eq!(
        ids(&store, f(|f| f.actor = Some("token:aaa".into()))).await,
        [given[1], given[0]]
    );
    assert_eq!(
        ids(&store, f(|f| f.action = Some("mid.*".into()))).await,
        [given[3], given[0]]
    );
    assert_eq!(
        ids(&store, f(|f| f.action = Some("command.run".into()))).await,
        [given[2]]
    );
    // `thing.*` is a prefix of a name, not a pattern: `%` and `_` match themselves.
    assert!(
        ids(&store, f(|f| f.action = Some("%.*".into())))
            .await
            .is_empty()
    );
    assert!(
        ids(&store, f(|f| f.action = Some("mid_*".into())))
            .await
            .is_empty()
    );
    assert_eq!(
        ids(&store, f(|f| f.mid = Some("m2".into()))).await,
        [given[4]]
    );
    assert_eq!(
        ids(&store, f(|f| f.since = Some(NOW - 9 * 86_400_000))).await,
        [given[4], given[3], given[2], given[1]]
    );
    assert_eq!(
        ids(&store, f(|f| f.until = Some(NOW))).await,
        [given[2], given[1], given[0]]
    );
    // Pages by id.
    let mut page = all();
    page.limit = 2;
    assert_eq!(ids(&store, page.clone()).await, [given[4], given[3]]);
    page.before = Some(given[3]);
    assert_eq!(ids(&store, page.clone()).await, [given[2], given[1]]);
    page.before = Some(given[1]);
    assert_eq!(ids(&store, page).await, [given[0]]);

    // Retention: only entries older than the cut go, a batch at a time.
    let cut = NOW - 2 * day;
    assert_eq!(store.purge_audit(cut, 1).await.expect("purge"), 1);
    assert_eq!(store.purge_audit(cut, 10).await.expect("purge"), 1);
    assert_eq!(store.purge_audit(cut, 10).await.expect("purge"), 0);
    assert_eq!(ids(&store, all()).await, [given[4], given[3], given[2]]);

    // The newest entry stays whatever its age, so ids are never given again.
    assert_eq!(store.purge_audit(NOW + day, 100).await.expect("purge"), 2);
    assert_eq!(ids(&store, all()).await, [given[4]]);
    let next = store
        .append_audit(&entry(NOW + 2, "token:aaa", "ecc.insert", None))
        .await
        .expect("append");
    assert!(next > given[4], "{next} after {}", given[4]);
}

pub async fn a_traceparent_stays_with_its_output_and_input(store: Arc<dyn Store>) {
    let out = output("t1", "a", Priority::Interactive);
    let traceparent = out.traceparent.clone();
    assert!(traceparent.is_some());
    store.insert_output(&out).await.expect("insert");
    assert_eq!(state(&store, "t1").await, out, "read back whole");
    let claimed = claim(&store, "a", free(1, 0, 0), NOW).await;
    assert_eq!(claimed[0].traceparent, traceparent);
    assert_eq!(
        record(&store, "a", result("t1", 1, None), NOW + 1).await,
        AckOutcome::Recorded
    );
    let input = store
        .input_for("t1")
        .await
        .expect("read")
        .expect("an input");
    assert_eq!(
        input.traceparent, traceparent,
        "the input is in the same trace"
    );
    assert_eq!(
        state(&store, "t1").await.trace_id().as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

/// An express call's output, finished, and its input.
fn express_call(id: &str, to: &str) -> openmid_instance::ecc::Finished {
    let mut out = output(id, to, Priority::Interactive);
    out.state = State::Processed;
    out.attempt = 1;
    out.max_attempts = 1;
    out.at_most_once = true;
    out.claimed_by = Some(to.into());
    out.claimed_at = Some(NOW);
    out.processed_at = Some(NOW + 2);
    out.duration_ms = Some(2);
    let input = Record {
        id: format!("{id}-in"),
        queue: Queue::Input,
        response_to: Some(id.into()),
        payload: "{\"status\":200}".into(),
        claimed_by: None,
        ..out.clone()
    };
    openmid_instance::ecc::Finished { output: out, input }
}

pub async fn express_records_and_their_audit_are_written_together_once(store: Arc<dyn Store>) {
    let (a, b) = (express_call("x1", "a"), express_call("x2", "a"));
    let mut run = entry(NOW, "token:abc", "action.run", Some("a"));
    run.output_id = Some("x1".into());
    store
        .record_express(Arc::from([a.clone(), b.clone()]), Arc::from([run.clone()]))
        .await
        .expect("record");
    for f in [&a, &b] {
        assert_eq!(state(&store, &f.output.id).await, f.output, "output whole");
        let input = store
            .input_for(&f.output.id)
            .await
            .expect("read")
            .expect("an input");
        assert_eq!(input, f.input, "input whole");
    }
    let logged = store.list_audit(&all()).await.expect("list");
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].entry, run, "the audit entry went with them");

    // Written again (a retried batch): the records stay as they were, and a later
    // change to a record already there is not taken.
    let mut again = a.clone();
    again.output.error = Some("rewritten".into());
    store
        .record_express(Arc::from([again]), Arc::from([]))
        .await
        .expect("record again");
    assert_eq!(state(&store, "x1").await, a.output);
    assert_eq!(
        store.list_audit(&all()).await.expect("list").len(),
        1,
        "no entry for a batch without any"
    );
    store
        .record_express(Arc::from([]), Arc::from([]))
        .await
        .expect("nothing");
}

/// The entry a job's own audit gets in this case: one for every finished job.
fn job_entry(mid: &str, f: &openmid_instance::ecc::Finished, now: i64) -> Option<NewAuditEntry> {
    let mut e = entry(now, &format!("mid:{mid}"), "job.run", Some(mid));
    e.output_id = Some(f.output.id.clone());
    Some(e)
}

pub async fn results_write_their_audit_entries_in_their_own_transaction(store: Arc<dyn Store>) {
    use openmid_instance::ecc::ResultAudit;
    for id in ["r1", "r2"] {
        store
            .insert_output(&output(id, "a", Priority::Interactive))
            .await
            .expect("insert");
    }
    assert_eq!(claim(&store, "a", free(5, 0, 0), NOW).await.len(), 2);
    let mut caller = entry(NOW + 1, "token:abc", "action.run", None);
    caller.target = Some("rest".into());
    let results = [result("r1", 1, None), result("r2", 1, None)];
    let audit = ResultAudit {
        job: Some(job_entry),
        callers: vec![Some(caller.clone()), None],
    };
    let recorded = store
        .record_results("a", &results, audit, NOW + 5)
        .await
        .expect("record");
    assert_eq!(
        recorded
            .iter()
            .map(|r| r.caller_audited)
            .collect::<Vec<_>>(),
        [true, false],
        "only the result with a caller's entry wrote one"
    );
    let logged = store.list_audit(&all()).await.expect("list");
    let mut actions: Vec<(String, Option<String>)> = logged
        .iter()
        .map(|l| (l.entry.action.clone(), l.entry.output_id.clone()))
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        [
            ("action.run".to_string(), None),
            ("job.run".to_string(), Some("r1".to_string())),
            ("job.run".to_string(), Some("r2".to_string())),
        ],
        "each finished job's entry and the caller's, with the results"
    );
    assert!(
        logged.iter().any(|l| l.entry == caller),
        "the caller's entry whole"
    );

    // A repeated post records nothing, so it writes no entry, the caller's neither.
    let again = store
        .record_results(
            "a",
            &results[..1],
            ResultAudit {
                job: Some(job_entry),
                callers: vec![Some(caller.clone())],
            },
            NOW + 6,
        )
        .await
        .expect("record again");
    assert_eq!(again[0].outcome, AckOutcome::Duplicate);
    assert!(!again[0].caller_audited);
    assert_eq!(store.list_audit(&all()).await.expect("list").len(), 3);
}
