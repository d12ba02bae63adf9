//! `openmid bench command`: what running a program through a MID costs against running
//! the same program on this host in the same run — the round trip of a trivial command
//! (sequential and concurrent), the rate at which a large stdout streams through the
//! MID's Command probe, and the MID process's peak memory meanwhile.
//!
//! Both sides spawn through tokio's process API with the environment cleared and the
//! output collected, as the probe does, so the difference is the queue, the TLS hops
//! and the probe's bookkeeping, not a different way of starting processes.

use super::{mb, percentile, setup};
use anyhow::{Context, Result, bail};
use openmid_client::{ActionOutcome, ApiClient};
use openmid_mid::config::PoolSizes;
use openmid_proto::api::CommandAction;
use openmid_proto::command::{CommandResponse, MAX_OUTPUT_BYTES};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt as _;

const MID_NAME: &str = "bench-cmd";
/// The trivial command: prints one short line, so both sides also collect output.
const PROGRAM: &str = "/bin/echo";
const ARG: &str = "x";
/// The streaming command: `head -c BYTES /dev/zero`.
const HEAD: &str = "/usr/bin/head";
/// Longest a streaming run may take, on either side (a slow debug build included).
const STREAM_LIMIT: Duration = Duration::from_secs(3600);

/// What the bench MID may run: exactly the two commands measured.
const POLICY: &str = r#"
[[command.programs]]
path = "/bin/echo"
args = ["x"]

[[command.programs]]
path = "/usr/bin/head"
args = ["-c", "*", "/dev/zero"]
max_runtime_secs = 3600
"#;

