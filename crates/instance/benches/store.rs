//! The store's hot path on SQLite: write an output, claim it, record its result.

use criterion::{Criterion, criterion_group, criterion_main};
use openmid_instance::ecc::{Claim, MidRow, Record, SqliteStore};
use openmid_instance::ecc::{QueueStore, RegistryStore};
use openmid_proto::ecc::{Priority, Queue, State, Topic};
use openmid_proto::mid::{Capacity, MidStatus, WorkResult};
use openmid_proto::time::now_ms;

fn output(mid: &str) -> Record {
    Record {
        id: uuid_v7(),
        queue: Queue::Output,
        agent: format!("mid.server.{mid}"),
        topic: Topic::RESTProbe,
        name: "GET http://10.0.0.5/x".into(),
        source: "bench".into(),
        payload: r#"{"url":"http://10.0.0.5/x"}"#.into(),
        state: State::Ready,
        priority: Priority::Interactive,
        response_to: None,
        correlator: None,
        attempt: 0,
        max_attempts: 3,
        at_most_once: false,
        error: None,
        claimed_by: None,
        lease_expires_at: None,
        created_at: now_ms(),
        claimed_at: None,
        processed_at: None,
        duration_ms: None,
        assigned_to: Some(mid.into()),
        selection: None,
        application: None,
        traceparent: None,
    }
}

fn uuid_v7() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:016x}-{:016x}", now_ms(), n)
}

fn bench(c: &mut Criterion) {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let store = match rt.block_on(SqliteStore::open(&dir.path().join("bench.db"))) {
        Ok(s) => s,
        Err(e) => panic!("store: {e}"),
    };
    let _ = rt.block_on(store.insert_enrollment_token(
        &openmid_instance::ecc::EnrollmentTokenRow {
            token_hash: "t".into(),
            expires_at: i64::MAX,
            auto_validate: true,
            note: None,
            created_at: 0,
        },
    ));
    let _ = rt.block_on(store.enroll_mid(
        "t",
        &MidRow {
            id: "m".into(),
            name: "m".into(),
            secret_hash: String::new(),
            public_key: String::new(),
            status: MidStatus::Up,
            status_reason: None,
            version: "b".into(),
            hostname: "h".into(),
            protocol_version: 1,
            enrolled_at: now_ms(),
            validated_at: None,
            last_seen_at: None,
            declared_profile: Default::default(),
            admin_profile: None,
            health: None,
            rekey_requested: false,
        },
    ));
    for batch in [1u32, 32] {
        c.bench_function(&format!("insert ({batch} at once) + claim + record"), |b| {
            b.to_async(&rt).iter(|| async {
                // Concurrently, as API calls arrive: the writer commits them together.
                let outputs: Vec<Record> = (0..batch).map(|_| output("m")).collect();
                futures::future::join_all(outputs.iter().map(|o| store.insert_output(o))).await;
                let now = now_ms();
                let claimed = store
                    .claim_ready_outputs(&Claim {
                        mid_name: "m",
                        capacity: Capacity {
                            interactive: batch,
                            expedited: 0,
                            standard: 0,
                        },
                        now,
                        lease_until: now + 30_000,
                    })
                    .await
                    .unwrap_or_default();
                let results: Vec<WorkResult> = claimed
                    .iter()
                    .map(|r| WorkResult {
                        output_id: r.id.clone(),
                        attempt: r.attempt,
                        payload: serde_json::json!({"status": 200}).into(),
                        error: None,
                        started_at_ms: now,
                        duration_ms: 1,
                    })
                    .collect();
                let _ = store
                    .record_results("m", &results, Default::default(), now_ms())
                    .await;
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
