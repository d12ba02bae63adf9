//! Clusters with real `openmid mid` processes: failover after kill -9, load balancing,
//! a partitioned MID whose late results are discarded, and draining under load.

use crate::support::{outbox_pending, up_and_heartbeated};
use openmid_mid::config::PoolSizes;
use openmid_proto::api::{ClusterKind, NewCluster, RecordQuery};
use openmid_proto::ecc::{EccRecord, Queue, State};
use openmid_proto::mid::MidStatus;
use openmid_testkit::{
    ConnectProxy, MidProcess, TargetService, TestInstance, loopback_any_port, rest_output,
    wait_until,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_openmid");

struct Rig {
    instance: TestInstance,
    target: TargetService,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let instance =
            TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
                .await
                .expect("instance");
        let target = TargetService::start().await.expect("target");
        Self {
            instance,
            target,
            dir,
        }
    }

    async fn mid(&self, name: &str, slots: u32, proxy: Option<String>) -> MidProcess {
        let token = self.instance.auto_validating_token().await.expect("token");
        let mut config = self
            .instance
            .mid_config(name, &self.dir.path().join(name), Some(token));
        config.pools = PoolSizes {
            interactive: slots,
            expedited: 1,
            standard: 1,
        };
        config.proxy = proxy;
        let process = MidProcess::spawn(Path::new(BIN), &config).expect("MID process starts");
        let api = &self.instance.api;
        assert!(
            up_and_heartbeated(api, name).await,
            "MID {name} enrolled, is up and has heartbeated"
        );
        process
    }

    async fn cluster(&self, name: &str, kind: ClusterKind, members: &[&str]) {
        self.instance
            .api
            .create_cluster(&NewCluster {
                name: name.into(),
                kind,
                members: members.iter().map(|m| m.to_string()).collect(),
            })
            .await
            .expect("cluster");
    }

    async fn submit(&self, agent: &str, n: usize, path: &str, correlator: &str) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let url = self.target.url(&format!("{path}&n={i}"));
            let r = self
                .instance
                .api
                .insert_output(&rest_output(agent, &url, correlator))
                .await
                .expect("insert");
            ids.push(r.id);
        }
        ids
    }

    async fn records(&self, correlator: &str, queue: Queue) -> Vec<EccRecord> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .instance
                .api
                .list_records(&RecordQuery {
                    correlator: Some(correlator.into()),
                    queue: Some(queue.as_str().into()),
                    limit: Some(1000),
                    after: after.clone(),
                    ..Default::default()
                })
                .await
                .expect("list");
            all.extend(page.records);
            match page.next_after {
                Some(next) => after = Some(next),
                None => return all,
            }
        }
    }

    async fn all_outputs(
        &self,
        correlator: &str,
        n: usize,
        ok: impl Fn(&EccRecord) -> bool,
    ) -> bool {
        let outputs = self.records(correlator, Queue::Output).await;
        outputs.len() == n && outputs.iter().all(ok)
    }

    /// Every output processed, each with exactly one input, the input from the MID that
    /// holds the output's final attempt.
    async fn assert_exactly_once(&self, correlator: &str, n: usize) -> Vec<EccRecord> {
        let outputs = self.records(correlator, Queue::Output).await;
        let inputs = self.records(correlator, Queue::Input).await;
        assert_eq!(outputs.len(), n);
        assert_eq!(inputs.len(), n, "one input per output, none twice");
        let answered: HashSet<&str> = inputs
            .iter()
            .filter_map(|i| i.response_to.as_deref())
            .collect();
        assert_eq!(answered.len(), n, "every output answered once");
        for o in &outputs {
            assert_eq!(o.state, State::Processed, "{}: {:?}", o.id, o.error);
            let input = inputs
                .iter()
                .find(|i| i.response_to.as_deref() == Some(o.id.as_str()))
                .expect("input");
            assert_eq!(Some(input.source.as_str()), o.claimed_by.as_deref());
            assert_eq!(input.attempt, o.attempt);
        }
        outputs
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_fails_over_every_in_flight_job_once() {
    let rig = Rig::start().await;
    let mut a = rig.mid("fo-a", 64, None).await;
    let _b = rig.mid("fo-b", 64, None).await;
    rig.cluster("fo", ClusterKind::Failover, &["fo-a", "fo-b"])
        .await;
    rig.submit("mid.cluster.fo", 50, "/slow?ms=1500", "kill9")
        .await;
    assert!(
        wait_until(Duration::from_secs(20), || rig.all_outputs(
            "kill9",
            50,
            |o| { o.state == State::Processing && o.claimed_by.as_deref() == Some("fo-a") }
        ))
        .await,
        "the first member runs all 50"
    );
    let target = &rig.target;
    assert!(
        wait_until(Duration::from_secs(20), || async { target.hits() == 50 }).await,
        "all 50 calls reached the service: they are truly in flight"
    );
    let killed = Instant::now();
    a.kill();
    assert!(
        wait_until(Duration::from_secs(30), || rig.all_outputs(
            "kill9",
            50,
            |o| o.state == State::Processed
        ))
        .await,
        "every job finished after the kill"
    );
    eprintln!(
        "all 50 jobs completed {} ms after kill -9",
        killed.elapsed().as_millis()
    );
    let outputs = rig.assert_exactly_once("kill9", 50).await;
    assert!(
        outputs
            .iter()
            .all(|o| o.claimed_by.as_deref() == Some("fo-b") && o.attempt == 2)
    );
    assert!(
        outputs
            .iter()
            .all(|o| o.selection.as_deref().is_some_and(|s| s.contains("fo-b")))
    );
    assert_eq!(
        rig.target.hits(),
        100,
        "50 cut short on fo-a, 50 run on fo-b"
    );
    let dead = rig.instance.api.get_mid("fo-a").await.expect("mid");
    assert_eq!(dead.status, MidStatus::Down);
    let history = rig.instance.api.mid_history("fo-a").await.expect("history");
    assert!(
        history
            .iter()
            .any(|c| c.to == MidStatus::Down && c.reason.contains("connection lost")),
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balance_cluster_shares_work_by_load() {
    let rig = Rig::start().await;
    let _mids = [
        rig.mid("lb-a", 16, None).await,
        rig.mid("lb-b", 16, None).await,
        rig.mid("lb-c", 16, None).await,
    ];
    rig.cluster("lb", ClusterKind::LoadBalance, &["lb-a", "lb-b", "lb-c"])
        .await;
    rig.submit("mid.cluster.lb", 300, "/slow?ms=20", "lb").await;
    assert!(
        wait_until(Duration::from_secs(60), || rig.all_outputs(
            "lb",
            300,
            |o| o.state == State::Processed
        ))
        .await,
        "all 300 done"
    );
    let outputs = rig.assert_exactly_once("lb", 300).await;
    let mut share: HashMap<String, usize> = HashMap::new();
    for o in &outputs {
        *share
            .entry(o.claimed_by.clone().unwrap_or_default())
            .or_default() += 1;
    }
    eprintln!("split: {share:?}");
    assert_eq!(share.len(), 3, "{share:?}");
    for (mid, n) in &share {
        assert!(
            (60..=141).contains(n),
            "{mid} took {n} of 300 (20%–47% expected): {share:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_mid_comes_back_and_its_late_results_are_discarded() {
    let rig = Rig::start().await;
    let proxy = ConnectProxy::start().await.expect("proxy");
    let proxy_addr = proxy.addr;
    let _a = rig.mid("cut-a", 32, Some(proxy.url())).await;
    let _b = rig.mid("cut-b", 32, None).await;
    rig.cluster("cut", ClusterKind::Failover, &["cut-a", "cut-b"])
        .await;
    rig.submit("mid.cluster.cut", 20, "/slow?ms=2000", "cut")
        .await;
    assert!(
        wait_until(Duration::from_secs(20), || rig.all_outputs(
            "cut",
            20,
            |o| { o.state == State::Processing && o.claimed_by.as_deref() == Some("cut-a") }
        ))
        .await
    );
    let target = &rig.target;
    assert!(wait_until(Duration::from_secs(20), || async { target.hits() == 20 }).await);
    // The network between cut-a and the instance goes away (every tunnel is cut).
    proxy.stop();
    drop(proxy);
    assert!(
        wait_until(Duration::from_secs(30), || rig.all_outputs(
            "cut",
            20,
            |o| o.state == State::Processed
        ))
        .await,
        "the jobs finished on cut-b"
    );
    // cut-a has finished its copies meanwhile; its results wait in its outbox.
    let state_dir = rig.dir.path().join("cut-a");
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = outbox_pending(&state_dir);
            async move { n == 20 }
        })
        .await,
        "cut-a kept its late results"
    );
    let mut back = None;
    for _ in 0..50 {
        match ConnectProxy::start_on(proxy_addr).await {
            Ok(p) => {
                back = Some(p);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let _back = back.expect("the proxy comes back on its port");
    assert!(
        wait_until(Duration::from_secs(40), || {
            let n = outbox_pending(&state_dir);
            async move { n == 0 }
        })
        .await,
        "cut-a delivered its late results once reconnected"
    );
    let outputs = rig.assert_exactly_once("cut", 20).await;
    assert!(
        outputs
            .iter()
            .all(|o| o.claimed_by.as_deref() == Some("cut-b"))
    );
    assert_eq!(rig.target.hits(), 40);
    let api = &rig.instance.api;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            api.get_mid("cut-a")
                .await
                .is_ok_and(|m| m.status == MidStatus::Up)
        })
        .await,
        "cut-a is up again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_under_load_loses_nothing() {
    let rig = Rig::start().await;
    let _a = rig.mid("dr-a", 4, None).await;
    let _b = rig.mid("dr-b", 4, None).await;
    rig.cluster("dr", ClusterKind::LoadBalance, &["dr-a", "dr-b"])
        .await;
    rig.submit("mid.cluster.dr", 100, "/slow?ms=200", "drain")
        .await;
    let api = &rig.instance.api;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            api.get_mid("dr-a").await.is_ok_and(|m| m.processing > 0)
        })
        .await
    );
    let drained_at = openmid_proto::time::now_ms();
    let info = api.mid_action("dr-a", "drain").await.expect("drain");
    assert_eq!(info.status, MidStatus::Draining);
    let done = wait_until(Duration::from_secs(60), || {
        rig.all_outputs("drain", 100, |o| o.state == State::Processed)
    })
    .await;
    if !done {
        let stuck: Vec<String> = rig
            .records("drain", Queue::Output)
            .await
            .into_iter()
            .filter(|o| o.state != State::Processed)
            .map(|o| {
                format!(
                    "{} {:?} assigned {:?} claimed {:?}: {:?}",
                    o.state, o.attempt, o.assigned_to, o.claimed_by, o.selection
                )
            })
            .collect();
        panic!("not all 100 done: {stuck:#?}");
    }
    rig.assert_exactly_once("drain", 100).await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            api.get_mid("dr-a")
                .await
                .is_ok_and(|m| m.status == MidStatus::Drained)
        })
        .await,
        "dr-a ends drained"
    );
    // Nothing was claimed by dr-a after the drain began (500 ms of slack for jobs it
    // had claimed as the drain arrived).
    let late: Vec<EccRecord> = rig
        .records("drain", Queue::Output)
        .await
        .into_iter()
        .filter(|o| o.claimed_by.as_deref() == Some("dr-a"))
        .filter(|o| {
            o.claimed_at
                .as_deref()
                .is_some_and(|c| c > openmid_proto::time::rfc3339(drained_at + 500).as_str())
        })
        .collect();
    assert!(late.is_empty(), "dr-a took work while draining: {late:?}");
    let history = api.mid_history("dr-a").await.expect("history");
    let tos: Vec<MidStatus> = history.iter().map(|c| c.to).collect();
    assert_eq!(
        &tos[..2],
        &[MidStatus::Drained, MidStatus::Draining],
        "{history:?}"
    );
}

