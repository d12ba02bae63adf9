//! Where a probe's connection goes, under the egress policy — shared by every probe
//! that opens its own socket (SQL, LDAP, SNMP). The host is resolved by
//! [`PolicyResolver`] (a name whose addresses are all refused is refused, naming the
//! rule) and every address is checked again with its port; the probe then connects
//! to a checked address only, keeping the host name for TLS and messages.

use crate::policy::{EgressPolicy, PolicyResolver, Protocol, ResolveError};
use crate::probes::ProbeError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// A host as the request names it and the addresses it may be reached at.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The host name or address given (for TLS and messages).
    pub host: String,
    /// The addresses the policy allows, with the port.
    pub addrs: Vec<SocketAddr>,
}

impl Endpoint {
    /// Resolves `host` under `protocol`'s rules and checks each address with `port`.
    /// Refused when every address is; empty when the name has none.
    pub async fn resolve(
        policy: &Arc<EgressPolicy>,
        protocol: Protocol,
        host: &str,
        port: u16,
    ) -> Result<Self, ProbeError> {
        let found = PolicyResolver::new(policy.clone(), protocol)
            .lookup(host)
            .await
            .map_err(|e| match e {
                ResolveError::Denied(denial) => ProbeError::Policy(denial),
                other => ProbeError::Target(other.to_string()),
            })?;
        let mut addrs = Vec::new();
        let mut refused = None;
        for addr in found {
            let addr = SocketAddr::new(addr.ip(), port);
            match policy.check_addr(protocol, host, addr) {
                Ok(()) => addrs.push(addr),
                Err(denial) => {
                    refused.get_or_insert(denial);
                }
            }
        }
        match refused {
            Some(denial) if addrs.is_empty() => Err(ProbeError::Policy(denial)),
            _ => Ok(Self {
                host: host.to_string(),
                addrs,
            }),
        }
    }

    /// `host:port` for messages.
    pub fn shown(&self) -> String {
        let port = self.addrs.first().map_or(0, SocketAddr::port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }

    /// A TCP connection to the first address that answers within `timeout` each.
    pub async fn connect_any(&self, timeout: Duration) -> Result<TcpStream, ProbeError> {
        let mut last = None;
        for addr in &self.addrs {
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = Some(format!("{addr}: {e}")),
                Err(_) => last = Some(format!("{addr}: no answer within {timeout:?}")),
            }
        }
        Err(ProbeError::Target(format!(
            "cannot connect to {}: {}",
            self.shown(),
            last.unwrap_or_else(|| "no address to connect to".into())
        )))
    }
}
