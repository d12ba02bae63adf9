//! `openmid bench …`: whole-system measurements, run the way a user would, with the
//! figures printed as a table and (with `--json`) one JSON object on the last line.

use anyhow::{Context, Result, bail};
use openmid_local::{LocalInstance, MidProcess, TargetService, loopback_any_port, rest_output};
use openmid_mid::config::PoolSizes;
use openmid_proto::api::{ClusterKind, NewCluster, NewOutput, RecordQuery};
use openmid_proto::ecc::{EccRecord, Queue, State};
use openmid_proto::mid::MidStatus;
use openmid_proto::time::{now_ms, parse_rfc3339};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod command;

/// Flags of `openmid bench`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(clap::Subcommand)]
enum Kind {
    /// REST calls through MIDs against direct calls to the same service: latency,
    /// throughput, memory, start-up.
    Rest(RestArgs),
    /// Many simulated MIDs (light clients speaking the real protocol) long-poll one
    /// instance: its CPU and memory at idle, and how fast work reaches a random MID.
    Scale(ScaleArgs),
    /// Kill the active member of a two-MID failover cluster with jobs in flight; measure
    /// time to detect and time until every job completed on the survivor.
    Failover(FailoverArgs),
    /// A trivial command (`/bin/echo x`) through a MID against running it here, and a
    /// large stdout streamed through the MID against `head -c … > /dev/null` here;
    /// with the MID's peak memory.
    Command(command::CommandArgs),
}

