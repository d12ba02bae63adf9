//! `openmid ctl discovery` and `openmid ctl devices`: discovery runs from a shell,
//! and the devices they filed.

use super::ctl_output::{print_json, table};
use anyhow::{Result, bail};
use openmid_client::ApiClient;
use openmid_proto::devices::{
    DiscoveryRun, DiscoverySchedule, DiscoveryScheduleInfo, DiscoveryState, NewDiscoveryRun,
};
use openmid_proto::discovery::PortSpec;
use openmid_proto::import::Schedule;
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
        /// An snmp alias whose credential asks the hosts' SNMP agents (repeatable).
        #[arg(long = "snmp-alias")]
        snmp_aliases: Vec<String>,
        /// Most addresses per job (default 256); a cluster shares the chunks.
        #[arg(long)]
        chunk_size: Option<u32>,
        /// Wait for the run to end.
        #[arg(long)]
        wait: bool,
    },
    /// List discovery runs, newest first.
    List {
        /// Runs of this schedule only.
        #[arg(long)]
        schedule: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Discovery schedules: runs that run by themselves.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
}

/// `ctl discovery schedules`.
#[derive(clap::Subcommand)]
pub enum SchedulesCommand {
    /// Make a schedule.
    Create(ScheduleArgs),
    /// Replace a schedule (every field as given).
    Update(ScheduleArgs),
    /// List schedules.
    List,
    /// One schedule.
    Show {
        /// Its name.
        name: String,
    },
    /// Delete a schedule (its runs stay).
    Delete {
        /// Its name.
        name: String,
    },
    /// Run a schedule now (refused while its last run runs).
    Run {
        /// Its name.
        name: String,
        /// Wait for the run to end.
        #[arg(long)]
        wait: bool,
    },
}

/// A schedule's fields.
#[derive(clap::Args)]
pub struct ScheduleArgs {
    /// Its name.
    name: String,
    /// mid.server.NAME, mid.cluster.NAME or mid.auto.
    #[arg(long)]
    agent: String,
    /// Addresses, CIDRs and ranges (repeatable).
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// Ports and ranges to scan (repeatable; default a common set).
    #[arg(long = "port")]
    ports: Vec<String>,
    /// An snmp alias whose credential asks the hosts' SNMP agents (repeatable).
    #[arg(long = "snmp-alias")]
    snmp_aliases: Vec<String>,
    /// Most addresses per job (default 256).
    #[arg(long)]
    chunk_size: Option<u32>,
    /// A cron expression (`30 2 * * *`).
    #[arg(long, conflicts_with = "every")]
    cron: Option<String>,
    /// Or an interval (`6h`, `1d`).
    #[arg(long)]
    every: Option<String>,
    /// The time zone the cron expression is read in (default UTC).
    #[arg(long)]
    time_zone: Option<String>,
    /// Saved paused: runs only by hand.
    #[arg(long)]
    disabled: bool,
}

impl ScheduleArgs {
    fn into_schedule(self) -> DiscoverySchedule {
        DiscoverySchedule {
            name: self.name,
            run: NewDiscoveryRun {
                agent: self.agent,
                targets: self.targets,
                ports: port_specs(self.ports),
                snmp_aliases: self.snmp_aliases,
                chunk_size: self.chunk_size,
                ..NewDiscoveryRun::default()
            },
            schedule: Schedule {
                cron: self.cron,
                every: self.every,
                time_zone: self.time_zone,
            },
            enabled: !self.disabled,
        }
    }
}

