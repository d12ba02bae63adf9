//! One module per subcommand (the MID's, shared with `openmid-mid`, is in the library).

pub use openmid::mid_command as mid;
use openmid::service_unit;
pub use openmid::signals::stop_requested;

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
mod rows_output;
mod run_action;
pub mod run_command;
