//! `openmid bench import`: Import Sets through a MID against the usual tools doing the
//! same read in the same run.
//!
//! - **LDAP**: a directory of `--users` users in nested OUs on a slapd started here;
//!   a data source run into an import set, against `ldapsearch -E pr=500/noprompt`
//!   into `/dev/null`.
//! - **CSV**: a file of `--csv-mb` megabytes made here; a data source run into an
//!   import set, against Python's `csv` module reading it.
//!
//! Through the MID the time runs from starting the run until the import set is
//! complete (every page stored on the instance), which is what a user waits for. The
//! ratios are openmid's throughput over the other's: higher is better. Then each
//! import set is read back — every row by the API, and the CSV's as a JSON-lines
//! download — to check each source row is there once (`rows_exactly_once`).

use super::{mb, setup};
use anyhow::{Context, Result, bail};
use openmid_local::slapd::{LocalSlapd, SlapdOptions};
use openmid_mid::config::PoolSizes;
use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::NewCredential;
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::import::{DataSource, ImportSet, ImportState};
use openmid_proto::secret::Secret;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const MID_NAME: &str = "bench-import-mid";

/// Flags of `openmid bench import`.
#[derive(clap::Args)]
pub(super) struct ImportArgs {
    /// Users in the directory.
    #[arg(long, default_value_t = 10_000)]
    users: u32,
    /// Size of the CSV file, in megabytes.
    #[arg(long, default_value_t = 1024)]
    csv_mb: u64,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// One side's time and the other's.
struct Pair {
    tool_secs: f64,
    mid_secs: f64,
}

impl Pair {
    fn ratio(&self) -> f64 {
        self.tool_secs / self.mid_secs
    }
}

pub(super) async fn run(args: ImportArgs) -> Result<ExitCode> {
    if args.users == 0 || args.csv_mb == 0 {
        bail!("--users and --csv-mb must be at least 1");
    }
    let slapd = LocalSlapd::start(&SlapdOptions {
        users: args.users,
        tls: false,
    })
    .context("starting slapd (Debian: apt-get install slapd ldap-utils)")?;
    let setup = setup()?;
    let api = setup.api.clone();
    let files = setup.dir.path().join("files");
    std::fs::create_dir_all(&files)?;
    let policy = format!(
        "[ldap]\nallow_cidrs = [\"127.0.0.0/8\"]\n[file]\nallow_dirs = [{:?}]\n",
        files.display().to_string()
    );
    let mid = setup
        .spawn_mid(MID_NAME, &policy, PoolSizes::default())
        .await?;

    // LDAP.
    let (bind_dn, password) = slapd.admin();
    let filter = "(objectClass=inetOrgPerson)";
    let ldapsearch = || -> Result<f64> {
        let started = Instant::now();
        let status = Command::new("ldapsearch")
            .args([
                "-LLL",
                "-x",
                "-H",
                &slapd.url(),
                "-D",
                bind_dn,
                "-w",
                password,
            ])
            .args(["-b", slapd.base_dn(), "-E", "pr=500/noprompt", filter])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running ldapsearch (Debian: ldap-utils)")?;
        if !status.success() {
            bail!("ldapsearch failed: {status}");
        }
        Ok(started.elapsed().as_secs_f64())
    };
    ldapsearch()?; // warms the server's cache for both sides
    let ldap_tool = ldapsearch()?;
    api.create_credential(&NewCredential {
        name: "bench-dir".into(),
        description: None,
        spec: CredentialSpec::LdapBind {
            bind_dn: bind_dn.into(),
            password: SecretValue::Stored(Secret::new(password.to_string())),
        },
    })
    .await?;
    api.create_alias(&Alias {
        name: "bench-dir".into(),
        description: None,
        kind: ConnectionKind::Ldap,
        base_url: format!("{}/{}", slapd.url(), slapd.base_dn()),
        headers: Default::default(),
        timeout_ms: None,
        retry: Default::default(),
        credential: Some("bench-dir".into()),
        execution: Execution {
            mid: Some(MID_NAME.into()),
            ..Execution::default()
        },
        soap_version: None,
        wsdl: None,
        ca_pem: None,
        host_key: None,
        pool_size: None,
        tls: None,
        options: Default::default(),
        durability: None,
    })
    .await?;
    let people: DataSource = serde_json::from_value(serde_json::json!({
        "name": "bench-people", "kind": "ldap",
        "read": {"alias": "bench-dir", "filter": filter, "page_size": 500}
    }))?;
    api.create_data_source(&people).await?;
    eprintln!("importing {} directory users through the MID", args.users);
    let (ldap_set, ldap_mid) = timed_run(&api, "bench-people").await?;
    let ldap = Pair {
        tool_secs: ldap_tool,
        mid_secs: ldap_mid,
    };
    let ldap_once = ldap_rows_once(&api, &ldap_set, args.users).await?;

    // CSV.
    let csv_path = files.join("bench.csv");
    eprintln!("writing a {} MB CSV", args.csv_mb);
    let csv_rows = write_csv(&csv_path, args.csv_mb * 1024 * 1024)?;
    let csv_bytes = std::fs::metadata(&csv_path)?.len();
    let python = || -> Result<f64> {
        let started = Instant::now();
        let out = Command::new("python3")
            .args([
                "-c",
                "import csv, sys\nwith open(sys.argv[1], newline='') as f:\n    print(sum(1 for _ in csv.reader(f)))",
            ])
            .arg(&csv_path)
            .output()
            .context("running python3")?;
        if !out.status.success() {
            bail!("python3 failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(started.elapsed().as_secs_f64())
    };
    python()?; // warms the page cache for both sides
    let csv_tool = python()?;
    let hosts: DataSource = serde_json::from_value(serde_json::json!({
        "name": "bench-csv", "kind": "file", "agent": format!("mid.server.{MID_NAME}"),
        "read": {"path": csv_path.display().to_string(), "format": {"type": "csv"}}
    }))?;
    api.create_data_source(&hosts).await?;
    eprintln!("importing it through the MID");
    let (csv_set, csv_mid) = timed_run(&api, "bench-csv").await?;
    let csv = Pair {
        tool_secs: csv_tool,
        mid_secs: csv_mid,
    };
    let mid_rss_peak = mb(super::command::rss_high_water(mid.pid()));
    let instance_rss_peak = mb(super::command::rss_high_water(setup.instance.pid()));
    eprintln!("reading the import set back to check every row");
    let download = setup.dir.path().join("bench.jsonl");
    let csv_once =
        csv_set.rows == csv_rows && csv_rows_once(&api, &csv_set, &download, csv_rows).await?;
    let _ = std::fs::remove_file(&csv_path);
    let _ = std::fs::remove_file(&download);
    let exactly_once = ldap_once && csv_once;
    let csv_mb_s = csv_bytes as f64 / 1e6 / csv.mid_secs;

    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(vec!["figure", "usual tool", "via MID", "ratio"]);
    t.add_row(vec![
        format!("{} LDAP users", args.users),
        format!("{:.2} s (ldapsearch -E pr=500)", ldap.tool_secs),
        format!("{:.2} s", ldap.mid_secs),
        format!("{:.2}×", ldap.ratio()),
    ]);
    t.add_row(vec![
        format!("{:.0} MB CSV, {csv_rows} rows", csv_bytes as f64 / 1e6),
        format!(
            "{:.2} s (python csv, {:.0} MB/s)",
            csv.tool_secs,
            csv_bytes as f64 / 1e6 / csv.tool_secs
        ),
        format!("{:.2} s ({csv_mb_s:.0} MB/s)", csv.mid_secs),
        format!("{:.2}×", csv.ratio()),
    ]);
    t.add_row(vec![
        "peak RSS: MID / instance".into(),
        String::new(),
        format!("{mid_rss_peak:.1} / {instance_rss_peak:.1} MB"),
        String::new(),
    ]);
    t.add_row(vec![
        "each source row once".into(),
        String::new(),
        exactly_once.to_string(),
        String::new(),
    ]);
    println!("{t}");
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "ldap_users": args.users,
                "ldapsearch_secs": ldap.tool_secs,
                "ldap_mid_secs": ldap.mid_secs,
                "ldap_ratio": ldap.ratio(),
                "csv_bytes": csv_bytes,
                "csv_rows": csv_rows,
                "python_csv_secs": csv.tool_secs,
                "csv_mid_secs": csv.mid_secs,
                "csv_mb_per_s": csv_mb_s,
                "csv_ratio": csv.ratio(),
                "mid_rss_peak_mb": mid_rss_peak,
                "instance_rss_peak_mb": instance_rss_peak,
                "rows_exactly_once": exactly_once,
            })
        );
    }
    drop(mid);
    drop(setup);
    drop(slapd);
    Ok(if exactly_once {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs a data source and waits for its import set to complete; its time.
async fn timed_run(api: &openmid_client::ApiClient, name: &str) -> Result<(ImportSet, f64)> {
    let started = Instant::now();
    let set = api.run_data_source(name).await?;
    let set = api
        .wait_import_set(
            &set.id,
            Duration::from_millis(20),
            Duration::from_secs(3600),
        )
        .await?;
    let secs = started.elapsed().as_secs_f64();
    if set.state != ImportState::Complete {
        bail!("import {name} ended {:?}: {:?}", set.state, set.detail);
    }
    Ok((set, secs))
}

/// Whether the directory import holds each user once.
async fn ldap_rows_once(
    api: &openmid_client::ApiClient,
    set: &ImportSet,
    users: u32,
) -> Result<bool> {
    let mut uids = std::collections::HashSet::new();
    let mut rows = 0u64;
    let mut after = 0;
    loop {
        let page = api.import_rows(&set.id, after, 10_000).await?;
        for row in &page.rows {
            rows += 1;
            if let Some(uid) = row.values.get("dn").and_then(|v| v.as_str()) {
                uids.insert(uid.to_string());
            }
        }
        match page.next_after {
            Some(n) => after = n,
            None => break,
        }
    }
    Ok(rows == u64::from(users) && uids.len() == users as usize)
}

/// Whether the CSV import holds rows 1..=rows once each, in order (its JSON-lines
/// download, read line by line).
async fn csv_rows_once(
    api: &openmid_client::ApiClient,
    set: &ImportSet,
    download: &Path,
    rows: u64,
) -> Result<bool> {
    api.download_import_set(&set.id, "jsonl", download).await?;
    let file = std::io::BufReader::new(std::fs::File::open(download)?);
    let mut expected = 1u64;
    for line in file.lines() {
        let row: serde_json::Value = serde_json::from_str(&line?)?;
        let id = row["id"].as_str().and_then(|s| s.parse::<u64>().ok());
        if id != Some(expected) {
            return Ok(false);
        }
        expected += 1;
    }
    Ok(expected == rows + 1)
}

/// Writes a CSV of about `bytes` bytes (an inventory: id, host, address, owner, a
/// quoted note, a date); returns its rows.
fn write_csv(path: &Path, bytes: u64) -> Result<u64> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let header = "id,host,ip,owner,note,seen\n";
    out.write_all(header.as_bytes())?;
    let (mut written, mut rows) = (header.len() as u64, 0u64);
    while written < bytes {
        rows += 1;
        let line = format!(
            "{rows},host-{rows:08}.corp.example.com,10.{}.{}.{},team-{},\"asset {rows}, rack {}, row {}; serviced by vendor {}\",2026-{:02}-{:02}\n",
            (rows >> 16) & 255,
            (rows >> 8) & 255,
            rows & 255,
            rows % 97,
            rows % 40,
            rows % 12,
            rows % 31,
            rows % 12 + 1,
            rows % 28 + 1
        );
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    out.flush()?;
    Ok(rows)
}
