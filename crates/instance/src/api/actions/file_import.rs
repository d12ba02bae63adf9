//! `POST /api/v1/actions/file_import`: a MID reads a CSV, Excel, XML, JSON or JSON
//! lines file — on its own host or behind an HTTP alias — and streams its records
//! back in pages. (A data source runs the same read on a schedule, into an import
//! set.)

use super::super::AppState;
use super::super::error::ApiError;
use super::registry::Action;
use futures::future::BoxFuture;
use openmid_proto::api::NewOutput;
use openmid_proto::file_import::FileImportAction;

/// The file import action.
pub struct FileRead;

impl Action for FileRead {
    const NAME: &'static str = "file_import";
    const SUMMARY: &'static str = "Read a file (CSV, Excel, XML, JSON, JSON lines) on a MID's host or behind an http alias; records stream in pages, bad ones reported with their line";
    const FINISHED: &'static str = "Finished (schema, counts and the first refused records in response; every page in the `rows` stream of /api/v1/actions/{id}/output)";
    const STREAMS: &'static [&'static str] = &["rows"];
    type Contract = openmid_proto::file_import::FileImport;
    type Body = FileImportAction;

    fn build(
        body: FileImportAction,
        state: &AppState,
    ) -> BoxFuture<'_, Result<NewOutput, ApiError>> {
        Box::pin(async move { Ok(state.dispatcher.connections().file_output(body).await?) })
    }
}
