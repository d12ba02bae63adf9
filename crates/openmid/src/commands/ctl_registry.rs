//! `openmid ctl enroll-token`, `mids` and `clusters`: the MID registry from a shell.

use super::ctl_output::{print_json, table};
use anyhow::{Result, anyhow};
use openmid_client::ApiClient;
use openmid_proto::api::{
    ClusterInfo, ClusterKind, MidInfo, NewCluster, NewEnrollmentToken, ProfileUpdate,
};

#[derive(clap::Subcommand)]
pub(super) enum ClustersCommand {
    /// List clusters.
    List,
    /// Show one cluster.
    Show { name: String },
    /// Create a cluster (or replace it with --replace).
    Create {
        name: String,
        /// load_balance or failover.
        #[arg(long, value_parser = ["load_balance", "failover"])]
        kind: String,
        /// Member MID names, best-ranked first (comma separated).
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<String>,
        /// Replace an existing cluster of that name.
        #[arg(long)]
        replace: bool,
    },
    /// Delete a cluster.
    Delete { name: String },
}

#[derive(clap::Subcommand)]
pub(super) enum EnrollTokenCommand {
    /// Make a one-time enrollment token.
    Create {
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Validate MIDs that enroll with it at once.
        #[arg(long)]
        auto_validate: bool,
        /// A note for people.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(clap::Subcommand)]
pub(super) enum MidsCommand {
    /// List MID Servers.
    List,
    /// Show one MID Server.
    Show { name: String },
    /// Validate a MID Server so it gets work.
    Validate { name: String },
    /// Take no new work (running work finishes).
    Pause { name: String },
    /// Take work again after a pause or drain.
    Resume { name: String },
    /// Finish running work, take no more, then be `drained`.
    Drain { name: String },
    /// Refuse the MID everywhere, at once (it must enroll again).
    Invalidate { name: String },
    /// Ask the MID to make a new key pair and secret.
    Rekey { name: String },
    /// Remove an invalidated (or never validated) MID so its name can enroll again.
    Delete { name: String },
    /// Status changes, newest first.
    History { name: String },
    /// Set what a MID offers (overrides its config); --reset returns to its config.
    Set {
        name: String,
        /// Capabilities, comma separated (REST,SSH,… or ALL).
        #[arg(long, value_delimiter = ',')]
        capabilities: Option<Vec<String>>,
        /// Applications, comma separated.
        #[arg(long, value_delimiter = ',')]
        applications: Option<Vec<String>>,
        /// IP ranges, comma separated (10.0.0.0/8,!10.9.0.0/16).
        #[arg(long, value_delimiter = ',')]
        ip_ranges: Option<Vec<String>>,
        /// Drop the admin settings.
        #[arg(long)]
        reset: bool,
    },
}

/// Runs one `enroll-token` subcommand.
pub(super) async fn enroll_token(
    api: &ApiClient,
    cmd: EnrollTokenCommand,
    json: bool,
) -> Result<()> {
    match cmd {
        EnrollTokenCommand::Create {
            ttl,
            auto_validate,
            note,
        } => {
            let t = api
                .create_enrollment_token(&NewEnrollmentToken {
                    ttl_secs: Some(ttl),
                    auto_validate,
                    note,
                })
                .await?;
            if json {
                print_json(&t)?;
            } else {
                println!("{}", t.token);
                eprintln!(
                    "one-time enrollment token, expires {}{}; put it in the MID config as enrollment_token",
                    t.expires_at,
                    if t.auto_validate {
                        ", auto-validates"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(())
}

/// Runs one `mids` subcommand.
pub(super) async fn mids(api: &ApiClient, cmd: MidsCommand, json: bool) -> Result<()> {
    match cmd {
        MidsCommand::List => {
            let mids = api.list_mids().await?;
            if json {
                print_json(&mids)?;
            } else {
                let mut t = table(&[
                    "name",
                    "status",
                    "ready",
                    "running",
                    "version",
                    "host",
                    "last seen",
                ]);
                for m in &mids {
                    t.add_row(vec![
                        m.name.clone(),
                        m.status.as_str().to_string(),
                        m.ready.to_string(),
                        m.processing.to_string(),
                        m.version.clone(),
                        m.hostname.clone(),
                        m.last_seen_at.clone().unwrap_or_default(),
                    ]);
                }
                println!("{t}");
            }
        }
        MidsCommand::Show { name } => {
            let m = api.get_mid(&name).await?;
            if json { print_json(&m)? } else { print_mid(&m) }
        }

        action @ (MidsCommand::Validate { .. }
        | MidsCommand::Pause { .. }
        | MidsCommand::Resume { .. }
        | MidsCommand::Drain { .. }
        | MidsCommand::Invalidate { .. }
        | MidsCommand::Rekey { .. }) => {
            let (verb, name) = match action {
                MidsCommand::Validate { name } => ("validate", name),
                MidsCommand::Pause { name } => ("pause", name),
                MidsCommand::Resume { name } => ("resume", name),
                MidsCommand::Drain { name } => ("drain", name),
                MidsCommand::Invalidate { name } => ("invalidate", name),
                MidsCommand::Rekey { name } => ("rekey", name),
                _ => return Err(anyhow!("not a MID action")),
            };
            let m = api.mid_action(&name, verb).await?;
            if json { print_json(&m)? } else { print_mid(&m) }
        }
        MidsCommand::Delete { name } => {
            api.delete_mid(&name).await?;
            if !json {
                eprintln!("deleted MID {name}");
            }
        }
        MidsCommand::History { name } => {
            let changes = api.mid_history(&name).await?;
            if json {
                print_json(&changes)?;
            } else {
                let mut t = table(&["at", "from", "to", "reason"]);
                for c in &changes {
                    t.add_row(vec![
                        c.at.clone(),
                        c.from.map(|f| f.as_str().to_string()).unwrap_or_default(),
                        c.to.as_str().to_string(),
                        c.reason.clone(),
                    ]);
                }
                println!("{t}");
            }
        }
        MidsCommand::Set {
            name,
            capabilities,
            applications,
            ip_ranges,
            reset,
        } => {
            let m = api
                .update_mid_profile(
                    &name,
                    &ProfileUpdate {
                        capabilities,
                        applications,
                        ip_ranges,
                        reset,
                    },
                )
                .await?;
            if json { print_json(&m)? } else { print_mid(&m) }
        }
    }
    Ok(())
}

/// Runs one `clusters` subcommand.
pub(super) async fn clusters(api: &ApiClient, cmd: ClustersCommand, json: bool) -> Result<()> {
    match cmd {
        ClustersCommand::List => {
            let clusters = api.list_clusters().await?;
            if json {
                print_json(&clusters)?;
            } else {
                let mut t = table(&["name", "kind", "members"]);
                for c in &clusters {
                    t.add_row(vec![
                        c.name.clone(),
                        c.kind.as_str().to_string(),
                        members(c),
                    ]);
                }
                println!("{t}");
            }
        }
        ClustersCommand::Show { name } => {
            let c = api.get_cluster(&name).await?;
            if json {
                print_json(&c)?
            } else {
                print_cluster(&c)
            }
        }
        ClustersCommand::Create {
            name,
            kind,
            members,
            replace,
        } => {
            let kind = ClusterKind::parse(&kind)
                .ok_or_else(|| anyhow!("--kind: load_balance or failover"))?;
            let new = NewCluster {
                name,
                kind,
                members,
            };
            let c = if replace {
                api.put_cluster(&new).await?
            } else {
                api.create_cluster(&new).await?
            };
            if json {
                print_json(&c)?
            } else {
                print_cluster(&c)
            }
        }
        ClustersCommand::Delete { name } => {
            api.delete_cluster(&name).await?;
            if !json {
                eprintln!("deleted cluster {name}");
            }
        }
    }
    Ok(())
}

fn members(c: &ClusterInfo) -> String {
    c.members
        .iter()
        .map(|m| {
            format!(
                "{}. {} ({})",
                m.rank,
                m.name,
                m.status.map_or("not enrolled", |s| s.as_str())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_cluster(c: &ClusterInfo) {
    let mut t = table(&["rank", "member", "status"]);
    for m in &c.members {
        t.add_row(vec![
            m.rank.to_string(),
            m.name.clone(),
            m.status.map_or("not enrolled", |s| s.as_str()).to_string(),
        ]);
    }
    println!("cluster {} ({})\n{t}", c.name, c.kind.as_str());
}

fn print_mid(m: &MidInfo) {
    let mut t = table(&["field", "value"]);
    let rows = [
        ("name", m.name.clone()),
        ("id", m.id.clone()),
        ("status", m.status.as_str().to_string()),
        ("reason", m.status_reason.clone().unwrap_or_default()),
        ("version", m.version.clone()),
        ("protocol", m.protocol_version.to_string()),
        ("host", m.hostname.clone()),
        ("public key", m.public_key.clone()),
        ("enrolled", m.enrolled_at.clone()),
        ("validated", m.validated_at.clone().unwrap_or_default()),
        ("last seen", m.last_seen_at.clone().unwrap_or_default()),
        ("capabilities", m.profile.capabilities.join(", ")),
        ("applications", m.profile.applications.join(", ")),
        ("ip ranges", m.profile.ip_ranges.join(", ")),
        ("ready / running", format!("{} / {}", m.ready, m.processing)),
        (
            "health",
            m.health
                .as_ref()
                .map(|h| {
                    format!(
                        "cpu {:.1}% · rss {} MB · running {}/{} · outbox {} · up {} s · at {}",
                        h.cpu_percent.unwrap_or(0.0),
                        h.rss_bytes.unwrap_or(0) / (1024 * 1024),
                        h.running_by_pool.total(),
                        h.pool_sizes.total(),
                        h.outbox_len,
                        h.uptime_ms / 1000,
                        h.reported_at
                    )
                })
                .unwrap_or_default(),
        ),
        ("rekey pending", m.rekey_pending.to_string()),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    println!("{t}");
}
