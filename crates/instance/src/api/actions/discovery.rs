//! `POST /api/v1/actions/ping` and `POST /api/v1/actions/scan`: which hosts of some
//! ranges answer, and which TCP ports they have open, asked of a MID (or a cluster,
//! or `mid.auto` by the targets' IP ranges). The MID's own `[policy.scan]` decides
//! which ranges and ports it scans at all.

use super::super::AppState;
use super::super::error::ApiError;
use super::registry::Action;
use futures::future::BoxFuture;
use openmid_proto::api::NewOutput;
use openmid_proto::discovery::{PingAction, PingRequest, ScanAction, ScanRequest};
use openmid_proto::ecc::{Priority, Topic};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The ping action.
pub struct PingHosts;

impl Action for PingHosts {
    const NAME: &'static str = "ping";
    const SUMMARY: &'static str = "Ping addresses, CIDRs and ranges from a MID (ICMP echo where it may send it, else TCP connects): per-host loss and round-trip times";
    const FINISHED: &'static str = "Finished (each host's answer, loss and RTT, and the addresses the MID's policy refused, in response)";
    type Contract = openmid_proto::discovery::Ping;
    type Body = PingAction;

    fn build(body: PingAction, _state: &AppState) -> BoxFuture<'_, Result<NewOutput, ApiError>> {
        Box::pin(async move {
            let (agent, at_most_once, correlator) = (
                body.agent.clone(),
                body.at_most_once,
                body.correlator.clone(),
            );
            let request: PingRequest = request_of(&body)?;
            output(
                Topic::Ping,
                agent,
                &request,
                at_most_once,
                correlator,
                || format!("ping {}", request.targets.join(" ")),
            )
        })
    }
}

/// The port scan action.
pub struct ScanPorts;

impl Action for ScanPorts {
    const NAME: &'static str = "scan";
    const SUMMARY: &'static str = "Scan TCP ports of addresses, CIDRs and ranges from a MID (rate-limited, with banners); hosts stream back in pages as they are found";
    const FINISHED: &'static str = "Finished (counts, achieved rate and refused addresses in response; every host with open ports in the `rows` stream of /api/v1/actions/{id}/output)";
    const STREAMS: &'static [&'static str] = &["rows"];
    type Contract = openmid_proto::discovery::Shazzam;
    type Body = ScanAction;

    fn build(body: ScanAction, _state: &AppState) -> BoxFuture<'_, Result<NewOutput, ApiError>> {
        Box::pin(async move {
            let (agent, at_most_once, correlator) = (
                body.agent.clone(),
                body.at_most_once,
                body.correlator.clone(),
            );
            let request: ScanRequest = request_of(&body)?;
            output(
                Topic::Shazzam,
                agent,
                &request,
                at_most_once,
                correlator,
                || format!("scan {}", request.targets.join(" ")),
            )
        })
    }
}

/// The probe's request: the action's fields less who runs it and the record's own
/// (`agent`, `at_most_once`, `correlator`), the probe's defaults for the rest.
fn request_of<A: Serialize, R: DeserializeOwned>(action: &A) -> Result<R, ApiError> {
    let mut fields =
        serde_json::to_value(action).map_err(|e| ApiError::invalid_field("body", e.to_string()))?;
    if let Some(map) = fields.as_object_mut() {
        for own in ["agent", "at_most_once", "correlator"] {
            map.remove(own);
        }
        map.retain(|_, v| !v.is_null());
    }
    serde_json::from_value(fields).map_err(|e| ApiError::invalid_field("body", e.to_string()))
}

fn output<R: Serialize>(
    topic: Topic,
    agent: String,
    request: &R,
    at_most_once: bool,
    correlator: Option<String>,
    name: impl FnOnce() -> String,
) -> Result<NewOutput, ApiError> {
    Ok(NewOutput {
        durability: Default::default(),
        agent,
        topic,
        name: Some(name().chars().take(200).collect()),
        source: Some(format!(
            "api:actions/{}",
            if topic == Topic::Ping { "ping" } else { "scan" }
        )),
        payload: openmid_proto::payload::Payload::encode(&request)
            .map_err(|e| ApiError::invalid_field("body", e.to_string()))?,
        priority: Some(Priority::Standard),
        correlator,
        max_attempts: None,
        at_most_once,
        application: None,
    })
}
