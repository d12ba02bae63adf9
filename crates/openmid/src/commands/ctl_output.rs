//! What every `ctl` subcommand shares for reading flags and printing answers: header
//! flags, JSON for scripts, tables for people. Its own module so the subcommand files
//! (`ctl.rs`, `connections.rs`) depend on it, not on each other.

use anyhow::{Result, anyhow};
use comfy_table::Table;
use comfy_table::presets::UTF8_BORDERS_ONLY;
use serde::Serialize;
use std::collections::BTreeMap;

/// `Name: value` strings as a header map.
pub(super) fn parse_headers(headers: &[String]) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for h in headers {
        let (k, v) = h
            .split_once(':')
            .ok_or_else(|| anyhow!("--header `{h}`: expected `Name: value`"))?;
        map.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(map)
}

pub(super) fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(super) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    t
}
