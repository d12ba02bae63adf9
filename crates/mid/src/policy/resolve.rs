//! Resolution under the policy. reqwest hands every host name it connects to (never an
//! IP literal) to a [`reqwest::dns::Resolve`]; [`PolicyResolver`] looks the name up with
//! tokio, drops every address the policy refuses and fails, naming the rule, when none
//! remain. reqwest then connects only to the addresses returned, so a name cannot be
//! checked against one answer and connected to another (DNS rebinding).
//!
//! The resolver is told the name only, not the port: port rules are applied by
//! [`EgressPolicy::check_url`], which callers run before each request anyway.

use super::denial::Denial;
use super::explain::Trace;
use super::network::Host;
use super::{EgressPolicy, Protocol};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The longest a lookup may take (reqwest's connect timeout also bounds it; this bounds
/// lookups made outside a request, such as [`EgressPolicy::explain`]'s).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a name gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The policy refused the name, or every address it resolved to.
    #[error(transparent)]
    Denied(#[from] Denial),
    /// The lookup failed.
    #[error("resolving {host}: {source}")]
    Lookup {
        /// The name.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The lookup answered no address.
    #[error("resolving {host}: no addresses")]
    NoAddresses {
        /// The name.
        host: String,
    },
    /// The lookup took too long.
    #[error("resolving {host}: no answer within {} s", LOOKUP_TIMEOUT.as_secs())]
    Timeout {
        /// The name.
        host: String,
    },
}

/// A [`reqwest::dns::Resolve`] that applies one protocol's rules:
/// `ClientBuilder::dns_resolver(PolicyResolver::new(policy, Protocol::Http))`.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<EgressPolicy>,
    protocol: Protocol,
}

impl PolicyResolver {
    /// A resolver applying `protocol`'s rules of `policy`.
    pub fn new(policy: Arc<EgressPolicy>, protocol: Protocol) -> Self {
        Self { policy, protocol }
    }

    /// The addresses `host` may be reached at (port 0: the caller sets it). A refusal
    /// is counted in the policy's denials.
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        let found = self
            .policy
            .resolve_host(self.protocol, host, None, None, &mut Trace::off())
            .await;
        if let Err(ResolveError::Denied(_)) = &found {
            self.policy.count_denial(Some(self.protocol));
        }
        found.map(|ips| ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect())
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = this.lookup(&host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl EgressPolicy {
    /// The addresses `host` may be reached at under `protocol`'s rules: an IP literal
    /// is checked as one; a name is checked by the name rules, then looked up (or
    /// `given` is used, for explanations) and each address checked. `port`, when
    /// known, only shapes the messages.
    pub(crate) async fn resolve_host(
        &self,
        protocol: Protocol,
        host: &str,
        port: Option<u16>,
        given: Option<&[IpAddr]>,
        trace: &mut Trace,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        let rules = self.rules(protocol);
        let shown = |h: &dyn std::fmt::Display| match port {
            Some(port) => format!("{h}:{port}"),
            None => h.to_string(),
        };
        let parsed = Host::parse(host).map_err(|reason| Denial::NoTarget {
            protocol,
            target: format!("{host:?}"),
            reason,
        })?;
        let name = match parsed {
            Host::Ip(ip) => {
                rules.check_ip(ip, true, &shown(&Host::Ip(ip)), trace)?;
                return Ok(vec![ip]);
            }
            Host::Name(name) => name,
        };
        rules.check_name(&name, &shown(&name), trace)?;
        let ips = match given {
            Some(given) => {
                trace.note(|| format!("{name}: checking the given addresses instead of resolving"));
                given.to_vec()
            }
            None => lookup(&name).await?,
        };
        if ips.is_empty() {
            return Err(ResolveError::NoAddresses { host: name });
        }
        let mut kept = Vec::new();
        let mut first_refusal = None;
        for ip in ips.into_iter().map(|ip| ip.to_canonical()) {
            let target = format!("{} ({ip})", shown(&name));
            match rules.check_ip(ip, false, &target, trace) {
                Ok(()) => kept.push(ip),
                Err(denial) => {
                    trace.note(|| format!("{name}: {ip} dropped"));
                    first_refusal.get_or_insert(denial);
                }
            }
        }
        match first_refusal {
            Some(denial) if kept.is_empty() => Err(denial.into()),
            _ => Ok(kept),
        }
    }
}

async fn lookup(name: &str) -> Result<Vec<IpAddr>, ResolveError> {
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0)))
        .await
        .map_err(|_| ResolveError::Timeout {
            host: name.to_string(),
        })?
        .map_err(|source| ResolveError::Lookup {
            host: name.to_string(),
            source,
        })?;
    let mut ips: Vec<IpAddr> = Vec::new();
    for addr in found {
        if !ips.contains(&addr.ip()) {
            ips.push(addr.ip());
        }
    }
    Ok(ips)
}
