//! `Command` end to end: a real instance and MID, real processes on the MID's host.
//! Only what the MID's policy lists runs; output comes back capped but never silently
//! cut; a timeout or a cancel stops the whole process group (checked in `/proc`).

use openmid_client::ActionOutcome;
use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_proto::api::CommandAction;
use openmid_proto::command::{CommandEnd, CommandExit, CommandResponse};
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_testkit::{TestInstance, loopback_any_port, wait_until};
use std::time::Duration;

pub(crate) const MID: &str = "mid-cmd";

pub(crate) const POLICY: &str = r#"
[command]
interpreters = ["/bin/sh"]

[[command.programs]]
path = "/bin/echo"
args = ["**"]

[[command.programs]]
path = "/bin/sh"
args = ["**"]
env = ["GREETING"]
max_runtime_secs = 60

[[command.programs]]
path = "/usr/bin/head"
args = ["-c", "*", "/dev/zero"]
"#;

struct Rig {
    instance: TestInstance,
    mid: openmid_mid::RunningMid,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let instance =
            TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
                .await
                .expect("instance");
        let token = instance.auto_validating_token().await.expect("token");
        let mut config = instance.mid_config(MID, &dir.path().join("mid"), Some(token));
        let table: PolicyConfig = toml::from_str(POLICY).expect("policy parses");
        config.policy = EgressPolicy::new(table).expect("policy compiles");
        let mut mid = openmid_mid::start(config).await.expect("MID starts");
        assert!(
            mid.wait_for_status(MidStatus::Up, Duration::from_secs(20))
                .await,
            "MID is up"
        );
        Self {
            instance,
            mid,
            _dir: dir,
        }
    }

    async fn run(&self, action: &CommandAction) -> openmid_proto::api::CommandActionResult {
        match self
            .instance
            .api
            .command_action(action, Duration::from_secs(30))
            .await
            .expect("accepted")
        {
            ActionOutcome::Done(r) => *r,
            ActionOutcome::Pending(p) => panic!("not finished in 30 s: {p:?}"),
        }
    }

    async fn stop(self) {
        self.mid.shutdown().await.expect("MID stops");
        self.instance.shutdown().await;
    }
}

/// Submits `action` without waiting and returns its output id (it must not have
/// finished at once).
async fn queued(api: &openmid_client::ApiClient, action: &CommandAction) -> String {
    match api
        .command_action(action, Duration::ZERO)
        .await
        .expect("accepted")
    {
        ActionOutcome::Pending(p) => p.output_id,
        ActionOutcome::Done(r) => panic!("finished at once: {r:?}"),
    }
}

fn response(r: &openmid_proto::api::CommandActionResult) -> &CommandResponse {
    r.response
        .as_ref()
        .unwrap_or_else(|| panic!("a response, got {:?}", r.error))
}