/// Flags of `openmid bench command`.
#[derive(clap::Args)]
pub(super) struct CommandArgs {
    /// Sequential runs of `/bin/echo x` measured each way (after a warm-up).
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Concurrent callers in the throughput phase (also the MID's interactive pool, so
    /// no call waits for a worker).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Length of each throughput phase, in seconds.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Bytes streamed by `head -c BYTES /dev/zero`, through the MID and locally: a
    /// number with an optional suffix K, M, G (powers of 1000) or Ki, Mi, Gi (of 1024).
    #[arg(long, default_value = "1G", value_name = "BYTES", value_parser = parse_bytes)]
    stream_bytes: u64,
    /// Bytes of the streamed stdout the MID keeps in the result (at most 16Mi); it
    /// reads, counts and drops the rest, so the rate measured is what the MID reads.
    #[arg(long, default_value = "1Mi", value_name = "BYTES", value_parser = parse_bytes)]
    stream_keep_bytes: u64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// `1000`, `64K`, `1G`, `16Mi`: a byte count for a flag (clap names the flag when this
/// refuses a value).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let unit: u64 = match suffix {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => {
            return Err(format!(
                "unknown suffix `{other}` (use K, M, G, Ki, Mi or Gi)"
            ));
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a byte count such as 1000, 64K or 1G"))?;
    n.checked_mul(unit)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// One run of the trivial command, on this host or through the MID.
#[derive(Clone)]
enum Runner {
    Local,
    Mid(ApiClient, Arc<CommandAction>),
}

impl Runner {
    /// Whether the run exited 0 and printed what `echo x` prints.
    async fn run(&self) -> bool {
        match self {
            Runner::Local => tokio::process::Command::new(PROGRAM)
                .arg(ARG)
                .env_clear()
                .stdin(Stdio::null())
                .output()
                .await
                .is_ok_and(|o| o.status.success() && o.stdout == b"x\n"),
            Runner::Mid(api, action) => matches!(
                api.command_action(action, Duration::from_secs(30)).await,
                Ok(ActionOutcome::Done(r))
                    if r.response.as_ref().is_some_and(|x| x.succeeded() && x.stdout.text == "x\n")
            ),
        }
    }

    /// Milliseconds of each of `n` runs one after another, sorted.
    async fn sequential(&self, n: usize) -> Result<Vec<f64>> {
        super::sequential(n, &format!("run of {PROGRAM} {ARG}"), || self.run()).await
    }

    /// Runs per second with `concurrency` callers for `seconds`, and failures.
    async fn throughput(&self, concurrency: usize, seconds: f64) -> (f64, u64) {
        let runner = self.clone();
        super::load(concurrency, seconds, move || {
            let runner = runner.clone();
            async move { runner.run().await }
        })
        .await
    }
}

/// `head -c BYTES /dev/zero > /dev/null` on this host: seconds taken.
async fn local_stream_to_null(bytes: u64) -> Result<f64> {
    let started = Instant::now();
    let status = tokio::process::Command::new(HEAD)
        .args(["-c", &bytes.to_string(), "/dev/zero"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .await
        .with_context(|| format!("running {HEAD} locally"))?;
    if !status.success() {
        bail!("{HEAD} -c {bytes} /dev/zero failed locally: {status}");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The same through a pipe this process reads and discards, as the probe reads it:
/// seconds taken. The gap to [`local_stream_to_null`] is the cost of a pipe at all.
async fn local_stream_through_pipe(bytes: u64) -> Result<f64> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(HEAD)
        .args(["-c", &bytes.to_string(), "/dev/zero"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {HEAD} locally"))?;
    let mut stdout = child.stdout.take().context("the child's stdout")?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = 0u64;
    loop {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        seen += n as u64;
    }
    let status = child.wait().await?;
    if !status.success() || seen != bytes {
        bail!("{HEAD} through a pipe: {status}, {seen} of {bytes} bytes");
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The streaming run through the MID: its response and the seconds from the API call to
/// the result. Waits in slices of the instance's longest `?wait`, then asks again.
async fn mid_stream(api: &ApiClient, action: &CommandAction) -> Result<(CommandResponse, f64)> {
    let slice = Duration::from_secs(60);
    let started = Instant::now();
    let mut outcome = api
        .command_action(action, slice)
        .await
        .context("starting the streaming command")?;
    loop {
        match outcome {
            ActionOutcome::Done(r) => {
                let secs = started.elapsed().as_secs_f64();
                let Some(response) = r.response else {
                    bail!(
                        "the streaming command failed on the MID: {}",
                        r.error.as_deref().unwrap_or("no response")
                    );
                };
                return Ok((response, secs));
            }
            ActionOutcome::Pending(p) => {
                if started.elapsed() > STREAM_LIMIT {
                    bail!(
                        "the streaming command is still {} after {STREAM_LIMIT:?}",
                        p.state
                    );
                }
                outcome = api
                    .get_action(&p.output_id, slice)
                    .await
                    .context("waiting for the streaming command")?;
            }
        }
    }
}

/// Peak resident memory of a process (`VmHWM`), in bytes: the high-water mark the
/// kernel keeps, so a spike between two samples still counts.
pub(super) fn rss_high_water(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn per_s(amount: f64, secs: f64) -> f64 {
    if secs > 0.0 { amount / secs } else { 0.0 }
}

pub(super) async fn run(args: CommandArgs) -> Result<ExitCode> {
    if args.requests == 0 || args.concurrency == 0 {
        bail!("--requests and --concurrency must be at least 1");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 3600.0) {
        bail!("--seconds must be more than 0 and at most 3600");
    }
    if args.stream_bytes == 0 || args.stream_bytes > 1_000_000_000_000 {
        bail!("--stream-bytes must be at least 1 and at most 1000G");
    }
    if args.stream_keep_bytes > MAX_OUTPUT_BYTES {
        bail!("--stream-keep-bytes must be at most {MAX_OUTPUT_BYTES} (16Mi), the probe's cap");
    }
    let concurrency = u32::try_from(args.concurrency)
        .ok()
        .filter(|c| *c <= 1024)
        .context("--concurrency must be at most 1024")?;
    for program in [PROGRAM, HEAD] {
        if !std::path::Path::new(program).exists() {
            bail!("{program} is not on this host; the benchmark runs it on both sides");
        }
    }
    let setup = setup()?;
    let api = setup.api.clone();
    let mid = setup
        .spawn_mid(
            MID_NAME,
            POLICY,
            PoolSizes {
                interactive: concurrency,
                ..PoolSizes::default()
            },
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mid_rss_idle = mb(mid.rss_bytes());
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let (pid, stop) = (mid.pid(), stop.clone());
        tokio::spawn(async move {
            let mut max = 0u64;
            while !stop.is_cancelled() {
                max = max.max(openmid_local::process::rss_bytes(pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            max
        })
    };

    let local = Runner::Local;
    let via_mid = Runner::Mid(
        api.clone(),
        Arc::new(CommandAction::on(MID_NAME, PROGRAM, &[ARG])),
    );
    let warm = args.requests.min(20);
    eprintln!(
        "sequential: {} runs of {PROGRAM} {ARG} each way",
        args.requests
    );
    local.sequential(warm).await?;
    via_mid.sequential(warm).await?;
    let local_lat = local.sequential(args.requests).await?;
    let mid_lat = via_mid.sequential(args.requests).await?;

    eprintln!(
        "throughput: {} callers for {} s each way",
        args.concurrency, args.seconds
    );
    let (local_rps, local_failed) = local.throughput(args.concurrency, args.seconds).await;
    let (mid_rps, mid_failed) = via_mid.throughput(args.concurrency, args.seconds).await;

    eprintln!(
        "stream: {HEAD} -c {} /dev/zero, the MID keeping {} bytes",
        args.stream_bytes, args.stream_keep_bytes
    );
    let null_secs = local_stream_to_null(args.stream_bytes).await?;
    let pipe_secs = local_stream_through_pipe(args.stream_bytes).await?;
    let mut stream = CommandAction::on(
        MID_NAME,
        HEAD,
        &["-c", &args.stream_bytes.to_string(), "/dev/zero"],
    );
    stream.max_output_bytes = Some(args.stream_keep_bytes);
    let (streamed, mid_secs) = mid_stream(&api, &stream).await?;
    if !streamed.succeeded() || streamed.stdout.bytes != args.stream_bytes {
        bail!(
            "the streaming command through the MID ended {:?} {:?} having read {} of {} bytes",
            streamed.ended_by,
            streamed.exit,
            streamed.stdout.bytes,
            args.stream_bytes
        );
    }
    stop.cancel();
    let sampled = sampler.await.unwrap_or(0);
    let mid_rss_peak = mb(rss_high_water(mid.pid()).map(|h| h.max(sampled)));

    let bytes = args.stream_bytes as f64;
    let (mid_bps, null_bps, pipe_bps) = (
        per_s(bytes, mid_secs),
        per_s(bytes, null_secs),
        per_s(bytes, pipe_secs),
    );
    // The probe's own time (spawn to both streams drained), without the queue and the
    // result's trip back: what the MID reads, apart from what it sends.
    let probe_bps = per_s(bytes, streamed.duration_ms.max(1) as f64 / 1e3);
    let stream_ratio = per_s(mid_bps, null_bps);
    let throughput_ratio = per_s(mid_rps, local_rps);
    let p = |v: &[f64], q| percentile(v, q);
    let (l50, l90, l99) = (p(&local_lat, 0.5), p(&local_lat, 0.9), p(&local_lat, 0.99));
    let (m50, m90, m99) = (p(&mid_lat, 0.5), p(&mid_lat, 0.9), p(&mid_lat, 0.99));
    let mbps = |b: f64| b / 1e6;
    let kept = streamed
        .stdout
        .bytes
        .saturating_sub(streamed.stdout.dropped_bytes);

    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(vec!["figure", "local", "via MID", "ratio / overhead"]);
    for (name, l, m) in [
        ("p50 round trip", l50, m50),
        ("p90 round trip", l90, m90),
        ("p99 round trip", l99, m99),
    ] {
        t.add_row(vec![
            format!("{name}, {PROGRAM} {ARG}"),
            format!("{l:.2} ms"),
            format!("{m:.2} ms"),
            format!("+{:.2} ms", m - l),
        ]);
    }
    t.add_row(vec![
        format!("throughput, C={}", args.concurrency),
        format!("{local_rps:.0}/s"),
        format!("{mid_rps:.0}/s"),
        format!("{:.1}%", throughput_ratio * 100.0),
    ]);
    t.add_row(vec![
        "failed runs".into(),
        local_failed.to_string(),
        mid_failed.to_string(),
        String::new(),
    ]);
    t.add_row(vec![
        format!("stream {} bytes, > /dev/null", args.stream_bytes),
        format!("{:.0} MB/s", mbps(null_bps)),
        format!("{:.0} MB/s", mbps(mid_bps)),
        format!("{:.1}%", stream_ratio * 100.0),
    ]);
    t.add_row(vec![
        "stream through a pipe read here".into(),
        format!("{:.0} MB/s", mbps(pipe_bps)),
        String::new(),
        format!("{:.1}%", per_s(mid_bps, pipe_bps) * 100.0),
    ]);
    t.add_row(vec![
        "stream, the probe's own time".into(),
        String::new(),
        format!("{:.0} MB/s", mbps(probe_bps)),
        String::new(),
    ]);
    t.add_row(vec![
        "stream: kept / dropped by the MID".into(),
        String::new(),
        format!("{kept} / {} bytes", streamed.stdout.dropped_bytes),
        String::new(),
    ]);
    t.add_row(vec![
        "MID RSS idle / peak".into(),
        String::new(),
        format!("{mid_rss_idle:.1} / {mid_rss_peak:.1} MB"),
        String::new(),
    ]);
    println!("{t}");
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "requests": args.requests,
                "concurrency": args.concurrency,
                "rtt_p50_ms": m50, "rtt_p90_ms": m90, "rtt_p99_ms": m99,
                "local_p50_ms": l50, "local_p90_ms": l90, "local_p99_ms": l99,
                "p50_overhead_ms": m50 - l50,
                "throughput_per_s": mid_rps,
                "local_throughput_per_s": local_rps,
                "throughput_ratio": throughput_ratio,
                "mid_failed": mid_failed,
                "local_failed": local_failed,
                "stream_bytes": args.stream_bytes,
                "stream_kept_bytes": kept,
                "stream_mid_bytes_per_s": mid_bps,
                "stream_local_bytes_per_s": null_bps,
                "stream_local_pipe_bytes_per_s": pipe_bps,
                "stream_ratio": stream_ratio,
                "stream_probe_ms": streamed.duration_ms,
                "stream_probe_bytes_per_s": probe_bps,
                "mid_rss_idle_mb": mid_rss_idle,
                "mid_rss_peak_mb": mid_rss_peak,
            })
        );
    }
    drop(mid);
    drop(setup);
    Ok(if mid_failed == 0 && local_failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_counts_take_si_and_binary_suffixes() {
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_bytes("64K"), Ok(64_000));
        assert_eq!(parse_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("16Mi"), Ok(16 << 20));
        for bad in ["", "x", "1T", "-1", "1.5G", "99999999999999999999Gi"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }
}
