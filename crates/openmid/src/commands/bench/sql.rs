//! `openmid bench sql`: a large result read through a MID against PostgreSQL's own
//! client doing the same read in the same run — `psql -c "\copy (…) to stdout"` into
//! `/dev/null` — with the MID's peak memory. Through the MID the time runs from the
//! submission until a client following the action's `rows` stream has read the last
//! row (every page stored on the instance on the way), so the figures compare what a
//! user waits for in each case.

use super::{mb, setup};
use anyhow::{Context, Result, bail};
use openmid_client::ActionOutcome;
use openmid_mid::config::PoolSizes;
use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::NewCredential;
use openmid_proto::command_output::{OutputLine, OutputStream};
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::ecc::State;
use openmid_proto::secret::Secret;
use openmid_proto::sql::{SqlAction, SqlPage, SqlResponse, TlsMode};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const MID_NAME: &str = "bench-sql-mid";

/// SQL to loopback only, reads only.
const POLICY: &str = r#"
[sql]
allow_cidrs = ["127.0.0.0/8", "::1/128"]
"#;

/// Flags of `openmid bench sql`.
#[derive(clap::Args)]
pub(super) struct SqlArgs {
    /// Rows in the table read (id, a 32-character name, a numeric and a timestamp).
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Rows per page through the MID.
    #[arg(long, default_value_t = 5_000)]
    page_rows: u32,
    /// The PostgreSQL server (host:port), reached with the `postgres` user.
    #[arg(long, default_value = "127.0.0.1:5432")]
    server: String,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// The read both sides do.
const QUERY: &str = "SELECT id, name, price, seen FROM bench_rows ORDER BY id";

pub(super) async fn run(args: SqlArgs) -> Result<ExitCode> {
    if args.rows == 0 || args.page_rows == 0 || args.page_rows > 10_000 {
        bail!("--rows must be at least 1 and --page-rows 1–10000");
    }
    let (host, port) = args
        .server
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .context("--server: give host:port")?;
    let db = format!("openmid_bench_{}", std::process::id());
    psql(&host, port, "postgres", &format!("CREATE DATABASE {db}"))
        .context("creating the benchmark's database (is PostgreSQL running, with trust auth for `postgres`?)")?;
    let result = measure(&args, &host, port, &db).await;
    let _ = psql(
        &host,
        port,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
    result
}

async fn measure(args: &SqlArgs, host: &str, port: u16, db: &str) -> Result<ExitCode> {
    eprintln!("filling a table with {} rows", args.rows);
    psql(
        host,
        port,
        db,
        &format!(
            "CREATE TABLE bench_rows AS SELECT g AS id, md5(g::text) AS name, (g * 1.25)::numeric(12,2) AS price, '2026-01-01'::timestamptz + g * interval '1 second' AS seen FROM generate_series(1, {}) g; ALTER TABLE bench_rows ADD PRIMARY KEY (id)",
            args.rows
        ),
    )?;
    // Its own call: VACUUM cannot run in the transaction psql wraps `-c` statements in.
    psql(host, port, db, "VACUUM ANALYZE bench_rows")?;

    // The usual tool, twice (the first warms the cache for both sides).
    let copy = format!("\\copy ({QUERY}) to stdout");
    psql_to_null(host, port, db, &copy)?;
    let started = Instant::now();
    psql_to_null(host, port, db, &copy)?;
    let psql_secs = started.elapsed().as_secs_f64();

    let setup = setup()?;
    let api = setup.api.clone();
    let mid = setup
        .spawn_mid(MID_NAME, POLICY, PoolSizes::default())
        .await?;
    let mid_rss_idle = mb(mid.rss_bytes());
    api.create_credential(&NewCredential {
        name: "bench-pg".into(),
        description: None,
        spec: CredentialSpec::Database {
            username: "postgres".into(),
            password: SecretValue::Stored(Secret::new("trust-auth-ignores-it".to_string())),
        },
    })
    .await?;
    api.create_alias(&Alias {
        name: "bench-db".into(),
        description: None,
        kind: ConnectionKind::Jdbc,
        base_url: format!("postgres://{host}:{port}/{db}"),
        headers: Default::default(),
        timeout_ms: Some(3_600_000),
        retry: Default::default(),
        credential: Some("bench-pg".into()),
        execution: Execution {
            mid: Some(MID_NAME.into()),
            ..Execution::default()
        },
        soap_version: None,
        wsdl: None,
        ca_pem: None,
        host_key: None,
        pool_size: None,
        tls: Some(TlsMode::Disable),
        options: Default::default(),
        durability: None,
    })
    .await?;
    let action = SqlAction {
        alias: "bench-db".into(),
        statement: QUERY.into(),
        page_rows: Some(args.page_rows),
        ..SqlAction::default()
    };
    // Warm-up: a small read, so connecting is not measured.
    let warm = SqlAction {
        statement: "SELECT 1".into(),
        ..action.clone()
    };
    api.run_action::<_, SqlResponse>("sql", &warm, Duration::from_secs(30))
        .await?;

    eprintln!(
        "reading {} rows through the MID, following its pages",
        args.rows
    );
    let started = Instant::now();
    let id = match api
        .run_action::<_, SqlResponse>("sql", &action, Duration::ZERO)
        .await?
    {
        ActionOutcome::Pending(p) => p.output_id,
        ActionOutcome::Done(r) => r.output_id,
    };
    let mut lines = api.follow_output(&id, None, true).await?;
    let (mut rows, mut pages) = (0u64, 0u64);
    let mut first_page_ms = None;
    let mut end_state = None;
    while let Some(line) = lines.next().await? {
        match &line {
            OutputLine::Chunk {
                stream: OutputStream::Rows,
                ..
            } => {
                let page: SqlPage = serde_json::from_slice(&line.bytes().unwrap_or_default())
                    .context("a page of rows")?;
                first_page_ms.get_or_insert(started.elapsed().as_secs_f64() * 1e3);
                rows += page.rows.len() as u64;
                pages += 1;
            }
            OutputLine::End { end } => {
                end_state = Some(end.state);
                break;
            }
            _ => {}
        }
    }
    let mid_secs = started.elapsed().as_secs_f64();
    if end_state != Some(State::Processed) || rows != args.rows {
        bail!(
            "the read through the MID ended {end_state:?} with {rows} of {} rows",
            args.rows
        );
    }
    let mid_rss_peak = mb(super::command::rss_high_water(mid.pid()));
    let (mid_rps, psql_rps) = (rows as f64 / mid_secs, args.rows as f64 / psql_secs);
    let ratio = mid_rps / psql_rps;

    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(vec!["figure", "psql \\copy", "via MID", "ratio"]);
    t.add_row(vec![
        format!("{} rows read", args.rows),
        format!("{psql_secs:.2} s"),
        format!("{mid_secs:.2} s"),
        String::new(),
    ]);
    t.add_row(vec![
        "rows/s".into(),
        format!("{psql_rps:.0}"),
        format!("{mid_rps:.0}"),
        format!("{ratio:.2}×"),
    ]);
    t.add_row(vec![
        "first page after".into(),
        String::new(),
        format!("{:.0} ms", first_page_ms.unwrap_or(0.0)),
        String::new(),
    ]);
    t.add_row(vec![
        "pages".into(),
        String::new(),
        format!("{pages} of {} rows", args.page_rows),
        String::new(),
    ]);
    t.add_row(vec![
        "MID RSS idle / peak".into(),
        String::new(),
        format!("{mid_rss_idle:.1} / {mid_rss_peak:.1} MB"),
        String::new(),
    ]);
    println!("{t}");
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "rows": args.rows,
                "page_rows": args.page_rows,
                "psql_secs": psql_secs,
                "mid_secs": mid_secs,
                "psql_rows_per_s": psql_rps,
                "mid_rows_per_s": mid_rps,
                "ratio": ratio,
                "first_page_ms": first_page_ms,
                "mid_rss_idle_mb": mid_rss_idle,
                "mid_rss_peak_mb": mid_rss_peak,
            })
        );
    }
    drop(mid);
    drop(setup);
    Ok(ExitCode::SUCCESS)
}

fn psql(host: &str, port: u16, db: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args([
            "-h",
            host,
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-qc", sql])
        .stdin(Stdio::null())
        .output()
        .context("running psql (install PostgreSQL's client)")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn psql_to_null(host: &str, port: u16, db: &str, command: &str) -> Result<()> {
    let status = Command::new("psql")
        .args([
            "-h",
            host,
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-qc", command])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .context("running psql")?;
    if !status.success() {
        bail!("psql {command} failed");
    }
    Ok(())
}
