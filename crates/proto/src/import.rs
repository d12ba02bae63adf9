//! Import Sets: data sources the instance reads through a MID on a schedule or by
//! hand, and the import sets their runs fill.
//!
//! A **data source** names what to read — a file (a path on the MID's host or a URL
//! through an HTTP alias), an LDAP search or a SQL statement — as the body of the
//! action that reads it (`kind` says which: `file`, `ldap`, `sql`; `read` is a
//! [`FileImportAction`], [`LdapAction`] or [`SqlAction`]), which MIDs may run it, when
//! (a [`Schedule`]), and for LDAP and SQL an optional change `marker` so a run reads
//! only what changed since the last one.
//!
//! A **run** is one ECC job. Its rows stream back in pages (the `rows` stream of the
//! output) and are the import set's rows; a run whose MID dies continues on another
//! member of the cluster after the last page the instance stored, so each source row
//! is in the import set once.
//!
//! [`FileImportAction`]: crate::file_import::FileImportAction
//! [`LdapAction`]: crate::ldap::LdapAction
//! [`SqlAction`]: crate::sql::SqlAction

use crate::file_import::FileImportAction;
use crate::ldap::LdapAction;
use crate::probe::{FieldError, field_error};
use crate::sql::SqlAction;
use serde::{Deserialize, Serialize};

/// Longest data source name.
pub const MAX_NAME: usize = 100;
/// Most rows one `GET /api/v1/import-sets/{id}/rows` answer holds.
pub const MAX_ROWS_PER_PAGE: u32 = 10_000;
/// Rows per answer unless `limit` says otherwise.
pub const DEFAULT_ROWS_PER_PAGE: u32 = 1_000;
/// Shortest interval of an `every` schedule, in seconds.
pub const MIN_INTERVAL_SECS: u64 = 60;

/// What a data source reads, by kind: the body of the action that reads it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", content = "read", rename_all = "snake_case")]
pub enum SourceRead {
    /// A file: CSV, Excel, XML, JSON or JSON lines, on the MID's host (within its
    /// `[policy.file] allow_dirs`) or at a URL through an HTTP alias.
    File(FileImportAction),
    /// An LDAP search through an `ldap` alias.
    Ldap(LdapAction),
    /// A SQL statement through a `jdbc` alias.
    Sql(SqlAction),
}

impl SourceRead {
    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Ldap(_) => "ldap",
            Self::Sql(_) => "sql",
        }
    }

    /// The alias it reads through, if any.
    pub fn alias(&self) -> Option<&str> {
        match self {
            Self::File(f) => f.alias.as_deref(),
            Self::Ldap(l) => Some(&l.alias),
            Self::Sql(s) => Some(&s.alias),
        }
    }
}

/// When a data source runs by itself: a cron expression or a fixed interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Five fields (minute hour day-of-month month day-of-week, e.g. `30 2 * * 1-5`)
    /// or six with seconds first; names (`MON`, `JAN`), lists, ranges, steps, `L`,
    /// `W` and `#` as in common crons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// Or an interval: `90s`, `15m`, `6h`, `1d` (at least a minute), counted from the
    /// start of the previous run (from the schedule's creation for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// The time zone a cron expression is read in: `UTC` (default) or an IANA name
    /// (`Europe/Paris`, `America/New_York`); daylight-saving changes are followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// Parses an interval such as `90s`, `15m`, `6h`, `1d` into seconds.
pub fn parse_interval(text: &str) -> Result<u64, FieldError> {
    let bad = || {
        field_error(
            "schedule.every",
            format!("`{text}` is not an interval: a number and s, m, h or d (`15m`, `6h`)"),
        )
    };
    let text = text.trim();
    let unit = text.chars().last().ok_or_else(bad)?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let number: u64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
    let secs = number.checked_mul(scale).ok_or_else(bad)?;
    if secs < MIN_INTERVAL_SECS {
        return Err(field_error(
            "schedule.every",
            format!("`{text}` is shorter than a minute"),
        ));
    }
    if secs > 366 * 86_400 {
        return Err(field_error("schedule.every", "is longer than a year"));
    }
    Ok(secs)
}

