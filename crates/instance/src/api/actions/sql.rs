//! `POST /api/v1/actions/sql`: a statement run against an alias's database, its rows
//! paged back while it runs.

use super::super::AppState;
use super::super::error::ApiError;
use super::registry::Action;
use futures::future::BoxFuture;
use openmid_proto::api::NewOutput;
use openmid_proto::sql::SqlAction;

/// The SQL action.
pub struct SqlRun;

impl Action for SqlRun {
    const NAME: &'static str = "sql";
    const SUMMARY: &'static str = "Run a SQL statement against the database of a jdbc alias (read-only unless the MID's policy allows writes; rows stream in pages)";
    const FINISHED: &'static str = "Finished (columns, counts and the first page in response; every page in the `rows` stream of /api/v1/actions/{id}/output)";
    const STREAMS: &'static [&'static str] = &["rows"];
    type Contract = openmid_proto::sql::Jdbc;
    type Body = SqlAction;

    fn build(body: SqlAction, state: &AppState) -> BoxFuture<'_, Result<NewOutput, ApiError>> {
        Box::pin(async move { Ok(state.dispatcher.connections().sql_output(body).await?) })
    }
}
