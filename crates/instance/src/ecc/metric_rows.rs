//! Rows of metric collection's tables.

/// A scrape target of an agent (`metric_targets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricTargetRow {
    /// `mid.server.NAME` or `mid.cluster.NAME`.
    pub agent: String,
    /// The target's name.
    pub name: String,
    /// The target, as JSON (`ScrapeTarget`).
    pub target: String,
    /// When it was first set (epoch ms).
    pub created_at: i64,
}

/// The assignment last sent to a MID (`metric_assignments`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricAssignmentRow {
    /// The MID's name.
    pub mid: String,
    /// The version sent.
    pub version: i64,
    /// A digest of the targets sent (a change means a new assignment).
    pub digest: String,
    /// The `MetricScrape` output that carried it.
    pub output: String,
    /// The names of the targets sent, as `agent/name` JSON strings.
    pub targets: String,
}

/// A series (`metric_series`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSeriesRow {
    /// Its id.
    pub id: i64,
    /// The MID that scraped it.
    pub mid: String,
    /// Its labels as a JSON object, `__name__` included (sorted by label).
    pub labels: String,
}

/// A sample with its series (the remote-write forwarder's read).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSampleRow {
    /// The sample's id (the forwarder's cursor).
    pub id: i64,
    /// Its series.
    pub series: MetricSeriesRow,
    /// Epoch ms.
    pub t_ms: i64,
    /// The value.
    pub value: f64,
}