/// A data source as it is written (`PUT /api/v1/data-sources/{name}`).
#[derive(Debug, Clone, Serialize)]
pub struct DataSource {
    /// Its name (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// What it is for, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What to read.
    #[serde(flatten)]
    pub read: SourceRead,
    /// Which MIDs run it: `mid.server.NAME`, `mid.cluster.NAME` or `mid.auto`.
    /// Default: the alias's execution settings (a file on a MID's host needs one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// A change marker (LDAP: an attribute such as `modifyTimestamp` or
    /// `uSNChanged`; SQL: a column, never null): each run after the first reads only
    /// entries or rows whose marker is at or past the highest the last complete run
    /// saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    /// When it runs by itself; without one it runs only when started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Whether the schedule is followed (default true); a paused source still runs
    /// by hand.
    pub enabled: bool,
    /// Days an import set of this source is kept after it finished (default: the
    /// instance's `import_retention_days`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// The document's shape of a [`DataSource`], read field by field so an error names
/// the field (`read.filter`, `schedule.cron` …).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataSource {
    name: String,
    #[serde(default)]
    description: Option<String>,
    kind: String,
    read: serde_json::Value,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    marker: Option<String>,
    #[serde(default)]
    schedule: Option<Schedule>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    retention_days: Option<u32>,
}

fn yes() -> bool {
    true
}

impl<'de> Deserialize<'de> for DataSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawDataSource::deserialize(d)?;
        let read = SourceRead::from_parts(&raw.kind, raw.read).map_err(serde::de::Error::custom)?;
        Ok(Self {
            name: raw.name,
            description: raw.description,
            read,
            agent: raw.agent,
            marker: raw.marker,
            schedule: raw.schedule,
            enabled: raw.enabled,
            retention_days: raw.retention_days,
        })
    }
}

impl SourceRead {
    /// The read of `kind`, from its JSON; an error names `kind` or the `read` field.
    pub fn from_parts(kind: &str, read: serde_json::Value) -> Result<Self, FieldError> {
        fn typed<T: serde::de::DeserializeOwned>(read: serde_json::Value) -> Result<T, FieldError> {
            serde_json::from_value(read).map_err(|e| field_error("read", e.to_string()))
        }
        match kind {
            "file" => Ok(Self::File(typed(read)?)),
            "ldap" => Ok(Self::Ldap(typed(read)?)),
            "sql" => Ok(Self::Sql(typed(read)?)),
            other => Err(field_error(
                "kind",
                format!("`{other}` is not a data source kind: file, ldap or sql"),
            )),
        }
    }
}

impl DataSource {
    /// Checks what can be checked without the store (the alias and the agent are
    /// checked when it is saved); errors name the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_name(&self.name)?;
        if let Some(d) = &self.description
            && d.len() > 1000
        {
            return Err(field_error("description", "at most 1000 bytes"));
        }
        if let Some(marker) = &self.marker {
            if matches!(self.read, SourceRead::File(_)) {
                return Err(field_error(
                    "marker",
                    "a file has no change marker: every run reads the whole file",
                ));
            }
            let well_formed = !marker.is_empty()
                && marker.len() <= 64
                && marker
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if !well_formed {
                return Err(field_error(
                    "marker",
                    "must be an attribute or column name (letters, digits, `_`, `-`, `.`; at most 64)",
                ));
            }
        }
        if let SourceRead::Sql(sql) = &self.read {
            if sql.write {
                return Err(field_error(
                    "read.write",
                    "an import reads: a data source's statement is never run to write",
                ));
            }
            if self.marker.is_some() && sql.keyset.is_empty() {
                return Err(field_error(
                    "read.keyset",
                    "name the columns that make a row unique: rows are read in the order of the marker, then these, and a run that moves to another MID continues after the last stored key",
                ));
            }
            if let Some(marker) = &self.marker
                && sql.keyset.contains(marker)
            {
                return Err(field_error(
                    "read.keyset",
                    "must not name the marker column: the import orders by the marker first itself",
                ));
            }
        }
        if let Some(schedule) = &self.schedule {
            match (&schedule.cron, &schedule.every) {
                (Some(_), Some(_)) => {
                    return Err(field_error("schedule", "give `cron` or `every`, not both"));
                }
                (None, None) => {
                    return Err(field_error("schedule", "give `cron` or `every`"));
                }
                (None, Some(every)) => {
                    parse_interval(every)?;
                    if schedule.time_zone.is_some() {
                        return Err(field_error(
                            "schedule.time_zone",
                            "applies to a cron expression, not to an interval",
                        ));
                    }
                }
                (Some(_), None) => {}
            }
        }
        if self.retention_days == Some(0) {
            return Err(field_error("retention_days", "must be at least 1"));
        }
        Ok(())
    }
}

