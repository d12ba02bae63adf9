//! Discovery on the instance: runs that ping ranges through a MID, scan what
//! answered, ask the live hosts what they are, and file devices — one per address,
//! classified ([`classify`]) from what each host answered, updated rather than
//! duplicated when seen again — by hand or by a schedule ([`schedules`]).

pub mod classify;
pub mod runs;
pub mod schedules;

pub use runs::Discovery;

use crate::dispatch::Dispatcher;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often unfinished runs are moved on.
pub const TICK: Duration = Duration::from_millis(500);

/// Moves unfinished runs on every [`TICK`] until `shutdown`.
pub async fn run_advancer(dispatcher: Arc<Dispatcher>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {
                if let Err(e) = dispatcher.discovery().advance_all().await {
                    tracing::warn!(error = %e, "moving discovery runs on failed");
                }
            }
        }
    }
}
