//! `openmid ctl`: the admin API from a shell — tables for people, `--json` for scripts.

use anyhow::{Context, Result, anyhow};
use openmid_client::{ActionOutcome, ApiClient};
use openmid_proto::api::{NewOutput, RecordQuery, RestAction};
use openmid_proto::ecc::{EccRecord, Priority, Topic};
use openmid_proto::rest::Body;
use openmid_proto::secret::Secret;
use openmid_proto::trust::{Trust, parse_fingerprint};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::connections::{self, CredentialsCommand, SoapRun};
use super::ctl_aliases::{self, AliasesCommand};
use super::ctl_output::{parse_headers, print_json, table};

/// Connection flags shared by every `ctl` command. Each falls back to its
/// environment variable, read by hand rather than by clap so an empty variable
/// (`OPENMID_CA=` left over in a shell) counts as unset instead of an error.
#[derive(clap::Args)]
pub struct Args {
    /// Instance URL [env: OPENMID_URL].
    #[arg(long = "instance", global = true)]
    instance_url: Option<String>,
    /// Admin API token [env: OPENMID_TOKEN].
    #[arg(long, global = true)]
    token: Option<String>,
    /// CA (or the instance's own certificate) file to trust [env: OPENMID_CA].
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// SHA-256 fingerprint of the instance certificate to trust
    /// [env: OPENMID_FINGERPRINT]. Either trust flag on the command line overrides both
    /// variables.
    #[arg(long, global = true)]
    fingerprint: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Enrollment tokens for new MIDs.
    #[command(subcommand)]
    EnrollToken(super::ctl_registry::EnrollTokenCommand),
    /// MID Servers.
    #[command(subcommand)]
    Mids(super::ctl_registry::MidsCommand),
    /// The ECC queue.
    #[command(subcommand)]
    Ecc(EccCommand),
    /// MID clusters.
    #[command(subcommand)]
    Clusters(super::ctl_registry::ClustersCommand),
    /// Credentials (secrets are write-only).
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// Connection & Credential aliases.
    #[command(subcommand)]
    Aliases(Box<AliasesCommand>),
    /// Run an action through a MID.
    #[command(subcommand)]
    Run(RunCommand),
    /// Data sources of Import Sets.
    #[command(subcommand, name = "data-sources")]
    DataSources(super::ctl_imports::DataSourcesCommand),
    /// Import runs and the import sets they fill.
    #[command(subcommand)]
    Import(super::ctl_imports::ImportCommand),
    /// Discovery runs: ping, scan, file devices.
    #[command(subcommand)]
    Discovery(super::ctl_discovery::DiscoveryCommand),
    /// Discovered devices.
    #[command(subcommand)]
    Devices(super::ctl_discovery::DevicesCommand),
    /// Metric collection: scrape targets and queries.
    #[command(subcommand)]
    Metrics(super::ctl_metrics::MetricsCommand),
    /// The audit log: admin calls and what MIDs ran, newest first.
    Audit(super::ctl_audit::AuditArgs),
}

#[derive(clap::Subcommand)]
enum EccCommand {
    /// Insert an output record.
    Insert {
        /// mid.server.NAME
        #[arg(long)]
        agent: String,
        /// Topic, e.g. RESTProbe.
        #[arg(long)]
        topic: String,
        /// Payload JSON.
        #[arg(long)]
        payload: String,
        /// Label.
        #[arg(long)]
        name: Option<String>,
        /// interactive, expedited or standard.
        #[arg(long)]
        priority: Option<String>,
        /// Correlator.
        #[arg(long)]
        correlator: Option<String>,
    },
    /// Show one record.
    Get { id: String },
    /// Cancel an output: at once if it waits, else its MID stops it.
    Cancel { id: String },
    /// Follow the queue live: one line per new or changed record, until Ctrl-C.
    Tail(super::ctl_tail::TailArgs),
    /// List records.
    List {
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        topic: Option<String>,
        #[arg(long)]
        correlator: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        after: Option<String>,
    },
}

