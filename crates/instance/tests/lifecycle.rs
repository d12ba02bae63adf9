//! MID lifecycle on the instance: admin actions and their history, `mid.auto`
//! selection, heartbeat health, down detection by a dropped connection, rekey.

use crate::support::{Raw, enrolled_client, enrolled_client_with, instance, instance_with};
use openmid_mid::session::client::{InstanceClient, SessionError};
use openmid_proto::api::{NewOutput, ProfileUpdate};
use openmid_proto::ecc::Topic;
use openmid_proto::mid::{
    Capacity, HeartbeatRequest, MidProfile, MidStatus, PollRequest, PollResponse,
};
use openmid_testkit::TestInstance;
use serde_json::json;
use std::time::{Duration, Instant};

async fn poll(client: &InstanceClient, wait_ms: u64) -> Result<PollResponse, SessionError> {
    client
        .poll(&PollRequest {
            capacity: Capacity {
                interactive: 8,
                ..Default::default()
            },
            wait_ms,
            known_status: None,
        })
        .await
}

fn output(agent: &str, url: &str, application: Option<&str>) -> NewOutput {
    NewOutput {
        durability: Default::default(),
        agent: agent.into(),
        topic: Topic::RESTProbe,
        name: None,
        source: None,
        payload: json!({"url": url}).into(),
        priority: None,
        correlator: None,
        max_attempts: None,
        at_most_once: false,
        application: application.map(String::from),
    }
}

async fn eventually_status(instance: &TestInstance, name: &str, want: MidStatus) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if instance
            .api
            .get_mid(name)
            .await
            .is_ok_and(|m| m.status == want)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn admin_actions_walk_the_status_machine_and_are_recorded() {
    let (instance, _dir) = instance().await;
    let api = &instance.api;
    let client = enrolled_client(&instance, "walker", false).await;
    assert_eq!(
        api.mid_action("walker", "validate")
            .await
            .expect("validate")
            .status,
        MidStatus::Up
    );
    assert_eq!(
        api.mid_action("walker", "pause")
            .await
            .expect("pause")
            .status,
        MidStatus::Paused
    );

    let out = api
        .insert_output(&output("mid.server.walker", "http://127.0.0.1:9/", None))
        .await
        .expect("insert");
    let paused = poll(&client, 200).await.expect("poll");
    assert_eq!(paused.status, MidStatus::Paused);
    assert!(paused.work.is_empty(), "a paused MID gets no work");
    api.mid_action("walker", "resume").await.expect("resume");
    let resumed = poll(&client, 2000).await.expect("poll");
    assert_eq!(
        resumed.work.first().map(|w| w.output_id.as_str()),
        Some(out.id.as_str())
    );

    // Draining with that job running: drained only once its result is in.
    api.mid_action("walker", "drain").await.expect("drain");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        api.get_mid("walker").await.expect("mid").status,
        MidStatus::Draining
    );
    client
        .post_results(&openmid_proto::mid::ResultsRequest {
            results: vec![openmid_proto::mid::WorkResult {
                output_id: out.id.clone(),
                attempt: 1,
                payload: json!({"status": 204, "headers": {}, "timings": {"headers_ms": 1.0, "total_ms": 1.0}}).into(),
                error: None,
                started_at_ms: 0,
                duration_ms: 1,
            }],
        })
        .await
        .expect("result");
    assert!(eventually_status(&instance, "walker", MidStatus::Drained).await);

    // Work for the drained MID waits for it (and ends in error when the MID is deleted).
    let orphan = api
        .insert_output(&output("mid.server.walker", "http://127.0.0.1:9/", None))
        .await
        .expect("insert");
    assert_eq!(
        api.mid_action("walker", "invalidate")
            .await
            .expect("invalidate")
            .status,
        MidStatus::Invalidated
    );
    let refused = poll(&client, 0)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(refused.contains("invalidated"), "{refused}");
    let conflict = api
        .mid_action("walker", "resume")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        conflict.contains("409") && conflict.contains("invalidated"),
        "{conflict}"
    );
    let unknown = api
        .mid_action("walker", "explode")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(unknown.contains("no MID action `explode`"), "{unknown}");

    let history = api.mid_history("walker").await.expect("history");
    let tos: Vec<&str> = history.iter().map(|c| c.to.as_str()).collect();
    assert_eq!(
        tos,
        [
            "invalidated",
            "drained",
            "draining",
            "up",
            "paused",
            "up",
            "validation_pending"
        ]
    );
    assert!(
        history
            .iter()
            .all(|c| !c.reason.is_empty() && !c.at.is_empty())
    );

    // An invalidated MID can be deleted; work addressed to it alone ends in error; the
    // name can enroll again. A working MID cannot be deleted.
    let refused = api
        .insert_output(&output("mid.server.walker", "http://127.0.0.1:9/", None))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(refused.contains("is invalidated"), "{refused}");
    api.delete_mid("walker").await.expect("delete");
    let orphan = api.get_record(&orphan.id).await.expect("get");
    assert_eq!(orphan.state, openmid_proto::ecc::State::Error);
    assert!(orphan.error.unwrap_or_default().contains("deleted"));
    let _again = enrolled_client(&instance, "walker", true).await;
    let refused = api
        .delete_mid("walker")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        refused.contains("409") && refused.contains("invalidate it first"),
        "{refused}"
    );
}

