//! Encode/decode cost of the session messages on the hot path: a poll answer carrying
//! work, and a batch of results.

use criterion::{Criterion, criterion_group, criterion_main};
use openmid_proto::ecc::{Priority, Topic};
use openmid_proto::mid::{MidStatus, PollResponse, ResultsRequest, WorkItem, WorkResult};
use std::hint::black_box;

fn poll_answer(n: usize) -> PollResponse {
    PollResponse {
        status: MidStatus::Up,
        lease_ms: 30_000,
        heartbeat_ms: 5_000,
        rekey: false,
        cancel: Vec::new(),
        work: (0..n)
            .map(|i| WorkItem {
                output_id: format!("01a2086e-dd63-732c-87b7-ce6073b0{i:04}"),
                attempt: 1,
                topic: Topic::RESTProbe,
                name: "GET http://10.0.0.5:8080/api/health".into(),
                priority: Priority::Interactive,
                payload: serde_json::json!({"method": "GET", "url": "http://10.0.0.5:8080/api/health", "headers": {"accept": "application/json"}}).into(),
                credential: None,
                traceparent: Some(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
                ),
            })
            .collect(),
    }
}

fn results(n: usize) -> ResultsRequest {
    ResultsRequest {
        results: (0..n)
            .map(|i| WorkResult {
                output_id: format!("01a2086e-dd63-732c-87b7-ce6073b0{i:04}"),
                attempt: 1,
                payload: serde_json::json!({"status": 200, "headers": {"content-type": "application/json"}, "body": "{\"hello\":\"world\"}", "timings": {"headers_ms": 0.4, "total_ms": 0.5}}).into(),
                error: None,
                started_at_ms: 1_795_435_749_123,
                duration_ms: 1,
            })
            .collect(),
    }
}

fn bench(c: &mut Criterion) {
    for n in [1, 32] {
        let answer = poll_answer(n);
        let bytes = serde_json::to_vec(&answer).unwrap_or_default();
        c.bench_function(&format!("poll answer encode ({n} items)"), |b| {
            b.iter(|| serde_json::to_vec(black_box(&answer)))
        });
        c.bench_function(&format!("poll answer decode ({n} items)"), |b| {
            b.iter(|| serde_json::from_slice::<PollResponse>(black_box(&bytes)))
        });
        let batch = results(n);
        let bytes = serde_json::to_vec(&batch).unwrap_or_default();
        c.bench_function(&format!("results encode ({n})"), |b| {
            b.iter(|| serde_json::to_vec(black_box(&batch)))
        });
        c.bench_function(&format!("results decode ({n})"), |b| {
            b.iter(|| serde_json::from_slice::<ResultsRequest>(black_box(&bytes)))
        });
    }
}

/// What sealing a credential adds to each claim that carries one, and opening it to
/// each job on the MID.
fn sealing(c: &mut Criterion) {
    let private = [7u8; 32];
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private));
    let plain =
        br#"{"type":"basic","username":"svc-crm","password":"correct horse battery staple"}"#;
    let aad = openmid_proto::seal::credential_aad("mid-id", "cred-id", "output-id", 1);
    c.bench_function("seal a credential to a MID", |b| {
        b.iter(|| openmid_proto::seal::seal(public.as_bytes(), &aad, plain))
    });
    let sealed = openmid_proto::seal::seal(public.as_bytes(), &aad, plain).expect("seal");
    c.bench_function("open a sealed credential", |b| {
        b.iter(|| openmid_proto::seal::open(&private, &aad, &sealed))
    });
}

criterion_group!(benches, bench, sealing);
criterion_main!(benches);
