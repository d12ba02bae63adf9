//! Which MID scrapes what, and its delivery. A MID's assignment is every target set
//! for `mid.server.NAME` plus its share of its clusters' targets: a cluster's targets
//! (by name) are dealt round-robin to its `up` members (by name), so each is scraped
//! by exactly one up member, and a member going down moves its share to the others
//! at the next round. An assignment that changed (or whose last delivery ended in
//! error) is sent as one `MetricScrape` job carrying the MID's whole list and a
//! version larger than the last, so the MID can ignore a late older one.

use super::Metrics;
use super::targets::key;
use crate::dispatch::DispatchError;
use crate::ecc::MetricAssignmentRow;
use openmid_proto::api::NewOutput;
use openmid_proto::ecc::{Agent, Priority, State, Topic};
use openmid_proto::metrics::{ScrapeAssignment, ScrapeTarget};
use openmid_proto::mid::MidStatus;
use openmid_proto::time::now_ms;
use std::collections::{BTreeMap, BTreeSet};

/// Deals targets to MIDs: `targets` are (agent, target); `up` says whether a MID is
/// up; `members` gives each cluster's member names. Returns each MID's targets, by
/// key (`agent/name`). Pure, so the split is tested on its own.
pub fn split(
    targets: &[(String, ScrapeTarget)],
    up: &BTreeSet<String>,
    members: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, BTreeMap<String, ScrapeTarget>> {
    let mut out: BTreeMap<String, BTreeMap<String, ScrapeTarget>> = BTreeMap::new();
    let mut by_cluster: BTreeMap<&str, Vec<&(String, ScrapeTarget)>> = BTreeMap::new();
    for t in targets {
        match t.0.parse::<Agent>() {
            Ok(Agent::Server(mid)) => {
                out.entry(mid)
                    .or_default()
                    .insert(key(&t.0, &t.1.name), t.1.clone());
            }
            Ok(Agent::Cluster(cluster)) => {
                if let Some((name, _)) = members.get_key_value(&cluster) {
                    by_cluster.entry(name.as_str()).or_default().push(t);
                }
            }
            _ => {}
        }
    }
    for (cluster, mut list) in by_cluster {
        let mut live: Vec<&String> = members[cluster]
            .iter()
            .filter(|m| up.contains(*m))
            .collect();
        live.sort();
        live.dedup();
        if live.is_empty() {
            continue;
        }
        list.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        for (i, t) in list.into_iter().enumerate() {
            out.entry(live[i % live.len()].clone())
                .or_default()
                .insert(key(&t.0, &t.1.name), t.1.clone());
        }
    }
    out
}

/// A digest of an assignment's targets (a change means a new delivery).
fn digest(targets: &BTreeMap<String, ScrapeTarget>) -> String {
    let json = serde_json::to_vec(targets).unwrap_or_default();
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &json).as_ref())
}

impl Metrics<'_> {
    /// One round: sends every MID whose assignment changed its new one.
    pub async fn assign(&self) -> Result<(), DispatchError> {
        let store = self.dispatcher.store();
        let targets = self.all_targets().await?;
        let sent: BTreeMap<String, MetricAssignmentRow> = store
            .list_metric_assignments()
            .await?
            .into_iter()
            .map(|r| (r.mid.clone(), r))
            .collect();
        if targets.is_empty() && sent.values().all(|r| r.targets == "[]") {
            return Ok(());
        }
        let mids = store.list_mids().await?;
        let up: BTreeSet<String> = mids
            .iter()
            .filter(|m| m.status == MidStatus::Up)
            .map(|m| m.name.clone())
            .collect();
        // When each MID enrolled: a MID deleted and enrolled again under its name
        // starts with an empty state directory and needs its assignment again.
        let known: BTreeMap<&str, i64> = mids
            .iter()
            .map(|m| (m.name.as_str(), m.enrolled_at))
            .collect();
        let members: BTreeMap<String, Vec<String>> = store
            .list_clusters()
            .await?
            .into_iter()
            .map(|c| (c.name, c.members))
            .collect();
        let mut wanted = split(&targets, &up, &members);
        for mid in sent.keys() {
            wanted.entry(mid.clone()).or_default();
        }
        for (mid, list) in wanted {
            let Some(&enrolled_at) = known.get(mid.as_str()) else {
                continue;
            };
            let digest = digest(&list);
            let last = sent.get(&mid);
            if let Some(last) = last
                && last.digest == digest
                && last.version >= enrolled_at
                && !self.delivery_failed(&last.output).await?
            {
                continue;
            }
            let version = last.map_or(0, |l| l.version + 1).max(now_ms());
            let assignment = ScrapeAssignment {
                version: u64::try_from(version).unwrap_or(0),
                targets: list.values().cloned().collect(),
            };
            let payload = openmid_proto::payload::Payload::encode(&assignment)
                .map_err(|e| crate::dispatch::invalid("targets", e.to_string()))?;
            let record = self
                .dispatcher
                .submit(NewOutput {
                    durability: Default::default(),
                    agent: format!("mid.server.{mid}"),
                    topic: Topic::MetricScrape,
                    name: Some(format!("scrape assignment v{version}")),
                    source: Some("metrics".into()),
                    payload,
                    priority: Some(Priority::Interactive),
                    correlator: Some(format!("metrics:{mid}")),
                    max_attempts: Some(10),
                    at_most_once: false,
                    application: None,
                })
                .await?;
            let names: Vec<&String> = list.keys().collect();
            store
                .put_metric_assignment(&MetricAssignmentRow {
                    mid: mid.clone(),
                    version,
                    digest,
                    output: record.id.clone(),
                    targets: serde_json::to_string(&names).unwrap_or_else(|_| "[]".into()),
                })
                .await?;
            tracing::info!(%mid, version, targets = list.len(), output = %record.id, "scrape assignment sent");
        }
        Ok(())
    }

    async fn delivery_failed(&self, output: &str) -> Result<bool, DispatchError> {
        Ok(match self.dispatcher.store().get_record(output).await? {
            Some(r) => matches!(r.state, State::Error | State::Cancelled),
            // Purged by retention after it was processed: nothing to redo.
            None => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str) -> ScrapeTarget {
        ScrapeTarget {
            name: name.into(),
            url: format!("http://198.18.0.1/{name}"),
            interval_ms: 1000,
            timeout_ms: 500,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn a_clusters_targets_go_to_exactly_one_up_member_and_move_when_it_goes_down() {
        let targets: Vec<(String, ScrapeTarget)> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| ("mid.cluster.east".to_string(), target(n)))
            .chain([("mid.server.solo".to_string(), target("s"))])
            .collect();
        let members =
            BTreeMap::from([("east".to_string(), vec!["m1".to_string(), "m2".to_string()])]);
        let both = BTreeSet::from(["m1".to_string(), "m2".to_string()]);
        let split_both = split(&targets, &both, &members);
        assert_eq!(split_both["m1"].len() + split_both["m2"].len(), 4);
        assert_eq!(split_both["m1"].len(), 2);
        assert!(
            split_both["solo"].contains_key("mid.server.solo/s"),
            "a MID's own targets, up or not"
        );
        let only_m2 = BTreeSet::from(["m2".to_string()]);
        let moved = split(&targets, &only_m2, &members);
        assert!(!moved.contains_key("m1"));
        assert_eq!(moved["m2"].len(), 4);
        assert!(!split(&targets, &BTreeSet::new(), &members).contains_key("m2"));
    }
}
