//! `JDBCProbe`: one SQL statement against a PostgreSQL or MySQL/MariaDB server inside
//! the MID's network, its rows streamed to the instance in pages.
//!
//! One job is one connection (no pool: a statement may change its session, and a
//! fresh session is the one that is surely read-only). In order:
//! 1. the login is the job's `database` credential; `write = true` needs
//!    `policy.sql.writes` ([`EgressPolicy::check_sql_write`]);
//! 2. the host is resolved and checked under `policy.sql`, and the connection opened
//!    to a checked address ([`connect`]);
//! 3. the session is set up by the driver module ([`postgres`], [`mysql`]): the
//!    server's own statement timeout (what is left of the job's), and unless the job
//!    writes, a read-only session and transaction — the server refuses writes, no SQL
//!    is parsed here;
//! 4. the statement is prepared, its columns mapped to JSON ([`pg_types`],
//!    [`mysql_types`]), and its rows streamed into pages ([`paging`]), each page sent
//!    before the next row is read;
//! 5. on cancellation or at the deadline the statement is cancelled *on the server*
//!    from a second connection (`pg_cancel_backend`, `KILL QUERY`), not just
//!    abandoned.
//!
//! [`EgressPolicy::check_sql_write`]: crate::policy::EgressPolicy::check_sql_write

mod connect;
mod mysql;
mod mysql_types;
mod paging;
mod pg_types;
mod postgres;
mod values;

use super::ProbeError;
use super::credentials::Credential;
use super::output_stream::PageSink;
use super::registry::{Call, Probe, Ran};
use connect::Endpoint;
use openmid_proto::secret::Secret;
use openmid_proto::sql::{Column, SqlRequest, SqlResponse};
use paging::Pager;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long past the job's deadline the client waits for the server's own timeout
/// to end the statement before cancelling it itself.
const SERVER_GRACE: Duration = Duration::from_secs(1);
/// Longest the cancelling connection may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a cancelled statement's stream is read for its end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The `JDBCProbe` entry of the [registry](super::registry). It watches the job's
/// cancellation and deadline itself: the statement must be stopped on the server.
pub struct SqlProbe;

impl Probe for SqlProbe {
    type Contract = openmid_proto::sql::Jdbc;
    const PROTOCOL: Option<crate::policy::Protocol> = Some(crate::policy::Protocol::Sql);
    const WATCHES_CANCEL: bool = true;

    fn run<'a>(
        &'a self,
        req: SqlRequest,
        call: Call<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Ran<SqlResponse>, ProbeError>> {
        Box::pin(async move { Ok(Ran::response(run(req, call).await?)) })
    }
}

/// A database login.
struct Login<'a> {
    pub username: &'a str,
    pub password: &'a Secret,
}

/// What the driver modules share for one job.
struct Session<'a> {
    pub req: &'a SqlRequest,
    pub endpoint: &'a Endpoint,
    pub login: Login<'a>,
    pub stop: &'a Stop,
}

/// What a statement did besides its rows.
struct Outcome {
    /// Rows the server reports changed (or returned).
    pub rows_affected: u64,
}

/// How reading a statement's rows ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Every row was read.
    Done,
    /// `max_rows` was reached.
    Full,
    /// The job was cancelled or ran out of time.
    Stopped,
}

/// What both drivers do once the rows are read: a stopped job fails; a read cut at
/// `max_rows` needs no commit; otherwise the transaction commits (a write keeps what
/// it did) and the connection closes.
async fn finish<C>(
    s: &Session<'_>,
    mut conn: C,
    ended: End,
    affected: u64,
) -> Result<Outcome, ProbeError>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let outcome = Outcome {
        rows_affected: affected,
    };
    match ended {
        End::Stopped => return Err(s.stop.error()),
        End::Full if !s.req.write => return Ok(outcome),
        _ => {}
    }
    s.stop
        .bound(Box::pin(sqlx::Executor::execute(
            &mut conn,
            sqlx::raw_sql("COMMIT"),
        )))
        .await?
        .map_err(|e| s.stop.error_of(e))?;
    let _ = tokio::time::timeout(CANCEL_TIMEOUT, conn.close()).await;
    Ok(outcome)
}

