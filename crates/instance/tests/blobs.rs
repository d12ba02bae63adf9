//! Large bodies through a MID: a request body uploaded as a blob and streamed by the
//! MID to the target, a response body spilled by the MID and uploaded as a blob, and
//! the caps on both sides answering with clear errors.

use crate::support::instance_with;
use openmid_client::{ActionOutcome, ClientError};
use openmid_proto::api::{RestAction, RestActionResult};
use openmid_proto::ecc::State;
use openmid_testkit::bodies::{pattern, pattern_sha256};
use openmid_testkit::{TargetService, TestInstance};
use std::time::Duration;

const MID: &str = "blob-mid";

async fn run(instance: &TestInstance, action: &RestAction) -> RestActionResult {
    match instance
        .api
        .rest_action(action, Duration::from_secs(60))
        .await
        .expect("action accepted")
    {
        ActionOutcome::Done(r) => *r,
        ActionOutcome::Pending(p) => panic!("not finished in 60 s: {p:?}"),
    }
}

fn agent() -> String {
    format!("mid.server.{MID}")
}

#[tokio::test]
async fn large_bodies_travel_as_blobs_both_ways() {
    let (instance, dir) = instance_with(|_| {}).await;
    let target = TargetService::start().await.expect("target");
    let mut config = instance.mid_config(MID, &dir.path().join("mid"), None);
    config.inline_body_bytes = 64 * 1024;
    config.max_response_bytes = 64 * 1024 * 1024;
    let token = instance.auto_validating_token().await.expect("token");
    config.enrollment_token = Some(openmid_proto::secret::Secret::new(token));
    let mut mid = openmid_mid::start(config).await.expect("MID starts");
    assert!(
        mid.wait_for_status(openmid_proto::mid::MidStatus::Up, Duration::from_secs(20))
            .await
    );

    // Request: 5 MB uploaded as a blob, streamed through the MID to the target.
    let size = 5_000_000;
    let blob = instance
        .api
        .upload_blob(reqwest::Body::wrap_stream(pattern(size)))
        .await
        .expect("upload");
    assert_eq!(blob.size, size);
    assert_eq!(blob.sha256, pattern_sha256(size));
    let mut post = RestAction::new(agent(), target.url("/sink"));
    post.method = Some("POST".into());
    post.body_blob = Some(blob.id.clone());
    let sent = run(&instance, &post).await;
    assert_eq!(sent.state, State::Processed, "{:?}", sent.error);
    let answer: serde_json::Value = serde_json::from_str(
        sent.response
            .and_then(|r| r.body)
            .as_deref()
            .unwrap_or("null"),
    )
    .expect("sink answers JSON");
    assert_eq!(answer["bytes"], size);
    assert_eq!(answer["sha256"], blob.sha256.as_str());

    // Response: 3 MB, over the MID's inline limit, comes back as a blob.
    let size = 3_000_000;
    let got = run(
        &instance,
        &RestAction::new(agent(), target.url(&format!("/bytes/{size}"))),
    )
    .await;
    assert_eq!(got.state, State::Processed, "{:?}", got.error);
    let response = got.response.expect("response");
    assert!(response.body.is_none() && response.body_base64.is_none());
    let body = response.body_blob.expect("body as a blob");
    assert_eq!(body.size, size);
    assert_eq!(body.sha256, pattern_sha256(size));
    let file = dir.path().join("downloaded");
    let downloaded = instance
        .api
        .download_blob(&body.id, &file)
        .await
        .expect("download");
    assert_eq!(downloaded, body);
    assert_eq!(std::fs::metadata(&file).expect("file").len(), size);

    // The MID's copy leaves once the instance has the result.
    let bodies = dir.path().join("mid").join("outbox").join("bodies");
    assert!(
        openmid_testkit::wait_until(Duration::from_secs(5), || async {
            std::fs::read_dir(&bodies).map_or(0, |d| d.count()) == 0
        })
        .await,
        "the spilled body file is removed after the acknowledgement"
    );

    // Small bodies stay inline.
    let small = run(&instance, &RestAction::new(agent(), target.url("/hello"))).await;
    let small = small.response.expect("response");
    assert!(small.body.is_some() && small.body_blob.is_none());
    mid.shutdown().await.expect("stops");
    instance.shutdown().await;
}

