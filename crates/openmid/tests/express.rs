//! The session stream and the express lane (`durability: relaxed`): a call answered
//! straight from the MID and recorded afterwards; one whose MID dies is answered with
//! an error and never run again; and a MID on the previous protocol (long-polls)
//! still works, its express calls taking the durable path.

use crate::support::{MID, Stack, get, instance_target_and_mid_config, run, up_and_heartbeated};
use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::{Durability, RestAction};
use openmid_proto::ecc::{Queue, State};
use openmid_proto::mid::MidStatus;
use openmid_proto::rest::{RestResponse, RetryPolicy};
use openmid_testkit::{MidProcess, wait_until};
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_openmid");

fn relaxed(action: RestAction) -> RestAction {
    RestAction {
        durability: Some(Durability::Relaxed),
        ..action
    }
}

#[tokio::test]
async fn an_express_call_answers_from_the_mid_and_is_recorded_afterwards() {
    let stack = Stack::start().await;
    let api = &stack.instance.api;
    let result = run(&stack.instance, &relaxed(get(stack.target.url("/hello")))).await;
    assert_eq!(result.state, State::Processed);
    assert_eq!(result.mid.as_deref(), Some(MID));
    let response = result.response.expect("a response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body.as_deref(), Some(r#"{"hello":"world"}"#));
    assert_eq!(stack.target.hits(), 1);

    // The queue shows it once its records are written: one attempt, never re-run.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            api.get_record(&result.output_id)
                .await
                .is_ok_and(|r| r.state == State::Processed)
        })
        .await,
        "the express call's output record is written"
    );
    let output = api.get_record(&result.output_id).await.expect("output");
    assert_eq!((output.queue, output.attempt), (Queue::Output, 1));
    assert!(
        output.at_most_once && output.max_attempts == 1,
        "{output:?}"
    );
    assert_eq!(output.claimed_by.as_deref(), Some(MID));
    assert!(output.lease_expires_at.is_none());
    let input = api
        .get_record(result.input_id.as_deref().expect("an input id"))
        .await
        .expect("input record");
    assert_eq!(input.response_to.as_deref(), Some(output.id.as_str()));
    assert_eq!(input.payload["status"], 200);
    // The answer read back later is the one the caller got.
    match api
        .get_action::<RestResponse>(&result.output_id, Duration::ZERO)
        .await
        .expect("action")
    {
        openmid_client::ActionOutcome::Done(r) => {
            assert_eq!(r.response.map(|r| r.status), Some(200))
        }
        other => panic!("{other:?}"),
    }
    // An alias marked relaxed sends its calls by the express lane; an action saying
    // `durable` through it takes the durable path.
    api.create_alias(&Alias {
        name: "quick".into(),
        description: None,
        kind: ConnectionKind::Http,
        base_url: stack.target.url(""),
        headers: Default::default(),
        timeout_ms: Some(10_000),
        retry: RetryPolicy::default(),
        credential: None,
        execution: Execution {
            mid: Some(MID.into()),
            ..Execution::default()
        },
        soap_version: None,
        wsdl: None,
        ca_pem: None,
        host_key: None,
        pool_size: None,
        tls: None,
        options: Default::default(),
        durability: Some(Durability::Relaxed),
    })
    .await
    .expect("alias");
    let via_alias = run(&stack.instance, &RestAction::via("quick", "/hello")).await;
    assert_eq!(via_alias.response.map(|r| r.status), Some(200));
    let durable = run(
        &stack.instance,
        &RestAction {
            durability: Some(Durability::Durable),
            ..RestAction::via("quick", "/hello")
        },
    )
    .await;
    let (express_record, durable_record) = (
        api.get_record(&via_alias.output_id).await,
        api.get_record(&durable.output_id).await.expect("durable"),
    );
    assert!(
        wait_until(Duration::from_secs(10), || async {
            api.get_record(&via_alias.output_id).await.is_ok()
        })
        .await,
        "{express_record:?}"
    );
    let express_record = api.get_record(&via_alias.output_id).await.expect("express");
    assert!(express_record.at_most_once, "the alias's call went express");
    assert!(
        !durable_record.at_most_once && durable_record.max_attempts > 1,
        "an action saying durable is durable: {durable_record:?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_express_call_whose_mid_dies_is_answered_with_an_error_and_never_run_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (instance, target, config) = instance_target_and_mid_config(dir.path()).await;
    let mut process = MidProcess::spawn(Path::new(BIN), &config).expect("MID process starts");
    let api = instance.api.clone();
    assert!(up_and_heartbeated(&api, MID).await, "MID is up");
    let action = relaxed(get(target.url("/slow?ms=5000")));
    let call = {
        let api = api.clone();
        tokio::spawn(async move { api.rest_action(&action, Duration::from_secs(30)).await })
    };
    assert!(
        wait_until(Duration::from_secs(10), || async { target.hits() == 1 }).await,
        "the call reached the target"
    );
    let killed = std::time::Instant::now();
    process.kill();
    let answer = call.await.expect("task").expect("answered");
    assert!(
        killed.elapsed() < Duration::from_secs(4),
        "answered when the session ended, not when the target did: {:?}",
        killed.elapsed()
    );
    let result = match answer {
        openmid_client::ActionOutcome::Done(r) => *r,
        other => panic!("{other:?}"),
    };
    assert_eq!(result.state, State::Error);
    let error = result.error.unwrap_or_default();
    assert!(error.contains("not run again"), "{error}");

    // A MID of the same name back (a restart) runs nothing of it.
    let restarted = MidProcess::spawn(Path::new(BIN), &config).expect("MID restarts");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            api.get_mid(MID)
                .await
                .is_ok_and(|m| m.status == MidStatus::Up)
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(target.hits(), 1, "the express call never ran again");
    let record = api.get_record(&result.output_id).await.expect("recorded");
    assert_eq!((record.state, record.attempt), (State::Error, 1));
    drop(restarted);
    instance.shutdown().await;
}

#[tokio::test]
async fn a_mid_on_the_long_poll_protocol_still_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (instance, target, mut config) = instance_target_and_mid_config(dir.path()).await;
    config.transport = openmid_mid::config::Transport::LongPoll;
    let mid = openmid_mid::start(config).await.expect("MID starts");
    let api = &instance.api;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            api.get_mid(MID)
                .await
                .is_ok_and(|m| m.status == MidStatus::Up && m.health.is_some())
        })
        .await,
        "a protocol 1 MID enrolls, is validated and heartbeats"
    );
    let durable = run(&instance, &get(target.url("/hello"))).await;
    assert_eq!(durable.response.map(|r| r.status), Some(200));
    // No stream to it: an express call takes the durable path, which promises more.
    let express = run(&instance, &relaxed(get(target.url("/hello")))).await;
    assert_eq!(express.response.map(|r| r.status), Some(200));
    let record = api.get_record(&express.output_id).await.expect("record");
    assert!(
        !record.at_most_once && record.max_attempts > 1,
        "{record:?}"
    );
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
}
