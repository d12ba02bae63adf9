//! `openmid ctl ecc tail`: follows the queue live. It polls `GET /api/v1/ecc` with the
//! `after` cursor (ids are time-ordered, so everything past the last id seen is new)
//! and re-reads the records it saw still open (ready, processing) to print their
//! changes, one line per event, until Ctrl-C.

use anyhow::{Context, Result, bail};
use openmid_client::ApiClient;
use openmid_proto::api::RecordQuery;
use openmid_proto::ecc::{EccRecord, State, Topic};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// Most open records re-read per round: past it the oldest are let go (their changes
/// are no longer printed, new records still are).
const MAX_TRACKED: usize = 500;

/// Flags of `ecc tail`.
#[derive(clap::Args)]
pub struct TailArgs {
    /// Only records of this topic, e.g. RESTProbe.
    #[arg(long)]
    topic: Option<String>,
    /// Only records in this state (ready, processing, processed, error, cancelled),
    /// as they enter it.
    #[arg(long)]
    state: Option<String>,
    /// Only records of this agent (mid.server.NAME, mid.cluster.NAME, mid.auto).
    #[arg(long)]
    agent: Option<String>,
    /// Start with the records already in the queue instead of only new ones.
    #[arg(long)]
    from_start: bool,
    /// How often to ask the instance, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

fn is_open(state: State) -> bool {
    matches!(state, State::Ready | State::Processing)
}

/// One event's line: what happened, then the record's identity and where it is.
fn line(event: &str, r: &EccRecord, was: Option<State>) -> String {
    let was = was.map(|w| format!(" (was {w})")).unwrap_or_default();
    let holder = r
        .claimed_by
        .as_deref()
        .or(r.assigned_to.as_deref())
        .map(|m| format!(" mid={m}"))
        .unwrap_or_default();
    let error = r
        .error
        .as_deref()
        .map(|e| format!(" error={:?}", e.chars().take(120).collect::<String>()))
        .unwrap_or_default();
    format!(
        "{event:<7} {id} {queue:<6} {topic} {state}{was} agent={agent}{holder} attempt={attempt}/{max} name={name:?}{error}",
        id = r.id,
        queue = r.queue.as_str(),
        topic = r.topic,
        state = r.state,
        agent = r.agent,
        attempt = r.attempt,
        max = r.max_attempts,
        name = r.name,
    )
}

struct Tail<'a> {
    api: &'a ApiClient,
    args: &'a TailArgs,
    state: Option<State>,
    json: bool,
    cursor: Option<String>,
    open: BTreeMap<String, State>,
}

impl Tail<'_> {
    fn emit(&self, event: &str, r: &EccRecord, was: Option<State>) -> Result<()> {
        if self.state.is_some_and(|s| s != r.state) {
            return Ok(());
        }
        if self.json {
            // One object per line, so `jq` and line readers take events as they come.
            println!(
                "{}",
                serde_json::to_string(
                    &serde_json::json!({"event": event, "was": was, "record": r})
                )?
            );
        } else {
            println!("{}", line(event, r, was));
        }
        // Lines reach a pipe (`| grep`) as they happen.
        std::io::stdout().flush().context("writing to stdout")?;
        Ok(())
    }

    /// Pages through everything after the cursor; prints it unless `quiet`.
    async fn new_records(&mut self, quiet: bool) -> Result<()> {
        loop {
            let page = self
                .api
                .list_records(&RecordQuery {
                    queue: None,
                    state: None,
                    agent: self.args.agent.clone(),
                    topic: self.args.topic.clone(),
                    correlator: None,
                    limit: Some(1000),
                    after: self.cursor.clone(),
                })
                .await?;
            for r in &page.records {
                if !quiet {
                    self.emit("new", r, None)?;
                }
                if is_open(r.state) {
                    self.open.insert(r.id.clone(), r.state);
                }
            }
            if let Some(last) = page.records.last() {
                self.cursor = Some(last.id.clone());
            }
            if page.next_after.is_none() {
                break;
            }
        }
        while self.open.len() > MAX_TRACKED {
            self.open.pop_first();
        }
        Ok(())
    }

    /// Re-reads the open records; prints those whose state moved.
    async fn changes(&mut self) -> Result<()> {
        let ids: Vec<(String, State)> = self.open.iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (id, was) in ids {
            let r = match self.api.get_record(&id).await {
                Ok(r) => r,
                // Deleted (retention, a deleted MID): nothing more to follow.
                Err(openmid_client::ClientError::Api { status: 404, .. }) => {
                    self.open.remove(&id);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if r.state != was {
                self.emit("changed", &r, Some(was))?;
            }
            if is_open(r.state) {
                self.open.insert(id, r.state);
            } else {
                self.open.remove(&id);
            }
        }
        Ok(())
    }
}

/// Runs until Ctrl-C.
pub async fn tail(api: &ApiClient, args: TailArgs, json: bool) -> Result<()> {
    if let Some(t) = &args.topic {
        t.parse::<Topic>().context("--topic")?;
    }
    let state = args
        .state
        .as_deref()
        .map(str::parse::<State>)
        .transpose()
        .context("--state")?;
    if !(100..=60_000).contains(&args.interval_ms) {
        bail!("--interval-ms must be 100–60000");
    }
    let mut tail = Tail {
        api,
        args: &args,
        state,
        json,
        cursor: None,
        open: BTreeMap::new(),
    };
    tail.new_records(!args.from_start).await?;
    if !json {
        eprintln!("following the ECC queue (Ctrl-C stops)");
    }
    let every = Duration::from_millis(args.interval_ms);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
        // The changes of what was open before this round, then what is new: a record
        // created and finished within one interval prints once, as new.
        tail.changes().await?;
        tail.new_records(false).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_the_record_and_its_move() {
        let r: EccRecord = serde_json::from_value(serde_json::json!({
            "id": "0193-abc", "queue": "output", "agent": "mid.server.m1", "topic": "RESTProbe",
            "name": "GET /x", "source": "ctl", "payload": {}, "state": "processing",
            "priority": "interactive", "attempt": 1, "max_attempts": 3, "at_most_once": false,
            "claimed_by": "m1", "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let text = line("changed", &r, Some(State::Ready));
        assert!(
            text.starts_with("changed 0193-abc output RESTProbe processing (was ready)"),
            "{text}"
        );
        assert!(
            text.contains("mid=m1") && text.contains("attempt=1/3"),
            "{text}"
        );
    }
}
