//! A REST action turned into an output: through its alias, or at a URL on a named MID.

use super::Connections;
use super::check_name;
use super::target_url::{join_url, overlay_headers};
use crate::error::{DispatchError, invalid};
use openmid_proto::alias::ConnectionKind;
use openmid_proto::api::{NewOutput, RestAction};
use openmid_proto::ecc::{Priority, Topic};
use openmid_proto::rest::RestRequest;

impl Connections<'_> {
    /// Turns a REST action into an output: through its alias, or (without one) to its
    /// URL on the MID it names.
    pub async fn rest_output(&self, action: RestAction) -> Result<NewOutput, DispatchError> {
        let method = action
            .method
            .clone()
            .unwrap_or_else(|| "GET".into())
            .to_uppercase();
        let mut durability = action.durability;
        let (agent, application, request) = match &action.alias {
            Some(alias_name) => {
                for (field, given) in [
                    ("url", action.url.is_some()),
                    ("mid", action.mid.is_some()),
                    ("agent", action.agent.is_some()),
                    ("application", action.application.is_some()),
                ] {
                    if given {
                        return Err(invalid(
                            field,
                            "comes from the alias: drop it, or call without `alias`",
                        ));
                    }
                }
                let (alias, credential) = self.alias_for(alias_name, ConnectionKind::Http).await?;
                durability = durability.or(alias.durability);
                let url = join_url(&alias.base_url, action.path.as_deref(), &action.query)?;
                let mut headers = alias.headers.clone();
                overlay_headers(&mut headers, action.headers);
                let request = RestRequest {
                    method,
                    url,
                    headers,
                    body: action.body,
                    body_blob: action.body_blob.clone(),
                    timeout_ms: action.timeout_ms.or(alias.timeout_ms),
                    credential,
                    retry: Some(alias.retry.clone()),
                    ca_pem: alias.ca_pem.clone(),
                    alias: Some(alias.name.clone()),
                    mid_capabilities: alias.execution.capabilities.clone(),
                };
                (
                    alias.execution.agent(),
                    alias.execution.application.clone(),
                    request,
                )
            }
            None => {
                if action.path.is_some() || !action.query.is_empty() {
                    return Err(invalid(
                        "path",
                        "`path` and `query` go with `alias`; without one give the whole `url`",
                    ));
                }
                let url = action.url.clone().ok_or_else(|| {
                    invalid(
                        "alias",
                        "give `alias` (a Connection & Credential alias), or `url` with `mid` or `agent`",
                    )
                })?;
                let agent = match (&action.mid, &action.agent) {
                    (Some(mid), None) => {
                        check_name("mid", mid)?;
                        format!("mid.server.{mid}")
                    }
                    (None, Some(agent)) => agent.clone(),
                    _ => {
                        return Err(invalid(
                            "mid",
                            "give either `mid` (a MID name) or `agent` (mid.server.NAME, mid.cluster.NAME or mid.auto)",
                        ));
                    }
                };
                let mut request = RestRequest::get(url);
                request.method = method;
                request.headers = action.headers;
                request.body = action.body;
                request.body_blob = action.body_blob.clone();
                request.timeout_ms = action.timeout_ms;
                (agent, action.application.clone(), request)
            }
        };
        let name = match &request.alias {
            Some(alias) => format!(
                "{} {alias}:{}",
                request.method,
                action.path.as_deref().unwrap_or("/")
            ),
            None => format!("{} {}", request.method, request.url),
        };
        Ok(NewOutput {
            durability: durability.unwrap_or_default(),
            agent,
            topic: Topic::RESTProbe,
            name: Some(name),
            source: Some("api:actions/rest".into()),
            payload: openmid_proto::payload::Payload::encode(&request)
                .map_err(|e| invalid("body", e.to_string()))?,
            priority: Some(Priority::Interactive),
            correlator: action.correlator,
            max_attempts: None,
            at_most_once: action.at_most_once,
            application,
        })
    }
}
