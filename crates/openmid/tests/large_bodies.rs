//! 100 MB request and response bodies through a real `openmid mid` process and a real
//! `openmid instance` process, with the peak memory of both measured: neither may hold
//! a whole body.

use openmid_proto::api::RestAction;
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_testkit::bodies::{pattern, pattern_sha256, peak_rss_bytes};
use openmid_testkit::{InstanceProcess, MidProcess, TargetService, wait_until};
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_openmid");
const SIZE: u64 = 100_000_000;
/// Peak resident memory allowed to either process: well below one body.
const MAX_PEAK: u64 = 80 * 1024 * 1024;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test]
async fn hundred_megabyte_bodies_pass_without_being_held_in_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("instance");
    let instance = InstanceProcess::spawn(Path::new(BIN), &data_dir).expect("instance process");
    let api = instance.api().expect("api client");
    let target = TargetService::start().await.expect("target");
    let token = openmid_testkit::auto_validating_token(&api)
        .await
        .expect("token");
    let mut config = instance.mid_config("big-mid", &dir.path().join("mid"), Some(token));
    config.max_response_bytes = 256 * 1024 * 1024;
    let mid = MidProcess::spawn(Path::new(BIN), &config).expect("MID process");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            api.get_mid("big-mid")
                .await
                .is_ok_and(|m| m.status == MidStatus::Up)
        })
        .await,
        "the MID is up"
    );
    let agent = "mid.server.big-mid";
    let expected_sha = pattern_sha256(SIZE);

    // Request body: uploaded as a blob, streamed by the MID into POST /sink.
    let started = Instant::now();
    let blob = api
        .upload_blob(reqwest::Body::wrap_stream(pattern(SIZE)))
        .await
        .expect("upload");
    let upload_time = started.elapsed();
    assert_eq!(
        (blob.size, blob.sha256.as_str()),
        (SIZE, expected_sha.as_str())
    );
    let mut post = RestAction::new(agent, target.url("/sink"));
    post.method = Some("POST".into());
    post.body_blob = Some(blob.id.clone());
    post.timeout_ms = Some(300_000);
    let started = Instant::now();
    let sent = match api
        .rest_action(&post, Duration::from_secs(280))
        .await
        .expect("action")
    {
        openmid_client::ActionOutcome::Done(r) => *r,
        openmid_client::ActionOutcome::Pending(p) => panic!("still running: {p:?}"),
    };
    let request_time = started.elapsed();
    assert_eq!(sent.state, State::Processed, "{:?}", sent.error);
    let answer: serde_json::Value = serde_json::from_str(
        sent.response
            .and_then(|r| r.body)
            .as_deref()
            .unwrap_or("null"),
    )
    .expect("sink JSON");
    assert_eq!(answer["bytes"], SIZE);
    assert_eq!(answer["sha256"], expected_sha.as_str());
    let mid_peak_request = peak_rss_bytes(Some(mid.pid())).unwrap_or(0);
    let instance_peak_request = peak_rss_bytes(Some(instance.pid())).unwrap_or(0);

    // Response body: spilled by the MID, uploaded as a blob, downloaded to a file.
    let mut get = RestAction::new(agent, target.url(&format!("/bytes/{SIZE}")));
    get.timeout_ms = Some(300_000);
    let started = Instant::now();
    let got = match api
        .rest_action(&get, Duration::from_secs(280))
        .await
        .expect("action")
    {
        openmid_client::ActionOutcome::Done(r) => *r,
        openmid_client::ActionOutcome::Pending(p) => panic!("still running: {p:?}"),
    };
    let response_time = started.elapsed();
    assert_eq!(got.state, State::Processed, "{:?}", got.error);
    let body = got
        .response
        .and_then(|r| r.body_blob)
        .expect("the body came as a blob");
    assert_eq!(
        (body.size, body.sha256.as_str()),
        (SIZE, expected_sha.as_str())
    );
    let file = dir.path().join("downloaded");
    let started = Instant::now();
    let downloaded = api.download_blob(&body.id, &file).await.expect("download");
    let download_time = started.elapsed();
    assert_eq!(downloaded, body);
    let mid_peak = peak_rss_bytes(Some(mid.pid())).unwrap_or(0);
    let instance_peak = peak_rss_bytes(Some(instance.pid())).unwrap_or(0);
    let test_peak = peak_rss_bytes(None).unwrap_or(0);

    eprintln!(
        "100 MB request: upload {upload_time:?}, through the MID {request_time:?}; peak RSS MID {:.1} MiB, instance {:.1} MiB",
        mib(mid_peak_request),
        mib(instance_peak_request)
    );
    eprintln!(
        "100 MB response: through the MID {response_time:?}, download {download_time:?}; peak RSS MID {:.1} MiB, instance {:.1} MiB; test process {:.1} MiB",
        mib(mid_peak),
        mib(instance_peak),
        mib(test_peak)
    );
    assert!(
        mid_peak > 0 && mid_peak < MAX_PEAK,
        "MID peak RSS {mid_peak} bytes"
    );
    assert!(
        instance_peak > 0 && instance_peak < MAX_PEAK,
        "instance peak RSS {instance_peak} bytes"
    );
}
