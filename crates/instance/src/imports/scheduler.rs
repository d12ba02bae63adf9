//! Runs data sources and discovery schedules when their schedule says, ends import
//! sets whose output ended, and purges import sets past their retention.
//!
//! Time comes from a [`Clock`], so tests move it. A due source is taken by moving its
//! `next_run_at` on with a compare-and-set: a second scheduler (another instance
//! node) reading the same due row loses the race and does not start the run twice.
//! A run that is due while the previous one still runs is skipped, logged, and the
//! schedule moves on: an import that takes longer than its interval does not pile up.

use super::Trigger;
use super::schedule::Compiled;
use crate::dispatch::{DispatchError, Dispatcher};
use openmid_proto::import::ImportState;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the scheduler looks.
pub const TICK: Duration = Duration::from_secs(1);
/// How often import sets past their retention are purged.
pub const PURGE_EVERY: Duration = Duration::from_secs(600);
/// Running import sets looked at per tick.
const RUNNING_PER_TICK: u32 = 200;

/// Where the scheduler reads the time.
pub trait Clock: Send + Sync {
    /// Now, in epoch milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        openmid_proto::time::now_ms()
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tick {
    /// Runs started, by source name.
    pub started: Vec<String>,
    /// Due runs skipped because the previous one still ran.
    pub skipped: Vec<String>,
    /// Import sets that ended.
    pub ended: u32,
    /// Discovery runs started, by schedule name.
    pub discovery_started: Vec<String>,
    /// Due discovery runs skipped because the schedule's last run still ran.
    pub discovery_skipped: Vec<String>,
}

/// The scheduler.
pub struct Scheduler {
    dispatcher: Arc<Dispatcher>,
    clock: Arc<dyn Clock>,
}

impl Scheduler {
    /// A scheduler reading time from `clock`.
    pub fn new(dispatcher: Arc<Dispatcher>, clock: Arc<dyn Clock>) -> Self {
        Self { dispatcher, clock }
    }

    /// Ticks every [`TICK`] until `shutdown`, and purges every [`PURGE_EVERY`].
    pub async fn run(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_purge: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {
                    if let Err(e) = self.tick().await {
                        tracing::warn!(error = %e, "import scheduler tick failed");
                    }
                    if last_purge.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                        last_purge = Some(tokio::time::Instant::now());
                        match self.purge().await {
                            Ok(0) => {}
                            Ok(sets) => tracing::info!(sets, "purged import sets past their retention"),
                            Err(e) => tracing::warn!(error = %e, "import set purge failed"),
                        }
                    }
                }
            }
        }
    }

    /// Starts what is due now and ends what has ended.
    pub async fn tick(&self) -> Result<Tick, DispatchError> {
        let now = self.clock.now_ms();
        let store = self.dispatcher.store();
        let imports = self.dispatcher.imports();
        let mut tick = Tick::default();
        for running in store
            .list_import_sets(
                None,
                Some(ImportState::Running.as_str()),
                None,
                RUNNING_PER_TICK,
            )
            .await?
        {
            if imports.refresh(running).await?.state != ImportState::Running.as_str() {
                tick.ended += 1;
            }
        }
        for row in store.due_data_sources(now, 100).await? {
            let source = match super::parse_spec(&row) {
                Ok(source) => source,
                Err(e) => {
                    tracing::error!(source = %row.name, error = %e, "data source cannot be read; its schedule is stopped");
                    store
                        .reschedule_data_source(&row.name, row.next_run_at, None, None)
                        .await?;
                    continue;
                }
            };
            let next = match (&source.schedule, source.enabled) {
                (Some(schedule), true) => Compiled::new(schedule)
                    .ok()
                    .and_then(|c| c.next_after(now, row.next_run_at.or(Some(now)))),
                _ => None,
            };
            if !store
                .reschedule_data_source(&row.name, row.next_run_at, next, Some(now))
                .await?
            {
                // Another scheduler took it.
                continue;
            }
            match imports.run(&row.name, Trigger::Schedule).await {
                Ok(_) => tick.started.push(row.name.clone()),
                Err(DispatchError::Conflict(reason)) => {
                    tracing::warn!(source = %row.name, %reason, "scheduled import skipped: the previous run still runs");
                    tick.skipped.push(row.name.clone());
                }
                Err(e) => {
                    tracing::error!(source = %row.name, error = %e, "scheduled import could not start");
                }
            }
        }
        let (started, skipped) = self.dispatcher.discovery().run_due(now).await?;
        tick.discovery_started = started;
        tick.discovery_skipped = skipped;
        Ok(tick)
    }

    /// Deletes import sets past their retention, in small batches.
    pub async fn purge(&self) -> Result<u64, DispatchError> {
        let now = self.clock.now_ms();
        let mut total = 0;
        loop {
            let gone = self.dispatcher.store().purge_import_sets(now, 100).await?;
            total += gone;
            if gone < 100 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests;
