//! Several instance nodes on one PostgreSQL, as processes: what `bench rest` and
//! `bench failover` start when given `--database postgres://…`.

use super::*;
use openmid_local::{InstanceProcess, NodeOptions};
use openmid_proto::secret::Secret;

/// The nodes of one instance, started one after another on one store; the first
/// made the certificate, the admin token and the blob directory the others share.
pub(super) struct Nodes {
    pub nodes: Vec<InstanceProcess>,
    pub apis: Vec<openmid_client::ApiClient>,
    /// The admin token (made by the first node ever started on the store).
    pub token: Secret,
}

/// A fresh master key for the benchmark's nodes (they must all hold the same one):
/// 32 random bytes, from the kernel.
fn master_key() -> Result<Secret> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the nodes' master key")?;
    Ok(Secret::new(
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    ))
}

impl Nodes {
    /// Starts `n` nodes on `database` (SQLite in the first node's data directory when
    /// `None`, which allows only one node), data under `dir/node-K`. `token` is the
    /// admin token of an earlier run on the same store (only the first node ever
    /// started on it prints one).
    pub async fn start(
        bin: &std::path::Path,
        dir: &std::path::Path,
        database: Option<&str>,
        n: usize,
        token: Option<Secret>,
    ) -> Result<Self> {
        if database.is_none() && n > 1 {
            bail!("several nodes need a shared store: give --database postgres://…");
        }
        let mut options = NodeOptions {
            database: database.map(Secret::new),
            blob_dir: Some(dir.join("blobs")),
            master_key: Some(master_key()?),
            token,
            ..NodeOptions::default()
        };
        let level = std::env::var("OPENMID_LOG").unwrap_or_else(|_| "warn".into());
        let mut nodes = Vec::new();
        let mut apis = Vec::new();
        for i in 0..n {
            let data = dir.join(format!("node-{i}"));
            std::fs::create_dir_all(&data)?;
            let node = InstanceProcess::spawn_node(bin, &data, &options, &level)
                .with_context(|| format!("starting instance node {i}"))?;
            if i == 0 {
                if node.token.expose().is_empty() {
                    bail!(
                        "the database already belongs to an instance (its admin token was made \
                         before): give the benchmark an empty database"
                    );
                }
                let tls = dir.join("node-0").join("tls");
                options.tls = Some((tls.join("instance.crt"), tls.join("instance.key")));
                options.token = Some(node.token.clone());
            }
            apis.push(node.api()?);
            nodes.push(node);
        }
        let first = &apis[0];
        wait(Duration::from_secs(20), || async {
            first
                .list_nodes()
                .await
                .is_ok_and(|l| l.iter().filter(|n| n.alive).count() == n)
        })
        .await
        .context("the nodes did not all see each other")?;
        let token = options.token.clone().unwrap_or_else(|| Secret::new(""));
        Ok(Self { nodes, apis, token })
    }

    /// A MID config for node `i`, with every other node as its standbys.
    pub fn mid_config(
        &self,
        i: usize,
        name: &str,
        state_dir: &std::path::Path,
        token: String,
    ) -> openmid_mid::config::MidConfig {
        let mut config = self.nodes[i].mid_config(name, state_dir, Some(token));
        config.standby_urls = (1..self.nodes.len())
            .map(|k| self.nodes[(i + k) % self.nodes.len()].url.clone())
            .collect();
        config
    }

    /// Stops every node as an operator would (the next run on the store starts alone).
    pub fn stop(mut self) {
        for node in self.nodes.iter_mut().rev() {
            node.stop();
        }
    }

    /// CPU time every live node has used so far.
    pub fn cpu(&self) -> Duration {
        self.nodes
            .iter()
            .filter_map(|n| openmid_local::process::cpu_time(n.pid()))
            .sum()
    }
}

/// Whether `database` is a PostgreSQL URL (what several nodes need).
pub(super) fn check_database(database: Option<&str>, nodes: &[usize]) -> Result<()> {
    if nodes.is_empty() || nodes.contains(&0) {
        bail!("--nodes takes counts of at least 1, e.g. --nodes 1,2,3");
    }
    match database {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(()),
        Some(_) => bail!("--database must be a postgres://… URL"),
        None if nodes.iter().any(|n| *n > 1) => {
            bail!("--nodes above 1 needs --database postgres://… (nodes share one PostgreSQL)")
        }
        None => Ok(()),
    }
}

/// What one configuration (a store and a node count) measured.
struct NodesRun {
    store: &'static str,
    nodes: usize,
    rps: f64,
    failed: u64,
    p50: f64,
    p99: f64,
    cpu_us_per_job: f64,
}

