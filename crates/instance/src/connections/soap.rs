//! A SOAP action turned into an output through its alias.

use super::Connections;
use super::target_url::{join_url, overlay_headers, wsdl_url};
use crate::error::{DispatchError, invalid};
use openmid_proto::alias::ConnectionKind;
use openmid_proto::api::{NewOutput, SoapAction};
use openmid_proto::ecc::{Priority, Topic};
use openmid_proto::soap::SoapRequest;
use std::collections::BTreeMap;

impl Connections<'_> {
    /// Turns a SOAP action into an output through its alias.
    pub async fn soap_output(&self, action: SoapAction) -> Result<NewOutput, DispatchError> {
        let (alias, credential) = self.alias_for(&action.alias, ConnectionKind::Soap).await?;
        match (&action.body, &action.operation) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "body",
                    "give `body` (the Body's XML) or `operation`, not both",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "operation",
                    "give `operation` (with `namespace` and `params`) or `body` (the Body's XML)",
                ));
            }
            _ => {}
        }
        if action.operation.is_none() && (action.namespace.is_some() || !action.params.is_empty()) {
            return Err(invalid(
                "params",
                "`namespace` and `params` go with `operation`",
            ));
        }
        if action.operation.is_none() && action.element_form.is_some() {
            return Err(invalid(
                "element_form",
                "`element_form` goes with `operation`",
            ));
        }
        let url = join_url(&alias.base_url, action.path.as_deref(), &BTreeMap::new())?;
        let mut headers = alias.headers.clone();
        overlay_headers(&mut headers, action.headers);
        // Only needed (and fetched) when the action has to be read from it.
        let wsdl_url = match (&alias.wsdl, &action.soap_action, &action.operation) {
            (Some(wsdl), None, Some(_)) => Some(wsdl_url(&alias.base_url, wsdl)?),
            _ => None,
        };
        let request = SoapRequest {
            url,
            version: action.version.or(alias.soap_version).unwrap_or_default(),
            soap_action: action.soap_action,
            body: action.body,
            operation: action.operation,
            namespace: action.namespace,
            params: action.params,
            element_form: action.element_form,
            wsdl_url,
            headers,
            timeout_ms: action.timeout_ms.or(alias.timeout_ms),
            credential,
            retry: Some(alias.retry.clone()),
            ca_pem: alias.ca_pem.clone(),
            alias: Some(alias.name.clone()),
            mid_capabilities: alias.execution.capabilities.clone(),
        };
        let name = format!(
            "SOAP {} {}",
            alias.name,
            request
                .operation
                .as_deref()
                .or(request.soap_action.as_deref())
                .unwrap_or("call")
        );
        Ok(NewOutput {
            durability: Default::default(),
            agent: alias.execution.agent(),
            topic: Topic::SOAPProbe,
            name: Some(name),
            source: Some("api:actions/soap".into()),
            payload: openmid_proto::payload::Payload::encode(&request)
                .map_err(|e| invalid("body", e.to_string()))?,
            priority: Some(Priority::Interactive),
            correlator: action.correlator,
            max_attempts: None,
            at_most_once: action.at_most_once,
            application: alias.execution.application.clone(),
        })
    }
}