/// Processes whose command line holds `marker`, zombies left aside (this machine's
/// init may not reap orphans).
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if state == Some("Z") {
            continue;
        }
        // Arguments are NUL-separated: read them as a command line with spaces.
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) {
            found.push(pid);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_as_the_policy_allows_and_report_their_exit() {
    let rig = Rig::start().await;

    let r = rig
        .run(&CommandAction::on(MID, "/bin/echo", &["hello", "world"]))
        .await;
    assert_eq!(r.state, State::Processed, "{:?}", r.error);
    let out = response(&r);
    assert_eq!(out.exit, CommandExit::Code { code: 0 });
    assert_eq!(out.stdout.text, "hello world\n");
    assert_eq!(out.allowed_by, "policy.command.programs[0]");

    // A script for an allowed interpreter, with an allowed variable; the exit code,
    // both streams and nothing of the MID's own environment.
    let mut script = CommandAction::on(MID, "/bin/sh", &[]);
    script.script = Some(
        "echo \"$GREETING $((1+2))\"; echo oops >&2; echo \"${HOME:-no home}\"; exit 3".into(),
    );
    script.env.insert("GREETING".into(), "hi".into());
    let r = rig.run(&script).await;
    let out = response(&r);
    assert_eq!(out.exit, CommandExit::Code { code: 3 });
    assert_eq!(out.stdout.text, "hi 3\nno home\n");
    assert_eq!(out.stderr.text, "oops\n");

    // Not in the policy: refused on the MID, naming the rule, and nothing ran.
    for (program, args) in [
        ("/bin/rm", vec!["-rf", "/tmp/nothing-here"]),
        ("/usr/bin/head", vec!["-n", "1", "/etc/passwd"]),
    ] {
        let r = rig.run(&CommandAction::on(MID, program, &args)).await;
        assert_eq!(r.state, State::Error, "{program}");
        let error = r.error.unwrap_or_default();
        assert!(
            error.contains("egress policy") && error.contains("policy.command.programs"),
            "{program}: {error}"
        );
    }
    let mut env = CommandAction::on(MID, "/bin/sh", &["-c", "true"]);
    env.env.insert("LD_PRELOAD".into(), "/tmp/x.so".into());
    let r = rig.run(&env).await;
    assert_eq!(r.state, State::Error);
    assert!(
        !r.error.unwrap_or_default().contains("/tmp/x.so"),
        "values are never echoed"
    );

    // Bad requests are refused at the door, naming the field.
    let err = rig
        .instance
        .api
        .command_action(&CommandAction::on(MID, "echo", &[]), Duration::ZERO)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("program"), "{err}");

    // A cap ends with how much was dropped, never silently.
    let mut big = CommandAction::on(MID, "/usr/bin/head", &["-c", "3000000", "/dev/zero"]);
    big.max_output_bytes = Some(1_000_000);
    let r = rig.run(&big).await;
    let out = response(&r);
    assert_eq!(out.stdout.bytes, 3_000_000);
    assert_eq!(out.stdout.dropped_bytes, 2_000_000);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_and_a_cancel_stop_the_whole_process_group() {
    let rig = Rig::start().await;
    // Children in the background, in the same group: none may outlive the job.
    let forks = |marker: &str| {
        let mut a = CommandAction::on(
            MID,
            "/bin/sh",
            &[
                "-c",
                &format!("sleep {marker} & sleep {marker} & echo started; wait"),
            ],
        );
        a.timeout_ms = Some(1_500);
        a
    };
    let r = rig.run(&forks("291.5")).await;
    let out = response(&r);
    assert_eq!(out.ended_by, CommandEnd::Timeout);
    assert_eq!(out.stdout.text, "started\n", "output so far is kept");
    assert!(
        processes_with("sleep 291.5").is_empty(),
        "no child survives a timeout"
    );

    let mut long = forks("292.5");
    long.timeout_ms = Some(50_000);
    let api = &rig.instance.api;
    let id = queued(api, &long).await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            // The two children and the shell whose command line names them.
            processes_with("sleep 292.5").len() == 3
        })
        .await,
        "the children run"
    );
    let record = api.cancel_record(&id).await.expect("cancel");
    assert_eq!(
        record.state,
        State::Processing,
        "a running job is stopped on its MID"
    );
    assert!(
        wait_until(Duration::from_secs(10), || async {
            api.get_record(&id)
                .await
                .is_ok_and(|r| r.state == State::Cancelled)
        })
        .await,
        "recorded cancelled"
    );
    assert!(
        processes_with("sleep 292.5").is_empty(),
        "no child survives a cancel"
    );
    let done = match api
        .get_action::<CommandResponse>(&id, Duration::ZERO)
        .await
        .expect("action")
    {
        ActionOutcome::Done(r) => *r,
        ActionOutcome::Pending(p) => panic!("{p:?}"),
    };
    let out = done.response.expect("the output produced so far");
    assert_eq!(out.ended_by, CommandEnd::Cancelled);
    assert_eq!(out.stdout.text, "started\n");
    assert!(
        api.cancel_record(&id).await.is_err(),
        "a finished job cannot be cancelled"
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_waiting_output_is_cancelled_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_in(dir.path(), loopback_any_port(), None)
        .await
        .expect("instance");
    // A MID that is enrolled but stopped: its work waits.
    let mid = instance
        .start_mid("idle", &dir.path().join("idle"), true)
        .await
        .expect("MID");
    mid.shutdown().await.expect("stops");
    let out = queued(
        &instance.api,
        &CommandAction::on("idle", "/bin/echo", &["x"]),
    )
    .await;
    let record = instance.api.cancel_record(&out).await.expect("cancel");
    assert_eq!(record.state, State::Cancelled);
    assert!(
        instance.api.cancel_record("no-such-id").await.is_err(),
        "an unknown id is 404"
    );
    instance.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_that_lost_its_lease_stops_the_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_with(
        openmid_instance::config::InstanceConfig {
            data_dir: dir.path().join("instance"),
            listen: loopback_any_port(),
            heartbeat_ms: 300,
            ..Default::default()
        },
        None,
    )
    .await
    .expect("instance");
    let proxy = openmid_testkit::ConnectProxy::start().await.expect("proxy");
    let proxy_addr = proxy.addr;
    let token = instance.auto_validating_token().await.expect("token");
    let mut config = instance.mid_config("cut", &dir.path().join("cut"), Some(token));
    config.proxy = Some(proxy.url());
    let table: PolicyConfig = toml::from_str(POLICY).expect("policy parses");
    config.policy = EgressPolicy::new(table).expect("policy compiles");
    let mut mid = openmid_mid::start(config).await.expect("MID starts");
    assert!(
        mid.wait_for_status(MidStatus::Up, Duration::from_secs(20))
            .await
    );
    let mut long = CommandAction::on("cut", "/bin/sh", &["-c", "sleep 294.5 & wait"]);
    long.at_most_once = true;
    let api = &instance.api;
    let id = queued(api, &long).await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            processes_with("sleep 294.5").len() == 2
        })
        .await,
        "it runs"
    );
    // The network to the instance goes: the MID is declared gone and the job's lease
    // ends (at most once: it is not run elsewhere) while the command still runs here.
    proxy.stop();
    drop(proxy);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            api.get_record(&id)
                .await
                .is_ok_and(|r| r.state == State::Error)
        })
        .await,
        "the lease ended on the instance"
    );
    assert_eq!(
        processes_with("sleep 294.5").len(),
        2,
        "still running, cut off"
    );
    let mut back = None;
    for _ in 0..50 {
        match openmid_testkit::ConnectProxy::start_on(proxy_addr).await {
            Ok(p) => {
                back = Some(p);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let _back = back.expect("the proxy comes back on its port");
    // Back in touch, the MID hears the lease is gone and stops the run.
    assert!(
        wait_until(Duration::from_secs(30), || async {
            processes_with("sleep 294.5").is_empty()
        })
        .await,
        "the command was stopped when the MID learnt its lease was lost"
    );
    let r = api.get_record(&id).await.expect("get");
    assert_eq!(
        r.state,
        State::Error,
        "the lapsed at-most-once job stays failed"
    );
    mid.shutdown().await.expect("stops");
    instance.shutdown().await;
}
