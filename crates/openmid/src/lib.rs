//! What the two binaries share: `openmid` (instance, MID, demo, ctl, bench) and
//! `openmid-mid` (the MID Server alone, for the hosts inside private networks). The
//! MID-only binary holds none of the instance's code — store, API server, dashboard —
//! so the MID maps and relocates less of itself at start and keeps fewer of its pages
//! resident.
//!
//! This library is the binaries' own command-line layer, not an API for other crates,
//! so it reports errors with `anyhow` as they do.

pub mod config_file;
pub mod entry;
pub mod mid_command;
pub mod service_unit;
pub mod signals;
