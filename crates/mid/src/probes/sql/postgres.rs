//! The PostgreSQL side of the SQL probe: connection options, the session (the
//! server's `statement_timeout`, `default_transaction_read_only` and a `BEGIN READ
//! ONLY` transaction unless the job writes), binding, streaming, and cancelling a
//! running statement with `pg_cancel_backend` from a second connection.

use super::connect::Bridge;
use super::paging::{Flow, Pager};
use super::pg_types::{self, PgDecoder};
use super::{
    CANCEL_TIMEOUT, DRAIN_TIMEOUT, End, Outcome, Param, Session, column_error, keyset_statement,
    target_error,
};
use crate::probes::ProbeError;
use futures::StreamExt as _;
use openmid_proto::sql::{Column, TlsMode};
use serde_json::Value;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgRow, PgSslMode, PgTypeInfo};
use sqlx::{
    Column as _, Connection as _, Either, Executor as _, Postgres, Row as _, Statement as _, Type,
    ValueRef as _,
};

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Runs the job's statement.
pub(super) fn run<'a>(
    s: &'a Session<'a>,
    pager: &'a mut Pager,
) -> futures::future::BoxFuture<'a, Result<Outcome, ProbeError>> {
    // Boxed here, where the lifetimes are concrete: sqlx's executor bounds defeat the
    // compiler's `Send` proof through the generic registry future otherwise.
    Box::pin(statement(s, pager))
}

async fn statement(s: &Session<'_>, pager: &mut Pager) -> Result<Outcome, ProbeError> {
    let req = s.req;
    let (mut conn, _bridge) = s.stop.bound(Box::pin(connect(s))).await??;
    let setup = format!(
        "SET statement_timeout = {}; BEGIN {}",
        s.stop.remaining_ms(),
        if req.write { "READ WRITE" } else { "READ ONLY" }
    );
    s.stop
        .bound(Box::pin((&mut conn).execute(sqlx::raw_sql(&setup))))
        .await?
        .map_err(|e| s.stop.error_of(e))?;
    let pid: i32 = s
        .stop
        .bound(Box::pin(
            (&mut conn).fetch_one(sqlx::query("SELECT pg_backend_pid()")),
        ))
        .await?
        .and_then(|row| row.try_get(0))
        .map_err(|e| s.stop.error_of(e))?;

    let params: Vec<Param> = req.params.iter().map(Param::of).collect();
    let mut types: Vec<PgTypeInfo> = params.iter().map(param_type).collect();
    let mut after: Vec<String> = Vec::new();
    let sql = match (
        &req.keyset[..],
        req.resume.as_ref().and_then(|r| r.after_key.as_ref()),
    ) {
        ([], _) => req.statement.clone(),
        (keyset, None) => keyset_statement(&req.statement, keyset, '"', None),
        (keyset, Some(key)) => {
            // The last key travels as text, cast to each key column's own type, which
            // the wrapped statement's description tells.
            let plain = keyset_statement(&req.statement, keyset, '"', None);
            let described = s
                .stop
                .bound(Box::pin(conn.prepare_with(&plain, &types)))
                .await?
                .map_err(|e| s.stop.error_of(e))?;
            let mut placeholders = Vec::new();
            for (name, value) in keyset.iter().zip(key) {
                let column = described
                    .columns()
                    .iter()
                    .find(|c| c.name() == name)
                    .ok_or_else(|| {
                        ProbeError::InvalidInput(format!(
                            "keyset: the result has no column `{name}`"
                        ))
                    })?;
                let n = types.len() + 1;
                let ty = column.type_info();
                placeholders.push(match pg_types::decoder(ty) {
                    Ok(PgDecoder::Bytea) => format!("decode(${n}, 'base64')"),
                    _ => format!("CAST(${n} AS {})", pg_types::type_name(ty)),
                });
                types.push(<String as Type<Postgres>>::type_info());
                after.push(match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                });
            }
            keyset_statement(&req.statement, keyset, '"', Some(&placeholders))
        }
    };

    let statement = s
        .stop
        .bound(Box::pin(conn.prepare_with(&sql, &types)))
        .await?
        .map_err(|e| s.stop.error_of(e))?;
    let mut columns = Vec::new();
    let mut decoders = Vec::new();
    for (i, c) in statement.columns().iter().enumerate() {
        let column = Column {
            name: c.name().to_string(),
            type_name: pg_types::type_name(c.type_info()),
            json: String::new(),
        };
        let decoder = pg_types::decoder(c.type_info()).map_err(|m| column_error(i, &column, &m))?;
        columns.push(Column {
            json: decoder.json_kind(),
            ..column
        });
        decoders.push(decoder);
    }
    pager.set_columns(columns.clone())?;

    let mut query: PgQuery<'_> = statement.query();
    for p in params {
        query = bind(query, p);
    }
    for text in after {
        query = query.bind(text);
    }
    let mut affected = 0;
    let mut ended = End::Done;
    {
        let mut stream = (&mut conn).fetch_many(query);
        loop {
            let item = tokio::select! {
                biased;
                () = s.stop.token.cancelled() => { ended = End::Stopped; break; }
                item = stream.next() => item,
            };
            match item {
                None => break,
                Some(Ok(Either::Left(done))) => affected += done.rows_affected(),
                Some(Ok(Either::Right(row))) => {
                    let values = decode_row(&row, &decoders, &columns)?;
                    if pager.push(values).await? == Flow::Full {
                        ended = End::Full;
                        break;
                    }
                }
                Some(Err(e)) => return Err(s.stop.error_of(e)),
            }
        }
        if ended == End::Full && req.write {
            // The statement writes: let it run to its end (the rows past max_rows
            // are read and dropped) so that its transaction can commit.
            while let Some(item) = s.stop.bound(Box::pin(stream.next())).await? {
                if let Err(e) = item {
                    return Err(s.stop.error_of(e));
                }
            }
        } else if ended != End::Done {
            // Stop the statement on the server, then read what it still sends until
            // its error (or the connection's end).
            cancel(s, pid).await;
            let drain = async { while stream.next().await.is_some() {} };
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
        }
    }
    super::finish(s, conn, ended, affected).await
}

