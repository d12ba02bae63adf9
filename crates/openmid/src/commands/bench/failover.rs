//! `bench failover`: kill the active member of a two-MID failover cluster with jobs in
//! flight; time to detect, and until every job completed on the survivor. With
//! `--database postgres://… --nodes 2` it kills an instance node instead, under the MID
//! that polls it.

use super::*;

#[derive(clap::Args)]
pub(super) struct FailoverArgs {
    /// Rounds (a fresh pair of MID processes each).
    #[arg(long, default_value_t = 5)]
    pub(super) rounds: usize,
    /// Jobs in flight at the kill.
    #[arg(long, default_value_t = 20)]
    pub(super) jobs: usize,
    /// How long each job takes at the target service, in ms.
    #[arg(long, default_value_t = 200)]
    pub(super) job_ms: u64,
    /// The store the instance nodes share (with `--nodes 2`): a node is killed
    /// instead of a MID.
    #[arg(long, value_name = "URL")]
    pub(super) database: Option<String>,
    /// Instance nodes: 1 kills a MID of a failover pair; 2 kills the node a MID polls.
    #[arg(long, default_value_t = 1)]
    pub(super) nodes: usize,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    pub(super) json: bool,
}

pub(super) struct Round {
    pub(super) detect_ms: i64,
    pub(super) complete_ms: i64,
    pub(super) lost: usize,
    pub(super) duplicates: usize,
}

fn median(values: &mut [i64]) -> i64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

pub(super) async fn failover(args: FailoverArgs) -> Result<ExitCode> {
    if args.rounds == 0 || args.jobs == 0 {
        bail!("--rounds and --jobs must be at least 1");
    }
    match (args.nodes, args.database.is_some()) {
        (1, false) => {}
        (2, true) => {
            nodes::check_database(args.database.as_deref(), &[2])?;
            let rounds = nodes::failover_on_nodes(&args).await?;
            return report(&args, &rounds, "node");
        }
        (2, false) => bail!("--nodes 2 needs --database postgres://… (the nodes share it)"),
        _ => bail!("--nodes is 1 (kill a MID) or 2 with --database (kill a node)"),
    }
    let bin = std::env::current_exe().context("finding this program")?;
    let mid_bin = openmid_local::process::mid_binary(&bin);
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
            mids.push(MidProcess::spawn(&mid_bin, &config)?);
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
                durability: Default::default(),
                name: Some(format!("job {i}")),
                source: Some("bench".into()),
                ..rest_output(&format!("mid.cluster.{cluster}"), &url, &correlator)
            })
            .await?;
        }
        let active = &names[0];
        wait(Duration::from_secs(20), || async {
            let outs = records(&instance.api, &correlator, Queue::Output).await;
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
            let outs = records(&instance.api, &correlator, Queue::Output).await;
            if detect_ms >= 0 && outs.iter().all(|o| o.state == State::Processed) {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let Round {
            complete_ms,
            lost,
            duplicates,
            ..
        } = tally(&instance.api, &correlator, killed_at, detect_ms).await;
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
    instance.shutdown().await;
    report(&args, &rounds, "MID")
}

/// Prints the rounds' figures (the same keys whichever was killed); fails when a job
/// was lost or recorded twice.
fn report(args: &FailoverArgs, rounds: &[Round], killed: &str) -> Result<ExitCode> {
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
        format!("{killed} death detected (median)"),
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
    Ok(if lost == 0 && duplicates == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A round's outcome from its records: when the last job finished after `killed_at`,
/// the jobs not processed, and the results recorded more than once.
pub(super) async fn tally(
    api: &openmid_client::ApiClient,
    correlator: &str,
    killed_at: i64,
    detect_ms: i64,
) -> Round {
    let outputs = records(api, correlator, Queue::Output).await;
    let inputs = records(api, correlator, Queue::Input).await;
    let complete_ms = outputs
        .iter()
        .filter(|o| o.state == State::Processed)
        .filter_map(|o| o.processed_at.as_deref().and_then(parse_rfc3339))
        .max()
        .map_or(-1, |t| t - killed_at);
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
    Round {
        detect_ms,
        complete_ms,
        lost,
        duplicates,
    }
}

pub(super) async fn records(
    api: &openmid_client::ApiClient,
    correlator: &str,
    queue: Queue,
) -> Vec<EccRecord> {
    api.list_records(&RecordQuery {
        correlator: Some(correlator.into()),
        queue: Some(queue.as_str().into()),
        limit: Some(1000),
        ..Default::default()
    })
    .await
    .map(|p| p.records)
    .unwrap_or_default()
}