/// Both action kinds run through an alias whose execution is a failover cluster: a REST
/// call in flight when the first member is killed finishes on the second, and SOAP calls
/// made afterwards go to the second member too, credentials sealed to its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_actions_fail_over_in_a_cluster_for_rest_and_soap() {
    use openmid_client::ActionOutcome;
    use openmid_proto::alias::{Alias, ConnectionKind, Execution};
    use openmid_proto::api::{NewCredential, RestAction, SoapAction};
    use openmid_proto::credential::{CredentialSpec, SecretValue};
    use openmid_proto::rest::RetryPolicy;

    let rig = Rig::start().await;
    let mut a = rig.mid("al-a", 8, None).await;
    let _b = rig.mid("al-b", 8, None).await;
    rig.cluster("al", ClusterKind::Failover, &["al-a", "al-b"])
        .await;
    let api = &rig.instance.api;
    let soap = openmid_testkit::SoapService::start(Some(("u".into(), "soap-pw-42".into())))
        .await
        .expect("soap service");
    api.create_credential(&NewCredential {
        name: "soap".into(),
        description: None,
        spec: CredentialSpec::Basic {
            username: "u".into(),
            password: SecretValue::stored("soap-pw-42"),
        },
    })
    .await
    .expect("credential");
    let alias = |name: &str, kind, base: String, credential: Option<&str>| Alias {
        name: name.into(),
        description: None,
        kind,
        base_url: base,
        headers: Default::default(),
        timeout_ms: Some(10_000),
        retry: RetryPolicy::default(),
        credential: credential.map(str::to_string),
        execution: Execution {
            cluster: Some("al".into()),
            ..Execution::default()
        },
        soap_version: None,
        wsdl: None,
        ca_pem: None,
        host_key: None,
        pool_size: None,
        tls: None,
        options: Default::default(),
        durability: None,
    };
    api.create_alias(&alias(
        "svc",
        ConnectionKind::Http,
        rig.target.url(""),
        None,
    ))
    .await
    .expect("http alias");
    api.create_alias(&alias(
        "calc",
        ConnectionKind::Soap,
        soap.url("/calc"),
        Some("soap"),
    ))
    .await
    .expect("soap alias");
    let add = || {
        let mut params = serde_json::Map::new();
        params.insert("a".into(), 2.into());
        params.insert("b".into(), 3.into());
        SoapAction {
            alias: "calc".into(),
            soap_action: Some("urn:openmid:test:calc#Add".into()),
            operation: Some("Add".into()),
            namespace: Some(openmid_testkit::soap_service::CALC_NS.into()),
            params,
            ..SoapAction::default()
        }
    };
    fn done<R>(o: ActionOutcome<R>) -> Box<openmid_proto::api::ActionResult<R>> {
        match o {
            ActionOutcome::Done(r) => r,
            ActionOutcome::Pending(p) => panic!("not finished: {p:?}"),
        }
    }
    let before = done(
        api.soap_action(&add(), Duration::from_secs(20))
            .await
            .expect("soap"),
    );
    assert_eq!(
        before.mid.as_deref(),
        Some("al-a"),
        "the first member serves"
    );

    let mut slow = RestAction::via("svc", "/slow");
    slow.query.insert("ms".into(), "1500".into());
    let pending = match api
        .rest_action(&slow, Duration::ZERO)
        .await
        .expect("accepted")
    {
        ActionOutcome::Pending(p) => p,
        ActionOutcome::Done(r) => panic!("finished at once: {r:?}"),
    };
    assert!(
        wait_until(Duration::from_secs(10), || async {
            api.get_record(&pending.output_id).await.is_ok_and(|r| {
                r.state == State::Processing && r.claimed_by.as_deref() == Some("al-a")
            })
        })
        .await,
        "the REST call runs on al-a"
    );
    a.kill();
    let rest = done(
        api.get_action::<openmid_proto::rest::RestResponse>(
            &pending.output_id,
            Duration::from_secs(30),
        )
        .await
        .expect("poll"),
    );
    assert_eq!(rest.state, State::Processed, "{:?}", rest.error);
    assert_eq!(rest.mid.as_deref(), Some("al-b"));
    assert_eq!(rest.attempt, 2);
    assert_eq!(rest.response.map(|r| r.status), Some(200));

    let after = done(
        api.soap_action(&add(), Duration::from_secs(20))
            .await
            .expect("soap"),
    );
    assert_eq!(after.mid.as_deref(), Some("al-b"));
    let resp = after.response.expect("response");
    assert_eq!(
        resp.result,
        Some(serde_json::json!({"AddResponse": {"result": "5"}}))
    );
}
