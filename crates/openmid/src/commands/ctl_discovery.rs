//! `openmid ctl discovery` and `openmid ctl devices`: discovery runs from a shell,
//! and the devices they filed.

use super::ctl_output::{print_json, table};
use anyhow::{Result, bail};
use openmid_client::ApiClient;
use openmid_proto::devices::{DiscoveryState, NewDiscoveryRun};
use openmid_proto::discovery::PortSpec;
use std::time::Duration;

/// `ctl discovery`.
#[derive(clap::Subcommand)]
pub enum DiscoveryCommand {
    /// Ping ranges through a MID, scan what answered, file the devices.
    Run {
        /// mid.server.NAME, mid.cluster.NAME or mid.auto.
        #[arg(long)]
        agent: String,
        /// Addresses, CIDRs and ranges (repeatable).
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        /// Ports and ranges to scan (repeatable; default a common set).
        #[arg(long = "port")]
        ports: Vec<String>,
        /// Connection attempts per second.
        #[arg(long)]
        rate_per_sec: Option<u32>,
        /// Wait for the run to end.
        #[arg(long)]
        wait: bool,
    },
    /// List discovery runs, newest first.
    List {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// `ctl devices`.
#[derive(clap::Subcommand)]
pub enum DevicesCommand {
    /// List devices by address.
    List {
        /// Of this class only (linux_server, windows_server, network_device, printer,
        /// web_server, database, unknown).
        #[arg(long)]
        class: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One device, by id or address, with its evidence.
    Show {
        /// Its id or address.
        key: String,
    },
}

pub async fn discovery(api: &ApiClient, cmd: DiscoveryCommand, json: bool) -> Result<()> {
    match cmd {
        DiscoveryCommand::Run {
            agent,
            targets,
            ports,
            rate_per_sec,
            wait,
        } => {
            let ports = ports
                .into_iter()
                .map(|p| match p.parse::<u32>() {
                    Ok(n) => PortSpec::Number(n),
                    Err(_) => PortSpec::Text(p),
                })
                .collect();
            let mut run = api
                .start_discovery(&NewDiscoveryRun {
                    agent,
                    targets,
                    ports,
                    rate_per_sec,
                    timeout_ms: None,
                })
                .await?;
            if wait {
                run = api
                    .wait_discovery_run(
                        &run.id,
                        Duration::from_millis(500),
                        Duration::from_secs(3600),
                    )
                    .await?;
            }
            if json {
                return print_json(&run);
            }
            println!(
                "discovery run {}: {}, {} hosts answered, {} devices new, {} updated{}",
                run.id,
                run.state.as_str(),
                run.hosts_alive,
                run.devices_new,
                run.devices_updated,
                run.detail.map(|d| format!(" ({d})")).unwrap_or_default()
            );
            if wait && run.state == DiscoveryState::Error {
                bail!("the discovery run failed");
            }
        }
        DiscoveryCommand::List { limit } => {
            let runs = api.list_discovery_runs(limit).await?;
            if json {
                return print_json(&runs);
            }
            let mut t = table(&["id", "state", "started", "alive", "new", "updated"]);
            for r in &runs {
                t.add_row(vec![
                    r.id.clone(),
                    r.state.as_str().to_string(),
                    r.started_at.clone(),
                    r.hosts_alive.to_string(),
                    r.devices_new.to_string(),
                    r.devices_updated.to_string(),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}

pub async fn devices(api: &ApiClient, cmd: DevicesCommand, json: bool) -> Result<()> {
    match cmd {
        DevicesCommand::List { class, limit } => {
            let devices = api.list_devices(class.as_deref(), None, limit).await?;
            if json {
                return print_json(&devices);
            }
            let mut t = table(&["address", "class", "open ports", "last seen", "why"]);
            for d in &devices {
                t.add_row(vec![
                    d.address.clone(),
                    d.class.clone(),
                    d.open_ports
                        .iter()
                        .map(|p| p.port.to_string())
                        .collect::<Vec<_>>()
                        .join(" "),
                    d.last_seen.clone(),
                    d.evidence.first().cloned().unwrap_or_default(),
                ]);
            }
            println!("{t}");
        }
        DevicesCommand::Show { key } => print_json(&api.get_device(&key).await?)?,
    }
    Ok(())
}