/// A connection through a fresh [`Bridge`] to a checked address.
async fn connect(s: &Session<'_>) -> Result<(PgConnection, Bridge), ProbeError> {
    let req = s.req;
    let bridge = Bridge::open(s.endpoint, &format!(".s.PGSQL.{}", req.port())).await?;
    let mut settings: Vec<(String, String)> = req
        .options
        .iter()
        .map(|(k, v)| (k.clone(), escape(v)))
        .collect();
    if !req.write {
        settings.push(("default_transaction_read_only".into(), "on".into()));
    }
    let mut options = PgConnectOptions::new_without_pgpass()
        .host(&s.endpoint.host)
        .port(req.port())
        .socket(bridge.dir())
        .username(s.login.username)
        .password(s.login.password.expose())
        .database(&req.database)
        .application_name("openmid")
        .ssl_mode(match req.tls {
            TlsMode::Disable => PgSslMode::Disable,
            TlsMode::Prefer => PgSslMode::Prefer,
            TlsMode::Require => PgSslMode::Require,
            TlsMode::VerifyCa => PgSslMode::VerifyCa,
            TlsMode::VerifyFull => PgSslMode::VerifyFull,
        })
        .options(settings);
    if let Some(pem) = &req.ca_pem {
        options = options.ssl_root_cert_from_pem(pem.as_bytes().to_vec());
    }
    let conn = PgConnection::connect_with(&options)
        .await
        .map_err(target_error)?;
    Ok((conn, bridge))
}

/// A startup option's value with its spaces and backslashes escaped, as the server
/// splits `options` on whitespace.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace(' ', "\\ ")
}

/// Cancels backend `pid`'s running statement from a second connection (best effort:
/// the first connection is dropped afterwards in any case).
async fn cancel(s: &Session<'_>, pid: i32) {
    let attempt = async {
        let (mut conn, _bridge) = connect(s).await?;
        (&mut conn)
            .execute(sqlx::query("SELECT pg_cancel_backend($1)").bind(pid))
            .await
            .map_err(target_error)?;
        let _ = conn.close().await;
        Ok::<_, ProbeError>(())
    };
    match tokio::time::timeout(CANCEL_TIMEOUT, attempt).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "could not cancel a SQL statement on the server"),
        Err(_) => tracing::warn!("cancelling a SQL statement on the server took too long"),
    }
}

fn param_type(p: &Param) -> PgTypeInfo {
    match p {
        Param::Null | Param::Text(_) => <String as Type<Postgres>>::type_info(),
        Param::Bool(_) => <bool as Type<Postgres>>::type_info(),
        Param::Int(_) => <i64 as Type<Postgres>>::type_info(),
        Param::Float(_) => <f64 as Type<Postgres>>::type_info(),
        Param::Bytes(_) => <Vec<u8> as Type<Postgres>>::type_info(),
    }
}

fn bind(query: PgQuery<'_>, p: Param) -> PgQuery<'_> {
    match p {
        Param::Null => query.bind(None::<String>),
        Param::Bool(b) => query.bind(b),
        Param::Int(i) => query.bind(i),
        Param::Float(f) => query.bind(f),
        Param::Text(t) => query.bind(t),
        Param::Bytes(b) => query.bind(b),
    }
}

fn decode_row(
    row: &PgRow,
    decoders: &[PgDecoder],
    columns: &[Column],
) -> Result<Vec<Value>, ProbeError> {
    decoders
        .iter()
        .enumerate()
        .map(|(i, decoder)| {
            let raw = row
                .try_get_raw(i)
                .map_err(|e| column_error(i, &columns[i], &e.to_string()))?;
            if raw.is_null() {
                return Ok(Value::Null);
            }
            let bytes = raw
                .as_bytes()
                .map_err(|e| column_error(i, &columns[i], &e.to_string()))?;
            decoder
                .decode(bytes)
                .map_err(|m| column_error(i, &columns[i], &m))
        })
        .collect()
}
