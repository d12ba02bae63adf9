//! Settings from a TOML file with environment overrides: `PREFIX_KEY=value` sets `key`,
//! and a double underscore reaches into a table (`OPENMID_MID_TLS__CA_FILE` sets
//! `tls.ca_file`). Values are read as TOML when they parse (numbers, booleans, arrays)
//! and as strings otherwise.

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads `path` (if given), applies `prefix`ed environment variables, and deserializes.
/// Unknown keys are errors that name the key.
pub fn load<T: DeserializeOwned>(path: Option<&Path>, prefix: &str) -> Result<T> {
    let mut table = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config file {}", p.display()))?;
            toml::from_str::<toml::Table>(&text)
                .with_context(|| format!("config file {}", p.display()))?
        }
        None => toml::Table::new(),
    };
    apply_env(&mut table, prefix, std::env::vars());
    let what = path.map_or_else(
        || format!("{prefix}* environment"),
        |p| format!("config {} (with {prefix}* environment)", p.display()),
    );
    T::deserialize(toml::Value::Table(table)).with_context(|| what)
}

/// Applies overrides from `vars` whose names start with `prefix`. An empty (or blank)
/// variable counts as unset, as a shell's `OPENMID_MID_TLS__CA_FILE=` means "none"
/// rather than "the file named nothing".
pub fn apply_env(
    table: &mut toml::Table,
    prefix: &str,
    vars: impl Iterator<Item = (String, String)>,
) {
    for (name, value) in vars {
        let Some(key) = name.strip_prefix(prefix) else {
            continue;
        };
        if value.trim().is_empty() {
            continue;
        }
        let path: Vec<String> = key.to_lowercase().split("__").map(str::to_string).collect();
        if path.iter().any(String::is_empty) {
            continue;
        }
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        set(table, &path, parsed);
    }
}

fn set(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(inner) = entry {
                set(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_nest_and_type() {
        let mut t: toml::Table =
            toml::from_str("name = \"a\"\n[tls]\nca_file = \"x\"").unwrap_or_default();
        let vars = [
            ("OPENMID_MID_NAME", "b"),
            ("OPENMID_MID_TLS__FINGERPRINT", "AB:CD"),
            ("OPENMID_MID_POLL_WAIT_MS", "100"),
            ("OTHER", "ignored"),
            ("OPENMID_MID_TLS__CA_FILE", ""),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        apply_env(&mut t, "OPENMID_MID_", vars.into_iter());
        assert_eq!(t["name"].as_str(), Some("b"));
        assert_eq!(t["tls"]["fingerprint"].as_str(), Some("AB:CD"));
        assert_eq!(t["tls"]["ca_file"].as_str(), Some("x"));
        assert_eq!(t["poll_wait_ms"].as_integer(), Some(100));
        assert!(!t.contains_key("other"));
    }
}
