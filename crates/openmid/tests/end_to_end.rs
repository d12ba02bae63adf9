//! A REST call travels instance → ECC queue → MID → service → back.

use crate::support::{MID, Stack, get, processed_within, run};
use openmid_client::ActionOutcome;
use openmid_proto::api::{NewOutput, RecordQuery, RestAction};
use openmid_proto::ecc::{Queue, State, Topic};
use openmid_proto::mid::MidStatus;
use openmid_proto::rest::Body;
use openmid_testkit::{TargetService, TestInstance, loopback_any_port};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_rest_call_goes_through_the_mid_and_back() {
    let stack = Stack::start().await;
    let result = run(&stack.instance, &get(stack.target.url("/hello"))).await;
    assert_eq!(result.state, State::Processed);
    assert_eq!(result.mid.as_deref(), Some(MID));
    assert_eq!(result.attempt, 1);
    let response = result.response.expect("a response");
    assert_eq!(response.status, 200);
    assert_eq!(response.body.as_deref(), Some(r#"{"hello":"world"}"#));
    assert_eq!(
        response.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(stack.target.hits(), 1, "the service was called once");

    // The records tell the same story.
    let output = stack
        .instance
        .api
        .get_record(&result.output_id)
        .await
        .expect("output");
    assert_eq!(
        (output.queue, output.state, output.topic),
        (Queue::Output, State::Processed, Topic::RESTProbe)
    );
    assert_eq!(output.agent, format!("mid.server.{MID}"));
    assert_eq!(output.claimed_by.as_deref(), Some(MID));
    let input_id = result.input_id.expect("an input record");
    let input = stack
        .instance
        .api
        .get_record(&input_id)
        .await
        .expect("input");
    assert_eq!(input.queue, Queue::Input);
    assert_eq!(
        input.response_to.as_deref(),
        Some(result.output_id.as_str())
    );
    assert_eq!(input.payload["status"], 200);

    // Method, headers and a JSON body arrive as sent.
    let echoed = run(
        &stack.instance,
        &RestAction {
            method: Some("put".into()),
            headers: [("x-trace".to_string(), "abc".to_string())].into(),
            body: Some(Body::Json(json!({"n": 1}))),
            ..get(stack.target.url("/echo?q=1"))
        },
    )
    .await;
    let body: serde_json::Value = serde_json::from_str(
        echoed
            .response
            .and_then(|r| r.body)
            .as_deref()
            .unwrap_or(""),
    )
    .expect("json");
    assert_eq!(body["method"], "PUT");
    assert_eq!(body["query"], "q=1");
    assert_eq!(body["headers"]["x-trace"], "abc");
    assert_eq!(body["headers"]["content-type"], "application/json");
    assert_eq!(body["body"], r#"{"n":1}"#);
    stack.stop().await;
}

#[tokio::test]
async fn target_errors_and_failures_come_back_as_such() {
    let stack = Stack::start().await;
    let server_error = run(&stack.instance, &get(stack.target.url("/status/503"))).await;
    assert_eq!(
        server_error.state,
        State::Processed,
        "an HTTP error is still an answer"
    );
    assert_eq!(server_error.response.map(|r| r.status), Some(503));

    // A port nobody listens on: the probe fails, the output ends in error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let refused = run(
        &stack.instance,
        &get(format!("http://127.0.0.1:{port}/x?secret=hunter2")),
    )
    .await;
    assert_eq!(refused.state, State::Error);
    let error = refused.error.unwrap_or_default();
    assert!(error.contains("could not connect"), "{error}");
    assert!(
        !error.contains("hunter2"),
        "query strings are not echoed into errors: {error}"
    );
    assert!(
        refused.input_id.is_some(),
        "the failure is recorded as an input"
    );

    let slow = run(
        &stack.instance,
        &RestAction {
            timeout_ms: Some(200),
            ..get(stack.target.url("/slow?ms=3000"))
        },
    )
    .await;
    assert_eq!(slow.state, State::Error);
    assert!(
        slow.error
            .unwrap_or_default()
            .contains("timed out after 200 ms")
    );
    stack.stop().await;
}

#[tokio::test]
async fn without_wait_the_call_answers_202_and_can_be_polled() {
    let stack = Stack::start().await;
    let outcome = stack
        .instance
        .api
        .rest_action(&get(stack.target.url("/slow?ms=300")), Duration::ZERO)
        .await
        .expect("accepted");
    let ActionOutcome::Pending(pending) = outcome else {
        panic!("expected 202")
    };
    assert_eq!(
        pending.poll,
        format!("/api/v1/actions/{}", pending.output_id)
    );
    let id = pending.output_id.clone();
    assert!(processed_within(&stack.instance.api, &id, Duration::from_secs(15)).await);
    // The poll address answers with the result once it is there.
    match stack
        .instance
        .api
        .get_action::<openmid_proto::rest::RestResponse>(&id, Duration::ZERO)
        .await
        .expect("poll")
    {
        ActionOutcome::Done(r) => assert_eq!(r.response.map(|r| r.status), Some(200)),
        ActionOutcome::Pending(p) => panic!("still pending after processed: {p:?}"),
    }
    let inputs = stack
        .instance
        .api
        .list_records(&RecordQuery {
            queue: Some("input".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(inputs.records.len(), 1);
    assert_eq!(inputs.records[0].response_to.as_deref(), Some(id.as_str()));
    stack.stop().await;
}

#[tokio::test]
async fn an_unvalidated_mid_gets_no_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_in(&dir.path().join("i"), loopback_any_port(), None)
        .await
        .expect("instance");
    let target = TargetService::start().await.expect("target");
    let mut mid = instance
        .start_mid("waiting", &dir.path().join("m"), false)
        .await
        .expect("MID enrolls");
    let output = instance
        .api
        .insert_output(&NewOutput {
            durability: Default::default(),
            agent: "mid.server.waiting".into(),
            topic: Topic::RESTProbe,
            name: None,
            source: None,
            payload: json!({"url": target.url("/hello")}).into(),
            priority: None,
            correlator: None,
            max_attempts: None,
            at_most_once: false,
            application: None,
        })
        .await
        .expect("insert");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let record = instance.api.get_record(&output.id).await.expect("get");
    assert_eq!((record.state, record.attempt), (State::Ready, 0));
    assert_eq!(target.hits(), 0, "the pending MID called nothing");

    instance
        .api
        .validate_mid("waiting")
        .await
        .expect("validate");
    assert!(
        mid.wait_for_status(MidStatus::Up, Duration::from_secs(10))
            .await
    );
    let id = output.id.clone();
    assert!(processed_within(&instance.api, &id, Duration::from_secs(10)).await);
    assert_eq!(target.hits(), 1);
    mid.shutdown().await.expect("stop");
    instance.shutdown().await;
}

#[tokio::test]
async fn a_mid_refuses_an_instance_with_the_wrong_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_in(&dir.path().join("i"), loopback_any_port(), None)
        .await
        .expect("instance");
    let token = instance
        .api
        .create_enrollment_token(&Default::default())
        .await
        .expect("token");
    let mut config = instance.mid_config("wary", &dir.path().join("m"), Some(token.token));
    config.tls = openmid_mid::config::TlsTrust {
        fingerprint: Some("AB".repeat(32)),
        ..Default::default()
    };
    let mut mid = openmid_mid::start(config).await.expect("starts");
    assert!(
        !mid.wait_for_status(MidStatus::ValidationPending, Duration::from_secs(2))
            .await,
        "a MID must not talk to an instance whose certificate does not match its pin"
    );
    assert!(instance.api.list_mids().await.expect("mids").is_empty());

    // System roots do not trust a self-signed instance either.
    let token = instance
        .api
        .create_enrollment_token(&Default::default())
        .await
        .expect("token");
    let mut config = instance.mid_config("wary2", &dir.path().join("m2"), Some(token.token));
    config.tls = Default::default();
    let mut mid2 = openmid_mid::start(config).await.expect("starts");
    assert!(
        !mid2
            .wait_for_status(MidStatus::ValidationPending, Duration::from_secs(2))
            .await
    );
    assert!(instance.api.list_mids().await.expect("mids").is_empty());
    mid.shutdown().await.expect("stops");
    mid2.shutdown().await.expect("stops");
    instance.shutdown().await;
}

#[tokio::test]
async fn a_mid_reaches_the_instance_through_an_http_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_in(&dir.path().join("i"), loopback_any_port(), None)
        .await
        .expect("instance");
    let target = TargetService::start().await.expect("target");
    let proxy = openmid_testkit::ConnectProxy::start().await.expect("proxy");
    let token = instance
        .api
        .create_enrollment_token(&openmid_proto::api::NewEnrollmentToken {
            auto_validate: true,
            ..Default::default()
        })
        .await
        .expect("token");
    let mut config = instance.mid_config("behind-proxy", &dir.path().join("m"), Some(token.token));
    config.proxy = Some(proxy.url());
    let mut mid = openmid_mid::start(config).await.expect("starts");
    assert!(
        mid.wait_for_status(MidStatus::Up, Duration::from_secs(20))
            .await,
        "an auto-validating token makes the MID up at once"
    );
    let result = run(
        &instance,
        &RestAction {
            agent: Some("mid.server.behind-proxy".into()),
            ..get(target.url("/hello"))
        },
    )
    .await;
    assert_eq!(result.response.map(|r| r.status), Some(200));
    assert!(proxy.tunnels() >= 1, "the session went through the proxy");
    mid.shutdown().await.expect("stops");
    instance.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_credentials_come_from_a_secret_reference_and_a_refusal_shows_the_proxys_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_in(&dir.path().join("i"), loopback_any_port(), None)
        .await
        .expect("instance");
    let proxy = openmid_testkit::ConnectProxy::start_requiring("corp\\mid", "pr0xy p@ss")
        .await
        .expect("proxy");
    let password = dir.path().join("proxy.pw");
    std::fs::write(&password, "pr0xy p@ss\n").expect("password file");
    let url = proxy.url().replace("http://", "http://corp%5Cmid@");

    // The right password, read from a file: the MID gets through.
    let token = instance.auto_validating_token().await.expect("token");
    let mut config = instance.mid_config("proxied", &dir.path().join("m"), Some(token));
    config.proxy = Some(url.clone());
    config.proxy_password = Some(openmid_proto::credential::LocalSecret::File(
        password.display().to_string(),
    ));
    let mut mid = openmid_mid::start(config).await.expect("starts");
    assert!(
        mid.wait_for_status(MidStatus::Up, Duration::from_secs(20))
            .await,
        "through the proxy with its credentials"
    );
    assert!(proxy.tunnels() >= 1);
    mid.shutdown().await.expect("stops");

    // A wrong one: the MID's log says what the proxy answered, not only that the
    // tunnel failed, and never the password.
    std::fs::write(&password, "wrong-pass\n").expect("password file");
    let token = instance.auto_validating_token().await.expect("token");
    let mut config = instance.mid_config("refused", &dir.path().join("r"), Some(token));
    config.proxy = Some(url);
    config.proxy_password = Some(openmid_proto::credential::LocalSecret::File(
        password.display().to_string(),
    ));
    let process = openmid_testkit::MidProcess::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_openmid")),
        &config,
    )
    .expect("MID process");
    let log = dir.path().join("r").join("mid.log");
    let logged = openmid_testkit::wait_until(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { text.contains("407 Proxy Authentication Required") }
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged, "the proxy's status is in the log: {text}");
    assert!(!text.contains("wrong-pass"), "{text}");
    drop(process);
    instance.shutdown().await;
}

#[tokio::test]
async fn oversized_responses_fail_clearly_instead_of_being_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_with(
        openmid_instance::config::InstanceConfig {
            data_dir: dir.path().join("i"),
            listen: loopback_any_port(),
            max_request_bytes: 64 * 1024,
            ..Default::default()
        },
        None,
    )
    .await
    .expect("instance");
    let target = TargetService::start().await.expect("target");
    let mid = instance
        .start_mid(MID, &dir.path().join("m"), true)
        .await
        .expect("MID");

    // Over the MID's own cap (8 MiB): the probe refuses to read it all.
    let huge = run(&instance, &get(target.url("/bytes/9000000"))).await;
    assert_eq!(huge.state, State::Error);
    assert!(
        huge.error
            .unwrap_or_default()
            .contains("exceeds the 8388608-byte limit")
    );

    // Under the MID's cap but over what this instance accepts in one request: the MID
    // reports that as the job's error rather than retrying the post forever.
    let big = run(&instance, &get(target.url("/bytes/200000"))).await;
    assert_eq!(big.state, State::Error);
    assert!(
        big.error
            .unwrap_or_default()
            .contains("larger than the instance accepts")
    );

    // And the MID goes on working.
    let small = run(&instance, &get(target.url("/hello"))).await;
    assert_eq!(small.state, State::Processed);
    mid.shutdown().await.expect("stops");
    instance.shutdown().await;
}
