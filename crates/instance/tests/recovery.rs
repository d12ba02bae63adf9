//! Recovery without waiting out leases: a new MID process releases what the previous
//! one held at its first heartbeat; an instance restart starts with nobody connected;
//! a submission retried with its `Idempotency-Key` is answered with the first output.

use crate::support::{Raw, enrolled_client, instance, instance_with};
use openmid_proto::api::NewOutput;
use openmid_proto::ecc::{State, Topic};
use openmid_proto::mid::{Capacity, HeartbeatRequest, JobRef, MidStatus, PollRequest};
use openmid_testkit::TestInstance;
use serde_json::json;

fn output(mid: &str, url: &str) -> NewOutput {
    NewOutput {
        durability: Default::default(),
        agent: format!("mid.server.{mid}"),
        topic: Topic::RESTProbe,
        name: None,
        source: None,
        payload: json!({ "url": url }).into(),
        priority: None,
        correlator: None,
        max_attempts: None,
        at_most_once: false,
        application: None,
    }
}

fn beat(session: &str, running: Vec<JobRef>) -> HeartbeatRequest {
    HeartbeatRequest {
        running,
        version: "t".into(),
        session: Some(session.into()),
        ..Default::default()
    }
}

async fn claim_all(client: &openmid_mid::session::client::InstanceClient) -> Vec<JobRef> {
    let answer = client
        .poll(&PollRequest {
            capacity: Capacity {
                interactive: 8,
                expedited: 8,
                standard: 8,
            },
            wait_ms: 0,
            known_status: Some(MidStatus::Up),
        })
        .await
        .expect("poll");
    answer
        .work
        .into_iter()
        .map(|w| JobRef {
            output_id: w.output_id,
            attempt: w.attempt,
        })
        .collect()
}

#[tokio::test]
async fn a_new_mid_process_releases_what_the_old_one_held_at_its_first_heartbeat() {
    // A lease far longer than the test: only the new session can free the jobs.
    let (instance, _dir) = instance_with(|c| c.lease_ms = 600_000).await;
    let client = enrolled_client(&instance, "phoenix", true).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let out = instance
            .api
            .insert_output(&output("phoenix", &format!("http://127.0.0.1:9/{i}")))
            .await
            .expect("insert");
        ids.push(out.id);
    }
    let held = claim_all(&client).await;
    assert_eq!(held.len(), 3);
    let first = client
        .heartbeat(&beat("process-1", held.clone()))
        .await
        .expect("beat");
    assert!(
        first.lost.is_empty(),
        "the first session keeps all it holds"
    );

    // The same process beats again: nothing changes.
    client
        .heartbeat(&beat("process-1", held.clone()))
        .await
        .expect("beat");
    for id in &ids {
        let r = instance.api.get_record(id).await.expect("get");
        assert_eq!((r.state, r.attempt), (State::Processing, 1), "{id}");
    }

    // A new process (kill -9 and restart, well within any grace) still holds one
    // result in its outbox: that job keeps its lease, the other two run again.
    let kept = held[0].clone();
    let answer = client
        .heartbeat(&beat("process-2", vec![kept.clone()]))
        .await
        .expect("beat");
    assert!(answer.lost.is_empty(), "{:?}", answer.lost);
    let r = instance.api.get_record(&kept.output_id).await.expect("get");
    assert_eq!((r.state, r.attempt), (State::Processing, 1));
    for job in &held[1..] {
        let r = instance.api.get_record(&job.output_id).await.expect("get");
        assert_eq!(r.state, State::Ready, "released at once: {:?}", r.error);
    }
    let again = claim_all(&client).await;
    let mut again: Vec<_> = again
        .into_iter()
        .map(|j| (j.output_id, j.attempt))
        .collect();
    again.sort();
    let mut want: Vec<_> = held[1..].iter().map(|j| (j.output_id.clone(), 2)).collect();
    want.sort();
    assert_eq!(
        again, want,
        "the released jobs are claimed again as attempt 2"
    );
}

#[tokio::test]
async fn after_an_instance_restart_nobody_counts_as_connected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = openmid_instance::config::InstanceConfig {
        data_dir: dir.path().to_path_buf(),
        listen: openmid_testkit::loopback_any_port(),
        lease_ms: 600_000,
        disconnect_grace_ms: 600_000,
        down_after_ms: 600_000,
        ..Default::default()
    };
    let instance = TestInstance::start_with(config.clone(), None)
        .await
        .expect("instance");
    let client = enrolled_client(&instance, "gone", true).await;
    let out = instance
        .api
        .insert_output(&output("gone", "http://127.0.0.1:9/"))
        .await
        .expect("insert");
    assert_eq!(claim_all(&client).await.len(), 1);
    let (addr, token) = (instance.running.addr, instance.token.clone());
    instance.shutdown().await;

    let instance = TestInstance::start_with(
        openmid_instance::config::InstanceConfig {
            listen: addr,
            ..config
        },
        Some(token),
    )
    .await
    .expect("restart");
    let mid = instance.api.get_mid("gone").await.expect("mid");
    assert_eq!(
        mid.status,
        MidStatus::Down,
        "not reconnected since the restart: {:?}",
        mid.status_reason
    );
    let r = instance.api.get_record(&out.id).await.expect("get");
    assert_eq!(
        (r.state, r.attempt),
        (State::Processing, 1),
        "running work keeps its lease while its MID reconnects"
    );
    // Its first poll brings it back.
    claim_all(&client).await;
    let mid = instance.api.get_mid("gone").await.expect("mid");
    assert_eq!(mid.status, MidStatus::Up, "{:?}", mid.status_reason);
    instance.shutdown().await;
}

