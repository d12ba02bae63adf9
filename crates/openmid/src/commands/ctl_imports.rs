//! `openmid ctl data-sources` and `openmid ctl import`: Import Sets from a shell —
//! data sources written as JSON (the API's document), runs started and waited for,
//! rows paged or downloaded.

use super::connections::read_source;
use super::ctl_output::{print_json, table};
use anyhow::{Context, Result, bail};
use openmid_client::{ApiClient, ClientError};
use openmid_proto::import::{DataSource, DataSourceInfo, ImportSet};
use std::path::PathBuf;
use std::time::Duration;

/// `ctl data-sources`.
#[derive(clap::Subcommand)]
pub enum DataSourcesCommand {
    /// List data sources.
    List,
    /// Show one data source.
    Show {
        /// Its name.
        name: String,
    },
    /// Create a data source, or replace the one of the same name, from its JSON
    /// document (`kind` file, ldap or sql; `read` as the action of that kind takes;
    /// optional `agent`, `marker`, `schedule`, `enabled`, `retention_days`).
    Put {
        /// The JSON file (`-`: stdin).
        #[arg(long)]
        from_json: PathBuf,
    },
    /// Delete a data source (its import sets stay until their retention).
    Delete {
        /// Its name.
        name: String,
    },
}

/// `ctl import`.
#[derive(clap::Subcommand)]
pub enum ImportCommand {
    /// Start a run of a data source now.
    Run {
        /// The data source.
        source: String,
        /// Wait for the run to end and show how it ended.
        #[arg(long)]
        wait: bool,
        /// Longest wait, in seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// List import sets, newest first.
    List {
        /// Of this data source only.
        #[arg(long)]
        source: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show one import set.
    Show {
        /// Its id.
        id: String,
    },
    /// Print rows of an import set as JSON lines.
    Rows {
        /// Its id.
        id: String,
        /// Rows after this row number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// The source records a run refused, and why.
    Errors {
        /// Its id.
        id: String,
    },
    /// Download an import set as CSV or JSON lines.
    Download {
        /// Its id.
        id: String,
        /// csv or jsonl.
        #[arg(long, default_value = "csv", value_parser = ["csv", "jsonl"])]
        format: String,
        /// The file to write.
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
}

pub async fn data_sources(api: &ApiClient, cmd: DataSourcesCommand, json: bool) -> Result<()> {
    match cmd {
        DataSourcesCommand::List => {
            let all = api.list_data_sources().await?;
            if json {
                return print_json(&all);
            }
            let mut t = table(&[
                "name",
                "kind",
                "schedule",
                "next run",
                "marker",
                "last import set",
            ]);
            for s in &all {
                t.add_row(vec![
                    s.source.name.clone(),
                    s.source.read.kind().to_string(),
                    schedule_text(s),
                    s.next_run_at.clone().unwrap_or_default(),
                    s.marker_value.clone().unwrap_or_default(),
                    s.last_import_set.clone().unwrap_or_default(),
                ]);
            }
            println!("{t}");
        }
        DataSourcesCommand::Show { name } => {
            let s = api.get_data_source(&name).await?;
            print_json(&s)?;
        }
        DataSourcesCommand::Put { from_json } => {
            let text = read_source(&from_json)?;
            let source: DataSource = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a data source document", from_json.display()))?;
            let info = match api.get_data_source(&source.name).await {
                Ok(_) => api.put_data_source(&source).await?,
                Err(ClientError::Api { status: 404, .. }) => {
                    api.create_data_source(&source).await?
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                return print_json(&info);
            }
            println!(
                "data source {} saved{}",
                info.source.name,
                info.next_run_at
                    .as_ref()
                    .map(|t| format!("; next run {t}"))
                    .unwrap_or_default()
            );
        }
        DataSourcesCommand::Delete { name } => {
            api.delete_data_source(&name).await?;
            if !json {
                println!("data source {name} deleted");
            }
        }
    }
    Ok(())
}

fn schedule_text(s: &DataSourceInfo) -> String {
    match &s.source.schedule {
        None => String::new(),
        Some(sc) => {
            let what = sc
                .cron
                .clone()
                .or_else(|| sc.every.as_ref().map(|e| format!("every {e}")))
                .unwrap_or_default();
            let zone = sc
                .time_zone
                .as_ref()
                .map(|z| format!(" ({z})"))
                .unwrap_or_default();
            let paused = if s.source.enabled { "" } else { ", paused" };
            format!("{what}{zone}{paused}")
        }
    }
}

pub async fn import(
    api: &ApiClient,
    cmd: ImportCommand,
    json: bool,
) -> Result<std::process::ExitCode> {
    match cmd {
        ImportCommand::Run {
            source,
            wait,
            timeout,
        } => {
            let mut set = api.run_data_source(&source).await?;
            if !json {
                println!("import set {} started (output {})", set.id, set.output_id);
            }
            if wait {
                set = super::ctl_progress::while_waiting(
                    format!("import set {} running", set.id),
                    api.wait_import_set(
                        &set.id,
                        Duration::from_millis(500),
                        Duration::from_secs(timeout),
                    ),
                )
                .await?;
                if json {
                    print_json(&set)?;
                } else {
                    print_set(&set);
                }
                if !set.state.is_final() {
                    bail!(
                        "import set {} still runs after {timeout} s: `openmid ctl import show {}` follows it",
                        set.id,
                        set.id
                    );
                }
                if set.state == openmid_proto::import::ImportState::Error
                    || set.state == openmid_proto::import::ImportState::Cancelled
                {
                    return Ok(std::process::ExitCode::FAILURE);
                }
            } else if json {
                print_json(&set)?;
            }
        }
        ImportCommand::List { source, limit } => {
            let sets = api.list_import_sets(source.as_deref(), limit).await?;
            if json {
                print_json(&sets)?;
            } else {
                let mut t = table(&[
                    "id", "source", "state", "started", "finished", "rows", "errors",
                ]);
                for s in &sets {
                    t.add_row(vec![
                        s.id.clone(),
                        s.source.clone(),
                        s.state.as_str().to_string(),
                        s.started_at.clone(),
                        s.finished_at.clone().unwrap_or_default(),
                        s.rows.to_string(),
                        s.errors.to_string(),
                    ]);
                }
                println!("{t}");
            }
        }
        ImportCommand::Show { id } => {
            let set = api.get_import_set(&id).await?;
            if json {
                print_json(&set)?;
            } else {
                print_set(&set);
            }
        }
        ImportCommand::Rows { id, after, limit } => {
            let page = api.import_rows(&id, after, limit).await?;
            if json {
                print_json(&page)?;
            } else {
                for row in &page.rows {
                    println!("{}", serde_json::to_string(&row)?);
                }
                if let Some(next) = page.next_after {
                    eprintln!("(next page: --after {next})");
                }
            }
        }
        ImportCommand::Errors { id } => {
            let page = api.import_errors(&id).await?;
            if json {
                print_json(&page)?;
            } else {
                let mut t = table(&["record", "line", "reason"]);
                for e in &page.errors {
                    t.add_row(vec![
                        e.record.to_string(),
                        e.line.map(|l| l.to_string()).unwrap_or_default(),
                        e.reason.clone(),
                    ]);
                }
                println!("{t}");
            }
        }
        ImportCommand::Download { id, format, output } => {
            let bytes = super::ctl_progress::while_waiting(
                format!("downloading import set {id}"),
                api.download_import_set(&id, &format, &output),
            )
            .await?;
            if !json {
                println!("{bytes} bytes written to {}", output.display());
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_set(s: &ImportSet) {
    let mut t = table(&["field", "value"]);
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let rows = [
        ("id", s.id.clone()),
        ("source", format!("{} ({})", s.source, s.kind)),
        ("state", s.state.as_str().to_string()),
        ("trigger", s.trigger.clone()),
        ("output", s.output_id.clone()),
        ("started", s.started_at.clone()),
        ("finished", opt(&s.finished_at)),
        ("rows", s.rows.to_string()),
        ("errors", s.errors.to_string()),
        (
            "columns",
            s.columns
                .iter()
                .map(|c| format!("{} {}", c.name, c.type_name))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("marker from", opt(&s.marker_from)),
        ("marker to", opt(&s.marker_to)),
        ("detail", opt(&s.detail)),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    println!("{t}");
}
