//! Dashboard sessions' cases: what lets one node accept a session another made.

use super::*;
use openmid_instance::ecc::DashboardSessionRow;

fn session(id_hash: &str, expires_at: i64) -> DashboardSessionRow {
    DashboardSessionRow {
        id_hash: id_hash.into(),
        csrf_token: format!("csrf-{id_hash}"),
        created_at: NOW,
        last_seen_at: NOW,
        expires_at,
    }
}

pub async fn dashboard_sessions_expire_move_on_with_use_and_end_at_logout(store: Arc<dyn Store>) {
    store
        .insert_dashboard_session(&session("a", NOW + 1_000))
        .await
        .expect("insert a");
    store
        .insert_dashboard_session(&session("b", NOW + 10))
        .await
        .expect("insert b");
    assert!(
        store
            .insert_dashboard_session(&session("a", NOW + 5))
            .await
            .is_err(),
        "a session id hash is unique"
    );
    let a = store
        .get_dashboard_session("a", NOW)
        .await
        .expect("read")
        .expect("a is live");
    assert_eq!(a, session("a", NOW + 1_000), "read back as written");
    assert_eq!(
        store
            .get_dashboard_session("nope", NOW)
            .await
            .expect("read"),
        None
    );

    // Expiry: at its expiry time a session is gone, and it cannot be moved on then.
    assert_eq!(
        store
            .get_dashboard_session("b", NOW + 10)
            .await
            .expect("read"),
        None,
        "expired at expires_at"
    );
    assert!(
        !store
            .touch_dashboard_session("b", NOW + 10, NOW + 5_000)
            .await
            .expect("touch"),
        "an expired session is not revived"
    );

    // Use moves a live session's expiry on.
    assert!(
        store
            .touch_dashboard_session("a", NOW + 900, NOW + 2_000)
            .await
            .expect("touch")
    );
    let a = store
        .get_dashboard_session("a", NOW + 1_500)
        .await
        .expect("read")
        .expect("a lives past its first expiry");
    assert_eq!((a.last_seen_at, a.expires_at), (NOW + 900, NOW + 2_000));

    // Purging takes the expired ones only.
    assert_eq!(
        store
            .purge_dashboard_sessions(NOW + 100)
            .await
            .expect("purge"),
        1,
        "b went"
    );
    assert!(
        store
            .get_dashboard_session("a", NOW + 100)
            .await
            .expect("read")
            .is_some()
    );

    // Logout.
    assert!(store.delete_dashboard_session("a").await.expect("delete"));
    assert!(!store.delete_dashboard_session("a").await.expect("delete"));
    assert_eq!(
        store.get_dashboard_session("a", NOW).await.expect("read"),
        None
    );
}
