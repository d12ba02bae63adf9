//! `bench rest`: the same REST call by every path in one run — direct, through a
//! plain reverse tunnel (`--tunnel-bin`), through a MID on the durable path and on
//! the express lane — as latency percentiles, throughput, instance and MID CPU per
//! call, and ratios between them; and the MID's memory and start-up.

use super::*;

#[derive(clap::Args)]
pub(super) struct RestArgs {
    /// MID processes (more than one form a load-balance cluster).
    #[arg(long, default_value_t = 1)]
    pub(super) mids: usize,
    /// Concurrent callers for the throughput phase.
    #[arg(long, default_value_t = 64)]
    pub(super) concurrency: usize,
    /// Sequential calls measured each way (after a warm-up).
    #[arg(long, default_value_t = 300)]
    pub(super) requests: usize,
    /// Length of each throughput phase, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub(super) seconds: f64,
    /// The store: a postgres://… URL runs the instance as `--nodes` nodes on it
    /// (and, for comparison in the same run, one node on SQLite).
    #[arg(long, value_name = "URL")]
    pub(super) database: Option<String>,
    /// Instance node counts to measure on `--database`, e.g. `1,2,3`.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub(super) nodes: Vec<usize>,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    pub(super) json: bool,
    /// A rathole binary: also measure the same calls through a plain TCP reverse
    /// tunnel (its server and client on loopback), the baseline openmid competes with.
    #[arg(long, value_name = "PATH")]
    pub(super) tunnel_bin: Option<std::path::PathBuf>,
}

/// One path's figures.
#[derive(Clone, Default)]
struct Figures {
    p50: f64,
    p90: f64,
    p99: f64,
    rps: f64,
    failed: u64,
    instance_cpu_us: f64,
    mid_cpu_us: f64,
}

impl Figures {
    fn of(latencies: Vec<f64>) -> Self {
        Self {
            p50: percentile(&latencies, 0.5),
            p90: percentile(&latencies, 0.9),
            p99: percentile(&latencies, 0.99),
            ..Self::default()
        }
    }
}

/// The processes whose CPU and memory a run measures.
struct Pids {
    mid: u32,
    instance: u32,
}

/// CPU time of the instance and the MID from its start.
struct CpuMeter {
    mid: u32,
    instance: u32,
    at_start: (Duration, Duration),
}

impl CpuMeter {
    fn start(pids: &Pids) -> Self {
        let cpu = |pid| openmid_local::process::cpu_time(pid).unwrap_or_default();
        Self {
            mid: pids.mid,
            instance: pids.instance,
            at_start: (cpu(pids.instance), cpu(pids.mid)),
        }
    }

    /// Instance and MID CPU microseconds per call over `calls` since the start.
    fn per_call(&self, calls: f64) -> (f64, f64) {
        let cpu = |pid| openmid_local::process::cpu_time(pid).unwrap_or_default();
        let used = |now: Duration, then: Duration| now.saturating_sub(then).as_secs_f64() * 1e6;
        if calls <= 0.0 {
            return (0.0, 0.0);
        }
        (
            used(cpu(self.instance), self.at_start.0) / calls,
            used(cpu(self.mid), self.at_start.1) / calls,
        )
    }
}

/// The largest RSS of the MID and the instance while it runs.
struct RssSampler {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl RssSampler {
    fn start(pids: &Pids) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let (mid, instance, token) = (pids.mid, pids.instance, stop.clone());
        let task = tokio::spawn(async move {
            let (mut mid_max, mut inst_max) = (0u64, 0u64);
            while !token.is_cancelled() {
                mid_max = mid_max.max(openmid_local::process::rss_bytes(mid).unwrap_or(0));
                inst_max = inst_max.max(openmid_local::process::rss_bytes(instance).unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (mid_max, inst_max)
        });
        Self { stop, task }
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.cancel();
        self.task.await.unwrap_or((0, 0))
    }
}

/// One call, direct or through the MID; true when the service answered 200.
#[derive(Clone)]
pub(super) enum Caller {
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

    pub(super) async fn sequential(&self, n: usize) -> Result<Vec<f64>> {
        sequential(n, "call", || self.call()).await
    }

