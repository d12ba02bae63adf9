//! The registry's and settings' cases: enrollment, status, heartbeats, clusters.

use super::*;

pub(super) fn mid(id: &str, name: &str) -> MidRow {
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

pub(super) fn token(hash: &str, auto_validate: bool, expires_at: i64) -> EnrollmentTokenRow {
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

pub async fn settings_round_trip(store: Arc<dyn Store>) {
    assert_eq!(store.get_setting("k").await.expect("read"), None);
    store.put_setting("k", "v1").await.expect("put");
    store.put_setting("k", "v2").await.expect("put");
    assert_eq!(
        store.get_setting("k").await.expect("read").as_deref(),
        Some("v2")
    );
}
