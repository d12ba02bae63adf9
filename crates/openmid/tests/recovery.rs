//! Recovery with real processes and outages: a MID killed and restarted at once gets
//! its dead process's jobs back without waiting out their leases; results finished
//! while the instance was down keep their leases, so even at-most-once work is
//! recorded, not re-run or failed; after an instance restart only MIDs that
//! reconnected get new cluster work.

use crate::support::{outbox_pending, processed_within};
use openmid_instance::config::InstanceConfig;
use openmid_proto::api::{ClusterKind, NewCluster};
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_testkit::{
    MidProcess, TargetService, TestInstance, loopback_any_port, rest_output, wait_until,
};
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_openmid");

async fn up_with_health(instance: &TestInstance, name: &str) -> bool {
    wait_until(Duration::from_secs(20), || async {
        instance
            .api
            .get_mid(name)
            .await
            .is_ok_and(|m| m.status == MidStatus::Up && m.health.is_some())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_restarted_within_the_grace_gets_its_dead_processs_jobs_back_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A lease longer than the test waits: only the new session frees the jobs.
    let instance = TestInstance::start_with(
        InstanceConfig {
            data_dir: dir.path().join("instance"),
            listen: loopback_any_port(),
            lease_ms: 120_000,
            disconnect_grace_ms: 5_000,
            ..InstanceConfig::default()
        },
        None,
    )
    .await
    .expect("instance");
    let target = TargetService::start().await.expect("target");
    let token = instance.auto_validating_token().await.expect("token");
    let config = instance.mid_config("phoenix", &dir.path().join("phoenix"), Some(token));
    let mut first = MidProcess::spawn(Path::new(BIN), &config).expect("MID starts");
    assert!(up_with_health(&instance, "phoenix").await, "MID is up");
    let mut ids = Vec::new();
    for i in 0..3 {
        let url = target.url(&format!("/slow?ms=2000&i={i}"));
        let r = instance
            .api
            .insert_output(&rest_output("mid.server.phoenix", &url, "phoenix"))
            .await
            .expect("insert");
        ids.push(r.id);
    }
    assert!(
        wait_until(Duration::from_secs(10), || async { target.hits() == 3 }).await,
        "the calls are in flight"
    );
    first.kill();
    let _second = MidProcess::spawn(Path::new(BIN), &config).expect("MID restarts");
    for id in &ids {
        let done = processed_within(&instance.api, id, Duration::from_secs(30)).await;
        let r = instance.api.get_record(id).await.expect("get");
        assert!(done, "{id} ran again on the new process: {r:?}");
        assert_eq!(r.attempt, 2, "the dead process's attempt was released");
    }
    let history = instance.api.mid_history("phoenix").await.expect("history");
    assert!(
        history.iter().all(|c| c.to != MidStatus::Down),
        "a quick restart is not an outage: {history:?}"
    );
    instance.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_finished_during_an_outage_keep_their_leases() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Short leases and an outage longer than one: a result waiting in the outbox
    // must not lose its lease meanwhile.
    let config = InstanceConfig {
        data_dir: dir.path().join("instance"),
        listen: loopback_any_port(),
        lease_ms: 2_000,
        heartbeat_ms: 500,
        ..InstanceConfig::default()
    };
    let instance = TestInstance::start_with(config.clone(), None)
        .await
        .expect("instance");
    let target = TargetService::start().await.expect("target");
    let state_dir = dir.path().join("mid");
    let mid = instance
        .start_mid("keeper", &state_dir, true)
        .await
        .expect("MID");
    let mut output = rest_output("mid.server.keeper", &target.url("/slow?ms=1500"), "outage");
    output.at_most_once = true;
    let id = instance
        .api
        .insert_output(&output)
        .await
        .expect("insert")
        .id;
    assert!(
        wait_until(Duration::from_secs(10), || async { target.hits() == 1 }).await,
        "the call is in flight"
    );
    let (addr, token) = (instance.running.addr, instance.token.clone());
    instance.shutdown().await;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = outbox_pending(&state_dir);
            async move { n == 1 }
        })
        .await,
        "the result waits in the outbox"
    );
    // Down for more than two leases.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let instance = TestInstance::start_with(
        InstanceConfig {
            listen: addr,
            ..config
        },
        Some(token),
    )
    .await
    .expect("restart");
    assert!(
        wait_until(Duration::from_secs(45), || async {
            instance
                .api
                .get_record(&id)
                .await
                .is_ok_and(|r| r.state != State::Processing)
        })
        .await,
        "the result arrived"
    );
    let r = instance.api.get_record(&id).await.expect("get");
    assert_eq!(
        (r.state, r.attempt, r.error.as_deref()),
        (State::Processed, 1, None),
        "the genuine result is recorded, not a lapsed lease"
    );
    assert_eq!(target.hits(), 1, "at most once");
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_instance_restart_new_work_goes_only_to_reconnected_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = InstanceConfig {
        data_dir: dir.path().join("instance"),
        listen: loopback_any_port(),
        ..InstanceConfig::default()
    };
    let instance = TestInstance::start_with(config.clone(), None)
        .await
        .expect("instance");
    let target = TargetService::start().await.expect("target");
    let mut processes = Vec::new();
    for name in ["lb-a", "lb-b"] {
        let token = instance.auto_validating_token().await.expect("token");
        let config = instance.mid_config(name, &dir.path().join(name), Some(token));
        processes.push(MidProcess::spawn(Path::new(BIN), &config).expect("MID starts"));
        assert!(up_with_health(&instance, name).await, "{name} is up");
    }
    instance
        .api
        .create_cluster(&NewCluster {
            name: "lb".into(),
            kind: ClusterKind::LoadBalance,
            members: vec!["lb-a".into(), "lb-b".into()],
        })
        .await
        .expect("cluster");
    let (addr, token) = (instance.running.addr, instance.token.clone());
    instance.shutdown().await;
    // lb-b dies while the instance is down: it never comes back.
    processes[1].kill();
    let instance = TestInstance::start_with(
        InstanceConfig {
            listen: addr,
            ..config
        },
        Some(token),
    )
    .await
    .expect("restart");
    let b = instance.api.get_mid("lb-b").await.expect("mid");
    assert_eq!(b.status, MidStatus::Down, "{:?}", b.status_reason);
    assert!(up_with_health(&instance, "lb-a").await, "lb-a reconnected");
    let mut ids = Vec::new();
    for i in 0..6 {
        let url = target.url(&format!("/slow?ms=10&i={i}"));
        let r = instance
            .api
            .insert_output(&rest_output("mid.cluster.lb", &url, "after-restart"))
            .await
            .expect("insert");
        ids.push(r.id);
    }
    for id in &ids {
        let done = processed_within(&instance.api, id, Duration::from_secs(15)).await;
        let r = instance.api.get_record(id).await.expect("get");
        assert!(done, "{id} was run by the connected member: {r:?}");
        assert_eq!(r.claimed_by.as_deref(), Some("lb-a"));
    }
    instance.shutdown().await;
}
