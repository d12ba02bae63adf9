//! `POST /api/v1/actions/command`: a program or a script run on a MID's own host.

use super::super::AppState;
use super::super::error::ApiError;
use super::registry::Action;
use futures::future::BoxFuture;
use openmid_proto::api::{CommandAction, NewOutput};
use openmid_proto::ecc::Topic;

/// The command action.
pub struct CommandRun;

impl Action for CommandRun {
    const NAME: &'static str = "command";
    const SUMMARY: &'static str =
        "Run a program or script on a MID's host (as its egress policy allows)";
    const FINISHED: &'static str = "Finished (exit code or signal in response.exit; a refusal by the MID's policy is an error naming the rule)";
    const STREAMS: &'static [&'static str] = &["stdout", "stderr"];
    type Contract = openmid_proto::command::Command;
    type Body = CommandAction;

    fn build(body: CommandAction, _: &AppState) -> BoxFuture<'_, Result<NewOutput, ApiError>> {
        Box::pin(async move { command_output(body) })
    }
}

/// The output a command action asks for.
fn command_output(action: CommandAction) -> Result<NewOutput, ApiError> {
    let agent = match (&action.mid, &action.agent) {
        (Some(mid), None) => format!("mid.server.{mid}"),
        (None, Some(agent)) => agent.clone(),
        _ => {
            return Err(ApiError::invalid_field(
                "mid",
                "give `mid` (a MID's name) or `agent` (mid.server.NAME, mid.cluster.NAME, mid.auto), one of them",
            ));
        }
    };
    let payload = openmid_proto::payload::Payload::encode(&action.request())
        .map_err(|e| ApiError::invalid_field("payload", e))?;
    Ok(NewOutput {
        durability: Default::default(),
        agent,
        topic: Topic::Command,
        name: Some(
            format!("{} {}", action.program, action.args.join(" "))
                .chars()
                .take(200)
                .collect(),
        ),
        source: Some("api".into()),
        payload,
        priority: None,
        correlator: action.correlator,
        max_attempts: None,
        at_most_once: action.at_most_once,
        application: action.application,
    })
}
