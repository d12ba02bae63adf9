//! Several nodes on one store: liveness, presence, orphaned MIDs, named leases.

use super::registry::{mid, token};
use super::*;
use openmid_instance::ecc::NodeRow;

fn node(id: &str, last_seen: i64) -> NodeRow {
    NodeRow {
        id: id.into(),
        name: format!("host {id}"),
        started_at: NOW - 1000,
        last_seen,
    }
}

pub async fn nodes_presence_and_orphans_across_nodes(store: Arc<dyn Store>) {
    store.node_alive(&node("a", NOW)).await.expect("a");
    store.node_alive(&node("b", NOW - 10_000)).await.expect("b");
    let ids = |nodes: Vec<NodeRow>| nodes.into_iter().map(|n| n.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.live_nodes(NOW - 3000).await.expect("live")),
        ["a"]
    );
    store.node_alive(&node("b", NOW)).await.expect("b again");
    assert_eq!(
        ids(store.live_nodes(NOW - 3000).await.expect("live")),
        ["a", "b"],
        "b said it is alive: its last_seen moved, its start did not"
    );

    for (id, name) in [("m1", "one"), ("m2", "two")] {
        let hash = format!("t-{id}");
        store
            .insert_enrollment_token(&token(&hash, true, NOW + 1000))
            .await
            .expect("token");
        let row = store
            .enroll_mid(&hash, &mid(id, name))
            .await
            .expect("enroll");
        store
            .set_mid_status(&row.name, &[row.status], MidStatus::Up, "test", NOW)
            .await
            .expect("up");
    }
    store.set_presence("one", "a", NOW).await.expect("one on a");
    store.set_presence("two", "a", NOW).await.expect("two on a");
    store
        .set_presence("two", "b", NOW + 1)
        .await
        .expect("two moves to b");
    let two = store
        .presence_of("two")
        .await
        .expect("read")
        .expect("there");
    assert_eq!((two.node.as_str(), two.since), ("b", NOW + 1));
    assert_eq!(store.presence_of("nobody").await.expect("read"), None);

    assert!(
        store
            .orphaned_mids(NOW - 3000)
            .await
            .expect("orphans")
            .is_empty(),
        "both nodes are alive"
    );
    // Node a dies (its last sign of life is old now).
    store
        .node_alive(&node("a", NOW - 60_000))
        .await
        .expect("a silent");
    let orphans = store.orphaned_mids(NOW - 3000).await.expect("orphans");
    assert_eq!(
        orphans
            .iter()
            .map(|o| (o.mid_name.as_str(), o.node.as_str()))
            .collect::<Vec<_>>(),
        [("one", "a")],
        "two moved to b, which lives"
    );
    store
        .set_mid_status("one", &[MidStatus::Up], MidStatus::Down, "gone", NOW)
        .await
        .expect("down");
    assert!(
        store
            .orphaned_mids(NOW - 3000)
            .await
            .expect("orphans")
            .is_empty(),
        "only up MIDs are orphans"
    );

    store
        .clear_presence("two", "a")
        .await
        .expect("not a's to clear");
    assert!(store.presence_of("two").await.expect("read").is_some());
    store.clear_presence("two", "b").await.expect("b's");
    assert_eq!(store.presence_of("two").await.expect("read"), None);

    store.set_presence("two", "b", NOW).await.expect("two on b");
    store.remove_node("b").await.expect("b stops");
    assert_eq!(store.presence_of("two").await.expect("read"), None);
    assert_eq!(ids(store.live_nodes(0).await.expect("live")), ["a"]);
    store.set_presence("one", "a", NOW).await.expect("one on a");
    store.clear_all_presence().await.expect("clear");
    assert_eq!(store.presence_of("one").await.expect("read"), None);
}

pub async fn a_named_lease_has_one_holder_until_it_lapses(store: Arc<dyn Store>) {
    assert!(
        store
            .hold_lease("sweeper", "a", NOW, NOW + 3000)
            .await
            .expect("a takes")
    );
    assert!(
        !store
            .hold_lease("sweeper", "b", NOW + 1, NOW + 3001)
            .await
            .expect("b waits"),
        "a holds it"
    );
    assert!(
        store
            .hold_lease("sweeper", "a", NOW + 1000, NOW + 4000)
            .await
            .expect("a renews"),
        "the holder renews"
    );
    assert!(
        store
            .hold_lease("other", "b", NOW + 1000, NOW + 4000)
            .await
            .expect("b takes another"),
        "leases are by name"
    );
    assert!(
        !store
            .hold_lease("sweeper", "b", NOW + 3999, NOW + 7000)
            .await
            .expect("b waits"),
        "not lapsed yet"
    );
    assert_eq!(
        store
            .lease_holder("sweeper", NOW + 3999)
            .await
            .expect("holder")
            .as_deref(),
        Some("a")
    );
    assert_eq!(
        store
            .lease_holder("sweeper", NOW + 4001)
            .await
            .expect("holder"),
        None,
        "lapsed"
    );
    assert!(
        store
            .hold_lease("sweeper", "b", NOW + 4001, NOW + 7000)
            .await
            .expect("b takes"),
        "lapsed: b takes it"
    );
    assert!(
        !store
            .hold_lease("sweeper", "a", NOW + 4002, NOW + 7000)
            .await
            .expect("a lost it"),
        "a lost it"
    );
    store.release_lease("sweeper", "a").await.expect("not a's");
    assert!(
        !store
            .hold_lease("sweeper", "a", NOW + 4003, NOW + 7000)
            .await
            .expect("still b's")
    );
    store
        .release_lease("sweeper", "b")
        .await
        .expect("b gives up");
    assert!(
        store
            .hold_lease("sweeper", "a", NOW + 4004, NOW + 7000)
            .await
            .expect("free")
    );
}
