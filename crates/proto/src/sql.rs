//! Payloads of the `JDBCProbe` topic: one SQL statement run by the MID against a
//! PostgreSQL or MySQL/MariaDB server inside its network, its rows streamed back in
//! pages.
//!
//! A result can be far larger than one message, so rows travel as pages: each page is
//! one chunk of the output's `rows` stream ([`OutputStream::Rows`]), its data one JSON
//! line holding a [`SqlPage`]. The result ([`SqlResponse`]) comes last and carries the
//! column list, the counts and the first page, so a small query needs no paging.
//!
//! A job re-run on another MID after some of its pages were stored continues where
//! they end ([`SqlResume`]): with a `keyset` the statement is wrapped so that it
//! continues after the last stored row's key, without one it is run again and the rows
//! already stored are read and skipped.
//!
//! [`OutputStream::Rows`]: crate::command_output::OutputStream::Rows

use crate::credential::CredentialRef;
use crate::probe::{FieldError, Target, field_error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Rows per page unless the request says otherwise.
pub const DEFAULT_PAGE_ROWS: u32 = 500;
/// Most rows a page may be asked to hold (a page is also cut before its JSON line
/// reaches [`MAX_CHUNK_BYTES`](crate::command_output::MAX_CHUNK_BYTES)).
pub const MAX_PAGE_ROWS: u32 = 10_000;
/// Longest a statement runs when the request gives no `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 300_000;
/// Longest `timeout_ms` a request may ask for.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// Largest statement text.
pub const MAX_STATEMENT_BYTES: usize = 1024 * 1024;
/// Most bound parameters (both protocols count them in 16 bits).
pub const MAX_PARAMS: usize = 65_535;
/// Most keyset columns.
pub const MAX_KEYSET: usize = 16;
/// Largest `ca_pem`.
pub const MAX_CA_PEM_BYTES: usize = 256 * 1024;

/// Which wire protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlDriver {
    /// PostgreSQL (default port 5432).
    Postgres,
    /// MySQL or MariaDB (default port 3306).
    Mysql,
}

impl SqlDriver {
    /// The server's usual port.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Postgres => 5432,
            Self::Mysql => 3306,
        }
    }
}

/// Whether and how the connection is encrypted (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, without checking its certificate; plain
    /// otherwise.
    #[default]
    Prefer,
    /// TLS or fail; the certificate is not checked.
    Require,
    /// TLS with a certificate that chains to `ca_pem` (or the system's roots); any
    /// host name.
    VerifyCa,
    /// As `verify_ca`, and the certificate must name `host`.
    VerifyFull,
}

/// Input of a `JDBCProbe` output: one statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// The server's protocol.
    pub driver: SqlDriver,
    /// Host name or IP address, resolved and checked by the MID's egress policy
    /// (`policy.sql`).
    pub host: String,
    /// Port (default: the driver's, 5432 or 3306).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The database to connect to.
    pub database: String,
    /// The login: a `database` credential (user name and password), sealed to the MID
    /// at claim time.
    pub credential: CredentialRef,
    /// TLS (default `prefer`).
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM CA certificates the server's certificate must chain to (`verify_ca`,
    /// `verify_full`); default the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Session settings, applied before the statement: PostgreSQL run-time parameters
    /// sent at connection start (`-c name=value`, e.g. `search_path`, `work_mem`,
    /// `DateStyle`), MySQL/MariaDB session variables (`SET SESSION name = value`, a
    /// value that is an integer is bound as one, e.g. `sql_mode`, `sql_select_limit`).
    /// Names are `[A-Za-z_][A-Za-z0-9_.]*`; the settings the probe itself controls
    /// (timeouts, read-only mode, MySQL's `time_zone`) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// The statement: one statement, with `$1, $2, …` (PostgreSQL) or `?` (MySQL)
    /// placeholders.
    pub statement: String,
    /// Values bound to the placeholders, in order: `null`, a boolean, a number (an
    /// integer as a 64-bit integer, any other number as a double) or a string.
    /// PostgreSQL types a string parameter as `text`, an integer as `int8` and a null
    /// as a `text` null: cast where the column has another type (`$1::date`,
    /// `$2::uuid`, `$3::numeric`). MySQL converts as it compares.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<serde_json::Value>,
    /// Let the statement write. By default (`false`) the session and its transaction
    /// are read-only, enforced by the server; `true` needs `policy.sql.writes = true`
    /// on the MID, and the statement's transaction is committed when it succeeded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub write: bool,
    /// Rows per page (default 500, at most 10 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_rows: Option<u32>,
    /// Stop after this many rows (counted over all attempts); the result is then
    /// `truncated` if there were more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u64>,
    /// Columns of the result that together are unique and never null: the rows are
    /// ordered by them (`ORDER BY k1, k2, …`, on every attempt) and a re-run continues
    /// after the last stored row's key instead of reading from the start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyset: Vec<String>,
    /// Where a re-run continues (filled by the instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<SqlResume>,
    /// Longest the whole job may take, connecting included (default 300 000); the
    /// server is told too (`statement_timeout`, `max_statement_time`,
    /// `max_execution_time`), and the statement is cancelled on the server when it
    /// passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Where a re-run of a job continues: what its earlier attempts stored.