#[derive(clap::Subcommand)]
enum RunCommand {
    /// An HTTP request made by a MID: through an alias (`--alias A --path /x`) or to a
    /// URL on a MID you name (`--mid M --url U`).
    Rest {
        /// Connection & Credential alias.
        #[arg(long, conflicts_with_all = ["mid", "agent", "url", "application"])]
        alias: Option<String>,
        /// Path below the alias's base URL.
        #[arg(long, requires = "alias")]
        path: Option<String>,
        /// Query parameter `name=value` (repeatable; with --alias).
        #[arg(long = "query", requires = "alias")]
        query: Vec<String>,
        /// MID name (or give --agent).
        #[arg(long, conflicts_with = "agent")]
        mid: Option<String>,
        /// mid.server.NAME, mid.cluster.NAME or mid.auto.
        #[arg(long)]
        agent: Option<String>,
        /// Application, for mid.auto.
        #[arg(long)]
        application: Option<String>,
        /// URL as the MID sees it.
        #[arg(long, required_unless_present = "alias")]
        url: Option<String>,
        /// HTTP method.
        #[arg(long, short = 'X', default_value = "GET")]
        method: String,
        /// Header `Name: value` (repeatable).
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// Request body.
        #[arg(long, short = 'd')]
        body: Option<String>,
        /// Seconds to wait for the result.
        #[arg(long, default_value_t = 30.0)]
        wait: f64,
        /// Timeout on the MID, in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
    /// A SOAP call made by a MID through a soap alias.
    Soap(SoapRun),
    /// A program run on a MID's host, its output printed as it comes:
    /// `run command --mid M -- /usr/bin/df -h`. Exits with the program's code.
    Command(super::run_command::CommandRun),
    /// Any other action of the instance (`ssh`, `sql`, …), its fields as flags, read
    /// from the instance's OpenAPI document: `run NAME --help` lists them.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

/// The value of environment variable `name`, unless it is unset, empty or blank.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn client(args: &Args) -> Result<ApiClient> {
    let url = args
        .instance_url
        .clone()
        .or_else(|| env_value("OPENMID_URL"))
        .ok_or_else(|| anyhow!("no instance URL: pass --instance or set OPENMID_URL"))?;
    let token = args
        .token
        .clone()
        .or_else(|| env_value("OPENMID_TOKEN"))
        .ok_or_else(|| anyhow!("no admin token: pass --token or set OPENMID_TOKEN"))?;
    // Trust given on the command line wins over the environment as a whole, so
    // `--fingerprint` works in a shell that exports OPENMID_CA.
    let (ca, fingerprint, from) = if args.ca.is_some() || args.fingerprint.is_some() {
        (args.ca.clone(), args.fingerprint.clone(), "flag")
    } else {
        (
            env_value("OPENMID_CA").map(PathBuf::from),
            env_value("OPENMID_FINGERPRINT"),
            "environment",
        )
    };
    let trust = match (ca, fingerprint) {
        (Some(_), Some(_)) => {
            return Err(anyhow!(
                "give either --ca/OPENMID_CA or --fingerprint/OPENMID_FINGERPRINT, not both (both set by {from})"
            ));
        }
        (Some(ca), None) => Trust::CaPem(
            std::fs::read(&ca).with_context(|| format!("CA file: reading {}", ca.display()))?,
        ),
        (None, Some(fp)) => {
            Trust::Fingerprint(parse_fingerprint(&fp).context("certificate fingerprint")?)
        }
        (None, None) => Trust::SystemRoots,
    };
    Ok(ApiClient::new(&url, Secret::new(token), &trust)?)
}

fn print_record(r: &EccRecord) -> Result<()> {
    let mut t = table(&["field", "value"]);
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let rows = [
        ("id", r.id.clone()),
        ("queue", r.queue.to_string()),
        ("agent", r.agent.clone()),
        ("topic", r.topic.to_string()),
        ("name", r.name.clone()),
        ("source", r.source.clone()),
        ("state", r.state.to_string()),
        ("priority", r.priority.to_string()),
        ("attempt", format!("{} of {}", r.attempt, r.max_attempts)),
        ("response_to", opt(&r.response_to)),
        ("correlator", opt(&r.correlator)),
        ("claimed_by", opt(&r.claimed_by)),
        ("error", opt(&r.error)),
        ("created", r.created_at.clone()),
        ("claimed", opt(&r.claimed_at)),
        ("processed", opt(&r.processed_at)),
        ("payload", serde_json::to_string_pretty(&r.payload)?),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    println!("{t}");
    Ok(())
}

/// Runs a `ctl` command; a failure whose cause says what to check next (a refused
/// token, nothing listening, an untrusted certificate) gets a hint line.
pub async fn run(args: Args) -> Result<ExitCode> {
    match run_command(args).await {
        Err(e) => match super::ctl_hints::hint(&e) {
            Some(hint) => Err(anyhow!(
                "{}\n  hint: {hint}",
                openmid::entry::error_chain(&e)
            )),
            None => Err(e),
        },
        done => done,
    }
}

async fn run_command(args: Args) -> Result<ExitCode> {
    let api = client(&args)?;
    let json = args.json;
    match args.command {
        Command::EnrollToken(cmd) => super::ctl_registry::enroll_token(&api, cmd, json).await?,
        Command::Mids(cmd) => super::ctl_registry::mids(&api, cmd, json).await?,
        Command::Clusters(cmd) => super::ctl_registry::clusters(&api, cmd, json).await?,
        Command::Ecc(EccCommand::Insert {
            agent,
            topic,
            payload,
            name,
            priority,
            correlator,
        }) => {
            let topic: Topic = topic.parse().context("--topic")?;
            let payload = openmid_proto::payload::Payload::from_text(payload)
                .context("--payload is not valid JSON")?;
            let priority = priority
                .map(|p| p.parse::<Priority>())
                .transpose()
                .context("--priority")?;
            let r = api
                .insert_output(&NewOutput {
                    durability: Default::default(),
                    agent,
                    topic,
                    name,
                    source: Some("ctl".into()),
                    payload,
                    priority,
                    correlator,
                    max_attempts: None,
                    at_most_once: false,
                    application: None,
                })
                .await?;
            if json {
                print_json(&r)?
            } else {
                print_record(&r)?
            }
        }
        Command::Ecc(EccCommand::Tail(tail)) => super::ctl_tail::tail(&api, tail, json).await?,
        Command::Ecc(EccCommand::Get { id }) => {
            let r = api.get_record(&id).await?;
            if json {
                print_json(&r)?
            } else {
                print_record(&r)?
            }
        }
        Command::Ecc(EccCommand::List {
            queue,
            state,
            agent,
            topic,
            correlator,
            limit,
            after,
        }) => {
            let page = api
                .list_records(&RecordQuery {
                    queue,
                    state,
                    agent,
                    topic,
                    correlator,
                    limit,
                    after,
                })
                .await?;
            if json {
                print_json(&page)?;
            } else {
                let mut t = table(&[
                    "id", "queue", "state", "topic", "agent", "attempt", "name", "created",
                ]);
                for r in &page.records {
                    t.add_row(vec![
                        r.id.clone(),
                        r.queue.to_string(),
                        r.state.to_string(),
                        r.topic.to_string(),
                        r.agent.clone(),
                        r.attempt.to_string(),
                        r.name.chars().take(48).collect(),
                        r.created_at.clone(),
                    ]);
                }
                println!("{t}");
                if let Some(next) = page.next_after {
                    eprintln!("more: --after {next}");
                }
            }
        }
        Command::Credentials(cmd) => connections::credentials(&api, cmd, json).await?,
        Command::Aliases(cmd) => ctl_aliases::aliases(&api, *cmd, json).await?,
        Command::DataSources(cmd) => super::ctl_imports::data_sources(&api, cmd, json).await?,
        Command::Discovery(cmd) => super::ctl_discovery::discovery(&api, cmd, json).await?,
        Command::Devices(cmd) => super::ctl_discovery::devices(&api, cmd, json).await?,
        Command::Metrics(cmd) => super::ctl_metrics::metrics(&api, cmd, json).await?,
        Command::Audit(args) => super::ctl_audit::audit(&api, args, json).await?,
        Command::Import(cmd) => return super::ctl_imports::import(&api, cmd, json).await,
        Command::Run(RunCommand::Soap(run)) => return connections::run_soap(&api, run, json).await,
        Command::Run(RunCommand::Other(args)) => {
            return super::run_action::run(&api, args, json).await;
        }
        Command::Run(RunCommand::Command(run)) => {
            return super::run_command::run_command(&api, run).await;
        }
        Command::Ecc(EccCommand::Cancel { id }) => {
            let r = api.cancel_record(&id).await?;
            if json {
                print_json(&r)?
            } else {
                print_record(&r)?
            }
        }
        Command::Run(RunCommand::Rest {
            alias,
            path,
            query,
            mid,
            agent,
            application,
            url,
            method,
            headers,
            body,
            wait,
            timeout_ms,
        }) => {
            let map = parse_headers(&headers)?;
            let mut query_map = BTreeMap::new();
            for q in query {
                let (k, v) = q
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--query `{q}`: expected `name=value`"))?;
                query_map.insert(k.to_string(), v.to_string());
            }
            if !(0.0..=3600.0).contains(&wait) {
                return Err(anyhow!("--wait must be 0–3600 seconds"));
            }
            let outcome = api
                .rest_action(
                    &RestAction {
                        alias,
                        path,
                        query: query_map,
                        mid,
                        agent,
                        application,
                        url,
                        method: Some(method),
                        headers: map,
                        body: body.map(Body::Text),
                        timeout_ms,
                        ..RestAction::default()
                    },
                    Duration::from_secs_f64(wait),
                )
                .await?;
            match outcome {
                ActionOutcome::Pending(p) => {
                    if json {
                        print_json(&p)?;
                    } else {
                        println!(
                            "not finished after {wait} s: output {} is {}; poll with `openmid ctl ecc get {}`",
                            p.output_id, p.state, p.output_id
                        );
                    }
                    return Ok(ExitCode::from(2));
                }
                ActionOutcome::Done(r) => {
                    if json {
                        print_json(&r)?;
                    } else {
                        let mid = r.mid.clone().unwrap_or_default();
                        match &r.response {
                            Some(resp) => {
                                eprintln!(
                                    "HTTP {} via MID {mid} in {} ms (output {}, input {})",
                                    resp.status,
                                    r.timings.total_ms,
                                    r.output_id,
                                    r.input_id.clone().unwrap_or_default()
                                );
                                match (&resp.body, &resp.body_base64) {
                                    (Some(text), _) => println!("{text}"),
                                    (None, Some(b64)) => println!("<binary body, base64> {b64}"),
                                    _ => {}
                                }
                            }
                            None => eprintln!(
                                "failed via MID {mid}: {} (output {})",
                                r.error.clone().unwrap_or_default(),
                                r.output_id
                            ),
                        }
                    }
                    if r.response.is_none() {
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