#[tokio::test]
async fn mid_auto_picks_by_application_range_and_capability_and_says_why() {
    let (instance, _dir) = instance().await;
    let api = &instance.api;
    let profile = |caps: &[&str], apps: &[&str], ranges: &[&str]| MidProfile {
        capabilities: caps.iter().map(|s| s.to_string()).collect(),
        applications: apps.iter().map(|s| s.to_string()).collect(),
        ip_ranges: ranges.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let _dc1 = enrolled_client_with(
        &instance,
        "dc1",
        true,
        profile(&["REST", "SSH"], &["Discovery"], &["10.0.0.0/8"]),
    )
    .await;
    let _dc2 = enrolled_client_with(
        &instance,
        "dc2",
        true,
        profile(&["SSH"], &["Discovery"], &["10.0.0.0/8"]),
    )
    .await;
    let _dmz = enrolled_client_with(
        &instance,
        "dmz",
        true,
        profile(&["REST"], &[], &["192.168.0.0/16", "!192.168.9.0/24"]),
    )
    .await;

    let a = api
        .insert_output(&output("mid.auto", "http://10.1.2.3/x", Some("Discovery")))
        .await
        .expect("auto");
    assert_eq!(a.assigned_to.as_deref(), Some("dc1"));
    let why = a.selection.unwrap_or_default();
    assert!(
        why.contains("serve application Discovery")
            && why.contains("have capability REST")
            && why.contains("dc1"),
        "{why}"
    );

    let b = api
        .insert_output(&output("mid.auto", "http://192.168.5.5/", None))
        .await
        .expect("auto");
    assert_eq!(b.assigned_to.as_deref(), Some("dmz"));

    let none = api
        .insert_output(&output("mid.auto", "http://192.168.9.1/", None))
        .await;
    let message = none.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("422") && message.contains("0 cover 192.168.9.1"),
        "{message}"
    );

    // The admin's word beats the MID's config.
    api.update_mid_profile(
        "dc1",
        &ProfileUpdate {
            capabilities: Some(vec!["SSH".into()]),
            ..Default::default()
        },
    )
    .await
    .expect("patch");
    let c = api
        .insert_output(&output("mid.auto", "http://10.1.2.3/x", Some("Discovery")))
        .await;
    assert!(
        c.err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("0 have capability REST")
    );
    let reset = api
        .update_mid_profile(
            "dc1",
            &ProfileUpdate {
                reset: true,
                ..Default::default()
            },
        )
        .await
        .expect("reset");
    assert_eq!(
        reset.profile.capabilities,
        vec!["REST".to_string(), "SSH".to_string()]
    );
    let bad = api
        .update_mid_profile(
            "dc1",
            &ProfileUpdate {
                ip_ranges: Some(vec!["10.0.0.0/99".into()]),
                ..Default::default()
            },
        )
        .await;
    assert!(
        bad.err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("ip_ranges")
    );
}

