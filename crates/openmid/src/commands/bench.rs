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
mod discovery;
mod failover;
mod import;
mod nodes;
mod rest;
mod scale;
mod sql;
mod ssh;
mod tunnel;

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
    Rest(rest::RestArgs),
    /// Many simulated MIDs (light clients speaking the real protocol) long-poll one
    /// instance: its CPU and memory at idle, and how fast work reaches a random MID.
    Scale(scale::ScaleArgs),
    /// Kill the active member of a two-MID failover cluster with jobs in flight; measure
    /// time to detect and time until every job completed on the survivor.
    Failover(failover::FailoverArgs),
    /// A trivial command (`/bin/echo x`) through a MID against running it here, and a
    /// large stdout streamed through the MID against `head -c … > /dev/null` here;
    /// with the MID's peak memory.
    Command(command::CommandArgs),
    /// A large SQL result (1,000,000 rows) read through a MID, its pages followed,
    /// against `psql`'s `\copy … to stdout` in the same run; with the MID's peak memory.
    Sql(sql::SqlArgs),
    /// Short commands on one host through a MID against OpenSSH's client sharing one
    /// connection (ControlMaster), against a real sshd on loopback.
    Ssh(ssh::SshArgs),
    /// Import Sets: a 10,000-user directory against `ldapsearch -E pr=500`, and a
    /// 1 GB CSV against Python's csv module, in the same run; with the MID's and the
    /// instance's peak memory and a check that each row arrived once.
    Import(import::ImportArgs),
    /// Discovery: a /24 × 20 ports scan through a MID against `nmap -sT -T4`, and an
    /// SNMP bulk walk of a whole agent against `snmpbulkwalk`, in the same run, on a
    /// network of namespaces made here; with a check that both found the same.
    Discovery(discovery::DiscoveryArgs),
}

pub async fn run(args: Args) -> Result<ExitCode> {
    match args.kind {
        Kind::Rest(a) => rest::rest(a).await,
        Kind::Scale(a) => scale::scale(a).await,
        Kind::Failover(a) => failover::failover(a).await,
        Kind::Command(a) => command::run(a).await,
        Kind::Sql(a) => sql::run(a).await,
        Kind::Ssh(a) => ssh::run(a).await,
        Kind::Import(a) => import::run(a).await,
        Kind::Discovery(a) => discovery::run(a).await,
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
    /// The binary MIDs run from: `openmid-mid` beside this program when it was built,
    /// as MIDs are deployed, else this program's `mid` command.
    mid_bin: std::path::PathBuf,
    /// The instance, as its own process.
    instance: openmid_local::InstanceProcess,
    /// Its admin API.
    api: openmid_client::ApiClient,
    /// Fresh scratch directory, removed when dropped: after the instance stopped
    /// (fields drop in this order).
    dir: tempfile::TempDir,
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
        mid_bin: openmid_local::process::mid_binary(&bin),
        dir,
        instance,
        api,
    })
}

impl Setup {
    /// Starts a MID process named `name` under the egress policy `policy` (TOML) with
    /// `pools`, and waits until the instance has it `up`.
    async fn spawn_mid(&self, name: &str, policy: &str, pools: PoolSizes) -> Result<MidProcess> {
        let token = openmid_local::auto_validating_token(&self.api).await?;
        let mut config = self
            .instance
            .mid_config(name, &self.dir.path().join(name), Some(token));
        let table: openmid_mid::policy::PolicyConfig =
            toml::from_str(policy).context("the benchmark's policy")?;
        config.policy = openmid_mid::policy::EgressPolicy::new(table)
            .context("compiling the benchmark's policy")?;
        config.pools = pools;
        let mid = MidProcess::spawn(&self.mid_bin, &config).context("starting the MID process")?;
        let api = &self.api;
        wait(Duration::from_secs(20), || async {
            api.get_mid(name)
                .await
                .is_ok_and(|m| m.status == MidStatus::Up)
        })
        .await
        .with_context(|| format!("MID {name} did not come up"))?;
        Ok(mid)
    }
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
