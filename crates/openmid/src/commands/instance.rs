//! `openmid instance`: runs the hub until Ctrl-C / SIGTERM.

use anyhow::{Context, Result};
use openmid::config_file;
use openmid_instance::config::InstanceConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `openmid instance`. They override the config file, which
/// `OPENMID_INSTANCE_*` environment variables override in turn.
#[derive(clap::Args)]
pub struct Args {
    /// TOML config file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (database, TLS certificate).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The store: a postgres://user:password@host:port/database URL (default: SQLite
    /// in the data directory). Prefer OPENMID_INSTANCE_DATABASE for a URL holding a
    /// password: flags show in the process list.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Where blobs are kept (default: data_dir/blobs); with several nodes on one
    /// PostgreSQL, a directory every node shares.
    #[arg(long, value_name = "DIR")]
    blob_dir: Option<PathBuf>,
    /// Listen address, e.g. 0.0.0.0:8443.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Certificate chain (PEM) to serve instead of a self-signed one.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// A host name or IP address clients use to reach the instance, put in the
    /// self-signed certificate (repeat for several; replaces `hostnames` from the
    /// config). The listen address is added by itself unless it is a wildcard.
    #[arg(long = "hostname", value_name = "NAME")]
    hostnames: Vec<String>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Forward every sample to this Prometheus remote-write receiver (sets
    /// `metrics.remote_write.url`; its token or password go in the config file or
    /// `OPENMID_INSTANCE_METRICS__REMOTE_WRITE__BEARER_TOKEN`, never on a command line).
    #[arg(long, value_name = "URL")]
    remote_write_url: Option<String>,
    /// Send the instance's spans of jobs to this OTLP/HTTP collector
    /// (`http://collector:4318`; sets `tracing.otlp_endpoint`).
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Replace the admin API token, print the new one, and exit.
    #[arg(long)]
    reset_admin_token: bool,
    #[command(subcommand)]
    command: Option<InstanceCommand>,
}

#[derive(clap::Subcommand)]
enum InstanceCommand {
    /// Write a hardened systemd unit that runs the instance from `--config` as a
    /// daemon (its own user, read-only system, writes only its data directory):
    /// `--dry-run` prints it.
    InstallService(super::service_unit::ServiceArgs),
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let mut config: InstanceConfig =
        config_file::load(args.config.as_deref(), "OPENMID_INSTANCE_")?;
    if let Some(InstanceCommand::InstallService(service)) = &args.command {
        return install_service(args.config.as_deref(), &config, service);
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(url) = args.database {
        config.database = Some(openmid_proto::secret::Secret::new(url));
    }
    if args.blob_dir.is_some() {
        config.blob_dir = args.blob_dir;
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if !args.hostnames.is_empty() {
        config.hostnames = args.hostnames;
    }
    if args.tls_cert.is_some() {
        config.tls_cert = args.tls_cert;
        config.tls_key = args.tls_key;
    }
    if let Some(url) = args.otlp_endpoint {
        config.tracing.otlp_endpoint = Some(url);
    }
    if let Some(url) = args.remote_write_url {
        match &mut config.metrics.remote_write {
            Some(rw) => rw.url = url,
            None => {
                config.metrics.remote_write = Some(openmid_instance::config::RemoteWriteConfig {
                    url,
                    bearer_token: None,
                    username: None,
                    password: None,
                    batch_samples: 2_000,
                })
            }
        }
    }
    // The master key comes from the environment only, never from a config file that
    // may be copied around with the deployment.
    if let Ok(key) = std::env::var("OPENMID_MASTER_KEY")
        && !key.trim().is_empty()
    {
        config.master_key = Some(openmid_proto::secret::Secret::new(key));
    }
    if args.reset_admin_token {
        let token = openmid_instance::reset_admin_token(&config).await?;
        println!("New admin API token (the old one stops working when the instance restarts):");
        println!("{}", token.expose());
        return Ok(ExitCode::SUCCESS);
    }
    let running = openmid_instance::start(config)
        .await
        .context("starting the instance")?;
    // A daemon's stdout may be closed (or a pipe nobody reads): never die of it.
    let say = |line: String| {
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    say(format!(
        "openmid instance {} listening on {}",
        openmid_proto::BUILD_VERSION,
        running.addr
    ));
    say(format!("  URL:          {}", running.url));
    say(format!("  data:         {}", running.data_dir.display()));
    say(format!("  certificate:  {}", running.cert_path.display()));
    say(format!("  fingerprint:  SHA256:{}", running.fingerprint));
    match &running.admin_token {
        Some(token) => {
            say(format!("  admin token:  {}", token.expose()));
            say(
                "                (shown once: store it now; `--reset-admin-token` makes a new one)"
                    .into(),
            );
        }
        None => {
            say("  admin token:  set at first start (`--reset-admin-token` makes a new one)".into())
        }
    }
    super::stop_requested().await;
    tracing::info!("stopping");
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The unit runs `openmid instance --config FILE`: flags given here are not carried
/// into it, so everything must be in the file.
fn install_service(
    config_path: Option<&std::path::Path>,
    config: &InstanceConfig,
    service: &super::service_unit::ServiceArgs,
) -> Result<ExitCode> {
    let path = config_path
        .context("--config: the unit runs `openmid instance --config FILE`, so name the file")?;
    let path =
        std::fs::canonicalize(path).with_context(|| format!("--config {}", path.display()))?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    super::service_unit::Unit {
        name: "openmid-instance",
        description: "openmid instance".into(),
        args: vec![
            "instance".into(),
            "--config".into(),
            path.display().to_string(),
        ],
        writes: &config.data_dir,
        bind_low_port: config.listen.port() < 1024,
    }
    .install(service)
}
