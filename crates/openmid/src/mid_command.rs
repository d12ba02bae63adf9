//! `openmid mid` (and `openmid-mid`, the same command as a binary of its own): runs a
//! MID Server until Ctrl-C / SIGTERM or until the instance refuses it; `install-service`
//! writes a systemd unit that runs it as a daemon.

use crate::config_file;
use anyhow::{Context, Result};
use openmid_mid::config::MidConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Flags of `openmid mid`.
#[derive(clap::Args)]
pub struct Args {
    /// TOML config file (keys can be overridden by `OPENMID_MID_*` environment variables,
    /// `__` for nesting: `OPENMID_MID_TLS__FINGERPRINT`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<MidCommand>,
}

#[derive(clap::Subcommand)]
enum MidCommand {
    /// Write a hardened systemd unit that runs this MID as a daemon (its own user,
    /// read-only system, writes only its state directory): `--dry-run` prints it.
    InstallService(crate::service_unit::ServiceArgs),
    /// Explain what this MID's egress policy would do with a job, rule by rule:
    /// `check-policy --url https://api.corp/x`, `check-policy --protocol ssh --host
    /// db1 --port 22`, `check-policy --command /usr/bin/df -- -h /`.
    CheckPolicy(CheckPolicy),
}

/// What to check against the policy (one of `--url`, `--host`, `--command`).
#[derive(clap::Args)]
struct CheckPolicy {
    /// A URL a REST or SOAP call would request.
    #[arg(long, conflicts_with_all = ["host", "command"])]
    url: Option<String>,
    /// A host a probe would connect to (with `--port`).
    #[arg(long, requires = "port", conflicts_with = "command")]
    host: Option<String>,
    /// The port for `--host`.
    #[arg(long)]
    port: Option<u16>,
    /// Whose network rules apply: http, ssh, sql, ldap, snmp or scan.
    #[arg(long, default_value = "http")]
    protocol: String,
    /// Check these addresses instead of resolving the name.
    #[arg(long = "addr", value_name = "IP")]
    addrs: Vec<std::net::IpAddr>,
    /// A program a Command job would run (absolute path).
    #[arg(long)]
    command: Option<PathBuf>,
    /// The program is handed a script body (it must be an allowed interpreter).
    #[arg(long, requires = "command")]
    script: bool,
    /// Working directory of the command.
    #[arg(long, requires = "command")]
    cwd: Option<PathBuf>,
    /// Names of environment variables the command would get.
    #[arg(long = "env", value_name = "NAME", requires = "command")]
    env_names: Vec<String>,
    /// Run time asked for, in seconds.
    #[arg(long, requires = "command")]
    timeout_secs: Option<u64>,
    /// The command's arguments (after `--`).
    #[arg(last = true)]
    args: Vec<String>,
}

fn load(config: Option<&Path>) -> Result<MidConfig> {
    let config: MidConfig = config_file::load(config, "OPENMID_MID_")?;
    config.validate().context("MID config")?;
    Ok(config)
}

/// Runs the command. `invoked_as` is what comes between the program and `--config` on
/// its command line (`["mid"]` for `openmid`, nothing for `openmid-mid`), for the
/// systemd unit to run the same way.
pub async fn run(args: Args, invoked_as: &[&str]) -> Result<ExitCode> {
    match &args.command {
        Some(MidCommand::InstallService(service)) => {
            return install_service(args.config.as_deref(), service, invoked_as);
        }
        Some(MidCommand::CheckPolicy(check)) => {
            return check_policy(&load(args.config.as_deref())?, check).await;
        }
        None => {}
    }
    let config = load(args.config.as_deref())?;
    let state_dir = config.state_dir.clone();
    let instance = config.instance_url.clone();
    let mid = openmid_mid::start(config)
        .await
        .context("starting the MID Server")?;
    tracing::info!(mid = %mid.name, %instance, state_dir = %state_dir.display(), "MID Server started");
    let stop = mid.shutdown_token();
    tokio::spawn(async move {
        crate::signals::stop_requested().await;
        tracing::info!("stopping: finishing running jobs");
        stop.cancel();
    });
    mid.wait().await?;
    Ok(ExitCode::SUCCESS)
}

/// Prints each rule consulted and the verdict; exits 0 when allowed, 1 when refused
/// or undecided.
async fn check_policy(config: &MidConfig, check: &CheckPolicy) -> Result<ExitCode> {
    use openmid_mid::policy::{Job, Protocol, Verdict};
    let protocol = Protocol::ALL
        .into_iter()
        .find(|p| p.key() == check.protocol)
        .with_context(|| {
            format!(
                "--protocol: `{}` is not one of http, ssh, sql, ldap, snmp, scan",
                check.protocol
            )
        })?;
    let addrs = (!check.addrs.is_empty()).then(|| check.addrs.clone());
    let job = if let Some(url) = &check.url {
        Job::Url {
            protocol,
            url: url::Url::parse(url).with_context(|| format!("--url `{url}`"))?,
            addrs,
        }
    } else if let (Some(host), Some(port)) = (&check.host, check.port) {
        Job::Target {
            protocol,
            host: host.clone(),
            port,
            addrs,
        }
    } else if let Some(program) = &check.command {
        Job::Command {
            program: program.clone(),
            args: check.args.clone(),
            cwd: check.cwd.clone(),
            env_names: check.env_names.clone(),
            timeout: check.timeout_secs.map(std::time::Duration::from_secs),
            script: check.script,
        }
    } else {
        anyhow::bail!("check-policy: give --url, --host with --port, or --command");
    };
    let explanation = config.policy.explain(&job).await;
    println!("{explanation}");
    Ok(match explanation.verdict {
        Verdict::Allowed(_) => ExitCode::SUCCESS,
        Verdict::Refused(_) | Verdict::Unresolved(_) => ExitCode::FAILURE,
    })
}

fn install_service(
    config: Option<&Path>,
    service: &crate::service_unit::ServiceArgs,
    invoked_as: &[&str],
) -> Result<ExitCode> {
    let config_path =
        config.context("--config: the unit runs the MID with `--config FILE`, so name the file")?;
    let config_path = std::fs::canonicalize(config_path)
        .with_context(|| format!("--config {}", config_path.display()))?;
    let mid = load(Some(&config_path))?;
    crate::service_unit::Unit {
        name: "openmid-mid",
        description: format!("openmid MID Server {}", mid.name),
        args: invoked_as
            .iter()
            .map(|a| a.to_string())
            .chain(["--config".into(), config_path.display().to_string()])
            .collect(),
        writes: &mid.state_dir,
        bind_low_port: mid
            .telemetry
            .as_ref()
            .is_some_and(|t| t.listen.port() < 1024),
    }
    .install(service)
}
