//! `POST /api/v1/actions/rest`: one HTTP request made by a MID, through an alias or at
//! a URL on a named MID.

use super::super::AppState;
use super::super::error::ApiError;
use super::registry::Action;
use futures::future::BoxFuture;
use openmid_proto::api::{NewOutput, RestAction};

/// The REST action.
pub struct RestCall;

impl Action for RestCall {
    const NAME: &'static str = "rest";
    const SUMMARY: &'static str =
        "Make an HTTP request through a MID (alias + path, or url + mid/agent)";
    const FINISHED: &'static str =
        "Finished (the target's status is in response.status; a failed call is state `error`)";
    type Contract = openmid_proto::rest::Rest;
    type Body = RestAction;

    fn build(body: RestAction, state: &AppState) -> BoxFuture<'_, Result<NewOutput, ApiError>> {
        Box::pin(async move { Ok(state.dispatcher.connections().rest_output(body).await?) })
    }
}
