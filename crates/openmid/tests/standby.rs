//! A MID with `standby_urls` moves to the next node of its instance when the node it
//! talks to stops answering: here the instance stops on one port and comes back, on
//! the same data, on the standby port, and the MID's work goes on there.

use crate::support::{MID, get, run};
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_testkit::{TargetService, TestInstance};
use std::net::SocketAddr;
use std::time::Duration;

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

#[tokio::test]
async fn a_mid_moves_to_its_standby_url_when_its_node_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("instance");
    let (first, standby) = (free_port(), free_port());
    let target = TargetService::start().await.expect("target");
    let instance = TestInstance::start_in(&data, first, None)
        .await
        .expect("instance");
    let token = instance.auto_validating_token().await.expect("token");
    let mut config = instance.mid_config(MID, &dir.path().join("mid"), Some(token));
    config.standby_urls = vec![format!("https://127.0.0.1:{}", standby.port())];
    let mut mid = openmid_mid::start(config).await.expect("MID starts");
    assert!(
        mid.wait_for_status(MidStatus::Up, Duration::from_secs(20))
            .await,
        "the MID enrolls through its first URL"
    );
    let before = run(&instance, &get(target.url("/hello"))).await;
    assert_eq!(before.state, State::Processed);

    let admin = instance.token.clone();
    instance.shutdown().await;
    let node_b = TestInstance::start_in(&data, standby, Some(admin))
        .await
        .expect("the same instance on the standby port");
    let after = run(&node_b, &get(target.url("/hello"))).await;
    assert_eq!(
        after.state,
        State::Processed,
        "work goes on through the standby node"
    );
    assert_eq!(after.mid.as_deref(), Some(MID));
    assert_eq!(target.hits(), 2);
    let seen = node_b.api.get_mid(MID).await.expect("the MID");
    assert_eq!(seen.status, MidStatus::Up);
    mid.shutdown().await.expect("MID stops");
    node_b.shutdown().await;
}
