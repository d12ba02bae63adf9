//! Discovery on the instance: what the MIDs' ping and port scans found, turned into
//! devices. [`classify`] decides what a host is from what it answered.

pub mod classify;