/// Runs one SQL job.
pub async fn run(req: SqlRequest, call: Call<'_>) -> Result<SqlResponse, ProbeError> {
    let started_ms = openmid_proto::time::now_ms();
    let started = Instant::now();
    req.validate()
        .map_err(|e| ProbeError::InvalidInput(e.to_string()))?;
    let login = match call.credential {
        Some(Credential::Database { username, password }) => Login { username, password },
        Some(_) => {
            return Err(ProbeError::Credential(
                "a SQL job needs a `database` credential (user name and password)".into(),
            ));
        }
        None => {
            return Err(ProbeError::Credential(
                "a SQL job needs a `database` credential and none came with it".into(),
            ));
        }
    };
    let policy = &call.ctx.policy;
    if req.write {
        policy.check_sql_write(&format!("{}:{}", req.host, req.port()))?;
    }
    let deadline = call
        .deadline
        .unwrap_or_else(|| Instant::now() + Duration::from_millis(req.timeout_ms()));
    let stop = Stop::new(&call.job.cancel, deadline, req.timeout_ms());
    let endpoint = stop
        .bound(Box::pin(Endpoint::resolve(
            policy,
            crate::policy::Protocol::Sql,
            &req.host,
            req.port(),
        )))
        .await??;
    let sink = PageSink::new(call.ctx.instance.clone(), &call.job.id, &stop.token)
        .starting_at(req.resume.as_ref().map_or(0, |r| r.next_page));
    let mut pager = Pager::new(&req, sink);
    let session = Session {
        req: &req,
        endpoint: &endpoint,
        login,
        stop: &stop,
    };
    let ran = match req.driver {
        openmid_proto::sql::SqlDriver::Postgres => postgres::run(&session, &mut pager).await,
        openmid_proto::sql::SqlDriver::Mysql => mysql::run(&session, &mut pager).await,
    };
    let outcome = match ran {
        Ok(outcome) => outcome,
        Err(e) => {
            pager.abandon().await;
            return Err(e);
        }
    };
    let done = pager.finish().await;
    Ok(SqlResponse {
        rows_affected: done.columns.is_empty().then_some(outcome.rows_affected),
        columns: done.columns,
        rows: done.rows,
        pages: done.pages,
        truncated: done.truncated,
        first_page: done.first_page,
        started_at: openmid_proto::time::rfc3339(started_ms),
        duration_ms: started.elapsed().as_millis() as u64,
        read_only: !req.write,
    })
}

/// When a job must stop: its cancellation, or its deadline plus [`SERVER_GRACE`]. The
/// token fires for either; the error says which.
struct Stop {
    /// Cancelled when the job must stop.
    pub token: CancellationToken,
    job: CancellationToken,
    deadline: Instant,
    timeout_ms: u64,
    timer: tokio::task::JoinHandle<()>,
}

impl Stop {
    fn new(job: &CancellationToken, deadline: Instant, timeout_ms: u64) -> Self {
        let token = job.child_token();
        let fire = token.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(deadline + SERVER_GRACE).await;
            fire.cancel();
        });
        Self {
            token,
            job: job.clone(),
            deadline,
            timeout_ms,
            timer,
        }
    }

    /// Milliseconds left before the deadline (at least 1).
    pub fn remaining_ms(&self) -> u64 {
        (self
            .deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64)
            .max(1)
    }

    /// The error of a stopped job.
    pub fn error(&self) -> ProbeError {
        if self.job.is_cancelled() {
            ProbeError::Cancelled
        } else {
            ProbeError::Timeout(self.timeout_ms)
        }
    }

    /// Runs `work` unless the job stops first. Boxed by the caller: with sqlx's
    /// executor bounds inside, the compiler proves `Send` only where the future's
    /// lifetimes are concrete.
    pub async fn bound<'f, T>(
        &self,
        work: futures::future::BoxFuture<'f, T>,
    ) -> Result<T, ProbeError> {
        tokio::select! {
            out = work => Ok(out),
            () = self.token.cancelled() => Err(self.error()),
        }
    }

    /// The error for what the server answered: the job's own when it was stopped (or
    /// the server's timeout fired), else the server's words.
    pub fn error_of(&self, e: sqlx::Error) -> ProbeError {
        if self.token.is_cancelled() {
            return self.error();
        }
        if let sqlx::Error::Database(db) = &e {
            let timed_out =
                db.code().as_deref() == Some("57014") && db.message().contains("statement timeout");
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number());
            if timed_out || matches!(number, Some(1969 | 3024)) {
                return ProbeError::Timeout(self.timeout_ms);
            }
        }
        target_error(e)
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