#[tokio::test]
async fn caps_answer_with_clear_errors() {
    let (instance, dir) = instance_with(|c| c.max_blob_bytes = 1024 * 1024).await;
    let target = TargetService::start().await.expect("target");

    // Upload over max_blob_bytes: 413 with the API's error body, nothing kept.
    let refused = instance
        .api
        .upload_blob(reqwest::Body::wrap_stream(pattern(3 * 1024 * 1024)))
        .await
        .expect_err("too large");
    match refused {
        ClientError::Api {
            status,
            code,
            message,
        } => {
            assert_eq!(status, 413);
            assert_eq!(code, "too_large");
            assert!(
                message.contains("max_blob_bytes (1048576 bytes)"),
                "{message}"
            );
        }
        other => panic!("unexpected {other}"),
    }
    let blobs = dir.path().join("blobs");
    assert_eq!(
        std::fs::read_dir(&blobs).map_or(0, |d| d.count()),
        0,
        "no partial file is left"
    );

    // A response over the MID's max_response_bytes ends in an error naming the limit.
    let mut config = instance.mid_config(MID, &dir.path().join("mid"), None);
    config.max_response_bytes = 2 * 1024 * 1024;
    config.inline_body_bytes = 64 * 1024;
    let token = instance.auto_validating_token().await.expect("token");
    config.enrollment_token = Some(openmid_proto::secret::Secret::new(token));
    let mut mid = openmid_mid::start(config).await.expect("MID starts");
    assert!(
        mid.wait_for_status(openmid_proto::mid::MidStatus::Up, Duration::from_secs(20))
            .await
    );
    // A body_blob that names no blob, or comes with `body`, is refused at the door.
    let mut bad = RestAction::new(agent(), target.url("/sink"));
    bad.body_blob = Some("ab".repeat(32));
    let err = instance
        .api
        .rest_action(&bad, Duration::ZERO)
        .await
        .expect_err("unknown blob");
    assert!(err.to_string().contains("body_blob"), "{err}");

    let huge = run(
        &instance,
        &RestAction::new(agent(), target.url("/bytes/3000000")),
    )
    .await;
    assert_eq!(huge.state, State::Error);
    let error = huge.error.unwrap_or_default();
    assert!(
        error.contains("exceeds the 2097152-byte limit (max_response_bytes)"),
        "{error}"
    );
    let bodies = dir.path().join("mid").join("outbox").join("bodies");
    assert_eq!(
        std::fs::read_dir(&bodies).map_or(0, |d| d.count()),
        0,
        "no partial body is left on the MID"
    );

    // A response body over the instance's max_blob_bytes: the MID reports it as the
    // job's error instead of retrying the upload for ever.
    let over = run(
        &instance,
        &RestAction::new(agent(), target.url("/bytes/1500000")),
    )
    .await;
    assert_eq!(over.state, State::Error);
    let error = over.error.unwrap_or_default();
    assert!(error.contains("max_blob_bytes"), "{error}");
    mid.shutdown().await.expect("stops");
    instance.shutdown().await;
}

#[tokio::test]
async fn a_spilled_body_survives_an_outage_and_a_mid_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("instance");
    let instance = TestInstance::start_in(&data, openmid_testkit::loopback_any_port(), None)
        .await
        .expect("instance");
    let target = TargetService::start().await.expect("target");
    let state_dir = dir.path().join("mid");
    let mut config = instance.mid_config(MID, &state_dir, None);
    config.inline_body_bytes = 64 * 1024;
    let token = instance.auto_validating_token().await.expect("token");
    config.enrollment_token = Some(openmid_proto::secret::Secret::new(token));
    let mut mid = openmid_mid::start(config.clone())
        .await
        .expect("MID starts");
    assert!(
        mid.wait_for_status(openmid_proto::mid::MidStatus::Up, Duration::from_secs(20))
            .await
    );

    // A 3 MB answer that comes a moment after the claim, once the instance is gone.
    let size = 3_000_000;
    let action = RestAction::new(agent(), target.url(&format!("/bytes/{size}?delay_ms=1500")));
    let pending = match instance
        .api
        .rest_action(&action, Duration::ZERO)
        .await
        .expect("accepted")
    {
        ActionOutcome::Pending(p) => p,
        ActionOutcome::Done(r) => panic!("finished too soon: {r:?}"),
    };
    let api = instance.api.clone();
    let id = pending.output_id.clone();
    assert!(
        openmid_testkit::wait_until(Duration::from_secs(10), || async {
            api.get_record(&id)
                .await
                .is_ok_and(|r| r.state == State::Processing)
        })
        .await,
        "claimed"
    );
    let addr = instance.running.addr;
    let admin_token = instance.token.clone();
    instance.shutdown().await;

    // The MID writes the body to its outbox and stops without being able to upload it.
    let bodies = state_dir.join("outbox").join("bodies");
    assert!(
        openmid_testkit::wait_until(Duration::from_secs(10), || async {
            std::fs::read_dir(&bodies).map_or(0, |d| d.count()) == 1
        })
        .await,
        "the body waits on disk"
    );
    mid.shutdown().await.expect("MID stops");

    let instance = TestInstance::start_in(&data, addr, Some(admin_token))
        .await
        .expect("instance restarts");
    config.enrollment_token = None;
    let mid = openmid_mid::start(config).await.expect("MID restarts");
    let done = match instance
        .api
        .get_action::<openmid_proto::rest::RestResponse>(
            &pending.output_id,
            Duration::from_secs(30),
        )
        .await
        .expect("result")
    {
        ActionOutcome::Done(r) => *r,
        ActionOutcome::Pending(p) => panic!("not delivered after the restart: {p:?}"),
    };
    assert_eq!(done.state, State::Processed, "{:?}", done.error);
    let blob = done
        .response
        .and_then(|r| r.body_blob)
        .expect("the body as a blob");
    assert_eq!(
        (blob.size, blob.sha256.clone()),
        (size, pattern_sha256(size))
    );
    assert!(
        openmid_testkit::wait_until(Duration::from_secs(5), || async {
            std::fs::read_dir(&bodies).map_or(0, |d| d.count()) == 0
        })
        .await,
        "the body file leaves once the result is acknowledged"
    );
    mid.shutdown().await.expect("stops");
    instance.shutdown().await;
}

