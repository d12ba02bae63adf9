//! `POST /api/v1/actions/ldap`: a search (or a bind test) against an alias's directory,
//! its entries paged back while it runs.

use super::super::AppState;
use super::super::error::ApiError;
use super::registry::Action;
use futures::future::BoxFuture;
use openmid_proto::api::NewOutput;
use openmid_proto::ldap::LdapAction;

/// The LDAP action.
pub struct LdapSearch;

impl Action for LdapSearch {
    const NAME: &'static str = "ldap";
    const SUMMARY: &'static str = "Search the directory of an ldap alias (paged results; multi-valued attributes as arrays, binary ones as base64), or test its bind";
    const FINISHED: &'static str = "Finished (counts, the first page and, for a bind test, who the server says the MID is, in response; every page in the `rows` stream of /api/v1/actions/{id}/output)";
    const STREAMS: &'static [&'static str] = &["rows"];
    type Contract = openmid_proto::ldap::Ldap;
    type Body = LdapAction;

    fn build(body: LdapAction, state: &AppState) -> BoxFuture<'_, Result<NewOutput, ApiError>> {
        Box::pin(async move { Ok(state.dispatcher.connections().ldap_output(body).await?) })
    }
}
