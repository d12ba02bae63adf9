//! An SSH action turned into an output through its alias: the alias says where the
//! host is (`ssh://[user@]host[:port]`), how its key is checked, with which credential
//! and through which MIDs; the action says what to run.

use super::Connections;
use crate::error::{DispatchError, invalid};
use openmid_proto::alias::{Alias, ConnectionKind};
use openmid_proto::api::NewOutput;
use openmid_proto::ecc::{Priority, Topic};
use openmid_proto::ssh::{SshAction, SshRequest};

/// Credential types an SSH alias may name.
pub const SSH_CREDENTIALS: [&str; 2] = ["ssh_password", "ssh_key"];

impl Connections<'_> {
    /// Turns an SSH action into an output.
    pub async fn ssh_output(&self, action: SshAction) -> Result<NewOutput, DispatchError> {
        let (alias, credential) = self.alias_for(&action.alias, ConnectionKind::Ssh).await?;
        let credential = self
            .required_credential(&alias, credential, &SSH_CREDENTIALS)
            .await?;
        let (host, port, username) = ssh_target(&alias.base_url)?;
        let name = action
            .command
            .clone()
            .or_else(|| action.script.as_ref().map(|_| "(script)".to_string()))
            .unwrap_or_default();
        let request = SshRequest {
            host,
            port,
            username,
            credential,
            host_key: alias.host_key.clone().unwrap_or_default(),
            command: action.command,
            script: action.script,
            interpreter: action.interpreter,
            sudo: action.sudo,
            env: action.env,
            stdin: action.stdin,
            timeout_ms: action.timeout_ms.or(alias.timeout_ms),
            max_output_bytes: action.max_output_bytes,
            pool_size: alias.pool_size,
        };
        Ok(NewOutput {
            durability: Default::default(),
            agent: alias.execution.agent(),
            topic: Topic::SSHCommand,
            name: Some(
                format!("{}: {name}", alias.name)
                    .chars()
                    .take(200)
                    .collect(),
            ),
            source: Some("api:actions/ssh".into()),
            payload: openmid_proto::payload::Payload::encode(&request)
                .map_err(|e| invalid("alias", e.to_string()))?,
            priority: Some(Priority::Interactive),
            correlator: action.correlator,
            max_attempts: None,
            at_most_once: action.at_most_once,
            application: alias.execution.application.clone(),
        })
    }
}

/// Host, port and user of `ssh://[user@]host[:port]`.
pub fn ssh_target(base_url: &str) -> Result<(String, Option<u16>, Option<String>), DispatchError> {
    let url = url::Url::parse(base_url)
        .map_err(|e| invalid("base_url", format!("`{base_url}` is not a URL: {e}")))?;
    if url.scheme() != "ssh" {
        return Err(invalid(
            "base_url",
            format!("`{base_url}`: an ssh alias's base_url is ssh://[user@]host[:port]"),
        ));
    }
    if url.password().is_some() {
        return Err(invalid(
            "base_url",
            "must not carry a password: put it in a credential",
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(invalid(
            "base_url",
            "an ssh URL names a host, not a path or query",
        ));
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(invalid("base_url", "has no host")),
    };
    let user = match url.username() {
        "" => None,
        u => Some(
            percent_decode(u)
                .ok_or_else(|| invalid("base_url", "the user name is not valid UTF-8"))?,
        ),
    };
    Ok((host, url.port(), user))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The checks of an ssh alias's own fields.
pub fn check_ssh_alias(alias: &Alias) -> Result<(), DispatchError> {
    ssh_target(&alias.base_url)?;
    if let Some(policy) = &alias.host_key {
        policy
            .validate()
            .map_err(|e| invalid(&e.field, e.message))?;
    }
    if let Some(n) = alias.pool_size
        && !(1..=openmid_proto::ssh::MAX_POOL_SIZE).contains(&n)
    {
        return Err(invalid(
            "pool_size",
            format!("must be 1–{}, got {n}", openmid_proto::ssh::MAX_POOL_SIZE),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_from_the_url() {
        assert_eq!(
            ssh_target("ssh://deploy@10.0.0.5:2222").ok(),
            Some(("10.0.0.5".into(), Some(2222), Some("deploy".into())))
        );
        assert_eq!(
            ssh_target("ssh://[::1]").ok(),
            Some(("::1".into(), None, None))
        );
        assert_eq!(
            ssh_target("ssh://a%40b@host").ok().and_then(|t| t.2),
            Some("a@b".into())
        );
        for bad in [
            "http://host",
            "ssh://u:secret@host",
            "ssh://host/path",
            "ssh:",
            "not a url",
        ] {
            let e = ssh_target(bad).expect_err(bad);
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }
}
