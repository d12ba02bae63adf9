//! The MySQL/MariaDB side of the SQL probe: connection options, the session (UTC,
//! the server's statement timeout — MariaDB's `max_statement_time`, MySQL's
//! `max_execution_time`, which MySQL applies to `SELECT` only — the request's session
//! variables, and unless the job writes `SET SESSION TRANSACTION READ ONLY` and
//! `START TRANSACTION READ ONLY`), binding, streaming, and cancelling a running
//! statement with `KILL QUERY` from a second connection.
//!
//! The session's default is read-only too, not only the transaction: a statement
//! that commits implicitly (DDL) ends the transaction, and the next one must still be
//! read-only.

use super::connect::Bridge;
use super::mysql_types::{self, MyDecoder};
use super::paging::{Flow, Pager};
use super::{
    CANCEL_TIMEOUT, DRAIN_TIMEOUT, End, Outcome, Param, Session, column_error, keyset_statement,
    target_error,
};
use crate::probes::ProbeError;
use base64::Engine as _;
use futures::StreamExt as _;
use openmid_proto::sql::{Column, TlsMode};
use serde_json::Value;
use sqlx::mysql::{
    MySql, MySqlArguments, MySqlColumn, MySqlConnectOptions, MySqlConnection, MySqlRow,
    MySqlSslMode,
};
use sqlx::{
    Column as _, Connection as _, Either, Executor as _, Row as _, Statement as _, TypeInfo as _,
    ValueRef as _,
};

type MyQuery<'q> = sqlx::query::Query<'q, MySql, MySqlArguments>;

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
    let (id, version): (u64, String) = s
        .stop
        .bound(Box::pin(
            (&mut conn).fetch_one(sqlx::query("SELECT CONNECTION_ID(), VERSION()")),
        ))
        .await?
        .and_then(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .map_err(|e| s.stop.error_of(e))?;
    let remaining = s.stop.remaining_ms();
    let mut setup = vec![if version.contains("MariaDB") {
        format!(
            "SET SESSION max_statement_time = {}",
            remaining as f64 / 1000.0
        )
    } else {
        format!("SET SESSION max_execution_time = {remaining}")
    }];
    if !req.write {
        setup.push("SET SESSION TRANSACTION READ ONLY".into());
    }
    for sql in &setup {
        s.stop
            .bound(Box::pin((&mut conn).execute(sqlx::raw_sql(sql))))
            .await?
            .map_err(|e| s.stop.error_of(e))?;
    }
    // Names were checked ([A-Za-z_][A-Za-z0-9_.]*); values are bound.
    for (name, value) in &req.options {
        let set = format!("SET SESSION {name} = ?");
        let query = match value.parse::<i64>() {
            Ok(n) => sqlx::query(&set).bind(n),
            Err(_) => sqlx::query(&set).bind(value.as_str()),
        };
        s.stop
            .bound(Box::pin((&mut conn).execute(query)))
            .await?
            .map_err(|e| s.stop.error_of(e))?;
    }
    let begin = if req.write {
        "START TRANSACTION READ WRITE"
    } else {
        "START TRANSACTION READ ONLY"
    };
    s.stop
        .bound(Box::pin((&mut conn).execute(sqlx::raw_sql(begin))))
        .await?
        .map_err(|e| s.stop.error_of(e))?;

    let mut params: Vec<Param> = req.params.iter().map(Param::of).collect();
    let sql = match (
        &req.keyset[..],
        req.resume.as_ref().and_then(|r| r.after_key.as_ref()),
    ) {
        ([], _) => req.statement.clone(),
        (keyset, None) => keyset_statement(&req.statement, keyset, '`', None),
        (keyset, Some(key)) => {
            // MySQL converts as it compares; only a timestamp's `Z` (the session is
            // UTC) and binary keys need undoing.
            let plain = keyset_statement(&req.statement, keyset, '`', None);
            let described = s
                .stop
                .bound(Box::pin(conn.prepare(&plain)))
                .await?
                .map_err(|e| s.stop.error_of(e))?;
            for (name, value) in keyset.iter().zip(key) {
                let decoder = described
                    .columns()
                    .iter()
                    .find(|c| c.name() == name)
                    .and_then(|c| mysql_types::decoder(c.type_info()).ok());
                params.push(match (decoder, value) {
                    (Some(MyDecoder::Timestamp), Value::String(t)) => {
                        Param::Text(t.trim_end_matches('Z').to_string())
                    }
                    (Some(MyDecoder::Binary), Value::String(b)) => Param::Bytes(
                        base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .map_err(|_| {
                                ProbeError::InvalidInput("resume.after_key: not base64".into())
                            })?,
                    ),
                    (_, v) => Param::of(v),
                });
            }
            let marks = vec!["?".to_string(); keyset.len()];
            keyset_statement(&req.statement, keyset, '`', Some(&marks))
        }
    };

    let statement = s
        .stop
        .bound(Box::pin(conn.prepare(&sql)))
        .await?
        .map_err(|e| s.stop.error_of(e))?;
    let mut query: MyQuery<'_> = statement.query();
    for p in params {
        query = bind(query, p);
    }
    // The row's own column list decides (a prepared `SELECT ?` is described as text
    // and returns what was bound); without rows, the prepared description.
    let mut mapping: Option<(Vec<MyDecoder>, Vec<Column>)> = None;
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
                    if mapping.is_none() {
                        let m = map_columns(row.columns())?;
                        pager.set_columns(m.1.clone())?;
                        mapping = Some(m);
                    }
                    let Some((decoders, columns)) = &mapping else {
                        continue;
                    };
                    let values = decode_row(&row, decoders, columns)?;
                    if pager.push(values).await? == Flow::Full {
                        ended = End::Full;
                        break;
                    }
                }
                Some(Err(e)) => return Err(s.stop.error_of(e)),
            }
        }
        if ended == End::Full && req.write {
            while let Some(item) = s.stop.bound(Box::pin(stream.next())).await? {
                if let Err(e) = item {
                    return Err(s.stop.error_of(e));
                }
            }
        } else if ended != End::Done {
            cancel(s, id).await;
            let drain = async { while stream.next().await.is_some() {} };
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
        }
    }
    if !pager.has_columns() {
        pager.set_columns(map_columns(statement.columns())?.1)?;
    }
    super::finish(s, conn, ended, affected).await
}