/// `bench rest --database postgres://… --nodes 1,2,3`: one node on SQLite, then each
/// node count on PostgreSQL, in one run. MID `i` long-polls node `i % N`; callers are
/// dealt to the nodes in turn, so most jobs cross from one node to another.
pub(super) async fn rest_on_nodes(args: rest::RestArgs) -> Result<ExitCode> {
    let bin = std::env::current_exe().context("finding this program")?;
    let mid_bin = openmid_local::process::mid_binary(&bin);
    let target = TargetService::start().await?;
    let url = args.database.clone().unwrap_or_default();
    let mut configs: Vec<(Option<&str>, usize)> = vec![(None, 1)];
    configs.extend(args.nodes.iter().map(|n| (Some(url.as_str()), *n)));
    let mut runs = Vec::new();
    let mut pg_token = None;
    for (run, (database, n)) in configs.into_iter().enumerate() {
        let store = if database.is_some() {
            "postgres"
        } else {
            "sqlite"
        };
        eprintln!("{store}, {n} node(s), {} MID(s)", args.mids);
        let dir = tempfile::Builder::new()
            .prefix("openmid-bench-")
            .tempdir()?;
        let token = if database.is_some() {
            pg_token.clone()
        } else {
            None
        };
        let nodes = Nodes::start(&bin, dir.path(), database, n, token).await?;
        if database.is_some() {
            pg_token = Some(nodes.token.clone());
        }
        let mut mids = Vec::new();
        // Names of this run's own: the store keeps the MIDs of earlier runs.
        let names: Vec<String> = (0..args.mids)
            .map(|i| format!("bench-{run}-mid-{i}"))
            .collect();
        for (i, name) in names.iter().enumerate() {
            let name = name.clone();
            let token = openmid_local::auto_validating_token(&nodes.apis[0]).await?;
            let config = nodes.mid_config(i % n, &name, &dir.path().join(&name), token);
            mids.push(MidProcess::spawn(&mid_bin, &config)?);
            let api = &nodes.apis[0];
            wait(Duration::from_secs(20), || async {
                api.get_mid(&name)
                    .await
                    .is_ok_and(|m| m.status == MidStatus::Up)
            })
            .await
            .with_context(|| format!("MID {name} did not come up"))?;
        }
        let agent = if args.mids == 1 {
            format!("mid.server.{}", names[0])
        } else {
            nodes.apis[0]
                .create_cluster(&NewCluster {
                    name: format!("bench-{run}"),
                    kind: ClusterKind::LoadBalance,
                    members: names.clone(),
                })
                .await?;
            format!("mid.cluster.bench-{run}")
        };
        let action = std::sync::Arc::new(openmid_proto::api::RestAction::new(
            agent,
            target.url("/hello"),
        ));
        let callers: Vec<rest::Caller> = nodes
            .apis
            .iter()
            .map(|api| rest::Caller::Mid(api.clone(), action.clone()))
            .collect();
        // Sequential calls through the node the MID does not poll when there is one:
        // the path that crosses nodes.
        let sequential = &callers[(n - 1).min(1)];
        sequential.sequential(50).await?;
        let lat = sequential.sequential(args.requests).await?;
        let cpu_before = nodes.cpu();
        let per_node = (args.concurrency / n).max(1);
        let mut phases = Vec::new();
        for caller in &callers {
            let caller = caller.clone();
            let seconds = args.seconds;
            phases.push(tokio::spawn(async move {
                caller.throughput(per_node, seconds).await
            }));
        }
        let (mut rps, mut failed) = (0.0, 0);
        for p in phases {
            let (r, f) = p.await.unwrap_or((0.0, 1));
            rps += r;
            failed += f;
        }
        let cpu = nodes.cpu().saturating_sub(cpu_before);
        let jobs = rps * args.seconds;
        runs.push(NodesRun {
            store,
            nodes: n,
            rps,
            failed,
            p50: percentile(&lat, 0.5),
            p99: percentile(&lat, 0.99),
            cpu_us_per_job: if jobs > 0.0 {
                cpu.as_secs_f64() * 1e6 / jobs
            } else {
                0.0
            },
        });
        drop(mids);
        nodes.stop();
    }
    let sqlite_rps = runs.first().map_or(0.0, |r| r.rps);
    let pg_one = runs
        .iter()
        .find(|r| r.store == "postgres" && r.nodes == 1)
        .map(|r| r.rps);
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(vec![
            "store",
            "nodes",
            "throughput",
            "× SQLite",
            "p50",
            "p99",
            "instance CPU / job",
            "failed",
        ]);
    for r in &runs {
        t.add_row(vec![
            r.store.to_string(),
            r.nodes.to_string(),
            format!("{:.0}/s", r.rps),
            format!("{:.2}", ratio(r.rps, sqlite_rps)),
            format!("{:.2} ms", r.p50),
            format!("{:.2} ms", r.p99),
            format!("{:.0} µs", r.cpu_us_per_job),
            r.failed.to_string(),
        ]);
    }
    println!("{t}");
    let failed: u64 = runs.iter().map(|r| r.failed).sum();
    if args.json {
        let list: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "store": r.store,
                    "nodes": r.nodes,
                    "rps": r.rps.round(),
                    "p50_ms": r.p50,
                    "p99_ms": r.p99,
                    "instance_cpu_us_per_job": r.cpu_us_per_job.round(),
                    "failed": r.failed,
                    "rps_vs_sqlite": ratio(r.rps, sqlite_rps),
                    "rps_vs_one_postgres_node": pg_one.map(|one| ratio(r.rps, one)),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "mids": args.mids,
                "concurrency": args.concurrency,
                "runs": list,
                "failed": failed,
            })
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        (a / b * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// `bench failover --database postgres://… --nodes 2`: each round starts two nodes
/// (the first leads), a MID polling the first with the second as its standby, and
/// `jobs` slow jobs inserted through the second; with every job running, the first
/// node is killed. Detection is the survivor taking the housekeeping over; complete
/// is every job recorded after the kill.
pub(super) async fn failover_on_nodes(
    args: &failover::FailoverArgs,
) -> Result<Vec<failover::Round>> {
    let bin = std::env::current_exe().context("finding this program")?;
    let mid_bin = openmid_local::process::mid_binary(&bin);
    let url = args.database.clone().unwrap_or_default();
    let target = TargetService::start().await?;
    eprintln!(
        "node failover: {} rounds, {} jobs of {} ms in flight, node timeout {} ms, disconnect grace {} ms",
        args.rounds,
        args.jobs,
        args.job_ms,
        openmid_instance::dispatch::nodes::NODE_TIMEOUT.as_millis(),
        openmid_instance::config::InstanceConfig::default().disconnect_grace_ms
    );
    let mut rounds = Vec::new();
    let mut token = None;
    for round in 0..args.rounds {
        let dir = tempfile::Builder::new()
            .prefix("openmid-bench-")
            .tempdir()?;
        let mut nodes = Nodes::start(&bin, dir.path(), Some(&url), 2, token.clone()).await?;
        token = Some(nodes.token.clone());
        let survivor = nodes.apis[1].clone();
        let name = format!("nf{round}-{}", now_ms());
        let token = openmid_local::auto_validating_token(&survivor).await?;
        let mut config = nodes.mid_config(0, &name, &dir.path().join(&name), token);
        config.pools = PoolSizes {
            interactive: (args.jobs as u32).max(1),
            ..PoolSizes::default()
        };
        let mid = MidProcess::spawn(&mid_bin, &config)?;
        wait(Duration::from_secs(20), || async {
            survivor
                .get_mid(&name)
                .await
                .is_ok_and(|m| m.status == MidStatus::Up && m.health.is_some())
        })
        .await
        .with_context(|| format!("MID {name} did not come up"))?;
        let correlator = format!("node-failover-{round}-{}", now_ms());
        for i in 0..args.jobs {
            let url = target.url(&format!("/slow?ms={}&i={i}", args.job_ms));
            survivor
                .insert_output(&NewOutput {
                    durability: Default::default(),
                    name: Some(format!("job {i}")),
                    source: Some("bench".into()),
                    ..rest_output(&format!("mid.server.{name}"), &url, &correlator)
                })
                .await?;
        }
        wait(Duration::from_secs(20), || async {
            let outs = failover::records(&survivor, &correlator, Queue::Output).await;
            // Claimed, every one (the first may be done already: they were inserted
            // one by one through the other node).
            outs.len() == args.jobs && outs.iter().all(|o| o.state != State::Ready)
        })
        .await
        .context("the MID did not take every job")?;

        let killed_at = now_ms();
        nodes.nodes[0].kill();
        let mut detect_ms = -1;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut done = false;
        while Instant::now() < deadline {
            if detect_ms < 0
                && survivor
                    .list_nodes()
                    .await
                    .is_ok_and(|l| l.iter().any(|n| n.answering && n.leader))
            {
                detect_ms = now_ms() - killed_at;
            }
            let outs = failover::records(&survivor, &correlator, Queue::Output).await;
            if detect_ms >= 0 && outs.iter().all(|o| o.state == State::Processed) {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let failover::Round {
            complete_ms,
            lost,
            duplicates,
            ..
        } = failover::tally(&survivor, &correlator, killed_at, detect_ms).await;
        eprintln!(
            "  round {}: survivor leads {detect_ms} ms after the kill, all {} jobs done {complete_ms} ms after it, lost {lost}, duplicates {duplicates}{}",
            round + 1,
            args.jobs,
            if done { "" } else { " (timed out)" }
        );
        rounds.push(failover::Round {
            detect_ms,
            complete_ms,
            lost,
            duplicates,
        });
        drop(mid);
        nodes.stop();
    }
    Ok(rounds)
}
