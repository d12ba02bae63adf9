//! Scrape targets per agent: set, listed, removed. A change reaches the MIDs through
//! the next [`assign`](super::assign) round (half a second at most).

use super::Metrics;
use crate::dispatch::{DispatchError, invalid};
use crate::ecc::MetricTargetRow;
use openmid_proto::ecc::Agent;
use openmid_proto::metrics::{MAX_TARGETS, NewScrapeTarget, ScrapeTarget, ScrapeTargetView};
use openmid_proto::time::now_ms;
use std::collections::BTreeMap;

/// The agent a target may be set for: one MID or a cluster (not `mid.auto`: a
/// target is scraped by a MID chosen once, not per job).
pub fn check_agent(agent: &str) -> Result<Agent, DispatchError> {
    match agent.parse::<Agent>() {
        Ok(a @ (Agent::Server(_) | Agent::Cluster(_))) => Ok(a),
        _ => Err(invalid(
            "agent",
            format!("`{agent}`: use mid.server.NAME or mid.cluster.NAME"),
        )),
    }
}

fn decode(row: &MetricTargetRow) -> Result<ScrapeTarget, DispatchError> {
    serde_json::from_str(&row.target).map_err(|e| {
        DispatchError::Store(crate::ecc::StoreError::Corrupt {
            id: format!("{}/{}", row.agent, row.name),
            detail: e.to_string(),
        })
    })
}

impl Metrics<'_> {
    /// Sets a target (replacing one of the same agent and name). Returns the target
    /// and whether it is new.
    pub async fn put_target(
        &self,
        new: NewScrapeTarget,
    ) -> Result<(ScrapeTargetView, bool), DispatchError> {
        check_agent(&new.agent)?;
        new.target
            .validate()
            .map_err(|e| invalid(&e.field, e.message))?;
        let store = self.dispatcher.store();
        let existing = store.list_metric_targets(Some(&new.agent)).await?;
        if existing.len() >= MAX_TARGETS && !existing.iter().any(|r| r.name == new.target.name) {
            return Err(invalid(
                "name",
                format!("`{}` already has {MAX_TARGETS} targets", new.agent),
            ));
        }
        let row = MetricTargetRow {
            agent: new.agent.clone(),
            name: new.target.name.clone(),
            target: serde_json::to_string(&new.target)
                .map_err(|e| invalid("body", e.to_string()))?,
            created_at: now_ms(),
        };
        let created = store.put_metric_target(&row).await?;
        tracing::info!(agent = %new.agent, target = %new.target.name, created, "scrape target set");
        let assigned = self.assigned_to().await?;
        Ok((view(&new.agent, new.target, &assigned), created))
    }

    /// Targets, of one agent when given.
    pub async fn targets(
        &self,
        agent: Option<&str>,
    ) -> Result<Vec<ScrapeTargetView>, DispatchError> {
        if let Some(agent) = agent {
            check_agent(agent)?;
        }
        let rows = self.dispatcher.store().list_metric_targets(agent).await?;
        let assigned = self.assigned_to().await?;
        rows.iter()
            .map(|row| Ok(view(&row.agent, decode(row)?, &assigned)))
            .collect()
    }

    /// One target.
    pub async fn target(&self, agent: &str, name: &str) -> Result<ScrapeTargetView, DispatchError> {
        self.targets(Some(agent))
            .await?
            .into_iter()
            .find(|t| t.target.name == name)
            .ok_or_else(|| {
                DispatchError::NotFound(format!("no scrape target `{name}` for `{agent}`"))
            })
    }

    /// Removes a target; its MID stops scraping it at the next assignment.
    pub async fn delete_target(&self, agent: &str, name: &str) -> Result<(), DispatchError> {
        check_agent(agent)?;
        if self
            .dispatcher
            .store()
            .delete_metric_target(agent, name)
            .await?
        {
            tracing::info!(agent, target = name, "scrape target removed");
            Ok(())
        } else {
            Err(DispatchError::NotFound(format!(
                "no scrape target `{name}` for `{agent}`"
            )))
        }
    }

    /// Which MID each target (`agent/name`) was last sent to.
    async fn assigned_to(&self) -> Result<BTreeMap<String, String>, DispatchError> {
        let mut out = BTreeMap::new();
        for row in self.dispatcher.store().list_metric_assignments().await? {
            let names: Vec<String> = serde_json::from_str(&row.targets).unwrap_or_default();
            for name in names {
                out.insert(name, row.mid.clone());
            }
        }
        Ok(out)
    }

    /// Every target with its agent, decoded.
    pub(super) async fn all_targets(&self) -> Result<Vec<(String, ScrapeTarget)>, DispatchError> {
        let rows = self.dispatcher.store().list_metric_targets(None).await?;
        rows.iter()
            .map(|row| Ok((row.agent.clone(), decode(row)?)))
            .collect()
    }
}

/// The key a target is known by in assignments.
pub(super) fn key(agent: &str, name: &str) -> String {
    format!("{agent}/{name}")
}

fn view(
    agent: &str,
    target: ScrapeTarget,
    assigned: &BTreeMap<String, String>,
) -> ScrapeTargetView {
    ScrapeTargetView {
        agent: agent.to_string(),
        assigned_to: assigned.get(&key(agent, &target.name)).cloned(),
        target,
    }
}
