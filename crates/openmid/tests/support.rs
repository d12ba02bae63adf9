//! Shared set-up of the end-to-end tests.

use openmid_client::ActionOutcome;
use openmid_mid::RunningMid;
use openmid_proto::api::{RestAction, RestActionResult};
use openmid_testkit::{TargetService, TestInstance, loopback_any_port};
use std::time::Duration;

/// An instance, a target service and one validated MID, each in a fresh directory.
pub struct Stack {
    pub instance: TestInstance,
    pub target: TargetService,
    pub mid: RunningMid,
    pub dir: tempfile::TempDir,
}

pub const MID: &str = "mid-e2e";

impl Stack {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let instance =
            TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
                .await
                .expect("instance");
        let target = TargetService::start().await.expect("target");
        let mid = instance
            .start_mid(MID, &dir.path().join("mid"), true)
            .await
            .expect("MID starts and is validated");
        Self {
            instance,
            target,
            mid,
            dir,
        }
    }

    pub async fn stop(self) {
        self.mid.shutdown().await.expect("MID stops cleanly");
        self.instance.shutdown().await;
    }
}

/// A GET through the MID.
pub fn get(url: String) -> RestAction {
    RestAction {
        timeout_ms: Some(10_000),
        ..RestAction::new(format!("mid.server.{MID}"), url)
    }
}

/// Runs an action, expecting it to finish within 20 s.
pub async fn run(instance: &TestInstance, action: &RestAction) -> RestActionResult {
    match instance
        .api
        .rest_action(action, Duration::from_secs(20))
        .await
        .expect("action accepted")
    {
        ActionOutcome::Done(r) => *r,
        ActionOutcome::Pending(p) => panic!("not finished in 20 s: {p:?}"),
    }
}

/// Whether the record `id` reaches `processed` within `limit`.
pub async fn processed_within(api: &openmid_client::ApiClient, id: &str, limit: Duration) -> bool {
    openmid_testkit::wait_until(limit, || async {
        api.get_record(id)
            .await
            .is_ok_and(|r| r.state == openmid_proto::ecc::State::Processed)
    })
    .await
}

/// Results waiting in the outbox of the MID whose state directory is `state_dir`.
pub fn outbox_pending(state_dir: &std::path::Path) -> usize {
    openmid_mid::outbox::pending_on_disk(&state_dir.join("outbox")).unwrap_or(0)
}

/// Whether MID `name` is `up` and has sent its first heartbeat within 20 s.
pub async fn up_and_heartbeated(api: &openmid_client::ApiClient, name: &str) -> bool {
    openmid_testkit::wait_until(Duration::from_secs(20), || async {
        api.get_mid(name)
            .await
            .is_ok_and(|m| m.status == openmid_proto::mid::MidStatus::Up && m.health.is_some())
    })
    .await
}

/// An instance and a target service in `dir`, and the config of a MID that enrolls
/// validated at once.
pub async fn instance_target_and_mid_config(
    dir: &std::path::Path,
) -> (TestInstance, TargetService, openmid_mid::config::MidConfig) {
    let instance = TestInstance::start_in(&dir.join("instance"), loopback_any_port(), None)
        .await
        .expect("instance");
    let target = TargetService::start().await.expect("target");
    let token = instance.auto_validating_token().await.expect("token");
    let config = instance.mid_config(MID, &dir.join("mid"), Some(token));
    (instance, target, config)
}