#[derive(clap::Args)]
struct FailoverArgs {
    /// Rounds (a fresh pair of MID processes each).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Jobs in flight at the kill.
    #[arg(long, default_value_t = 20)]
    jobs: usize,
    /// How long each job takes at the target service, in ms.
    #[arg(long, default_value_t = 200)]
    job_ms: u64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct RestArgs {
    /// MID processes (more than one form a load-balance cluster).
    #[arg(long, default_value_t = 1)]
    mids: usize,
    /// Concurrent callers for the throughput phase.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Sequential calls measured each way (after a warm-up).
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Length of each throughput phase, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ScaleArgs {
    /// Simulated MIDs.
    #[arg(long, default_value_t = 1000)]
    mids: usize,
    /// Seconds of idle measurement.
    #[arg(long, default_value_t = 10.0)]
    idle_seconds: f64,
    /// Outputs sent to random MIDs for the pickup figures.
    #[arg(long, default_value_t = 200)]
    pickups: usize,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    match args.kind {
        Kind::Rest(a) => rest(a).await,
        Kind::Scale(a) => scale(a).await,
        Kind::Failover(a) => failover(a).await,
        Kind::Command(a) => command::run(a).await,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn mb(bytes: Option<u64>) -> f64 {
    bytes.map_or(0.0, |b| b as f64 / (1024.0 * 1024.0))
}

/// One call, direct or through the MID; true when the service answered 200.
#[derive(Clone)]
enum Caller {
    Direct(reqwest::Client, String),
    Mid(
        openmid_client::ApiClient,
        std::sync::Arc<openmid_proto::api::RestAction>,
    ),
}

impl Caller {
    async fn call(&self) -> bool {
        match self {
            Caller::Direct(http, url) => match http.get(url).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            },
            Caller::Mid(api, action) => matches!(
                api.rest_action(action, Duration::from_secs(30)).await,
                Ok(openmid_client::ActionOutcome::Done(r))
                    if r.response.as_ref().is_some_and(|x| x.status == 200)
            ),
        }
    }

    async fn sequential(&self, n: usize) -> Result<Vec<f64>> {
        sequential(n, "call", || self.call()).await
    }

    /// Calls per second with `concurrency` callers for `seconds`, and failures.
    async fn throughput(&self, concurrency: usize, seconds: f64) -> (f64, u64) {
        let caller = self.clone();
        load(concurrency, seconds, move || {
            let caller = caller.clone();
            async move { caller.call().await }
        })
        .await
    }
}

/// Milliseconds of each of `n` runs of `attempt` one after another, sorted; the first
/// failure ends the benchmark (a figure over failures would mislead).
async fn sequential<F, Fut>(n: usize, what: &str, attempt: F) -> Result<Vec<f64>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        if !attempt().await {
            bail!("a sequential {what} failed");
        }
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(ms)
}

/// Runs `attempt` over and over from `concurrency` tasks for `seconds`: successes per
/// second, and failures (a task that died counts as one).
async fn load<F, Fut>(concurrency: usize, seconds: f64, attempt: F) -> (f64, u64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let attempt = attempt.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while Instant::now() < end {
                if attempt().await {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        match t.await {
            Ok((o, f)) => {
                ok += o;
                failed += f;
            }
            Err(_) => failed += 1,
        }
    }
    (ok as f64 / started.elapsed().as_secs_f64(), failed)
}

/// What every process-based benchmark starts with.
struct Setup {
    /// This program, to start `openmid instance` / `openmid mid` from.
    bin: std::path::PathBuf,
    /// Fresh scratch directory (removed when dropped).
    dir: tempfile::TempDir,
    /// The instance, as its own process.
    instance: openmid_local::InstanceProcess,
    /// Its admin API.
    api: openmid_client::ApiClient,
}

fn setup() -> Result<Setup> {
    let bin = std::env::current_exe().context("finding this program")?;
    let dir = tempfile::Builder::new()
        .prefix("openmid-bench-")
        .tempdir()?;
    let instance = openmid_local::InstanceProcess::spawn(&bin, &dir.path().join("instance"))
        .context("starting the instance process")?;
    let api = instance.api()?;
    Ok(Setup {
        bin,
        dir,
        instance,
        api,
    })
}

async fn rest(args: RestArgs) -> Result<ExitCode> {
    if args.mids == 0 || args.concurrency == 0 || args.requests == 0 {
        bail!("--mids, --concurrency and --requests must be at least 1");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 3600.0) {
        bail!("--seconds must be more than 0 and at most 3600");
    }
    let Setup {
        bin,
        dir,
        instance,
        api,
    } = setup()?;
    let target = TargetService::start().await?;
    let mut mids = Vec::new();
    let mut start_to_up = Vec::new();
    for i in 0..args.mids {
        let name = format!("bench-mid-{i}");
        let token = openmid_local::auto_validating_token(&api).await?;
        let config = instance.mid_config(&name, &dir.path().join(&name), Some(token));
        let started = Instant::now();
        mids.push(MidProcess::spawn(&bin, &config)?);
        wait(Duration::from_secs(20), || async {
            api.get_mid(&name)
                .await
                .is_ok_and(|m| m.status == MidStatus::Up)
        })
        .await
        .with_context(|| format!("MID {name} did not come up"))?;
        start_to_up.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let agent = if args.mids == 1 {
        "mid.server.bench-mid-0".to_string()
    } else {
        api.create_cluster(&NewCluster {
            name: "bench".into(),
            kind: ClusterKind::LoadBalance,
            members: (0..args.mids).map(|i| format!("bench-mid-{i}")).collect(),
        })
        .await?;
        "mid.cluster.bench".to_string()
    };
    let url = target.url("/hello");
    let direct = Caller::Direct(reqwest::Client::builder().no_proxy().build()?, url.clone());
    let via_mid = Caller::Mid(
        api.clone(),
        std::sync::Arc::new(openmid_proto::api::RestAction::new(agent, url)),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mid_rss_idle = mb(mids[0].rss_bytes());
    let mid_anon_idle = mb(openmid_local::process::rss_anon_bytes(mids[0].pid()));
    let instance_rss_idle = mb(openmid_local::process::rss_bytes(instance.pid()));

    eprintln!("sequential: {} calls each way", args.requests);
    direct.sequential(50).await?;
    via_mid.sequential(50).await?;
    let direct_lat = direct.sequential(args.requests).await?;
    let mid_lat = via_mid.sequential(args.requests).await?;

    eprintln!(
        "throughput: {} callers for {} s each way",
        args.concurrency, args.seconds
    );
    let (direct_rps, direct_failed) = direct.throughput(args.concurrency, args.seconds).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let (mid_pid, instance_pid, stop) = (mids[0].pid(), instance.pid(), stop.clone());
        tokio::spawn(async move {
            let (mut mid_max, mut inst_max) = (0u64, 0u64);
            while !stop.is_cancelled() {
                mid_max = mid_max.max(openmid_local::process::rss_bytes(mid_pid).unwrap_or(0));
                inst_max =
                    inst_max.max(openmid_local::process::rss_bytes(instance_pid).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (mid_max, inst_max)
        })
    };
    let (mid_rps, mid_failed) = via_mid.throughput(args.concurrency, args.seconds).await;
    stop.cancel();
    let (mid_rss_load, instance_rss_load) = sampler.await.unwrap_or((0, 0));
    let (mid_rss_load, instance_rss_load) = (mb(Some(mid_rss_load)), mb(Some(instance_rss_load)));

    let p = |v: &[f64], q| percentile(v, q);
    let (d50, d90, d99) = (
        p(&direct_lat, 0.5),
        p(&direct_lat, 0.9),
        p(&direct_lat, 0.99),
    );
    let (m50, m90, m99) = (p(&mid_lat, 0.5), p(&mid_lat, 0.9), p(&mid_lat, 0.99));
    start_to_up.sort_by(|a, b| a.total_cmp(b));
    let up_ms = percentile(&start_to_up, 0.5);
    let ratio = if direct_rps > 0.0 {
        mid_rps / direct_rps
    } else {
        0.0
    };
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(vec![
            "figure",
            "direct",
            "via MID",
            "ratio / overhead",
            "target",
        ]);
    t.add_row(vec![
        "p50 latency".into(),
        format!("{d50:.2} ms"),
        format!("{m50:.2} ms"),
        format!("+{:.2} ms", m50 - d50),
        "< +1 ms".to_string(),
    ]);
    t.add_row(vec![
        "p90 latency".into(),
        format!("{d90:.2} ms"),
        format!("{m90:.2} ms"),
        format!("+{:.2} ms", m90 - d90),
        String::new(),
    ]);
    t.add_row(vec![
        "p99 latency".into(),
        format!("{d99:.2} ms"),
        format!("{m99:.2} ms"),
        format!("+{:.2} ms", m99 - d99),
        String::new(),
    ]);
    t.add_row(vec![
        format!("throughput, C={}", args.concurrency),
        format!("{direct_rps:.0}/s"),
        format!("{mid_rps:.0}/s"),
        format!("{:.1}%", ratio * 100.0),
        "≥ 30%".to_string(),
    ]);
    t.add_row(vec![
        "failed calls".into(),
        direct_failed.to_string(),
        mid_failed.to_string(),
        String::new(),
        "0".into(),
    ]);
    t.add_row(vec![
        "MID RSS idle / load".into(),
        String::new(),
        format!("{mid_rss_idle:.1} / {mid_rss_load:.1} MB"),
        String::new(),
        "≤ 15 / 40 MB".into(),
    ]);
    t.add_row(vec![
        "MID anonymous memory, idle".into(),
        String::new(),
        format!("{mid_anon_idle:.1} MB"),
        String::new(),
        String::new(),
    ]);
    t.add_row(vec![
        "instance RSS idle / load".into(),
        String::new(),
        format!("{instance_rss_idle:.1} / {instance_rss_load:.1} MB"),
        String::new(),
        String::new(),
    ]);
    t.add_row(vec![
        "MID start → up".into(),
        String::new(),
        format!("{up_ms:.0} ms"),
        String::new(),
        "≤ 200 ms".into(),
    ]);
    println!("{t}");
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "mids": args.mids,
                "concurrency": args.concurrency,
                "direct_rps": direct_rps.round(),
                "mid_rps": mid_rps.round(),
                "throughput_ratio": (ratio * 1000.0).round() / 1000.0,
                "direct_p50_ms": d50, "direct_p90_ms": d90, "direct_p99_ms": d99,
                "mid_p50_ms": m50, "mid_p90_ms": m90, "mid_p99_ms": m99,
                "p50_overhead_ms": m50 - d50,
                "mid_failed": mid_failed,
                "mid_rss_idle_mb": mid_rss_idle,
                "mid_anon_idle_mb": mid_anon_idle,
                "mid_rss_load_mb": mid_rss_load,
                "instance_rss_idle_mb": instance_rss_idle,
                "instance_rss_load_mb": instance_rss_load,
                "start_to_up_ms": up_ms,
            })
        );
    }
    drop(mids);
    Ok(if mid_failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

struct Round {
    detect_ms: i64,
    complete_ms: i64,
    lost: usize,
    duplicates: usize,
}

fn median(values: &mut [i64]) -> i64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

async fn failover(args: FailoverArgs) -> Result<ExitCode> {
    if args.rounds == 0 || args.jobs == 0 {
        bail!("--rounds and --jobs must be at least 1");
    }
    let bin = std::env::current_exe().context("finding this program")?;
    let dir = tempfile::Builder::new()
        .prefix("openmid-bench-")
        .tempdir()?;
    let instance =
        LocalInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None).await?;
    let target = TargetService::start().await?;
    let api = &instance.api;
    eprintln!(
        "failover: {} rounds, {} jobs of {} ms in flight, default settings (disconnect grace {} ms)",
        args.rounds,
        args.jobs,
        args.job_ms,
        openmid_instance::config::InstanceConfig::default().disconnect_grace_ms
    );
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        let names = [format!("r{round}-a"), format!("r{round}-b")];
        let mut mids = Vec::new();
        for name in &names {
            let token = instance.auto_validating_token().await?;
            let mut config = instance.mid_config(name, &dir.path().join(name), Some(token));
            config.pools = PoolSizes {
                interactive: (args.jobs as u32).max(1),
                ..PoolSizes::default()
            };
            mids.push(MidProcess::spawn(&bin, &config)?);
        }
        for name in &names {
            wait(Duration::from_secs(20), || async {
                api.get_mid(name)
                    .await
                    .is_ok_and(|m| m.status == MidStatus::Up && m.health.is_some())
            })
            .await
            .with_context(|| format!("MID {name} did not come up"))?;
        }
        let cluster = format!("fo{round}");
        api.create_cluster(&NewCluster {
            name: cluster.clone(),
            kind: ClusterKind::Failover,
            members: names.to_vec(),
        })
        .await?;
        let correlator = format!("failover-{round}");
        for i in 0..args.jobs {
            let url = target.url(&format!("/slow?ms={}&i={i}", args.job_ms));
            api.insert_output(&NewOutput {
                name: Some(format!("job {i}")),
                source: Some("bench".into()),
                ..rest_output(&format!("mid.cluster.{cluster}"), &url, &correlator)
            })
            .await?;
        }
        let active = &names[0];
        wait(Duration::from_secs(20), || async {
            let outs = records(&instance, &correlator, Queue::Output).await;
            outs.len() == args.jobs
                && outs.iter().all(|o| {
                    o.state == State::Processing && o.claimed_by.as_deref() == Some(active.as_str())
                })
        })
        .await
        .context("the active member did not take every job")?;

        let killed_at = now_ms();
        mids[0].kill();
        let mut detect_ms = -1;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut done = false;
        while Instant::now() < deadline {
            if detect_ms < 0
                && api
                    .get_mid(active)
                    .await
                    .is_ok_and(|m| m.status == MidStatus::Down)
            {
                detect_ms = now_ms() - killed_at;
            }
            let outs = records(&instance, &correlator, Queue::Output).await;
            if detect_ms >= 0 && outs.iter().all(|o| o.state == State::Processed) {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let outputs = records(&instance, &correlator, Queue::Output).await;
        let inputs = records(&instance, &correlator, Queue::Input).await;
        let finished: Vec<i64> = outputs
            .iter()
            .filter(|o| o.state == State::Processed)
            .filter_map(|o| o.processed_at.as_deref().and_then(parse_rfc3339))
            .collect();
        let lost = outputs
            .iter()
            .filter(|o| o.state != State::Processed)
            .count();
        let mut per_output: HashMap<&str, usize> = HashMap::new();
        for i in &inputs {
            *per_output
                .entry(i.response_to.as_deref().unwrap_or(""))
                .or_default() += 1;
        }
        let duplicates = per_output.values().map(|n| n.saturating_sub(1)).sum();
        let complete_ms = finished.iter().max().map_or(-1, |t| t - killed_at);
        eprintln!(
            "  round {}: detected in {detect_ms} ms, all {} jobs done {complete_ms} ms after the kill, lost {lost}, duplicates {duplicates}{}",
            round + 1,
            args.jobs,
            if done { "" } else { " (timed out)" }
        );
        rounds.push(Round {
            detect_ms,
            complete_ms,
            lost,
            duplicates,
        });
        drop(mids);
    }
    let mut detect: Vec<i64> = rounds.iter().map(|r| r.detect_ms).collect();
    let mut complete: Vec<i64> = rounds.iter().map(|r| r.complete_ms).collect();
    let complete_max = complete.iter().copied().max().unwrap_or(0);
    let lost: usize = rounds.iter().map(|r| r.lost).sum();
    let duplicates: usize = rounds.iter().map(|r| r.duplicates).sum();
    let (detect_med, complete_med) = (median(&mut detect), median(&mut complete));
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(vec!["figure", "value", "target"]);
    t.add_row(vec![
        "rounds".to_string(),
        rounds.len().to_string(),
        String::new(),
    ]);
    t.add_row(vec![
        "jobs in flight".to_string(),
        args.jobs.to_string(),
        String::new(),
    ]);
    t.add_row(vec![
        "detect (median)".to_string(),
        format!("{detect_med} ms"),
        String::new(),
    ]);
    t.add_row(vec![
        "all done after kill (median)".to_string(),
        format!("{complete_med} ms"),
        "≤ 2000 ms".into(),
    ]);
    t.add_row(vec![
        "all done after kill (max)".to_string(),
        format!("{complete_max} ms"),
        String::new(),
    ]);
    t.add_row(vec!["lost".to_string(), lost.to_string(), "0".into()]);
    t.add_row(vec![
        "duplicates".to_string(),
        duplicates.to_string(),
        "0".into(),
    ]);
    println!("{t}");
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "rounds": rounds.len(),
                "jobs_in_flight": args.jobs,
                "job_ms": args.job_ms,
                "detect_ms": detect_med,
                "complete_ms": complete_med,
                "complete_ms_max": complete_max,
                "lost": lost,
                "duplicates": duplicates,
            })
        );
    }
    instance.shutdown().await;
    Ok(if lost == 0 && duplicates == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn records(instance: &LocalInstance, correlator: &str, queue: Queue) -> Vec<EccRecord> {
    instance
        .api
        .list_records(&RecordQuery {
            correlator: Some(correlator.into()),
            queue: Some(queue.as_str().into()),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .map(|p| p.records)
        .unwrap_or_default()
}

async fn wait<F, Fut>(limit: Duration, check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if openmid_local::wait_until(limit, check).await {
        Ok(())
    } else {
        bail!("timed out after {limit:?}")
    }
}

/// One simulated MID: enrolls, keeps a long-poll open, heartbeats, answers work at once,
/// and reports when each output reached it.
async fn simulated_mid(
    client: openmid_mid::session::client::InstanceClient,
    received: tokio::sync::mpsc::UnboundedSender<(String, Instant)>,
    stop: tokio_util::sync::CancellationToken,
    heartbeat: Duration,
) {
    use openmid_proto::mid::{Capacity, HeartbeatRequest, PollRequest, ResultsRequest, WorkResult};
    let client = std::sync::Arc::new(client);
    let beats = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                tokio::select! {
                    _ = tokio::time::sleep(heartbeat) => {}
                    _ = stop.cancelled() => return,
                }
                let _ = client.heartbeat(&HeartbeatRequest::default()).await;
            }
        })
    };
    let mut known = Some(MidStatus::Up);
    while !stop.is_cancelled() {
        let req = PollRequest {
            capacity: Capacity {
                interactive: 8,
                expedited: 1,
                standard: 1,
            },
            wait_ms: 25_000,
            known_status: known,
        };
        let answer = tokio::select! {
            a = client.poll(&req) => a,
            _ = stop.cancelled() => break,
        };
        match answer {
            Ok(resp) => {
                known = Some(resp.status);
                let now = Instant::now();
                let results: Vec<WorkResult> = resp
                    .work
                    .into_iter()
                    .map(|w| {
                        let _ = received.send((w.output_id.clone(), now));
                        WorkResult {
                            output_id: w.output_id,
                            attempt: w.attempt,
                            payload: serde_json::json!({"status": 200, "headers": {}, "timings": {"headers_ms": 0.0, "total_ms": 0.0}}),
                            error: None,
                            started_at_ms: now_ms(),
                            duration_ms: 0,
                        }
                    })
                    .collect();
                if !results.is_empty() {
                    let _ = client.post_results(&ResultsRequest { results }).await;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let _ = beats.await;
}

async fn scale(args: ScaleArgs) -> Result<ExitCode> {
    if args.mids == 0 || args.pickups == 0 {
        bail!("--mids and --pickups must be at least 1");
    }
    if !(args.idle_seconds.is_finite() && args.idle_seconds > 0.0 && args.idle_seconds <= 3600.0) {
        bail!("--idle-seconds must be more than 0 and at most 3600");
    }
    let Setup {
        bin: _,
        dir,
        instance,
        api,
    } = setup()?;
    let heartbeat =
        Duration::from_millis(openmid_instance::config::InstanceConfig::default().heartbeat_ms);
    eprintln!("enrolling {} simulated MIDs …", args.mids);
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut sims = Vec::with_capacity(args.mids);
    let enrolling = Instant::now();
    for i in 0..args.mids {
        let name = format!("sim-{i}");
        let token = openmid_local::auto_validating_token(&api).await?;
        let config = instance.mid_config(&name, &dir.path().join("unused"), None);
        let client = openmid_local::enroll_protocol_client(&config, token, Default::default())
            .await
            .with_context(|| format!("enrolling {name}"))?;
        sims.push(tokio::spawn(simulated_mid(
            client,
            tx.clone(),
            stop.clone(),
            heartbeat,
        )));
    }
    eprintln!(
        "enrolled in {:.1} s; letting them settle …",
        enrolling.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    let pid = instance.pid();
    let cpu_before = openmid_local::process::cpu_time(pid).unwrap_or_default();
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.idle_seconds)).await;
    let cpu_used = openmid_local::process::cpu_time(pid)
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    let idle_cpu_percent = cpu_used.as_secs_f64() / wall.elapsed().as_secs_f64() * 100.0;
    let idle_rss = mb(openmid_local::process::rss_bytes(pid));
    eprintln!("idle: {idle_cpu_percent:.1}% of one core, {idle_rss:.1} MB");

    let mut pickups = Vec::with_capacity(args.pickups);
    let mut seed = now_ms() as u64 | 1;
    for _ in 0..args.pickups {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let target_mid = (seed % args.mids as u64) as usize;
        let sent = Instant::now();
        let out = api
            .insert_output(&NewOutput {
                source: Some("bench".into()),
                ..rest_output(
                    &format!("mid.server.sim-{target_mid}"),
                    "http://127.0.0.1:9/",
                    "scale",
                )
            })
            .await?;
        let arrived = loop {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some((id, at))) if id == out.id => break at,
                Ok(Some(_)) => continue,
                _ => bail!("output {} never reached its MID", out.id),
            }
        };
        pickups.push(arrived.duration_since(sent).as_secs_f64() * 1e3);
    }
    pickups.sort_by(|a, b| a.total_cmp(b));
    let (p50, p90, p99) = (
        percentile(&pickups, 0.5),
        percentile(&pickups, 0.9),
        percentile(&pickups, 0.99),
    );
    stop.cancel();
    for sim in sims {
        let _ = sim.await;
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(vec!["figure", "value", "target"]);
    t.add_row(vec![
        "simulated MIDs".to_string(),
        args.mids.to_string(),
        String::new(),
    ]);
    t.add_row(vec![
        "instance CPU, idle".to_string(),
        format!("{idle_cpu_percent:.1}% of one core"),
        "< 10%".into(),
    ]);
    t.add_row(vec![
        "instance RSS, idle".to_string(),
        format!("{idle_rss:.1} MB"),
        String::new(),
    ]);
    t.add_row(vec![
        "pickup p50 / p90 / p99 (API insert → MID has it)".to_string(),
        format!("{p50:.2} / {p90:.2} / {p99:.2} ms"),
        "< 50 ms".into(),
    ]);
    println!("{t}");
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "mids": args.mids,
                "idle_cpu_percent": idle_cpu_percent,
                "idle_rss_mb": idle_rss,
                "pickup_p50_ms": p50,
                "pickup_p90_ms": p90,
                "pickup_p99_ms": p99,
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}
