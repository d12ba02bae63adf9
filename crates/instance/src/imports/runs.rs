//! The output one run of a data source queues: the output its action would queue,
//! with what an import adds — the change marker (tracked on every run, filtered on
//! after the first) and the source's agent.
//!
//! - **LDAP**: the probe is told the marker attribute (it reports the highest value it
//!   saw), which is asked for by name (operational attributes come only so); an
//!   incremental run's filter becomes `(&(<filter>)(<marker>>=<value>))`.
//! - **SQL**: the rows are read ordered by the marker first (the keyset becomes
//!   `[marker, …keyset]`), so the last stored page's key holds the highest marker and a
//!   run moved to another MID continues by keyset; an incremental run reads
//!   `SELECT * FROM (<statement>) AS openmid_src WHERE <marker> >= <value>`.
//!
//! How "past" is read depends on the marker. An integer marker is a counter —
//! `uSNChanged`, a rowversion, a sequence — unique and only growing, so the next run
//! reads what is strictly greater (LDAP has no `>`: `(&(m=*)(!(m<=v)))`). Anything
//! else is a timestamp, which many changes can share: the next run reads what is at
//! or past it (`>=`), so a change made in the same tick as the last run's highest is
//! read again rather than missed; an import set is a staging table that its
//! transform merges by key.

use crate::dispatch::{DispatchError, Dispatcher, invalid};
use openmid_proto::api::NewOutput;
use openmid_proto::ecc::Priority;
use openmid_proto::import::{DataSource, SourceRead};
use openmid_proto::ldap::LdapRequest;
use openmid_proto::payload::Payload;
use openmid_proto::sql::{SqlDriver, SqlRequest};

/// The output of one run of `source`, reading from `marker_from` when given.
pub(super) async fn build(
    dispatcher: &Dispatcher,
    source: &DataSource,
    marker_from: Option<&str>,
) -> Result<NewOutput, DispatchError> {
    let connections = dispatcher.connections();
    let mut output = match &source.read {
        SourceRead::File(action) => {
            let mut action = action.clone();
            if action.path.is_some() && action.agent.is_none() {
                action.agent.clone_from(&source.agent);
            }
            connections.file_output(action).await.map_err(in_read)?
        }
        SourceRead::Ldap(action) => {
            let mut output = connections
                .ldap_output(action.clone())
                .await
                .map_err(in_read)?;
            if let Some(marker) = &source.marker {
                let mut req: LdapRequest = payload(&output)?;
                req.marker_attribute = Some(marker.clone());
                // A marker is mostly operational (modifyTimestamp, uSNChanged), which
                // a directory sends only when asked by name.
                if !req
                    .attributes
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(marker))
                {
                    if req.attributes.is_empty() {
                        req.attributes.push("*".into());
                    }
                    req.attributes.push(marker.clone());
                }
                if let Some(value) = marker_from {
                    let past = if is_counter(value) {
                        format!("(&({marker}=*)(!({marker}<={value})))")
                    } else {
                        format!("({marker}>={})", escape_filter_value(value))
                    };
                    req.filter = format!("(&{}{past})", parenthesized(&req.filter));
                }
                output.payload = to_payload(&req)?;
            }
            output
        }
        SourceRead::Sql(action) => {
            let mut action = action.clone();
            if let Some(marker) = &source.marker {
                action.keyset.insert(0, marker.clone());
            }
            let mut output = connections.sql_output(action).await.map_err(in_read)?;
            if let (Some(marker), Some(value)) = (&source.marker, marker_from) {
                let mut req: SqlRequest = payload(&output)?;
                incremental_sql(&mut req, marker, value);
                output.payload = to_payload(&req)?;
            }
            output
        }
    };
    if let Some(agent) = &source.agent {
        output.agent.clone_from(agent);
    }
    output.priority = Some(Priority::Standard);
    output.name = output.name.map(|n| format!("import {}: {n}", source.name));
    crate::topics::check(output.topic, &output.payload)
        .map_err(|e| invalid(&format!("read.{}", e.field), e.message))?;
    Ok(output)
}

/// An error of the action's fields, named as the data source's (`read.alias`).
fn in_read(e: DispatchError) -> DispatchError {
    match e {
        DispatchError::Invalid { field, message } => DispatchError::Invalid {
            field: format!("read.{field}"),
            message,
        },
        e => e,
    }
}

fn payload<T: serde::de::DeserializeOwned>(output: &NewOutput) -> Result<T, DispatchError> {
    output
        .payload
        .decode()
        .map_err(|e| invalid("read", e.to_string()))
}

fn to_payload<T: serde::Serialize>(req: &T) -> Result<Payload, DispatchError> {
    Payload::encode(req).map_err(|e| invalid("read", e.to_string()))
}

/// A filter with its outer parentheses (RFC 4515 allows a bare `cn=x` in many
/// tools; inside `(&…)` it must have them).
fn parenthesized(filter: &str) -> String {
    let f = filter.trim();
    if f.starts_with('(') {
        f.to_string()
    } else {
        format!("({f})")
    }
}

/// Escapes a value for an LDAP filter (RFC 4515: `*`, `(`, `)`, `\` and NUL).
pub(super) fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// Whether a marker value is a counter (an integer), read strictly after.
fn is_counter(value: &str) -> bool {
    value.parse::<i64>().is_ok()
}

/// Wraps the statement so it reads only rows whose marker is past `value`.
/// PostgreSQL gets the value as an untyped literal, which the server types as the
/// column (a bound text parameter would not compare with a timestamp); MySQL gets a
/// bound parameter, which it converts as it compares.
fn incremental_sql(req: &mut SqlRequest, marker: &str, value: &str) {
    let statement = req.statement.trim().trim_end_matches(';');
    let op = if is_counter(value) { ">" } else { ">=" };
    req.statement = match req.driver {
        SqlDriver::Postgres => format!(
            "SELECT * FROM ({statement}) AS openmid_src WHERE \"{}\" {op} {}",
            marker.replace('"', "\"\""),
            pg_literal(value)
        ),
        SqlDriver::Mysql => {
            req.params
                .push(serde_json::Value::String(value.to_string()));
            format!(
                "SELECT * FROM ({statement}) AS openmid_src WHERE `{}` {op} ?",
                marker.replace('`', "``")
            )
        }
    };
}

/// A PostgreSQL string literal that means `value` whatever
/// `standard_conforming_strings` is (the `E''` form, escaping `\` and `'`).
fn pg_literal(value: &str) -> String {
    let mut out = String::from("E'");
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(escape_filter_value("a*(b)\\"), "a\\2a\\28b\\29\\5c");
        assert_eq!(parenthesized("cn=x"), "(cn=x)");
        assert_eq!(parenthesized(" (cn=x) "), "(cn=x)");
    }

    #[test]
    fn literals_cannot_end_early() {
        assert_eq!(pg_literal("it's"), "E'it''s'");
        assert_eq!(pg_literal("a\\'; DROP"), "E'a\\\\''; DROP'");
    }
}
