//! Tests of the whole policy as the MID uses it: from TOML (config.rs), through each
//! network rule (network.rs) and command rule (command.rs), to a real reqwest client
//! with the resolver and redirect policy (http.rs), explanations (explain.rs), and
//! property tests of the matchers (props.rs). Shared helpers are here.

mod command;
mod config;
mod explain;
mod http;
mod network;
mod props;

use super::*;
use std::net::IpAddr;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    policy: EgressPolicy,
}

fn parse(text: &str) -> Result<EgressPolicy, String> {
    toml::from_str::<File>(text)
        .map(|f| f.policy)
        .map_err(|e| e.to_string())
}

fn policy(text: &str) -> EgressPolicy {
    parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn url(text: &str) -> url::Url {
    url::Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn denial<T: fmt::Debug>(result: Result<T, Denial>) -> Denial {
    match result {
        Ok(v) => panic!("allowed: {v:?}"),
        Err(d) => d,
    }
}

const HTTP: Protocol = Protocol::Http;

/// The example of the module documentation, kept in step with it.
const EXAMPLE: &str = r#"
[policy.default]
deny_cidrs = ["10.99.0.0/16"]

[policy.http]
allow_hosts = ["*.corp.example.com", "api.example.com"]
allow_cidrs = ["10.0.0.0/8"]
allow_ports = [443, "8000-8999"]
deny_ports = ["1-1023"]

[policy.command]
interpreters = ["/bin/sh"]

[[policy.command.programs]]
path = "/usr/bin/df"
args = ["-h", "**"]
env = ["LANG", "LC_*"]
max_runtime_secs = 30

[[policy.command.programs]]
path = "/bin/sh"
cwd = ["/var/lib/openmid/work"]
max_runtime_secs = 120
"#;

fn commands() -> EgressPolicy {
    policy(
        r#"
[policy.command]
interpreters = ["/bin/sh"]
[[policy.command.programs]]
path = "/usr/bin/df"
args = ["-h", "**"]
env = ["LANG", "LC_*"]
max_runtime_secs = 30
[[policy.command.programs]]
path = "/usr/bin/df"
args = ["-i"]
[[policy.command.programs]]
path = "/usr/bin/tail"
args = ["-n", "*", "/var/log/*.log"]
[[policy.command.programs]]
path = "/bin/sh"
args = ["-e"]
max_runtime_secs = 120
"#,
    )
}

const NONE: &[&str] = &[];
