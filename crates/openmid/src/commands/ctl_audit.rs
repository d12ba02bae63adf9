//! `openmid ctl audit`: the audit log, newest first.

use super::ctl_output::{print_json, table};
use anyhow::Result;
use openmid_client::ApiClient;
use openmid_client::audit::AuditQuery;

/// `ctl audit`: list entries.
#[derive(clap::Args)]
pub struct AuditArgs {
    /// Exact actor (`token:…`, `session:…`, `mid:NAME`, `unauthenticated`).
    #[arg(long)]
    actor: Option<String>,
    /// Exact action (`mid.validate`), or every action of a thing (`mid.*`).
    #[arg(long)]
    action: Option<String>,
    /// What this MID ran.
    #[arg(long)]
    mid: Option<String>,
    /// At or after: RFC 3339 or epoch milliseconds.
    #[arg(long)]
    since: Option<String>,
    /// Before: RFC 3339 or epoch milliseconds.
    #[arg(long)]
    until: Option<String>,
    /// Entries older than this id (the `next before` a page printed).
    #[arg(long)]
    before: Option<i64>,
    /// Page size (1–1000, default 100).
    #[arg(long)]
    limit: Option<u32>,
}

/// Runs `ctl audit`.
pub(super) async fn audit(api: &ApiClient, args: AuditArgs, json: bool) -> Result<()> {
    let page = api
        .list_audit(&AuditQuery {
            actor: args.actor,
            action: args.action,
            mid: args.mid,
            since: args.since,
            until: args.until,
            before: args.before,
            limit: args.limit,
        })
        .await?;
    if json {
        return print_json(&page);
    }
    let mut t = table(&[
        "ID", "AT", "ACTOR", "ACTION", "TARGET", "FROM", "OUTCOME", "STATUS", "OUTPUT", "DETAIL",
    ]);
    for e in &page.entries {
        let detail = match (&e.detail, &e.rows, &e.error) {
            (Some(d), Some(rows), _) => format!("{d} ({rows} rows)"),
            (Some(d), None, Some(err)) => format!("{d} — {err}"),
            (Some(d), None, None) => d.clone(),
            (None, _, Some(err)) => err.clone(),
            (None, _, None) => String::new(),
        };
        t.add_row(vec![
            e.id.to_string(),
            e.at.clone(),
            e.actor.clone(),
            e.action.clone(),
            e.target.clone().unwrap_or_default(),
            e.from.clone().unwrap_or_default(),
            e.outcome.clone(),
            e.status.map(|s| s.to_string()).unwrap_or_default(),
            e.output_id.clone().unwrap_or_default(),
            detail,
        ]);
    }
    println!("{t}");
    if let Some(before) = page.next_before {
        println!("more: --before {before}");
    }
    Ok(())
}