/// A database error as the job's error: the server's message, its SQLSTATE (and
/// MySQL's error number), and what to do about a read-only refusal. sqlx's messages
/// carry no password (the login is never formatted into them).
fn target_error(e: sqlx::Error) -> ProbeError {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| format!(", error {}", m.number()))
                .unwrap_or_default();
            let hint = if code == "25006" {
                " — the session is read-only: a writing statement needs write = true, which the MID's policy.sql.writes must allow"
            } else {
                ""
            };
            ProbeError::Target(format!(
                "the database answered: {} (SQLSTATE {code}{number}){hint}",
                db.message()
            ))
        }
        sqlx::Error::Io(io) => ProbeError::Target(format!("the connection failed: {io}")),
        sqlx::Error::Tls(tls) => ProbeError::Target(format!("TLS: {tls}")),
        other => ProbeError::Target(format!("the database connection: {other}")),
    }
}

/// A column that cannot be read, named by position and name.
fn column_error(index: usize, column: &Column, message: &str) -> ProbeError {
    ProbeError::Target(format!(
        "column {} `{}` ({}): {message}; cast it in the statement (e.g. to text)",
        index + 1,
        column.name,
        column.type_name
    ))
}

/// A request parameter as it is bound.
#[derive(Debug, Clone, PartialEq)]
enum Param {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    /// Binary (a keyset's base64 key, decoded).
    Bytes(Vec<u8>),
}

impl Param {
    /// The parameter for a (validated, scalar) JSON value; an integer beyond 64 bits
    /// goes as text, so no digit is lost.
    pub fn of(value: &Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Self::Int(i),
                (None, Some(u), _) => Self::Text(u.to_string()),
                (_, _, Some(f)) => Self::Float(f),
                _ => Self::Text(n.to_string()),
            },
            Value::String(s) => Self::Text(s.clone()),
            other => Self::Text(other.to_string()),
        }
    }
}

/// The statement with the keyset applied: wrapped, ordered by the key and — given
/// placeholders for the last stored key — continued after it.
fn keyset_statement(
    statement: &str,
    keyset: &[String],
    quote: char,
    after: Option<&[String]>,
) -> String {
    // The statement's own trailing `;` and a trailing line comment must not swallow
    // the closing parenthesis.
    let inner = statement.trim_end().trim_end_matches(';').trim_end();
    let columns: Vec<String> = keyset
        .iter()
        .map(|k| format!("{quote}{k}{quote}"))
        .collect();
    let list = columns.join(", ");
    let mut sql = format!("SELECT * FROM (\n{inner}\n) AS openmid_q");
    if let Some(after) = after {
        sql.push_str(&format!(" WHERE ({list}) > ({})", after.join(", ")));
    }
    sql.push_str(&format!(" ORDER BY {list}"));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_wraps_the_statement() {
        let keys = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            keyset_statement("SELECT * FROM t -- all;\n;", &keys, '"', None),
            "SELECT * FROM (\nSELECT * FROM t -- all;\n) AS openmid_q ORDER BY \"a\", \"b\""
        );
        let after = ["$2".to_string(), "$3".to_string()];
        assert!(
            keyset_statement("SELECT 1", &keys, '`', Some(&after))
                .ends_with("WHERE (`a`, `b`) > ($2, $3) ORDER BY `a`, `b`")
        );
    }

    #[test]
    fn params_keep_their_kind() {
        let p = |v: serde_json::Value| Param::of(&v);
        assert_eq!(p(serde_json::json!(5)), Param::Int(5));
        assert_eq!(
            p(serde_json::json!(u64::MAX)),
            Param::Text(u64::MAX.to_string())
        );
        assert_eq!(p(serde_json::json!(1.5)), Param::Float(1.5));
        assert_eq!(p(serde_json::json!(null)), Param::Null);
        assert_eq!(p(serde_json::json!("x")), Param::Text("x".into()));
    }
}
