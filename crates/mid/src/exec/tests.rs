//! Runs of real processes: output, exit codes and signals, stdin, the cleared
//! environment, the working directory, stopping the whole group (checked in `/proc`),
//! the output cap, and memory staying flat while 100 MB stream through.

use super::group::live_members;
use super::*;
use crate::policy::Allowed;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn spec(program: &str, args: &[&str], timeout: Duration) -> CommandSpec {
    let allowed = Allowed {
        timeout,
        rule: "policy.command.programs[0]".into(),
        cwd: None,
    };
    CommandSpec::approved(
        program,
        args.iter().map(|a| a.to_string()).collect(),
        &allowed,
    )
}

fn sh(script: &str, timeout: Duration) -> CommandSpec {
    spec("/bin/sh", &["-c", script], timeout)
}

fn quick() -> ExecOptions {
    ExecOptions {
        flush_interval: Duration::from_millis(20),
        kill_grace: Duration::from_millis(500),
        ..ExecOptions::default()
    }
}

async fn run_collect(spec: CommandSpec, options: &ExecOptions) -> (Outcome, Vec<OutputChunk>) {
    let mut sink = Vec::new();
    let outcome = run(spec, options, &mut sink, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (outcome, sink)
}

fn text(chunks: &[OutputChunk], stream: Stream) -> String {
    let mut bytes = Vec::new();
    for chunk in chunks.iter().filter(|c| c.stream == stream) {
        if let ChunkBody::Data(d) = &chunk.body {
            bytes.extend_from_slice(d);
        }
    }
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{e}"))
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn output_and_exit_code_come_back() {
    let (outcome, chunks) = run_collect(sh("echo hello; exit 3", 10 * SECOND), &quick()).await;
    assert_eq!(text(&chunks, Stream::Stdout), "hello\n");
    assert_eq!(outcome.exit, Exit::Code { code: 3 });
    assert_eq!(outcome.ended_by, EndedBy::Exit);
    assert!(!outcome.succeeded() && !outcome.strays_stopped);
    assert_eq!(outcome.stdout.seen_bytes, 6);
    assert!(outcome.stdout.complete && outcome.stderr.complete);
    assert!(outcome.ended_at_ms >= outcome.started_at_ms);

    let (outcome, chunks) = run_collect(spec("/bin/true", &[], 10 * SECOND), &quick()).await;
    assert!(outcome.succeeded());
    assert!(chunks.is_empty());
}

#[tokio::test]
async fn stdout_and_stderr_interleave_by_seq() {
    let script =
        "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; sleep 0.2; echo err2 >&2";
    let (_, chunks) = run_collect(sh(script, 10 * SECOND), &quick()).await;
    let seen: Vec<(Stream, String)> = chunks
        .iter()
        .map(|c| match &c.body {
            ChunkBody::Data(d) => (c.stream, String::from_utf8_lossy(d).into_owned()),
            ChunkBody::Truncated { .. } => panic!("no cap was reached"),
        })
        .collect();
    let expected = [
        (Stream::Stdout, "out1\n"),
        (Stream::Stderr, "err1\n"),
        (Stream::Stdout, "out2\n"),
        (Stream::Stderr, "err2\n"),
    ]
    .map(|(s, t)| (s, t.to_string()));
    assert_eq!(seen, expected);
    let seqs: Vec<u64> = chunks.iter().map(|c| c.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn stdin_is_passed_then_closed() {
    let spec = spec("/bin/cat", &[], 10 * SECOND).with_stdin(b"line one\nline two\n".to_vec());
    let (outcome, chunks) = run_collect(spec, &quick()).await;
    assert!(outcome.succeeded(), "cat ends because stdin was closed");
    assert_eq!(text(&chunks, Stream::Stdout), "line one\nline two\n");

    // Without stdin the program reads /dev/null.
    let (outcome, chunks) = run_collect(spec_cat(), &quick()).await;
    assert!(outcome.succeeded());
    assert!(chunks.is_empty());
}

fn spec_cat() -> CommandSpec {
    spec("/bin/cat", &[], 10 * SECOND)
}

#[tokio::test]
async fn the_environment_is_only_what_the_job_gives() {
    assert!(
        std::env::var_os("PATH").is_some(),
        "the test process has a PATH"
    );
    let env = BTreeMap::from([("ONLY".to_string(), "1".to_string())]);
    let (_, chunks) = run_collect(
        spec("/usr/bin/env", &[], 10 * SECOND).with_env(env.clone()),
        &quick(),
    )
    .await;
    assert_eq!(text(&chunks, Stream::Stdout), "ONLY=1\n");

    let (_, chunks) = run_collect(
        spec("/usr/bin/env", &[], 10 * SECOND)
            .with_env(env)
            .with_minimal_path(),
        &quick(),
    )
    .await;
    let mut lines: Vec<String> = text(&chunks, Stream::Stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        vec!["ONLY=1".to_string(), format!("PATH={MINIMAL_PATH}")]
    );
}

#[tokio::test]
async fn the_working_directory_is_used() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let resolved = std::fs::canonicalize(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut spec = spec("/bin/pwd", &[], 10 * SECOND);
    spec.cwd = Some(resolved.clone());
    let (_, chunks) = run_collect(spec, &quick()).await;
    assert_eq!(
        text(&chunks, Stream::Stdout),
        format!("{}\n", resolved.display())
    );
}

#[tokio::test]
async fn a_signal_is_reported_by_number_and_name() {
    let (outcome, _) = run_collect(sh("kill -TERM $$", 10 * SECOND), &quick()).await;
    assert_eq!(
        outcome.exit,
        Exit::Signal {
            number: 15,
            name: "SIGTERM".into()
        }
    );
    assert_eq!(outcome.ended_by, EndedBy::Exit);
}

/// Runs `script` (which must print its `$$` first) on a task, returns the group id once
/// printed, the cancel token and the task.
async fn start_group(
    script: &str,
    timeout: Duration,
) -> (
    libc::pid_t,
    CancellationToken,
    tokio::task::JoinHandle<Result<Outcome, ExecError>>,
) {
    let (mut tx, mut rx) = mpsc::channel::<OutputChunk>(16);
    let cancel = CancellationToken::new();
    let spec = sh(script, timeout);
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let result = run(spec, &quick(), &mut tx, &cancel).await;
            drop(tx);
            result
        }
    });
    let first = tokio::time::timeout(10 * SECOND, rx.recv())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no output"));
    let ChunkBody::Data(data) = first.body else {
        panic!("no pid")
    };
    let pgid: libc::pid_t = String::from_utf8_lossy(&data)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    // Keep draining so the run is never blocked on the sink.
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    // The two sleeps and the shell.
    wait_for(|| members(pgid) >= 3).await;
    (pgid, cancel, task)
}

fn members(pgid: libc::pid_t) -> usize {
    live_members(pgid).unwrap_or_else(|e| panic!("{e}")).len()
}

async fn wait_for(ok: impl Fn() -> bool) {
    for _ in 0..250 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached in 5 s");
}

const TWO_SLEEPS: &str = "echo $$; sleep 300 & sleep 300 & wait";

#[tokio::test]
async fn a_timeout_stops_the_whole_group() {
    let (pgid, _cancel, task) = start_group(TWO_SLEEPS, Duration::from_millis(600)).await;
    let outcome = task
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.ended_by, EndedBy::Timeout);
    assert_eq!(
        outcome.exit,
        Exit::Signal {
            number: 15,
            name: "SIGTERM".into()
        }
    );
    assert_eq!(members(pgid), 0, "nothing of group {pgid} survives");
}