    /// Calls per second with `concurrency` callers for `seconds`, and failures.
    pub(super) async fn throughput(&self, concurrency: usize, seconds: f64) -> (f64, u64) {
        let caller = self.clone();
        load(concurrency, seconds, move || {
            let caller = caller.clone();
            async move { caller.call().await }
        })
        .await
    }
}

pub(super) async fn rest(args: RestArgs) -> Result<ExitCode> {
    if args.mids == 0 || args.concurrency == 0 || args.requests == 0 {
        bail!("--mids, --concurrency and --requests must be at least 1");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 3600.0) {
        bail!("--seconds must be more than 0 and at most 3600");
    }
    nodes::check_database(args.database.as_deref(), &args.nodes)?;
    if args.database.is_some() {
        return nodes::rest_on_nodes(args).await;
    }
    let Setup {
        mid_bin,
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
        mids.push(MidProcess::spawn(&mid_bin, &config)?);
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
    let tunnel = match &args.tunnel_bin {
        Some(bin) => Some(
            super::tunnel::Tunnel::start(bin, dir.path(), target.addr)
                .await
                .context("--tunnel-bin")?,
        ),
        None => None,
    };
    let direct = Caller::Direct(reqwest::Client::builder().no_proxy().build()?, url.clone());
    let action = openmid_proto::api::RestAction::new(agent, url);
    let durable = Caller::Mid(api.clone(), std::sync::Arc::new(action.clone()));
    let express = Caller::Mid(
        api.clone(),
        std::sync::Arc::new(openmid_proto::api::RestAction {
            durability: Some(openmid_proto::api::Durability::Relaxed),
            ..action
        }),
    );
    let through_tunnel = tunnel.as_ref().map(|t| {
        Caller::Direct(
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            format!("http://{}/hello", t.addr),
        )
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mid_rss_idle = mb(mids[0].rss_bytes());
    let mid_anon_idle = mb(openmid_local::process::rss_anon_bytes(mids[0].pid()));
    let instance_rss_idle = mb(openmid_local::process::rss_bytes(instance.pid()));
    let pids = Pids {
        mid: mids[0].pid(),
        instance: instance.pid(),
    };

    eprintln!("sequential: {} calls each path", args.requests);
    let mut paths = vec![("direct", direct)];
    if let Some(t) = through_tunnel {
        paths.push(("tunnel", t));
    }
    paths.push(("durable", durable));
    paths.push(("express", express));
    let mut figures = HashMap::new();
    for (name, caller) in &paths {
        caller.sequential(50).await?;
        let latencies = caller.sequential(args.requests).await?;
        figures.insert(*name, Figures::of(latencies));
    }
    eprintln!(
        "throughput: {} callers for {} s each path",
        args.concurrency, args.seconds
    );
    let mut rss_load = (0u64, 0u64);
    for (name, caller) in &paths {
        let through_mid = matches!(*name, "durable" | "express");
        let sampler = through_mid.then(|| RssSampler::start(&pids));
        let cpu = CpuMeter::start(&pids);
        let (rps, failed) = caller.throughput(args.concurrency, args.seconds).await;
        let (instance_us, mid_us) = cpu.per_call(rps * args.seconds);
        if let Some(sampler) = sampler {
            let (m, i) = sampler.stop().await;
            rss_load = (rss_load.0.max(m), rss_load.1.max(i));
        }
        if let Some(f) = figures.get_mut(name) {
            f.rps = rps;
            f.failed = failed;
            f.instance_cpu_us = instance_us;
            f.mid_cpu_us = mid_us;
        }
    }
    let (mid_rss_load, instance_rss_load) = (mb(Some(rss_load.0)), mb(Some(rss_load.1)));
    drop(tunnel);

    start_to_up.sort_by(|a, b| a.total_cmp(b));
    let up_ms = percentile(&start_to_up, 0.5);
    let get = |name: &str| figures.get(name).cloned().unwrap_or_default();
    let (d, m, e) = (get("direct"), get("durable"), get("express"));
    let t = figures.get("tunnel").cloned();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let mut table = comfy_table::Table::new();
    let mut header = vec!["figure", "direct"];
    if t.is_some() {
        header.push("tunnel");
    }
    header.extend(["durable", "express", "ratios"]);
    table
        .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(header);
    let row = |label: String, f: &dyn Fn(&Figures) -> String, note: String| {
        let mut cells = vec![label, f(&d)];
        if let Some(t) = &t {
            cells.push(f(t));
        }
        cells.extend([f(&m), f(&e), note]);
        cells
    };
    let vs_tunnel = |x: &Figures, what: &str| match &t {
        Some(t) => format!("{what} {:.2}× tunnel", ratio(x.rps, t.rps)),
        None => format!("{what} {:.2}× direct", ratio(x.rps, d.rps)),
    };
    table.add_row(row(
        "p50 latency".into(),
        &|f| format!("{:.3} ms", f.p50),
        format!(
            "durable +{:.2} ms, express +{:.2} ms over direct{}",
            m.p50 - d.p50,
            e.p50 - d.p50,
            t.as_ref()
                .map(|t| format!("; express {:.1}× tunnel", ratio(e.p50, t.p50)))
                .unwrap_or_default()
        ),
    ));
    table.add_row(row(
        "p90 latency".into(),
        &|f| format!("{:.3} ms", f.p90),
        String::new(),
    ));
    table.add_row(row(
        "p99 latency".into(),
        &|f| format!("{:.3} ms", f.p99),
        String::new(),
    ));
    table.add_row(row(
        format!("throughput, C={}", args.concurrency),
        &|f| format!("{:.0}/s", f.rps),
        format!("{}; {}", vs_tunnel(&m, "durable"), vs_tunnel(&e, "express")),
    ));
    table.add_row(row(
        "failed calls".into(),
        &|f| f.failed.to_string(),
        String::new(),
    ));
    table.add_row(row(
        "instance CPU per call".into(),
        &|f| format!("{:.0} µs", f.instance_cpu_us),
        String::new(),
    ));
    table.add_row(row(
        "MID CPU per call".into(),
        &|f| format!("{:.0} µs", f.mid_cpu_us),
        String::new(),
    ));
    println!("{table}");
    let mut memory = comfy_table::Table::new();
    memory
        .load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(vec!["figure", "value", "target"]);
    let mid_program = mid_bin
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    memory.add_row(vec![
        format!("MID RSS idle / load ({mid_program})"),
        format!("{mid_rss_idle:.1} / {mid_rss_load:.1} MB"),
        "≤ 15 / 40 MB".to_string(),
    ]);
    memory.add_row(vec![
        "MID anonymous memory, idle".into(),
        format!("{mid_anon_idle:.1} MB"),
        String::new(),
    ]);
    memory.add_row(vec![
        "instance RSS idle / load".into(),
        format!("{instance_rss_idle:.1} / {instance_rss_load:.1} MB"),
        String::new(),
    ]);
    memory.add_row(vec![
        "MID start → up".into(),
        format!("{up_ms:.0} ms"),
        "≤ 200 ms".into(),
    ]);
    println!("{memory}");
    let mid_failed = m.failed + e.failed;
    if args.json {
        let mut json = serde_json::json!({
            "mids": args.mids,
            "concurrency": args.concurrency,
            "direct_rps": d.rps.round(),
            "mid_rps": m.rps.round(),
            "express_rps": e.rps.round(),
            "throughput_ratio": (ratio(m.rps, d.rps) * 1000.0).round() / 1000.0,
            "express_throughput_ratio": (ratio(e.rps, d.rps) * 1000.0).round() / 1000.0,
            "direct_p50_ms": d.p50, "direct_p90_ms": d.p90, "direct_p99_ms": d.p99,
            "mid_p50_ms": m.p50, "mid_p90_ms": m.p90, "mid_p99_ms": m.p99,
            "express_p50_ms": e.p50, "express_p90_ms": e.p90, "express_p99_ms": e.p99,
            "p50_overhead_ms": m.p50 - d.p50,
            "express_p50_overhead_ms": e.p50 - d.p50,
            "mid_failed": mid_failed,
            "mid_program": mid_program,
            "mid_rss_idle_mb": mid_rss_idle,
            "mid_anon_idle_mb": mid_anon_idle,
            "mid_rss_load_mb": mid_rss_load,
            "instance_rss_idle_mb": instance_rss_idle,
            "instance_rss_load_mb": instance_rss_load,
            "start_to_up_ms": up_ms,
            "instance_cpu_us_per_call": m.instance_cpu_us.round(),
            "mid_cpu_us_per_call": m.mid_cpu_us.round(),
            "express_instance_cpu_us_per_call": e.instance_cpu_us.round(),
            "express_mid_cpu_us_per_call": e.mid_cpu_us.round(),
        });
        if let (Some(t), Some(obj)) = (&t, json.as_object_mut()) {
            obj.insert("tunnel_rps".into(), t.rps.round().into());
            obj.insert("tunnel_p50_ms".into(), t.p50.into());
            obj.insert(
                "durable_vs_tunnel".into(),
                ((ratio(m.rps, t.rps) * 1000.0).round() / 1000.0).into(),
            );
            obj.insert(
                "express_vs_tunnel".into(),
                ((ratio(e.rps, t.rps) * 1000.0).round() / 1000.0).into(),
            );
            obj.insert(
                "express_p50_vs_tunnel".into(),
                ((ratio(e.p50, t.p50) * 100.0).round() / 100.0).into(),
            );
        }
        println!("{json}");
    }
    drop(mids);
    Ok(if mid_failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