///
/// With a `keyset`, the statement becomes
/// `SELECT * FROM (<statement>) AS openmid_q WHERE (k1, k2, …) > (…after_key) ORDER BY
/// k1, k2, …`. Without one, the statement is run again and its first `rows_done` rows
/// are read and dropped — which gives each row once only if the statement's own
/// `ORDER BY` makes the order total and the data did not change in between.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlResume {
    /// The number of the first page this attempt sends.
    pub next_page: u64,
    /// Rows stored by the earlier attempts.
    pub rows_done: u64,
    /// The keyset values of the last stored row ([`SqlPage::last_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_key: Option<Vec<serde_json::Value>>,
}

/// One column of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Its name (as the statement labels it).
    pub name: String,
    /// Its type as the database names it (`int4`, `timestamptz`, `VARCHAR`, an enum's
    /// name …).
    pub type_name: String,
    /// How its values are written in JSON: `number` (integers and floats; a float's
    /// NaN and infinities as the strings `NaN`, `Infinity`, `-Infinity`), `decimal`
    /// (exact numerics as a string, all digits kept), `boolean`, `string`, `base64`
    /// (binary), `json` (a JSON value), `uuid`, `date` (`YYYY-MM-DD`), `time`
    /// (`HH:MM:SS[.ffffff]`), `timestamp` (`YYYY-MM-DDTHH:MM:SS[.ffffff]`, no offset),
    /// `timestamptz` (RFC 3339 in UTC, `…Z`), `interval` (ISO 8601 duration, `P1DT2H`),
    /// `array<…>` (a JSON array, nested per dimension, of the element's mapping).
    /// Dates out of RFC 3339's range are written with a sign (`-0044-03-15`,
    /// `+10000-01-01`); PostgreSQL's infinite dates as `infinity` / `-infinity`.
    /// `null` for a column that can hold nothing else (PostgreSQL's `void`, MySQL's
    /// `NULL` type). `NULL` is `null` in every column. MySQL flags text in a binary
    /// collation (`*_bin`, MariaDB's `JSON` and `UUID` among it) as binary, so such a
    /// column is `base64` unless the statement casts it (`CAST(c AS CHAR)`).
    pub json: String,
}

/// One page of rows: the data of one chunk of the `rows` stream, as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlPage {
    /// Its number, from 0, continued across attempts.
    pub page: u64,
    /// Index of its first row in the whole result, from 0.
    pub first_row: u64,
    /// The columns, on page 0 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<Column>>,
    /// The rows, each one value per column.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// The keyset values of the page's last row, when the request has a `keyset`
    /// (what a re-run passes as [`SqlResume::after_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key: Option<Vec<serde_json::Value>>,
}

/// Result of a `JDBCProbe` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SqlResponse {
    /// The result's columns (empty for a statement that returns no rows).
    pub columns: Vec<Column>,
    /// Rows read, over all attempts (a re-run's `rows_done` included).
    pub rows: u64,
    /// Pages sent, over all attempts (the next page number).
    pub pages: u64,
    /// Rows the statement changed, as the server reports it, for a statement that
    /// returns no rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_affected: Option<u64>,
    /// Reading stopped at `max_rows` and there were more rows.
    pub truncated: bool,
    /// The first page this attempt read (up to `page_rows` rows), so a small query
    /// needs no paging; also sent as a page of the `rows` stream.
    pub first_page: Vec<Vec<serde_json::Value>>,
    /// When the attempt started, RFC 3339.
    pub started_at: String,
    /// How long it ran.
    pub duration_ms: u64,
    /// The session was read-only (`write` was false).
    pub read_only: bool,
}