async fn post(
    raw: &Raw,
    instance: &TestInstance,
    path: &str,
    key: Option<&str>,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let mut headers = vec![(
        "authorization",
        format!("Bearer {}", instance.token.expose()),
    )];
    if let Some(key) = key {
        headers.push(("idempotency-key", key.to_string()));
    }
    let a = raw.post_with_headers(path, headers, body.to_string()).await;
    (a.status, a.body)
}

#[tokio::test]
async fn a_retried_submission_with_its_idempotency_key_gets_the_first_output() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    let _client = enrolled_client(&instance, "mid-i", true).await;
    let body = json!({"agent": "mid.server.mid-i", "topic": "RESTProbe", "payload": {"url": "http://127.0.0.1:9/x"}});

    let (status, first) = post(&raw, &instance, "/api/v1/ecc", Some("order-42"), &body).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = post(&raw, &instance, "/api/v1/ecc", Some("order-42"), &body).await;
    assert_eq!(status, 200, "a replay, not a new record: {again}");
    assert_eq!(again["id"], first["id"]);
    let (status, other) = post(&raw, &instance, "/api/v1/ecc", Some("order-43"), &body).await;
    assert_eq!(status, 201);
    assert_ne!(
        other["id"], first["id"],
        "another key is another submission"
    );
    let (status, plain) = post(&raw, &instance, "/api/v1/ecc", None, &body).await;
    assert_eq!(status, 201);
    assert_ne!(plain["id"], first["id"]);

    // The same key for a different request is refused, naming the header.
    let mut changed = body.clone();
    changed["payload"]["url"] = json!("http://127.0.0.1:9/y");
    let (status, refused) = post(&raw, &instance, "/api/v1/ecc", Some("order-42"), &changed).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_key_reused");

    // Bad keys are named.
    for bad in ["", &"k".repeat(256)] {
        let (status, answer) = post(&raw, &instance, "/api/v1/ecc", Some(bad), &body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Idempotency-Key")),
            "{answer}"
        );
    }

    // Actions too, concurrently: several retries in flight make one output.
    let action = json!({"url": "http://127.0.0.1:9/a", "mid": "mid-i"});
    let tries = futures::future::join_all((0..5).map(|_| {
        post(
            &raw,
            &instance,
            "/api/v1/actions/rest",
            Some("act-1"),
            &action,
        )
    }))
    .await;
    let ids: std::collections::HashSet<String> = tries
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            body["output_id"].as_str().expect("output id").to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one output for five tries: {ids:?}");
    let page = raw.get("/api/v1/ecc?limit=1000").await;
    let records = page.body["records"].as_array().map_or(0, Vec::len);
    assert_eq!(
        records, 4,
        "three ECC submissions and one action: nothing twice"
    );
}

#[tokio::test]
async fn retried_output_chunks_are_stored_once_and_only_for_the_attempt_held() {
    use openmid_proto::command_output::{OutputPost, OutputStream, WireChunk};
    let (instance, _dir) = instance().await;
    let client = enrolled_client(&instance, "streamer", true).await;
    let other = enrolled_client(&instance, "bystander", true).await;
    let out = instance
        .api
        .insert_output(&NewOutput {
            durability: Default::default(),
            topic: Topic::Command,
            payload: json!({"program": "/bin/echo", "args": ["x"]}).into(),
            ..output("streamer", "http://unused/")
        })
        .await
        .expect("insert");
    let held = claim_all(&client).await;
    assert_eq!(held.len(), 1);
    let job = held[0].clone();
    let post = OutputPost {
        chunks: vec![
            WireChunk::data(OutputStream::Stdout, 0, 0, b"hello "),
            WireChunk::data(OutputStream::Stdout, 1, 6, b"world\n"),
        ],
    };
    let first = client.post_output(&job, &post).await.expect("stored");
    assert_eq!((first.stored, first.duplicate), (2, 0));
    // The MID did not hear the answer and posts again: nothing is stored twice.
    let again = client.post_output(&job, &post).await.expect("retried");
    assert_eq!((again.stored, again.duplicate), (0, 2));
    // Another MID, or an attempt this MID no longer holds, is refused.
    let refused = other.post_output(&job, &post).await;
    assert!(
        matches!(
            refused,
            Err(openmid_mid::session::client::SessionError::Refused { status: 409, .. })
        ),
        "{refused:?}"
    );
    let stale = JobRef {
        attempt: job.attempt + 1,
        ..job.clone()
    };
    assert!(client.post_output(&stale, &post).await.is_err());
    // What a follower reads: each chunk once, in order.
    let raw = Raw::new(&instance);
    let lines = raw.get(&format!("/api/v1/actions/{}/output", out.id)).await;
    assert_eq!(lines.status, 200);
    let text = lines
        .body
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| lines.body.to_string());
    let chunks: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v.get("seq").is_some())
        .collect();
    let texts: Vec<&str> = chunks.iter().filter_map(|c| c["text"].as_str()).collect();
    assert_eq!(texts, ["hello ", "world\n"], "{text}");
}
