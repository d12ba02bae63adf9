//! A command's output streamed while it runs: a follower sees lines before the command
//! ends, 100 MB pass through a MID process in bounded memory, and `ctl run command`
//! prints the output and exits with the command's code.

use crate::command::{MID, POLICY};
use crate::support::up_and_heartbeated;
use openmid_client::{ActionOutcome, ApiClient};
use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_proto::api::CommandAction;
use openmid_proto::command::{CommandExit, CommandResponse};
use openmid_proto::command_output::{OutputEnd, OutputLine, OutputStream};
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_testkit::{MidProcess, TestInstance, loopback_any_port};
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_openmid");

async fn instance(dir: &Path) -> TestInstance {
    TestInstance::start_in(&dir.join("instance"), loopback_any_port(), None)
        .await
        .expect("instance")
}

fn policy() -> EgressPolicy {
    let table: PolicyConfig = toml::from_str(POLICY).expect("policy parses");
    EgressPolicy::new(table).expect("policy compiles")
}

async fn in_process_mid(instance: &TestInstance, dir: &Path) -> openmid_mid::RunningMid {
    let token = instance.auto_validating_token().await.expect("token");
    let mut config = instance.mid_config(MID, &dir.join("mid"), Some(token));
    config.policy = policy();
    let mut mid = openmid_mid::start(config).await.expect("MID starts");
    assert!(
        mid.wait_for_status(MidStatus::Up, Duration::from_secs(20))
            .await,
        "MID is up"
    );
    mid
}