impl SqlRequest {
    /// The port connected to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.driver.default_port())
    }

    /// Rows per page.
    pub fn page_rows(&self) -> u32 {
        self.page_rows.unwrap_or(DEFAULT_PAGE_ROWS)
    }

    /// The whole job's time limit.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }

    /// Checks what can be checked without the server; errors name the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_host(&self.host)?;
        if self.port == Some(0) {
            return Err(field_error("port", "must be 1–65535"));
        }
        if self.database.is_empty() || self.database.len() > 64 || self.database.contains('\0') {
            return Err(field_error(
                "database",
                "must be 1–64 bytes without NUL characters",
            ));
        }
        if let Some(pem) = &self.ca_pem {
            if self.tls == TlsMode::Disable {
                return Err(field_error("ca_pem", "is given but tls is `disable`"));
            }
            if pem.len() > MAX_CA_PEM_BYTES || !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(field_error(
                    "ca_pem",
                    format!("must be PEM certificates (at most {MAX_CA_PEM_BYTES} bytes)"),
                ));
            }
        }
        for (name, value) in &self.options {
            check_option(self.driver, name, value)?;
        }
        if self.statement.trim().is_empty() {
            return Err(field_error("statement", "is empty"));
        }
        if self.statement.len() > MAX_STATEMENT_BYTES || self.statement.contains('\0') {
            return Err(field_error(
                "statement",
                format!("must be at most {MAX_STATEMENT_BYTES} bytes without NUL characters"),
            ));
        }
        if self.params.len() > MAX_PARAMS {
            return Err(field_error(
                "params",
                format!("at most {MAX_PARAMS} parameters"),
            ));
        }
        for (i, p) in self.params.iter().enumerate() {
            check_scalar(&format!("params[{i}]"), p)?;
        }
        if let Some(rows) = self.page_rows
            && !(1..=MAX_PAGE_ROWS).contains(&rows)
        {
            return Err(field_error(
                "page_rows",
                format!("must be 1–{MAX_PAGE_ROWS}, got {rows}"),
            ));
        }
        if self.max_rows == Some(0) {
            return Err(field_error("max_rows", "must be at least 1"));
        }
        self.check_keyset()?;
        if let Some(t) = self.timeout_ms
            && !(1..=MAX_TIMEOUT_MS).contains(&t)
        {
            return Err(field_error(
                "timeout_ms",
                format!("must be 1–{MAX_TIMEOUT_MS}, got {t}"),
            ));
        }
        Ok(())
    }

    fn check_keyset(&self) -> Result<(), FieldError> {
        if self.keyset.len() > MAX_KEYSET {
            return Err(field_error(
                "keyset",
                format!("at most {MAX_KEYSET} columns"),
            ));
        }
        for (i, column) in self.keyset.iter().enumerate() {
            if column.is_empty()
                || column.len() > 64
                || column.contains(['\0', '"', '`'])
                || self.keyset[..i].contains(column)
            {
                return Err(field_error(
                    &format!("keyset[{i}]"),
                    "must be a column name of 1–64 bytes, without NUL, `\"` or backquote, named once",
                ));
            }
        }
        let Some(resume) = &self.resume else {
            return Ok(());
        };
        if self.write {
            return Err(field_error(
                "resume",
                "a writing statement is not resumed: run again, it could apply twice",
            ));
        }
        match &resume.after_key {
            Some(key) if key.len() != self.keyset.len() => Err(field_error(
                "resume.after_key",
                format!(
                    "has {} values for {} keyset columns",
                    key.len(),
                    self.keyset.len()
                ),
            )),
            Some(key) => {
                for (i, v) in key.iter().enumerate() {
                    check_scalar(&format!("resume.after_key[{i}]"), v)?;
                    if v.is_null() {
                        return Err(field_error(
                            &format!("resume.after_key[{i}]"),
                            "is null: keyset columns must never be null",
                        ));
                    }
                }
                Ok(())
            }
            None if !self.keyset.is_empty() && resume.rows_done > 0 => Err(field_error(
                "resume.after_key",
                "is needed with a keyset once rows were stored",
            )),
            None => Ok(()),
        }
    }
}

fn check_host(host: &str) -> Result<(), FieldError> {
    if host.is_empty()
        || host.len() > 253
        || host.starts_with('/')
        || host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(field_error(
            "host",
            "must be a host name or IP address (no socket paths, no spaces)",
        ));
    }
    Ok(())
}

