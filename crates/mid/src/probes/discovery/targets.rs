//! A job's addresses and ports, expanded and checked under `policy.scan` before
//! anything is sent. A refused address is kept in the plan as refused (the result
//! lists it); a job whose every address, or every port, is refused fails with the
//! policy's error, which names the rule.

use crate::policy::{EgressPolicy, Protocol};
use crate::probes::ProbeError;
use openmid_proto::discovery::MAX_REFUSED_LISTED;
use std::net::IpAddr;

/// One address of a job, and whether the policy lets it be probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Host {
    pub ip: IpAddr,
    pub allowed: bool,
}

/// A job's addresses, checked.
#[derive(Debug, Clone, Default)]
pub(super) struct Checked {
    /// Every address, in order, allowed or not.
    pub hosts: Vec<Host>,
    /// The refused ones, as text (the first [`MAX_REFUSED_LISTED`]).
    pub refused: Vec<String>,
    /// How many were refused.
    pub refused_count: u64,
}

/// Checks `ips` under `policy.scan`. `Err` with the first refusal when every one is
/// refused.
pub(super) fn check_hosts(policy: &EgressPolicy, ips: &[IpAddr]) -> Result<Checked, ProbeError> {
    let mut checked = Checked::default();
    let mut first_denial = None;
    for ip in ips {
        let allowed = match policy.check_ip(Protocol::Scan, *ip) {
            Ok(()) => true,
            Err(denial) => {
                checked.refused_count += 1;
                if checked.refused.len() < MAX_REFUSED_LISTED {
                    checked.refused.push(ip.to_string());
                }
                first_denial.get_or_insert(denial);
                false
            }
        };
        checked.hosts.push(Host { ip: *ip, allowed });
    }
    match first_denial {
        Some(denial) if checked.refused_count == ips.len() as u64 => {
            tracing::warn!(addresses = ips.len(), %denial, "policy.scan refuses every address of the job");
            Err(ProbeError::Policy(denial))
        }
        _ => Ok(checked),
    }
}

/// Splits `ports` into those `policy.scan` allows and those it refuses. `Err` with
/// the first refusal when it refuses them all.
pub(super) fn check_ports(
    policy: &EgressPolicy,
    ports: &[u16],
) -> Result<(Vec<u16>, Vec<u16>), ProbeError> {
    let mut allowed = Vec::with_capacity(ports.len());
    let mut refused = Vec::new();
    let mut first_denial = None;
    for port in ports {
        match policy.check_port(Protocol::Scan, *port) {
            Ok(()) => allowed.push(*port),
            Err(denial) => {
                refused.push(*port);
                first_denial.get_or_insert(denial);
            }
        }
    }
    match first_denial {
        Some(denial) if allowed.is_empty() => Err(ProbeError::Policy(denial)),
        _ => Ok((allowed, refused)),
    }
}