async fn submit(api: &ApiClient, program: &str, args: &[&str]) -> String {
    let action = CommandAction {
        mid: Some(MID.into()),
        program: program.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        ..CommandAction::default()
    };
    match api
        .command_action(&action, Duration::ZERO)
        .await
        .expect("accepted")
    {
        ActionOutcome::Pending(p) => p.output_id,
        ActionOutcome::Done(r) => r.output_id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_the_first_lines_while_the_command_still_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = instance(dir.path()).await;
    let mid = in_process_mid(&instance, dir.path()).await;
    let api = &instance.api;

    let script = "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.2; done; echo oops >&2; exit 3";
    let id = submit(api, "/bin/sh", &["-c", script]).await;
    let mut lines = api.follow_output(&id, None, true).await.expect("follows");
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut state_at_first_line = None;
    let mut seqs = Vec::new();
    let end: OutputEnd = loop {
        let line = lines.next().await.expect("a line").expect("not ended yet");
        match &line {
            OutputLine::Chunk { stream, seq, .. } => {
                if state_at_first_line.is_none() {
                    state_at_first_line = Some(api.get_record(&id).await.expect("record").state);
                }
                seqs.push(*seq);
                let bytes = line.bytes().expect("bytes");
                match stream {
                    OutputStream::Stdout => stdout.extend(bytes),
                    OutputStream::Stderr => stderr.extend(bytes),
                    OutputStream::Rows => panic!("a command has no rows"),
                }
            }
            OutputLine::End { end } => break end.clone(),
            other => panic!("unexpected line {other:?}"),
        }
    };
    assert_eq!(
        state_at_first_line,
        Some(State::Processing),
        "the first line arrived while the command ran"
    );
    assert_eq!(
        String::from_utf8_lossy(&stdout),
        "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n"
    );
    assert_eq!(String::from_utf8_lossy(&stderr), "oops\n");
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "no gaps");
    assert_eq!(end.state, State::Processed);
    assert_eq!(end.exit, Some(CommandExit::Code { code: 3 }));
    assert!(lines.next().await.expect("clean end").is_none());

    // Without follow: what is stored, from after a given seq, then the end line.
    let mut again = api
        .follow_output(&id, Some(seqs[0]), false)
        .await
        .expect("reads");
    let mut rest = Vec::new();
    while let Some(line) = again.next().await.expect("a line") {
        rest.push(line);
    }
    assert_eq!(
        rest.len(),
        seqs.len(),
        "all but the first chunk, then the end"
    );
    assert!(matches!(rest.last(), Some(OutputLine::End { .. })));

    // The result still carries the output (within max_output_bytes).
    let result = api
        .get_action::<CommandResponse>(&id, Duration::from_secs(5))
        .await
        .expect("result");
    let ActionOutcome::Done(result) = result else {
        panic!("finished")
    };
    let response = result.response.expect("response");
    assert!(response.stdout.text.starts_with("line 1\n"));

    // Bad ids and queries are named.
    let missing = api.follow_output("nope", None, true).await;
    assert!(
        matches!(
            &missing,
            Err(openmid_client::ClientError::Api { status: 404, .. })
        ),
        "{:?}",
        missing.err()
    );
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_output_streams_through_a_mid_process_in_bounded_memory() {
    const TOTAL: u64 = 100_000_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = instance(dir.path()).await;
    let token = instance.auto_validating_token().await.expect("token");
    let mut config = instance.mid_config(MID, &dir.path().join("mid"), Some(token));
    config.policy = policy();
    let process = MidProcess::spawn(Path::new(BIN), &config).expect("MID process starts");
    let api = &instance.api;
    assert!(up_and_heartbeated(api, MID).await, "MID is up");

    let idle = openmid_testkit::bodies::peak_rss_bytes(Some(process.pid())).unwrap_or(0);
    let started = std::time::Instant::now();
    let id = submit(
        api,
        "/usr/bin/head",
        &["-c", &TOTAL.to_string(), "/dev/zero"],
    )
    .await;
    let mut lines = api.follow_output(&id, None, true).await.expect("follows");
    let mut received = 0u64;
    let mut next_offset = 0u64;
    let end = loop {
        match lines.next().await.expect("a line").expect("not ended yet") {
            line @ OutputLine::Chunk { .. } => {
                let OutputLine::Chunk { offset, .. } = &line else {
                    unreachable!()
                };
                assert_eq!(*offset, next_offset, "chunks in order, none missing");
                let n = line.bytes().expect("bytes").len() as u64;
                next_offset += n;
                received += n;
            }
            OutputLine::End { end } => break end,
            other => panic!("unexpected line {other:?}"),
        }
    };
    let elapsed = started.elapsed();
    let peak = openmid_testkit::bodies::peak_rss_bytes(Some(process.pid())).expect("VmHWM");
    eprintln!(
        "100 MB streamed in {:.1} s ({:.1} MB/s); MID peak RSS {:.1} MB ({:.1} MB before the command)",
        elapsed.as_secs_f64(),
        TOTAL as f64 / 1e6 / elapsed.as_secs_f64(),
        peak as f64 / 1e6,
        idle as f64 / 1e6
    );
    assert_eq!(received, TOTAL, "every byte reached the follower");
    assert_eq!(end.exit, Some(CommandExit::Code { code: 0 }));
    // What streaming adds, not what the (debug) binary's own pages take, which grows
    // with every probe: the output must pass through bounded buffers.
    let growth = peak.saturating_sub(idle);
    assert!(
        growth < 16_000_000,
        "MID RSS grew by {growth} bytes streaming 100 MB (peak {peak}, before {idle})"
    );
    drop(process);
    instance.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_run_command_prints_the_output_and_exits_with_its_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = instance(dir.path()).await;
    let mid = in_process_mid(&instance, dir.path()).await;
    let ctl = |args: Vec<String>| {
        tokio::process::Command::new(BIN)
            .arg("ctl")
            .args(args)
            .env("OPENMID_URL", &instance.running.url)
            .env("OPENMID_TOKEN", instance.token.expose())
            .env("OPENMID_CA", &instance.running.cert_path)
            .output()
    };
    let args = |rest: &[&str]| -> Vec<String> {
        ["run", "command", "--mid", MID]
            .iter()
            .chain(rest)
            .map(|s| s.to_string())
            .collect()
    };
    let out = ctl(args(&[
        "--",
        "/bin/sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]))
    .await
    .expect("ctl runs");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"));

    let script = dir.path().join("s.sh");
    std::fs::write(&script, "echo from a script\n").expect("script");
    let script = script.display().to_string();
    let out = ctl(args(&["--script", &script, "--", "/bin/sh"]))
        .await
        .expect("ctl runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from a script\n");

    let out = ctl(args(&[
        "--timeout-ms",
        "300",
        "--",
        "/bin/sh",
        "-c",
        "sleep 30",
    ]))
    .await
    .expect("ctl runs");
    assert_eq!(out.status.code(), Some(124), "{out:?}");

    let out = ctl(args(&["--", "/bin/sh", "-c", "kill -TERM $$"]))
        .await
        .expect("ctl runs");
    assert_eq!(out.status.code(), Some(128 + 15), "{out:?}");
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
}