/// Settings the probe sets itself, per driver.
fn reserved(driver: SqlDriver, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let common = [
        "default_transaction_read_only",
        "transaction_read_only",
        "tx_read_only",
    ];
    common.contains(&name.as_str())
        || match driver {
            SqlDriver::Postgres => {
                ["statement_timeout", "client_encoding"].contains(&name.as_str())
            }
            SqlDriver::Mysql => [
                "max_statement_time",
                "max_execution_time",
                "time_zone",
                "character_set_results",
                "character_set_client",
                "character_set_connection",
            ]
            .contains(&name.as_str()),
        }
}

fn check_option(driver: SqlDriver, name: &str, value: &str) -> Result<(), FieldError> {
    let field = || format!("options.{name}");
    let mut chars = name.chars();
    let well_formed = name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !well_formed {
        return Err(field_error(
            "options",
            format!("`{name}` is not a setting name ([A-Za-z_][A-Za-z0-9_.]*, at most 64)"),
        ));
    }
    if reserved(driver, name) {
        return Err(field_error(
            &field(),
            "is set by the probe itself (timeouts, read-only mode, time zone, encoding)",
        ));
    }
    if value.len() > 4096 || value.contains('\0') {
        return Err(field_error(
            &field(),
            "must be at most 4096 bytes without NUL characters",
        ));
    }
    Ok(())
}

fn check_scalar(field: &str, value: &serde_json::Value) -> Result<(), FieldError> {
    match value {
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => Err(field_error(
            field,
            "must be null, a boolean, a number or a string (pass JSON as a string and cast it)",
        )),
        serde_json::Value::String(s) if s.contains('\0') => {
            Err(field_error(field, "must not contain NUL characters"))
        }
        _ => Ok(()),
    }
}

/// The `JDBCProbe` topic.
pub struct Jdbc;

impl crate::probe::Contract for Jdbc {
    const TOPIC: crate::ecc::Topic = crate::ecc::Topic::JDBCProbe;
    type Request = SqlRequest;
    type Response = SqlResponse;

    fn validate(req: &SqlRequest) -> Result<(), FieldError> {
        req.validate()
    }

    fn target(req: &SqlRequest) -> Option<Target> {
        Some(Target {
            host: req.host.clone(),
            port: Some(req.port()),
        })
    }

    fn credential(req: &SqlRequest) -> Option<&CredentialRef> {
        Some(&req.credential)
    }

    /// Always bounded: the default applies when the request gives none.
    fn timeout(req: &SqlRequest) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(req.timeout_ms()))
    }

    /// A read that moved to another MID continues after the last page the instance
    /// stored: by the keyset when the request names one, else by skipping the rows
    /// already stored.
    const RESUMES: bool = true;

    fn resume(req: &mut SqlRequest, last: &[u8]) -> Result<(), FieldError> {
        let page: SqlPage = serde_json::from_slice(last).map_err(|e| {
            field_error(
                "resume",
                format!("the last stored page does not parse: {e}"),
            )
        })?;
        let after_key = match (req.keyset.is_empty(), page.last_key) {
            (true, _) => None,
            (false, Some(key)) => Some(key),
            (false, None) => {
                return Err(field_error(
                    "resume",
                    "the last stored page has no keyset values to continue after",
                ));
            }
        };
        req.resume = Some(SqlResume {
            next_page: page.page + 1,
            rows_done: page.first_row + page.rows.len() as u64,
            after_key,
        });
        Ok(())
    }
}

/// `POST /api/v1/actions/sql`: a statement run by a MID against the database of an
/// alias of kind `jdbc`. Rows stream back in pages while it runs
/// (`GET /api/v1/actions/{id}/output`, stream `rows`); the result holds the columns,
/// the counts and the first page.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlAction {
    /// The alias (kind `jdbc`).
    pub alias: String,
    /// The statement, with placeholders (`$1` for PostgreSQL, `?` for MySQL/MariaDB).
    pub statement: String,
    /// Values bound to the placeholders, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<serde_json::Value>,
    /// Run in a read-write session (the MID's policy must allow writes:
    /// `[policy.sql] writes = true`); read-only otherwise.
    #[serde(default)]
    pub write: bool,
    /// Rows per page (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_rows: Option<u32>,
    /// Stop after this many rows (the result says `truncated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<u64>,
    /// Columns of a unique sort key: the rows are read in its order, and a run that
    /// moves to another MID of a cluster continues after the last stored page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keyset: Vec<String>,
    /// Longest run in milliseconds, enforced by the database too (default: the
    /// alias's `timeout_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Never run it twice: after a lost MID it ends in `error` instead.
    #[serde(default)]
    pub at_most_once: bool,
    /// Caller's correlator for the output record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlator: Option<String>,
}

#[cfg(test)]
mod tests;
