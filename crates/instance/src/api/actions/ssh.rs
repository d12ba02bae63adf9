//! `POST /api/v1/actions/ssh`: a command or script run over SSH on an alias's host.

use super::super::AppState;
use super::super::error::ApiError;
use super::registry::Action;
use futures::future::BoxFuture;
use openmid_proto::api::NewOutput;
use openmid_proto::ssh::SshAction;

/// The SSH action.
pub struct SshRun;

impl Action for SshRun {
    const NAME: &'static str = "ssh";
    const SUMMARY: &'static str = "Run a command or script over SSH on the host of an ssh alias (its output streams while it runs)";
    const FINISHED: &'static str = "Finished (exit code or signal in response.exit; an unknown or changed host key is an error showing both fingerprints)";
    const STREAMS: &'static [&'static str] = &["stdout", "stderr"];
    type Contract = openmid_proto::ssh::SshCommand;
    type Body = SshAction;

    fn build(body: SshAction, state: &AppState) -> BoxFuture<'_, Result<NewOutput, ApiError>> {
        Box::pin(async move { Ok(state.dispatcher.connections().ssh_output(body).await?) })
    }
}
