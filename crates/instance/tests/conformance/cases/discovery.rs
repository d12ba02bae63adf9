//! Discovery's cases: runs, devices, schedules.

use super::*;

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