#[tokio::test]
async fn a_cancel_stops_the_whole_group() {
    let (pgid, cancel, task) = start_group(TWO_SLEEPS, 60 * SECOND).await;
    cancel.cancel();
    let outcome = task
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.ended_by, EndedBy::Cancelled);
    assert!(outcome.duration_ms < 10_000);
    assert_eq!(members(pgid), 0, "nothing of group {pgid} survives");
}

#[tokio::test]
async fn members_ignoring_sigterm_get_sigkill_after_the_grace() {
    let script = "trap '' TERM; echo $$; sleep 300 & sleep 300 & wait";
    let (pgid, cancel, task) = start_group(script, 60 * SECOND).await;
    cancel.cancel();
    let outcome = task
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        outcome.exit,
        Exit::Signal {
            number: 9,
            name: "SIGKILL".into()
        }
    );
    assert!(outcome.duration_ms >= 500, "the grace was given");
    assert_eq!(members(pgid), 0);
}

#[tokio::test]
async fn dropping_the_run_stops_the_whole_group() {
    let (pgid, _cancel, task) = start_group(TWO_SLEEPS, 60 * SECOND).await;
    task.abort();
    let _ = task.await;
    wait_for(|| members(pgid) == 0).await;
}

#[tokio::test]
async fn background_jobs_left_behind_are_stopped() {
    // The shell exits at once; the sleep would hold stdout open for five minutes.
    let (outcome, chunks) = run_collect(sh("echo $$; sleep 300 &", 60 * SECOND), &quick()).await;
    assert_eq!(outcome.ended_by, EndedBy::Exit);
    assert_eq!(outcome.exit, Exit::Code { code: 0 });
    assert!(outcome.strays_stopped);
    assert!(outcome.duration_ms < 10_000);
    let pgid: libc::pid_t = text(&chunks, Stream::Stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(members(pgid), 0);
}

/// Counts what it gets without keeping it; sleeps now and then.
#[derive(Default)]
struct CountingSink {
    data_bytes: u64,
    chunks: u64,
    max_chunk: usize,
    last: Option<OutputChunk>,
    peak_rss_kib: u64,
    slow: bool,
}

impl OutputSink for CountingSink {
    async fn chunk(&mut self, chunk: OutputChunk) -> Result<(), SinkClosed> {
        self.chunks += 1;
        if let ChunkBody::Data(d) = &chunk.body {
            self.data_bytes += d.len() as u64;
            self.max_chunk = self.max_chunk.max(d.len());
        }
        if self.slow && self.chunks.is_multiple_of(16) {
            self.peak_rss_kib = self.peak_rss_kib.max(rss_kib());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.last = Some(chunk);
        Ok(())
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_else(|e| panic!("{e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS"))
}

#[tokio::test]
async fn output_past_the_cap_is_counted_and_marked() {
    let options = ExecOptions {
        max_output_bytes: 1_000_000,
        ..quick()
    };
    let mut sink = CountingSink::default();
    let spec = spec(
        "/usr/bin/head",
        &["-c", "10000000", "/dev/zero"],
        30 * SECOND,
    );
    let outcome = run(spec, &options, &mut sink, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.succeeded(), "the process kept running to its end");
    assert_eq!(sink.data_bytes, 1_000_000);
    let last = sink.last.unwrap_or_else(|| panic!("no chunks"));
    assert_eq!(
        last.body,
        ChunkBody::Truncated {
            dropped_bytes: 9_000_000
        }
    );
    assert_eq!(last.offset, 1_000_000);
    assert_eq!(
        outcome.stdout,
        StreamTotals {
            seen_bytes: 10_000_000,
            kept_bytes: 1_000_000,
            dropped_bytes: 9_000_000,
            complete: true,
        }
    );
}

#[tokio::test]
async fn a_hundred_megabytes_stream_through_in_constant_memory() {
    let options = ExecOptions {
        max_output_bytes: u64::MAX,
        ..quick()
    };
    let before = rss_kib();
    let mut sink = CountingSink {
        slow: true,
        ..CountingSink::default()
    };
    let spec = spec(
        "/usr/bin/head",
        &["-c", "100000000", "/dev/zero"],
        120 * SECOND,
    );
    let outcome = run(spec, &options, &mut sink, &CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let after = rss_kib();
    assert!(outcome.succeeded());
    assert_eq!(sink.data_bytes, 100_000_000);
    assert_eq!(outcome.stdout.kept_bytes, 100_000_000);
    assert!(sink.max_chunk <= options.chunk_bytes);
    let growth_kib = sink.peak_rss_kib.max(after).saturating_sub(before);
    assert!(
        growth_kib < 40 * 1024,
        "RSS grew by {growth_kib} KiB while 100 MB streamed"
    );
}

#[tokio::test]
async fn a_closed_sink_stops_the_process() {
    let (tx, rx) = mpsc::channel::<OutputChunk>(1);
    drop(rx);
    let mut tx = tx;
    let started = std::time::Instant::now();
    let result = run(
        sh("while :; do echo y; sleep 0.01; done", 60 * SECOND),
        &quick(),
        &mut tx,
        &CancellationToken::new(),
    )
    .await;
    assert!(matches!(result, Err(ExecError::SinkClosed)), "{result:?}");
    assert!(started.elapsed() < 10 * SECOND);
}

#[tokio::test]
async fn what_cannot_start_says_why_without_secrets() {
    let secret = "s3cret-value";
    let env = BTreeMap::from([("TOKEN".to_string(), secret.to_string())]);
    let with_secrets = |spec: CommandSpec| spec.with_env(env.clone()).with_stdin(secret.into());
    let mut sink = Vec::new();
    let cancel = CancellationToken::new();

    let missing = with_secrets(spec("/nonexistent/tool", &[], SECOND));
    assert!(!format!("{missing:?}").contains(secret));
    let error = run(missing, &quick(), &mut sink, &cancel).await;
    assert!(
        matches!(&error, Err(ExecError::ProgramNotFound { program }) if program == Path::new("/nonexistent/tool")),
        "{error:?}"
    );

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let plain = dir.path().join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap_or_else(|e| panic!("{e}"));
    let plain_str = plain.to_str().unwrap_or_else(|| panic!("path"));
    let error = run(
        with_secrets(spec(plain_str, &[], SECOND)),
        &quick(),
        &mut sink,
        &cancel,
    )
    .await;
    assert!(
        matches!(&error, Err(ExecError::NotExecutable { .. })),
        "{error:?}"
    );

    let mut gone_cwd = with_secrets(spec("/bin/true", &[], SECOND));
    gone_cwd.cwd = Some(dir.path().join("gone"));
    let error = run(gone_cwd, &quick(), &mut sink, &cancel).await;
    let Err(error) = error else {
        panic!("ran in a missing directory")
    };
    assert!(matches!(error, ExecError::CwdMissing { .. }), "{error:?}");
    for shown in [format!("{error}"), format!("{error:?}")] {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(sink.is_empty());
}

#[tokio::test]
async fn pending_output_reaches_a_follower_before_the_chunk_fills() {
    let (mut tx, mut rx) = mpsc::channel::<OutputChunk>(16);
    let options = ExecOptions {
        flush_interval: Duration::from_millis(100),
        ..quick()
    };
    let task = tokio::spawn(async move {
        let spec = sh("printf partial; sleep 3; echo done", 30 * SECOND);
        run(spec, &options, &mut tx, &CancellationToken::new()).await
    });
    let first = tokio::time::timeout(2 * SECOND, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing within 2 s of a 3 s run"))
        .unwrap_or_else(|| panic!("no output"));
    assert_eq!(
        first.body,
        ChunkBody::Data(bytes::Bytes::from_static(b"partial"))
    );
    while rx.recv().await.is_some() {}
    let outcome = task
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.succeeded());
    assert_eq!(outcome.survivors, 0);
}
