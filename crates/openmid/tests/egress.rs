//! The MID's egress policy where connections open: a loopback target under the
//! default policy, a name that resolves to a refused address, and a redirect to a
//! denied range are all refused on the MID with the rule named, counted in its
//! heartbeat, and never reach the target.

use crate::support::{get, run};
use openmid_instance::config::InstanceConfig;
use openmid_mid::policy::{EgressPolicy, NetworkConfig, PolicyConfig};
use openmid_proto::api::RestAction;
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_testkit::{
    AuthTarget, AuthTargetConfig, TargetService, TestInstance, loopback_any_port, wait_until,
};
use std::time::Duration;

async fn mid_with(
    instance: &TestInstance,
    dir: &std::path::Path,
    name: &str,
    policy: EgressPolicy,
) -> openmid_mid::RunningMid {
    let token = instance.auto_validating_token().await.expect("token");
    let mut config = instance.mid_config(name, &dir.join(name), Some(token));
    config.policy = policy;
    let mut mid = openmid_mid::start(config).await.expect("MID starts");
    assert!(
        mid.wait_for_status(MidStatus::Up, Duration::from_secs(20))
            .await,
        "{name} is up"
    );
    mid
}

fn on(name: &str, url: String) -> RestAction {
    RestAction {
        agent: Some(format!("mid.server.{name}")),
        ..get(url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_targets_name_the_rule_and_never_reach_the_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_with(
        InstanceConfig {
            data_dir: dir.path().join("instance"),
            listen: loopback_any_port(),
            heartbeat_ms: 300,
            ..InstanceConfig::default()
        },
        None,
    )
    .await
    .expect("instance");
    let target = TargetService::start().await.expect("target");

    // The default policy: the MID host's own loopback is refused, by address and by a
    // name that resolves to it.
    let strict = mid_with(&instance, dir.path(), "strict", EgressPolicy::default()).await;
    let port = target
        .url("")
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    for url in [
        target.url("/hello"),
        format!("http://localhost:{port}/hello"),
        format!("http://[::ffff:127.0.0.1]:{port}/hello"),
    ] {
        let r = run(&instance, &on("strict", url.clone())).await;
        assert_eq!(r.state, State::Error, "{url}");
        let error = r.error.unwrap_or_default();
        assert!(
            error.contains("egress policy") && error.contains("loopback"),
            "{url}: {error}"
        );
        assert!(
            error.contains("policy.http.allow_cidrs"),
            "says what to change: {error}"
        );
    }
    assert_eq!(target.hits(), 0, "nothing reached the target");
    let api = &instance.api;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            api.get_mid("strict")
                .await
                .is_ok_and(|m| m.health.is_some_and(|h| h.policy_denials >= 3))
        })
        .await,
        "the heartbeat counts the denials"
    );

    // Loopback allowed, but one address denied: a redirect there is refused too.
    let config = PolicyConfig {
        http: NetworkConfig {
            allow_cidrs: vec!["127.0.0.0/8".into()],
            deny_cidrs: vec!["127.0.0.2/32".into()],
            ..NetworkConfig::default()
        },
        ..PolicyConfig::default()
    };
    let policy = EgressPolicy::new(config).expect("policy");
    let _lenient = mid_with(&instance, dir.path(), "lenient", policy).await;
    let ok = run(&instance, &on("lenient", target.url("/hello"))).await;
    assert_eq!(ok.state, State::Processed, "{:?}", ok.error);
    let redirector = AuthTarget::start(AuthTargetConfig::random())
        .await
        .expect("redirecting target");
    let mut via = on("lenient", redirector.url("/redirect"));
    via.url = Some(format!(
        "{}?to=http://127.0.0.2:{port}/hello",
        redirector.url("/redirect")
    ));
    let r = run(&instance, &via).await;
    assert_eq!(r.state, State::Error);
    let error = r.error.unwrap_or_default();
    assert!(error.contains("policy.http.deny_cidrs[0]"), "{error}");
    assert_eq!(target.hits(), 1, "only the allowed call arrived");
    strict.shutdown().await.expect("stops");
    instance.shutdown().await;
}