#[tokio::test]
async fn only_the_mid_holding_an_output_reads_or_writes_its_bodies() {
    let (instance, dir) = instance_with(|_| {}).await;
    let holder = crate::support::enrolled_client(&instance, "holder", true).await;
    let other = crate::support::enrolled_client(&instance, "other", true).await;
    let blob = instance
        .api
        .upload_blob(reqwest::Body::wrap_stream(pattern(100_000)))
        .await
        .expect("upload");
    let spare = instance
        .api
        .upload_blob(reqwest::Body::wrap_stream(pattern(10)))
        .await
        .expect("upload");
    let mut post = RestAction::new("mid.server.holder", "http://127.0.0.1:9/sink");
    post.method = Some("POST".into());
    post.body_blob = Some(blob.id.clone());
    let ActionOutcome::Pending(pending) = instance
        .api
        .rest_action(&post, Duration::ZERO)
        .await
        .expect("accepted")
    else {
        panic!("expected 202")
    };
    let claimed = holder
        .poll(&openmid_proto::mid::PollRequest {
            capacity: openmid_proto::mid::Capacity {
                interactive: 1,
                expedited: 1,
                standard: 1,
            },
            wait_ms: 5_000,
            known_status: None,
        })
        .await
        .expect("poll");
    let item = claimed.work.first().expect("claimed");
    assert_eq!(item.output_id, pending.output_id);
    let timeout = Duration::from_secs(10);
    let refused = |r: Result<_, openmid_mid::session::client::SessionError>| match r {
        Err(openmid_mid::session::client::SessionError::Refused { status, .. }) => status,
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => 200,
    };

    // The holder reads the blob its output names, and nothing else through it.
    let (len, _) = holder
        .blob_body(&blob.id, &item.output_id, timeout)
        .await
        .expect("the holder reads its request body");
    assert_eq!(len, Some(100_000));
    let status = refused(
        holder
            .blob_body(&spare.id, &item.output_id, timeout)
            .await
            .map(|_| ()),
    );
    assert_eq!(status, 403, "a blob the output does not name");
    let status = refused(
        other
            .blob_body(&blob.id, &item.output_id, timeout)
            .await
            .map(|_| ()),
    );
    assert_eq!(status, 409, "another MID");

    // Only the holder's current attempt may store a response body.
    let file = dir.path().join("body");
    std::fs::write(&file, b"response").expect("file");
    let job = |attempt| openmid_proto::mid::JobRef {
        output_id: item.output_id.clone(),
        attempt,
    };
    let stored = holder
        .upload_body(&job(item.attempt), &file)
        .await
        .expect("stored");
    assert_eq!(stored.size, 8);
    assert_eq!(
        refused(
            other
                .upload_body(&job(item.attempt), &file)
                .await
                .map(|_| ())
        ),
        409
    );
    assert_eq!(
        refused(
            holder
                .upload_body(&job(item.attempt + 1), &file)
                .await
                .map(|_| ())
        ),
        409
    );
    instance.shutdown().await;
}
