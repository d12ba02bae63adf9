//! Discovery schedules: a discovery run that runs by itself, on a cron expression in
//! a time zone or an interval — the same [`Schedule`] and the same evaluation
//! ([`Compiled`]) as a data source's, and the same claim: the import scheduler's
//! tick takes a due schedule by moving its `next_run_at` on with a compare-and-set,
//! so two instance nodes never start one due run twice. A schedule runs one run at
//! a time: a due run while the last still runs is skipped (and logged), a manual run
//! answers 409.
//!
//! [`Schedule`]: openmid_proto::import::Schedule

use super::Discovery;
use crate::dispatch::{DispatchError, invalid};
use crate::ecc::{DiscoveryScheduleRow, StoreError};
use crate::imports::schedule::Compiled;
use openmid_proto::devices::{
    DiscoveryRun, DiscoverySchedule, DiscoveryScheduleInfo, DiscoveryState,
};
use openmid_proto::time::{now_ms, rfc3339};

impl Discovery<'_> {
    /// Makes (`create`) or replaces a schedule, checked as a run would be (its
    /// targets, its snmp aliases), so a schedule that saves can run.
    pub async fn put_schedule(
        &self,
        spec: DiscoverySchedule,
        create: bool,
    ) -> Result<DiscoveryScheduleInfo, DispatchError> {
        spec.validate().map_err(|e| invalid(&e.field, e.message))?;
        let compiled = Compiled::new(&spec.schedule).map_err(|e| invalid(&e.field, e.message))?;
        for (i, alias) in spec.run.snmp_aliases.iter().enumerate() {
            self.snmp_identity(i, alias).await.map_err(|e| match e {
                DispatchError::Invalid { field, message } => {
                    invalid(&format!("run.{field}"), message)
                }
                e => e,
            })?;
        }
        let store = self.dispatcher.store();
        let current = store.get_discovery_schedule(&spec.name).await?;
        match (&current, create) {
            (Some(_), true) => {
                return Err(DispatchError::Conflict(format!(
                    "a discovery schedule named `{}` exists: PUT /api/v1/discovery/schedules/{} to change it",
                    spec.name, spec.name
                )));
            }
            (None, false) => {
                return Err(DispatchError::NotFound(format!(
                    "no discovery schedule named `{}`",
                    spec.name
                )));
            }
            _ => {}
        }
        let now = now_ms();
        let row = DiscoveryScheduleRow {
            name: spec.name.clone(),
            spec: serde_json::to_string(&spec).map_err(|e| invalid("body", e.to_string()))?,
            created_at: current.as_ref().map_or(now, |c| c.created_at),
            updated_at: now,
            next_run_at: spec
                .enabled
                .then(|| compiled.next_after(now, Some(now)))
                .flatten(),
            schedule_anchor: Some(now),
            last_run: current.and_then(|c| c.last_run),
        };
        store.put_discovery_schedule(&row).await?;
        info(row)
    }

    /// One schedule.
    pub async fn schedule(&self, name: &str) -> Result<DiscoveryScheduleInfo, DispatchError> {
        info(self.schedule_row(name).await?)
    }

    /// Every schedule, by name.
    pub async fn schedules(&self) -> Result<Vec<DiscoveryScheduleInfo>, DispatchError> {
        self.dispatcher
            .store()
            .list_discovery_schedules()
            .await?
            .into_iter()
            .map(info)
            .collect()
    }

    /// Deletes a schedule; its runs stay.
    pub async fn delete_schedule(&self, name: &str) -> Result<(), DispatchError> {
        if self
            .dispatcher
            .store()
            .delete_discovery_schedule(name)
            .await?
        {
            Ok(())
        } else {
            Err(DispatchError::NotFound(format!(
                "no discovery schedule named `{name}`"
            )))
        }
    }

    /// Starts a run of schedule `name` now; a conflict while its last run runs.
    pub async fn run_schedule(&self, name: &str) -> Result<DiscoveryRun, DispatchError> {
        let row = self.schedule_row(name).await?;
        if let Some(last) = &row.last_run
            && let Some(run) = self.dispatcher.store().get_discovery_run(last).await?
        {
            let run = self.advance(run).await?;
            let state = DiscoveryState::parse(&run.state);
            if !matches!(
                state,
                Some(DiscoveryState::Complete | DiscoveryState::Error)
            ) {
                return Err(DispatchError::Conflict(format!(
                    "discovery schedule `{name}` is running ({}, {}): wait for it to end",
                    run.id, run.state
                )));
            }
        }
        let spec = spec_of(&row)?;
        self.start_run(spec.run, Some(name)).await
    }

    /// Starts the schedules due at `now`, each taken by a compare-and-set on its
    /// `next_run_at` (another node that read the same row loses and starts nothing);
    /// the names started and those skipped because their last run still runs.
    pub async fn run_due(&self, now: i64) -> Result<(Vec<String>, Vec<String>), DispatchError> {
        let store = self.dispatcher.store();
        let (mut started, mut skipped) = (Vec::new(), Vec::new());
        for row in store.due_discovery_schedules(now, 100).await? {
            let next = match spec_of(&row) {
                Ok(spec) if spec.enabled => Compiled::new(&spec.schedule)
                    .ok()
                    .and_then(|c| c.next_after(now, row.next_run_at.or(Some(now)))),
                Ok(_) => None,
                Err(e) => {
                    tracing::error!(schedule = %row.name, error = %e, "discovery schedule cannot be read; it is stopped");
                    None
                }
            };
            if !store
                .reschedule_discovery_schedule(&row.name, row.next_run_at, next, Some(now))
                .await?
            {
                continue;
            }
            match self.run_schedule(&row.name).await {
                Ok(run) => {
                    tracing::info!(schedule = %row.name, run = %run.id, "scheduled discovery run started");
                    started.push(row.name.clone());
                }
                Err(DispatchError::Conflict(reason)) => {
                    tracing::warn!(schedule = %row.name, %reason, "scheduled discovery run skipped: the previous run still runs");
                    skipped.push(row.name.clone());
                }
                Err(e) => {
                    tracing::error!(schedule = %row.name, error = %e, "scheduled discovery run could not start");
                }
            }
        }
        Ok((started, skipped))
    }

    async fn schedule_row(&self, name: &str) -> Result<DiscoveryScheduleRow, DispatchError> {
        self.dispatcher
            .store()
            .get_discovery_schedule(name)
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no discovery schedule named `{name}`")))
    }
}

fn spec_of(row: &DiscoveryScheduleRow) -> Result<DiscoverySchedule, DispatchError> {
    serde_json::from_str(&row.spec).map_err(|e| {
        DispatchError::Store(StoreError::Corrupt {
            id: row.name.clone(),
            detail: format!("discovery schedule: {e}"),
        })
    })
}

fn info(row: DiscoveryScheduleRow) -> Result<DiscoveryScheduleInfo, DispatchError> {
    let spec = spec_of(&row)?;
    Ok(DiscoveryScheduleInfo {
        name: spec.name,
        run: spec.run,
        schedule: spec.schedule,
        enabled: spec.enabled,
        created_at: rfc3339(row.created_at),
        updated_at: rfc3339(row.updated_at),
        next_run_at: row.next_run_at.map(rfc3339),
        last_run: row.last_run,
    })
}
