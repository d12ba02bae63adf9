//! What a format's parser hands the pager: a header, a record, or a record that could
//! not be read — each with where it is in the file, so pages can say where a re-run
//! continues and errors can name their line.

use crate::probes::ProbeError;
use serde_json::Value;

/// Where an item is in the source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct At {
    /// The line it starts on, from 1 (CSV and JSON lines).
    pub line: Option<u64>,
    /// The byte offset just after it (CSV and JSON lines).
    pub end_offset: Option<u64>,
    /// The line just after it.
    pub end_line: Option<u64>,
}

/// A record's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Fields {
    /// By position: value `i` belongs to column `i` (CSV and Excel, whose header, if
    /// any, named the first columns).
    Positional(Vec<Value>),
    /// By name, in the record's order (XML, JSON).
    Named(Vec<(String, Value)>),
}

/// One thing a parser read.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Column names from a header row (before any record).
    Header(Vec<String>),
    /// A record.
    Record(Fields, At),
    /// A record that could not be read, and why (it counts as a record).
    Bad(String, At),
}

/// A format's reader: items in file order; `Ok(None)` at the end; `Err` when the
/// document cannot be read any further (the job fails, naming the position).
pub trait Parser: Send {
    /// The next item.
    fn next_item(&mut self) -> Result<Option<Item>, ProbeError>;
}

/// A document that cannot be read further.
pub fn unreadable(what: impl std::fmt::Display) -> ProbeError {
    ProbeError::Target(format!("the file cannot be read further: {what}"))
}