/// Checks a data source name.
pub fn check_name(name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(field_error(
            "name",
            format!("must be 1–{MAX_NAME} letters, digits, `.`, `_` or `-`"),
        ))
    }
}

/// A data source as the instance shows it: what was written, and what the instance
/// adds (read back by deserializing the same object).
#[derive(Debug, Clone, Serialize)]
pub struct DataSourceInfo {
    /// What was written.
    #[serde(flatten)]
    pub source: DataSource,
    /// When it was made, RFC 3339.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When the schedule runs it next (none without a schedule, or paused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<String>,
    /// The highest change marker the last complete run saw: where the next run
    /// starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_value: Option<String>,
    /// The newest import set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_import_set: Option<String>,
}

/// The fields [`DataSourceInfo`] adds to a [`DataSource`].
const INFO_FIELDS: [&str; 5] = [
    "created_at",
    "updated_at",
    "next_run_at",
    "marker_value",
    "last_import_set",
];

impl<'de> Deserialize<'de> for DataSourceInfo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut object = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let mut take = |key: &str| -> Result<Option<String>, D::Error> {
            match object.remove(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(D::Error::custom(format!("{key}: must be a string"))),
            }
        };
        let [created, updated, next, marker, last] = INFO_FIELDS.map(&mut take);
        let source =
            DataSource::deserialize(serde_json::Value::Object(object)).map_err(D::Error::custom)?;
        Ok(Self {
            source,
            created_at: created?.unwrap_or_default(),
            updated_at: updated?.unwrap_or_default(),
            next_run_at: next?,
            marker_value: marker?,
            last_import_set: last?,
        })
    }
}

/// How a run ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportState {
    /// Its job is queued or running.
    Running,
    /// Every source row read, none refused.
    Complete,
    /// Every readable row read; some rows were refused (see its errors).
    CompleteWithErrors,
    /// The run failed (the rows read until then stay).
    Error,
    /// It was cancelled.
    Cancelled,
}

impl ImportState {
    /// The name written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Complete => "complete",
            Self::CompleteWithErrors => "complete_with_errors",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses [`ImportState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Complete,
            Self::CompleteWithErrors,
            Self::Error,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }

    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        self != Self::Running
    }
}

/// One column of an import set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportColumn {
    /// Its name (for LDAP, `dn` then the attributes as seen).
    pub name: String,
    /// Its type: for files as inferred from the values (`integer`, `number`,
    /// `boolean`, `date`, `timestamp`, `string`), for SQL as the database maps it
    /// (see the SQL action's columns), for LDAP `string` (`base64` for binary
    /// attributes, `array` where an entry had several values).
    #[serde(rename = "type")]
    pub type_name: String,
}

/// One run of a data source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportSet {
    /// Its id (`imp_…`).
    pub id: String,
    /// The data source.
    pub source: String,
    /// `file`, `ldap` or `sql`.
    pub kind: String,
    /// `manual` or `schedule`.
    pub trigger: String,
    /// The ECC output of the run.
    pub output_id: String,
    /// Where it is.
    pub state: ImportState,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Rows stored (so far, while it runs).
    pub rows: u64,
    /// Source rows refused (bad rows of a file), with their reasons in
    /// `/api/v1/import-sets/{id}/errors`.
    pub errors: u64,
    /// The columns (once the first page arrived).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ImportColumn>,
    /// The change marker this run read from (an incremental run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_from: Option<String>,
    /// The highest change marker it saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_to: Option<String>,
    /// Why it failed, or what else there is to know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One row of an import set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportRow {
    /// Its number in the import set, from 1.
    pub row: u64,
    /// Its values by column (a column a row lacks is absent).
    #[schema(value_type = Object)]
    pub values: serde_json::Map<String, serde_json::Value>,
}

/// `GET /api/v1/import-sets/{id}/rows`: rows after `after`, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportRowsPage {
    /// The import set.
    pub import_set: String,
    /// Its state when this page was read.
    pub state: ImportState,
    /// The rows.
    pub rows: Vec<ImportRow>,
    /// The `after` of the next page: the last row's number (absent when the page is
    /// empty; a running import may still add rows after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<u64>,
}

/// A source row the MID refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportError {
    /// Its record number in the source, from 1.
    pub record: u64,
    /// The line it starts on, for line-based files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// What is wrong with it.
    pub reason: String,
}

/// `GET /api/v1/import-sets/{id}/errors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportErrorsPage {
    /// The import set.
    pub import_set: String,
    /// The refused rows, in source order.
    pub errors: Vec<ImportError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("15m"), Ok(900));
        assert_eq!(parse_interval("1d"), Ok(86_400));
        assert_eq!(parse_interval("90s"), Ok(90));
        assert!(parse_interval("30s").is_err());
        assert!(parse_interval("m").is_err());
        assert!(parse_interval("").is_err());
        assert!(parse_interval("99999999999999999999d").is_err());
        assert!(parse_interval("5 w").is_err());
    }

