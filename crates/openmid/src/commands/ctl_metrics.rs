//! `openmid ctl metrics`: scrape targets per MID or cluster, and queries of the
//! samples the instance keeps.

use super::ctl_output::{print_json, table};
use anyhow::{Result, bail};
use openmid_client::ApiClient;
use openmid_proto::metrics::{NewScrapeTarget, ScrapeTarget};
use std::collections::BTreeMap;

/// `ctl metrics`.
#[derive(clap::Subcommand)]
pub enum MetricsCommand {
    /// Scrape targets.
    #[command(subcommand)]
    Targets(TargetsCommand),
    /// Samples of a selector over a time range (as Prometheus' query_range).
    Query {
        /// A series selector: `name{label="v", label=~"re"}`.
        query: String,
        /// Start: RFC 3339 or unix seconds (default: an hour ago).
        #[arg(long)]
        start: Option<String>,
        /// End: RFC 3339 or unix seconds (default: now).
        #[arg(long)]
        end: Option<String>,
        /// Step: a duration (`15s`, `1m`) or seconds.
        #[arg(long, default_value = "60s")]
        step: String,
    },
    /// The series a selector matches.
    Series {
        /// A series selector.
        selector: String,
    },
}

/// `ctl metrics targets`.
#[derive(clap::Subcommand)]
pub enum TargetsCommand {
    /// Set (create or replace) a target.
    Set {
        /// mid.server.NAME or mid.cluster.NAME.
        #[arg(long)]
        agent: String,
        /// The target's name (its samples' `job` label).
        #[arg(long)]
        name: String,
        /// The Prometheus text endpoint.
        #[arg(long)]
        url: String,
        /// Milliseconds between scrapes.
        #[arg(long, default_value_t = openmid_proto::metrics::DEFAULT_INTERVAL_MS)]
        interval_ms: u64,
        /// Milliseconds a scrape may take (at most the interval).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Extra labels, `name=value` (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// List targets.
    List {
        /// Of this agent only.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Show one target.
    Show {
        /// mid.server.NAME or mid.cluster.NAME.
        agent: String,
        /// The target's name.
        name: String,
    },
    /// Remove a target.
    Delete {
        /// mid.server.NAME or mid.cluster.NAME.
        agent: String,
        /// The target's name.
        name: String,
    },
}

pub async fn metrics(api: &ApiClient, cmd: MetricsCommand, json: bool) -> Result<()> {
    match cmd {
        MetricsCommand::Targets(cmd) => targets(api, cmd, json).await,
        MetricsCommand::Query {
            query,
            start,
            end,
            step,
        } => {
            // To the millisecond: a step grid ending on the last whole second would
            // leave out what arrived since.
            let now = openmid_proto::time::now_ms();
            let seconds = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
            let start = start.unwrap_or_else(|| seconds(now - 3_600_000));
            let end = end.unwrap_or_else(|| seconds(now));
            let r = api.query_range(&query, &start, &end, &step).await?;
            if json {
                return print_json(&r);
            }
            let mut t = table(&["series", "time", "value"]);
            for s in &r.data.result {
                let labels: Vec<String> =
                    s.metric.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                let name = labels.join(", ");
                for (ts, v) in &s.values {
                    let ms = (*ts * 1000.0) as i64;
                    t.add_row(vec![
                        name.clone(),
                        openmid_proto::time::rfc3339(ms),
                        v.clone(),
                    ]);
                }
            }
            println!("{t}");
            Ok(())
        }
        MetricsCommand::Series { selector } => {
            let r = api.series(&selector).await?;
            if json {
                return print_json(&r);
            }
            for labels in &r.data {
                let labels: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                println!("{{{}}}", labels.join(", "));
            }
            Ok(())
        }
    }
}

async fn targets(api: &ApiClient, cmd: TargetsCommand, json: bool) -> Result<()> {
    match cmd {
        TargetsCommand::Set {
            agent,
            name,
            url,
            interval_ms,
            timeout_ms,
            labels,
        } => {
            let mut map = BTreeMap::new();
            for l in labels {
                let Some((k, v)) = l.split_once('=') else {
                    bail!("--label: `{l}` is not name=value");
                };
                map.insert(k.to_string(), v.to_string());
            }
            let view = api
                .put_scrape_target(&NewScrapeTarget {
                    agent,
                    target: ScrapeTarget {
                        name,
                        url,
                        interval_ms,
                        timeout_ms: timeout_ms
                            .unwrap_or(interval_ms.min(openmid_proto::metrics::DEFAULT_TIMEOUT_MS)),
                        labels: map,
                    },
                })
                .await?;
            if json {
                return print_json(&view);
            }
            println!(
                "scrape target {} of {} set: {} every {} ms",
                view.target.name, view.agent, view.target.url, view.target.interval_ms
            );
        }
        TargetsCommand::List { agent } => {
            let list = api.list_scrape_targets(agent.as_deref()).await?;
            if json {
                return print_json(&list);
            }
            let mut t = table(&["agent", "name", "url", "interval ms", "scraped by"]);
            for v in &list {
                t.add_row(vec![
                    v.agent.clone(),
                    v.target.name.clone(),
                    v.target.url.clone(),
                    v.target.interval_ms.to_string(),
                    v.assigned_to.clone().unwrap_or_else(|| "-".into()),
                ]);
            }
            println!("{t}");
        }
        TargetsCommand::Show { agent, name } => {
            let v = api.get_scrape_target(&agent, &name).await?;
            print_json(&v)?;
        }
        TargetsCommand::Delete { agent, name } => {
            api.delete_scrape_target(&agent, &name).await?;
            if !json {
                println!("scrape target {name} of {agent} removed");
            }
        }
    }
    Ok(())
}
