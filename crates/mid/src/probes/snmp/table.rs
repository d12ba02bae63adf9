//! A conceptual table read into rows: the walk of the table (or its entry) split
//! into column number and index (RFC 2578 §7.7: `entry.column.index`), rows kept in
//! the order the agent first named each index.

use super::ber::Value;
use super::value;
use openmid_proto::snmp::{TableRow, oid_text};
use std::collections::{BTreeMap, HashMap};

/// The rows of `varbinds`, walked from `oid` (the table or its entry): when every
/// varbind is under `oid.1`, `oid` is the table and `oid.1` its entry (an entry's
/// walk has more than one column). Only `columns`, when given.
pub fn rows(oid: &[u32], varbinds: &[(Vec<u32>, Value)], columns: Option<&[u32]>) -> Vec<TableRow> {
    let under_one = varbinds
        .iter()
        .all(|(o, _)| o.get(oid.len()) == Some(&1) && o.len() > oid.len() + 2);
    let skip = if under_one { oid.len() + 1 } else { oid.len() };
    let mut order: Vec<String> = Vec::new();
    let mut by_index: HashMap<String, BTreeMap<u32, serde_json::Value>> = HashMap::new();
    for (o, v) in varbinds {
        let (Some(col), Some(index)) = (o.get(skip), o.get(skip + 1..)) else {
            continue;
        };
        if index.is_empty() || columns.is_some_and(|c| !c.contains(col)) {
            continue;
        }
        let index = oid_text(index);
        let row = by_index.entry(index.clone()).or_insert_with(|| {
            order.push(index);
            BTreeMap::new()
        });
        row.insert(*col, value::json(v));
    }
    order
        .into_iter()
        .map(|index| TableRow {
            columns: by_index.remove(&index).unwrap_or_default(),
            index,
        })
        .collect()
}
