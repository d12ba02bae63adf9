//! Step 7 of the demo: an import set. A CSV in a directory the MID's
//! `[policy.file] allow_dirs` names, a data source with a nightly schedule, a run
//! started by hand, and the rows and the refused record read back by the API.

use anyhow::Result;
use openmid_local::LocalInstance;
use openmid_proto::import::{DataSource, ImportState};
use std::path::Path;
use std::time::Duration;

/// The file the demo imports: three machines and one broken line.
const INVENTORY: &str = "host,ip,ram_gb,last_scan\n\
web-01,10.20.0.11,16,2026-11-30\n\
\"db-01, primary\",10.20.0.21,128,2026-11-29\n\
broken line without its fields\n\
app-07,10.20.0.37,32,2026-11-30\n";

pub(super) async fn import_set(instance: &LocalInstance, dir: &Path, mid: &str) -> Result<bool> {
    let file = dir.join("inventory.csv");
    std::fs::write(&file, INVENTORY)?;
    let source: DataSource = serde_json::from_value(serde_json::json!({
        "name": "demo-inventory", "kind": "file", "agent": format!("mid.server.{mid}"),
        "read": {"path": file.display().to_string(), "format": {"type": "csv"}},
        "schedule": {"cron": "30 2 * * *", "time_zone": "Europe/Paris"}
    }))?;
    let saved = instance.api.create_data_source(&source).await?;
    println!(
        "[7/7] import    data source demo-inventory: {} on the MID's host, nightly at 02:30 Paris (next {})",
        file.display(),
        saved.next_run_at.as_deref().unwrap_or("?")
    );
    let started = instance.api.run_data_source("demo-inventory").await?;
    let set = instance
        .api
        .wait_import_set(
            &started.id,
            Duration::from_millis(50),
            Duration::from_secs(15),
        )
        .await?;
    let columns: Vec<String> = set
        .columns
        .iter()
        .map(|c| format!("{} {}", c.name, c.type_name))
        .collect();
    println!(
        "      run by hand → import set {}: {}, {} rows, {} refused; columns {}",
        set.id,
        set.state.as_str(),
        set.rows,
        set.errors,
        columns.join(", ")
    );
    let rows = instance.api.import_rows(&set.id, 0, 10).await?;
    for row in &rows.rows {
        println!(
            "        row {}  {}",
            row.row,
            serde_json::to_string(&row.values)?
        );
    }
    let errors = instance.api.import_errors(&set.id).await?;
    for e in &errors.errors {
        println!(
            "        refused record {} (line {}): {}",
            e.record,
            e.line.map(|l| l.to_string()).unwrap_or_default(),
            e.reason
        );
    }
    Ok(set.state == ImportState::CompleteWithErrors
        && rows.rows.len() == 3
        && errors.errors.len() == 1)
}