fn port_specs(ports: Vec<String>) -> Vec<PortSpec> {
    ports
        .into_iter()
        .map(|p| match p.parse::<u32>() {
            Ok(n) => PortSpec::Number(n),
            Err(_) => PortSpec::Text(p),
        })
        .collect()
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
            snmp_aliases,
            chunk_size,
            wait,
        } => {
            let ports = port_specs(ports);
            let mut run = api
                .start_discovery(&NewDiscoveryRun {
                    agent,
                    targets,
                    ports,
                    rate_per_sec,
                    timeout_ms: None,
                    snmp_aliases,
                    chunk_size,
                })
                .await?;
            if wait {
                run = super::ctl_progress::while_waiting(
                    format!("discovery run {} running", run.id),
                    api.wait_discovery_run(
                        &run.id,
                        Duration::from_millis(500),
                        Duration::from_secs(3600),
                    ),
                )
                .await?;
            }
            print_run(&run, json)?;
            if wait && run.state == DiscoveryState::Error {
                bail!("the discovery run failed");
            }
        }
        DiscoveryCommand::Schedules(cmd) => schedules(api, cmd, json).await?,
        DiscoveryCommand::List { schedule, limit } => {
            let runs = api.list_discovery_runs(schedule.as_deref(), limit).await?;
            if json {
                return print_json(&runs);
            }
            let mut t = table(&[
                "id", "state", "started", "alive", "new", "updated", "errors",
            ]);
            for r in &runs {
                t.add_row(vec![
                    r.id.clone(),
                    r.state.as_str().to_string(),
                    r.started_at.clone(),
                    r.hosts_alive.to_string(),
                    r.devices_new.to_string(),
                    r.devices_updated.to_string(),
                    r.errors.to_string(),
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}

async fn schedules(api: &ApiClient, cmd: SchedulesCommand, json: bool) -> Result<()> {
    let print = |info: &DiscoveryScheduleInfo| -> Result<()> {
        if json {
            return print_json(info);
        }
        println!(
            "discovery schedule {}: {}, next run {}",
            info.name,
            if info.enabled { "enabled" } else { "paused" },
            info.next_run_at.as_deref().unwrap_or("none")
        );
        Ok(())
    };
    match cmd {
        SchedulesCommand::Create(args) => {
            print(&api.create_discovery_schedule(&args.into_schedule()).await?)?;
        }
        SchedulesCommand::Update(args) => {
            print(&api.put_discovery_schedule(&args.into_schedule()).await?)?;
        }
        SchedulesCommand::Show { name } => print_json(&api.get_discovery_schedule(&name).await?)?,
        SchedulesCommand::Delete { name } => {
            api.delete_discovery_schedule(&name).await?;
            if !json {
                println!("discovery schedule {name} deleted");
            }
        }
        SchedulesCommand::List => {
            let all = api.list_discovery_schedules().await?;
            if json {
                return print_json(&all);
            }
            let mut t = table(&[
                "name", "agent", "targets", "when", "enabled", "next run", "last run",
            ]);
            for s in &all {
                t.add_row(vec![
                    s.name.clone(),
                    s.run.agent.clone(),
                    s.run.targets.join(" "),
                    match (&s.schedule.cron, &s.schedule.every) {
                        (Some(cron), _) => format!(
                            "{cron} {}",
                            s.schedule.time_zone.as_deref().unwrap_or("UTC")
                        ),
                        (None, Some(every)) => format!("every {every}"),
                        (None, None) => String::new(),
                    },
                    s.enabled.to_string(),
                    s.next_run_at.clone().unwrap_or_default(),
                    s.last_run.clone().unwrap_or_default(),
                ]);
            }
            println!("{t}");
        }
        SchedulesCommand::Run { name, wait } => {
            let mut run = api.run_discovery_schedule(&name).await?;
            if wait {
                run = super::ctl_progress::while_waiting(
                    format!("discovery run {} running", run.id),
                    api.wait_discovery_run(
                        &run.id,
                        Duration::from_millis(500),
                        Duration::from_secs(24 * 3600),
                    ),
                )
                .await?;
            }
            print_run(&run, json)?;
            if wait && run.state == DiscoveryState::Error {
                bail!("the discovery run failed");
            }
        }
    }
    Ok(())
}

fn print_run(run: &DiscoveryRun, json: bool) -> Result<()> {
    if json {
        return print_json(run);
    }
    println!(
        "discovery run {}: {}, {} hosts answered, {} devices new, {} updated, {} jobs failed{}",
        run.id,
        run.state.as_str(),
        run.hosts_alive,
        run.devices_new,
        run.devices_updated,
        run.errors,
        run.detail
            .as_ref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    );
    Ok(())
}

pub async fn devices(api: &ApiClient, cmd: DevicesCommand, json: bool) -> Result<()> {
    match cmd {
        DevicesCommand::List { class, limit } => {
            let devices = api.list_devices(class.as_deref(), None, limit).await?;
            if json {
                return print_json(&devices);
            }
            let mut t = table(&["address", "name", "class", "open ports", "last seen", "why"]);
            for d in &devices {
                t.add_row(vec![
                    d.address.clone(),
                    d.name.clone().unwrap_or_default(),
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
