//! Nothing is lost: results wait in the MID's outbox while the instance is away, and
//! arrive exactly once — whether the MID keeps running or restarts meanwhile.

use crate::support::{MID, Stack, outbox_pending};
use openmid_proto::api::RecordQuery;
use openmid_proto::ecc::{EccRecord, Queue, State};
use openmid_testkit::TestInstance;
use openmid_testkit::{rest_output, wait_until};
use std::time::Duration;

const JOBS: usize = 5;

async fn insert_slow_jobs(stack: &Stack, correlator: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let url = stack.target.url(&format!("/slow?ms=1500&i={i}"));
        let r = stack
            .instance
            .api
            .insert_output(&rest_output(&format!("mid.server.{MID}"), &url, correlator))
            .await
            .expect("insert");
        ids.push(r.id);
    }
    ids
}

async fn records(instance: &TestInstance, correlator: &str) -> Vec<EccRecord> {
    instance
        .api
        .list_records(&RecordQuery {
            correlator: Some(correlator.into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .map(|p| p.records)
        .unwrap_or_default()
}

async fn all_in_state(instance: &TestInstance, correlator: &str, state: State) -> bool {
    let outputs: Vec<_> = records(instance, correlator)
        .await
        .into_iter()
        .filter(|r| r.queue == Queue::Output)
        .collect();
    outputs.len() == JOBS && outputs.iter().all(|r| r.state == state)
}

/// Checks every output was processed by attempt 1 with exactly one input, and the
/// service saw each call once.
async fn assert_exactly_once(
    stack_target_hits: u64,
    instance: &TestInstance,
    correlator: &str,
    ids: &[String],
) {
    let all = records(instance, correlator).await;
    for id in ids {
        let output = all.iter().find(|r| &r.id == id).expect("output kept");
        assert_eq!(
            (output.state, output.attempt),
            (State::Processed, 1),
            "{id}"
        );
        let inputs = all
            .iter()
            .filter(|r| r.queue == Queue::Input && r.response_to.as_deref() == Some(id.as_str()))
            .count();
        assert_eq!(inputs, 1, "exactly one input for {id}");
    }
    assert_eq!(stack_target_hits, JOBS as u64, "each job ran once");
}

async fn wait_until_claimed(instance: &TestInstance, correlator: &str) {
    assert!(
        wait_until(Duration::from_secs(10), || all_in_state(
            instance,
            correlator,
            State::Processing
        ))
        .await,
        "the MID claimed every job"
    );
}

/// A stack with slow jobs claimed by its MID, whose instance has just been stopped.
struct Outage {
    target: openmid_testkit::TargetService,
    mid: openmid_mid::RunningMid,
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    token: openmid_proto::secret::Secret,
    data: std::path::PathBuf,
    ids: Vec<String>,
}

async fn jobs_in_flight_then_instance_down(correlator: &str) -> Outage {
    let stack = Stack::start().await;
    let ids = insert_slow_jobs(&stack, correlator).await;
    wait_until_claimed(&stack.instance, correlator).await;
    let Stack {
        instance,
        target,
        mid,
        dir,
    } = stack;
    let addr = instance.running.addr;
    let token = instance.token.clone();
    let data = instance.data_dir();
    instance.shutdown().await;
    Outage {
        target,
        mid,
        dir,
        addr,
        token,
        data,
        ids,
    }
}

#[tokio::test]
async fn results_wait_in_the_outbox_while_the_instance_is_down() {
    let Outage {
        target,
        mid,
        dir,
        addr,
        token,
        data,
        ids,
    } = jobs_in_flight_then_instance_down("outage").await;

    // The MID finishes its jobs with nobody to tell: the results go to disk.
    let state_dir = dir.path().join("mid");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = outbox_pending(&state_dir);
            async move { n == JOBS }
        })
        .await,
        "every result is in the outbox"
    );

    let instance = TestInstance::start_in(&data, addr, Some(token))
        .await
        .expect("restart");
    assert!(
        wait_until(Duration::from_secs(40), || all_in_state(
            &instance,
            "outage",
            State::Processed
        ))
        .await,
        "every result arrived after the restart"
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            let n = outbox_pending(&state_dir);
            async move { n == 0 }
        })
        .await,
        "acknowledged results leave the outbox"
    );
    assert_exactly_once(target.hits(), &instance, "outage", &ids).await;
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
}

#[tokio::test]
async fn a_restarted_mid_replays_its_outbox() {
    let Outage {
        target,
        mid,
        dir,
        addr,
        token,
        data,
        ids,
    } = jobs_in_flight_then_instance_down("replay").await;

    // Stopping the MID waits for its jobs; their results cannot be posted and stay on disk.
    mid.shutdown().await.expect("MID stops");
    let state_dir = dir.path().join("mid");
    assert_eq!(
        outbox_pending(&state_dir),
        JOBS,
        "the results survived the MID's stop"
    );

    let instance = TestInstance::start_in(&data, addr, Some(token))
        .await
        .expect("restart");
    let mid = openmid_mid::start(instance.mid_config(MID, &state_dir, None))
        .await
        .expect("the MID restarts from its state dir, no token needed");
    assert!(
        wait_until(Duration::from_secs(30), || all_in_state(
            &instance,
            "replay",
            State::Processed
        ))
        .await,
        "the replayed results were recorded"
    );
    assert_exactly_once(target.hits(), &instance, "replay", &ids).await;
    assert_eq!(outbox_pending(&state_dir), 0);
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
}