    #[test]
    fn a_source_reads_by_kind_and_errors_name_the_field() {
        let ds: DataSource = serde_json::from_value(serde_json::json!({
            "name": "inventory", "kind": "sql",
            "read": {"alias": "sccm", "statement": "SELECT * FROM v_R_System", "keyset": ["ResourceID"]},
            "marker": "LastHWScan", "schedule": {"cron": "0 2 * * *", "time_zone": "Europe/Paris"}
        }))
        .expect("parses");
        assert_eq!(ds.read.kind(), "sql");
        assert!(ds.enabled);
        ds.validate().expect("valid");
        let back = serde_json::to_value(&ds).expect("json");
        assert_eq!(back["kind"], "sql");
        assert_eq!(back["read"]["alias"], "sccm");
        let again: DataSource = serde_json::from_value(back.clone()).expect("round trip");
        assert_eq!(serde_json::to_value(&again).expect("json"), back);

        let err = serde_json::from_value::<DataSource>(serde_json::json!({
            "name": "x", "kind": "nfs", "read": {}
        }))
        .expect_err("kind");
        assert!(err.to_string().contains("kind"), "{err}");
        let err = serde_json::from_value::<DataSource>(serde_json::json!({
            "name": "x", "kind": "sql", "read": {"alias": "a", "statement": "x", "nope": 1}
        }))
        .expect_err("read field");
        assert!(err.to_string().contains("nope"), "{err}");
        let err = serde_json::from_value::<DataSource>(serde_json::json!({
            "name": "x", "kind": "sql", "read": {}, "color": "red"
        }))
        .expect_err("unknown field");
        assert!(err.to_string().contains("color"), "{err}");
    }

    #[test]
    fn schedules_and_markers_are_checked() {
        let mut ds: DataSource = serde_json::from_value(serde_json::json!({
            "name": "users", "kind": "sql", "read": {"alias": "a", "statement": "SELECT 1"},
            "schedule": {"cron": "0 2 * * *", "every": "1h"}
        }))
        .expect("parses");
        assert_eq!(ds.validate().expect_err("both").field, "schedule");
        ds.schedule = Some(Schedule {
            cron: None,
            every: Some("1h".into()),
            time_zone: Some("UTC".into()),
        });
        assert_eq!(ds.validate().expect_err("tz").field, "schedule.time_zone");
        ds.schedule = None;
        ds.marker = Some("bad name;".into());
        assert_eq!(ds.validate().expect_err("marker").field, "marker");
        ds.marker = None;
        ds.name = "no spaces".into();
        assert_eq!(ds.validate().expect_err("name").field, "name");
    }

    proptest::proptest! {
        /// A data source is API input: any JSON object gives a source or an error.
        #[test]
        fn arbitrary_documents_never_panic(kind in "[a-z]{0,6}", every in "\\PC{0,12}", name in "\\PC{0,20}", marker in proptest::option::of("\\PC{0,10}")) {
            let doc = serde_json::json!({"name": name, "kind": kind, "read": {"alias": "a", "statement": "x", "path": "/x", "format": {"type": "csv"}},
                "marker": marker, "schedule": {"every": every}});
            if let Ok(ds) = serde_json::from_value::<DataSource>(doc) {
                let _ = ds.validate();
            }
            let _ = parse_interval(&every);
        }
    }
}
