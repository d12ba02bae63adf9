//! `POST /api/v1/actions/snmp`: a get, get-next, walk, bulk walk or table read of the
//! agent an snmp alias names, asked by one of its MIDs.

use super::super::AppState;
use super::super::error::ApiError;
use super::registry::Action;
use futures::future::BoxFuture;
use openmid_proto::api::NewOutput;
use openmid_proto::snmp::SnmpAction;

/// The SNMP action.
pub struct SnmpRead;

impl Action for SnmpRead {
    const NAME: &'static str = "snmp";
    const SUMMARY: &'static str = "Read an SNMP agent through an snmp alias: get, get-next, walk, bulk walk or a table, over v1, v2c or v3 (authPriv with SHA-2 and AES)";
    const FINISHED: &'static str =
        "Finished (the varbinds, or the table's rows by index, in response)";
    type Contract = openmid_proto::snmp::Snmp;
    type Body = SnmpAction;

    fn build(body: SnmpAction, state: &AppState) -> BoxFuture<'_, Result<NewOutput, ApiError>> {
        Box::pin(async move { Ok(state.dispatcher.connections().snmp_output(body).await?) })
    }
}
