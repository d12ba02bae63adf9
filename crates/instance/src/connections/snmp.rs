//! An SNMP action turned into an output through its alias: the alias names the agent
//! (`snmp://host[:port]`), the credential (`snmp_community` for v1/v2c, `snmp_v3`)
//! and which MIDs ask it; the action says what to read. Without a `version` the
//! credential decides: a community means v2c, a v3 user v3.

use super::Connections;
use crate::ecc::CredentialKey;
use crate::error::{DispatchError, invalid};
use openmid_proto::alias::{Alias, ConnectionKind};
use openmid_proto::api::NewOutput;
use openmid_proto::credential::CredentialRef;
use openmid_proto::discovery::IdentifySnmp;
use openmid_proto::ecc::{Priority, Topic};
use openmid_proto::snmp::{DEFAULT_PORT, SnmpAction, SnmpRequest, SnmpVersion};

/// Credential types an snmp alias may name.
pub const SNMP_CREDENTIALS: [&str; 2] = ["snmp_community", "snmp_v3"];

impl Connections<'_> {
    /// Turns an SNMP action into an output.
    pub async fn snmp_output(&self, action: SnmpAction) -> Result<NewOutput, DispatchError> {
        let operation = action.operation.ok_or_else(|| {
            invalid(
                "operation",
                "is required: get, get_next, walk, bulk_walk or table",
            )
        })?;
        let (alias, credential) = self.alias_for(&action.alias, ConnectionKind::Snmp).await?;
        let credential = self
            .required_credential(&alias, credential, &SNMP_CREDENTIALS)
            .await?;
        let kind = self
            .store
            .get_credential(CredentialKey::Id(&credential.id))
            .await?
            .map(|row| row.kind)
            .unwrap_or_default();
        let version = match (action.version, kind.as_str()) {
            (Some(v), _) => v,
            (None, "snmp_v3") => SnmpVersion::V3,
            (None, _) => SnmpVersion::V2c,
        };
        let (host, port) = agent_address(&alias.base_url)?;
        let request = SnmpRequest {
            host,
            port: port.unwrap_or(DEFAULT_PORT),
            version,
            credential,
            operation,
            timeout_ms: action.timeout_ms.or(alias.timeout_ms),
            retries: action.retries,
            max_varbinds: action.max_varbinds,
            context_name: None,
            job_timeout_ms: None,
        };
        Ok(NewOutput {
            durability: Default::default(),
            agent: alias.execution.agent(),
            topic: Topic::SNMPProbe,
            name: Some(format!("{}: snmp", alias.name)),
            source: Some("api:actions/snmp".into()),
            payload: openmid_proto::payload::Payload::encode(&request)
                .map_err(|e| invalid("operation", e.to_string()))?,
            priority: Some(Priority::Interactive),
            correlator: action.correlator,
            max_attempts: None,
            at_most_once: action.at_most_once,
            application: alias.execution.application.clone(),
        })
    }
}

impl Connections<'_> {
    /// What a discovery run's identify jobs ask SNMP agents with, from an snmp alias:
    /// its credential, the version that credential speaks and the alias's port. The
    /// hosts are the run's, not the alias's: discovery borrows its credential.
    pub async fn snmp_identity(
        &self,
        alias: &str,
    ) -> Result<(IdentifySnmp, CredentialRef), DispatchError> {
        let (found, credential) = self.alias_for(alias, ConnectionKind::Snmp).await?;
        let credential = self
            .required_credential(&found, credential, &SNMP_CREDENTIALS)
            .await?;
        let kind = self
            .store
            .get_credential(CredentialKey::Id(&credential.id))
            .await?
            .map(|row| row.kind)
            .unwrap_or_default();
        let (_, port) = agent_address(&found.base_url)?;
        let snmp = IdentifySnmp {
            version: if kind == "snmp_v3" {
                SnmpVersion::V3
            } else {
                SnmpVersion::V2c
            },
            port: port.unwrap_or(DEFAULT_PORT),
            alias: Some(found.name),
        };
        Ok((snmp, credential))
    }
}

/// Reads `snmp://host[:port]`.
pub fn agent_address(base_url: &str) -> Result<(String, Option<u16>), DispatchError> {
    let url = url::Url::parse(base_url)
        .map_err(|e| invalid("base_url", format!("`{base_url}` is not a URL: {e}")))?;
    if url.scheme() != "snmp" {
        return Err(invalid(
            "base_url",
            format!(
                "scheme `{}`: an snmp alias's base_url is snmp://host[:port]",
                url.scheme()
            ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "base_url",
            "must not carry a community or user: put them in a credential",
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(invalid(
            "base_url",
            "is the agent's address only: the OIDs go in the action",
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(invalid("base_url", "has no host")),
    };
    Ok((host, url.port()))
}

/// The checks of an snmp alias's own fields.
pub fn check_snmp_alias(alias: &Alias) -> Result<(), DispatchError> {
    agent_address(&alias.base_url).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_read_from_the_url() {
        assert_eq!(
            agent_address("snmp://10.1.2.3:1161").ok(),
            Some(("10.1.2.3".to_string(), Some(1161)))
        );
        assert_eq!(
            agent_address("snmp://switch1.corp").ok(),
            Some(("switch1.corp".to_string(), None))
        );
        for bad in [
            "snmp://public@h",
            "http://h",
            "snmp://h/1.3.6",
            "snmp://h?x=1",
        ] {
            let e = agent_address(bad).expect_err(bad);
            assert!(!e.to_string().contains("public@"), "{e}");
        }
    }
}