fn map_columns(columns: &[MySqlColumn]) -> Result<(Vec<MyDecoder>, Vec<Column>), ProbeError> {
    let mut decoders = Vec::new();
    let mut mapped = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        let column = Column {
            name: c.name().to_string(),
            type_name: c.type_info().name().to_string(),
            json: String::new(),
        };
        let decoder =
            mysql_types::decoder(c.type_info()).map_err(|m| column_error(i, &column, &m))?;
        mapped.push(Column {
            json: decoder.json_kind().to_string(),
            ..column
        });
        decoders.push(decoder);
    }
    Ok((decoders, mapped))
}

/// A connection through a fresh [`Bridge`] to a checked address.
async fn connect(s: &Session<'_>) -> Result<(MySqlConnection, Bridge), ProbeError> {
    let req = s.req;
    let bridge = Bridge::open(s.endpoint, "mysql.sock").await?;
    let mut options = MySqlConnectOptions::new()
        .host(&s.endpoint.host)
        .port(req.port())
        .socket(bridge.socket())
        .username(s.login.username)
        .password(s.login.password.expose())
        .database(&req.database)
        // The statement means what it says: no `||` as concatenation, no sql_mode
        // additions; TIMESTAMPs in UTC.
        .pipes_as_concat(false)
        .no_engine_substitution(false)
        .timezone(Some("+00:00".to_string()))
        .ssl_mode(match req.tls {
            TlsMode::Disable => MySqlSslMode::Disabled,
            TlsMode::Prefer => MySqlSslMode::Preferred,
            TlsMode::Require => MySqlSslMode::Required,
            TlsMode::VerifyCa => MySqlSslMode::VerifyCa,
            TlsMode::VerifyFull => MySqlSslMode::VerifyIdentity,
        });
    if let Some(pem) = &req.ca_pem {
        options = options.ssl_ca_from_pem(pem.as_bytes().to_vec());
    }
    let conn = MySqlConnection::connect_with(&options)
        .await
        .map_err(target_error)?;
    Ok((conn, bridge))
}

/// Stops connection `id`'s running statement from a second connection (best effort).
async fn cancel(s: &Session<'_>, id: u64) {
    let attempt = async {
        let (mut conn, _bridge) = connect(s).await?;
        let kill = format!("KILL QUERY {id}");
        (&mut conn)
            .execute(sqlx::raw_sql(&kill))
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

fn bind(query: MyQuery<'_>, p: Param) -> MyQuery<'_> {
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
    row: &MySqlRow,
    decoders: &[MyDecoder],
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
            let bytes: &[u8] = row
                .try_get_unchecked(i)
                .map_err(|e| column_error(i, &columns[i], &e.to_string()))?;
            decoder
                .decode(bytes)
                .map_err(|m| column_error(i, &columns[i], &m))
        })
        .collect()
}
