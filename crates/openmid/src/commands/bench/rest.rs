//! `bench rest`: REST calls through MID processes against direct calls to the same
//! service, in one run: latency percentiles, throughput, memory, start-up.

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
    let cpu_before = openmid_local::process::cpu_time(instance.pid()).unwrap_or_default();
    let (mid_rps, mid_failed) = via_mid.throughput(args.concurrency, args.seconds).await;
    let instance_cpu = openmid_local::process::cpu_time(instance.pid())
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    let calls = mid_rps * args.seconds;
    let instance_cpu_us_per_call = if calls > 0.0 {
        instance_cpu.as_secs_f64() * 1e6 / calls
    } else {
        0.0
    };
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
        "instance CPU per call".into(),
        String::new(),
        format!("{instance_cpu_us_per_call:.0} µs"),
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
                "instance_cpu_us_per_call": instance_cpu_us_per_call.round(),
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
