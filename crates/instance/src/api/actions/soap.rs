//! `POST /api/v1/actions/soap`: one SOAP call made by a MID through an alias.

use super::super::AppState;
use super::super::error::ApiError;
use super::registry::Action;
use futures::future::BoxFuture;
use openmid_proto::api::{NewOutput, SoapAction};

/// The SOAP action.
pub struct SoapCall;

impl Action for SoapCall {
    const NAME: &'static str = "soap";
    const SUMMARY: &'static str = "Make a SOAP call through a MID (alias of kind soap)";
    const FINISHED: &'static str =
        "Finished (a Fault is in response.fault and the action is state `error`)";
    type Contract = openmid_proto::soap::Soap;
    type Body = SoapAction;

    fn build(body: SoapAction, state: &AppState) -> BoxFuture<'_, Result<NewOutput, ApiError>> {
        Box::pin(async move { Ok(state.dispatcher.connections().soap_output(body).await?) })
    }
}