#[tokio::test]
async fn heartbeats_report_health() {
    let (instance, _dir) = instance().await;
    let client = enrolled_client(&instance, "healthy", true).await;
    client
        .heartbeat(&HeartbeatRequest {
            version: "9.9.9".into(),
            uptime_ms: 12_000,
            outbox_len: 3,
            outbox_bytes: 4096,
            running_by_pool: Capacity {
                interactive: 2,
                expedited: 0,
                standard: 1,
            },
            pool_sizes: Capacity {
                interactive: 32,
                expedited: 8,
                standard: 8,
            },
            cpu_percent: Some(3.5),
            rss_bytes: Some(12 * 1024 * 1024),
            profile: MidProfile {
                capabilities: vec!["REST".into()],
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .expect("heartbeat");
    let mid = instance.api.get_mid("healthy").await.expect("mid");
    let health = mid.health.expect("health");
    assert_eq!(
        (health.version.as_str(), health.uptime_ms, health.outbox_len),
        ("9.9.9", 12_000, 3)
    );
    assert_eq!(health.running_by_pool.total(), 3);
    assert_eq!(health.rss_bytes, Some(12 * 1024 * 1024));
    assert_eq!(mid.version, "9.9.9");
    assert_eq!(mid.declared_profile.capabilities, vec!["REST".to_string()]);
    let bad = client
        .heartbeat(&HeartbeatRequest {
            profile: MidProfile {
                ip_ranges: vec!["nonsense".into()],
                ..Default::default()
            },
            ..Default::default()
        })
        .await;
    assert!(
        bad.err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("ip_ranges")
    );
}

#[tokio::test]
async fn a_dropped_poll_marks_the_mid_down_and_a_new_one_brings_it_back() {
    let (instance, _dir) = instance_with(|c| c.disconnect_grace_ms = 300).await;
    let client = std::sync::Arc::new(enrolled_client(&instance, "flaky", true).await);
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { poll(&client, 20_000).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    waiting.abort();
    let dropped = Instant::now();
    assert!(eventually_status(&instance, "flaky", MidStatus::Down).await);
    let detected = dropped.elapsed();
    assert!(detected < Duration::from_secs(5), "noticed in {detected:?}");
    let history = instance.api.mid_history("flaky").await.expect("history");
    assert!(
        history[0].reason.contains("connection lost"),
        "{:?}",
        history[0]
    );

    let back = poll(&client, 0).await.expect("poll");
    assert_eq!(back.status, MidStatus::Up);
    let history = instance.api.mid_history("flaky").await.expect("history");
    assert_eq!(history[0].reason, "contact restored");
}

#[tokio::test]
async fn rekey_replaces_the_secret_and_the_old_one_stops_working() {
    let (instance, dir) = instance().await;
    let target = openmid_testkit::TargetService::start()
        .await
        .expect("target");
    let state = dir.path().join("mid-state");
    let mid = instance
        .start_mid("rekeyed", &state, true)
        .await
        .expect("MID");
    let identity = || std::fs::read_to_string(state.join("identity.json")).unwrap_or_default();
    let before: serde_json::Value = serde_json::from_str(&identity()).expect("identity");
    let old_bearer = format!(
        "Bearer {}.{}",
        before["mid_id"].as_str().unwrap_or_default(),
        before["secret"].as_str().unwrap_or_default()
    );
    let info = instance
        .api
        .mid_action("rekeyed", "rekey")
        .await
        .expect("rekey");
    assert!(
        info.rekey_pending || info.public_key != before["private_key"].as_str().unwrap_or_default()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while instance
        .api
        .get_mid("rekeyed")
        .await
        .is_ok_and(|m| m.rekey_pending)
    {
        assert!(Instant::now() < deadline, "the MID rekeyed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after: serde_json::Value = serde_json::from_str(&identity()).expect("identity");
    assert_ne!(before["secret"], after["secret"]);
    assert_ne!(before["private_key"], after["private_key"]);
    let info = instance.api.get_mid("rekeyed").await.expect("mid");
    assert_ne!(info.public_key, "", "new public key registered");

    // Still works with the new keys…
    let outcome = instance
        .api
        .rest_action(
            &openmid_proto::api::RestAction::new("mid.server.rekeyed", target.url("/hello")),
            Duration::from_secs(15),
        )
        .await
        .expect("action");
    assert!(matches!(outcome, openmid_client::ActionOutcome::Done(r) if r.response.is_some()));
    // …and the old secret is refused.
    let raw = Raw::new(&instance);
    let old = raw
        .post_with_headers(
            "/mid/v1/heartbeat",
            vec![("authorization", old_bearer), (openmid_proto::PROTOCOL_HEADER, "1".into())],
            json!({"running": [], "version": "x", "uptime_ms": 0, "outbox_len": 0, "outbox_bytes": 0}).to_string(),
        )
        .await;
    assert_eq!(old.status, 401);
    mid.shutdown().await.expect("stops");
}

#[tokio::test]
async fn failover_work_follows_the_best_ranked_up_member_and_waits_when_none_is() {
    let (instance, _dir) = instance().await;
    let api = &instance.api;
    let _a = enrolled_client(&instance, "rank1", true).await;
    let _b = enrolled_client(&instance, "rank2", true).await;
    api.create_cluster(&openmid_proto::api::NewCluster {
        name: "pair".into(),
        kind: openmid_proto::api::ClusterKind::Failover,
        members: vec!["rank1".into(), "rank2".into()],
    })
    .await
    .expect("cluster");
    api.mid_action("rank1", "pause").await.expect("pause");
    let out = api
        .insert_output(&output("mid.cluster.pair", "http://127.0.0.1:9/", None))
        .await
        .expect("insert");
    assert_eq!(out.assigned_to.as_deref(), Some("rank2"));
    assert!(out.selection.unwrap_or_default().contains("rank 2 of 2"));

    // The better-ranked member returns: waiting work moves back to it.
    api.mid_action("rank1", "resume").await.expect("resume");
    let moved = async {
        loop {
            let r = api.get_record(&out.id).await.expect("get");
            if r.assigned_to.as_deref() == Some("rank1") {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let moved = tokio::time::timeout(Duration::from_secs(10), moved)
        .await
        .expect("moved back");
    assert!(moved.selection.unwrap_or_default().contains("rank 1 of 2"));

    // Nobody up: the output waits, unassigned, and says why; it is picked up later.
    api.mid_action("rank1", "pause").await.expect("pause");
    api.mid_action("rank2", "pause").await.expect("pause");
    let waiting = api
        .insert_output(&output("mid.cluster.pair", "http://127.0.0.1:9/", None))
        .await
        .expect("insert");
    assert_eq!(waiting.assigned_to, None);
    let why = waiting.selection.unwrap_or_default();
    assert!(
        why.contains("no member of cluster pair is up") && why.contains("rank1: paused"),
        "{why}"
    );
    api.mid_action("rank2", "resume").await.expect("resume");
    let picked = async {
        loop {
            let r = api.get_record(&waiting.id).await.expect("get");
            if r.assigned_to.as_deref() == Some("rank2") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), picked)
        .await
        .expect("assigned once a member is up");
}
