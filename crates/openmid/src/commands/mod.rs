//! One module per subcommand.

pub mod bench;
pub mod completions;
pub mod connections;
pub mod ctl;
mod ctl_aliases;
mod ctl_audit;
mod ctl_discovery;
mod ctl_hints;
mod ctl_imports;
mod ctl_metrics;
mod ctl_output;
mod ctl_progress;
mod ctl_registry;
mod ctl_tail;
pub mod demo;
pub mod instance;
pub mod mid;
mod rows_output;
mod run_action;
pub mod run_command;
mod service_unit;

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM, as systemd sends).
pub async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
