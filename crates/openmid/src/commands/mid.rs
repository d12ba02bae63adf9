//! `openmid mid`: runs a MID Server until Ctrl-C / SIGTERM or until the instance refuses it.

use crate::config_file;
use anyhow::{Context, Result};
use openmid_mid::config::MidConfig;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `openmid mid`.
#[derive(clap::Args)]
pub struct Args {
    /// TOML config file (keys can be overridden by `OPENMID_MID_*` environment variables,
    /// `__` for nesting: `OPENMID_MID_TLS__FINGERPRINT`).
    #[arg(long)]
    config: Option<PathBuf>,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let config: MidConfig = config_file::load(args.config.as_deref(), "OPENMID_MID_")?;
    let state_dir = config.state_dir.clone();
    let instance = config.instance_url.clone();
    let mid = openmid_mid::start(config)
        .await
        .context("starting the MID Server")?;
    tracing::info!(mid = %mid.name, %instance, state_dir = %state_dir.display(), "MID Server started");
    let stop = mid.shutdown_token();
    tokio::spawn(async move {
        super::stop_requested().await;
        tracing::info!("stopping: finishing running jobs");
        stop.cancel();
    });
    mid.wait().await?;
    Ok(ExitCode::SUCCESS)
}
