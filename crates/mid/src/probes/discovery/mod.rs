//! The discovery probes: `Ping` (which hosts of some ranges answer: ICMP echo, or
//! TCP connects where the MID may not send ICMP) and `Shazzam` (a TCP connect scan
//! of some ranges' ports, its open ports streamed to the instance in pages).
//!
//! Both expand their targets in address order, and check every address under
//! `policy.scan` before anything is sent to it ([`targets`]): a refused address is
//! listed in the result, and a job whose every address is refused fails with the
//! policy's error. Ports are checked under the same section's port lists.
//!
//! Each job holds its own sockets, limits and state — no lock is shared between
//! jobs, so several scans run at once on one MID. Neither probe watches the job's
//! cancellation itself: the registry drops a cancelled job's future, and dropping it
//! closes its sockets and aborts its tasks at once (each is owned by the job's
//! future, through a `JoinSet` or an abort guard).

mod icmp;
mod identify;
mod pages;
mod ping;
mod rate;
mod scan;
mod targets;

pub use icmp::{EchoReply, checksum, echo_request, parse_reply};
pub use identify::certificate_names;
pub use ping::{IcmpKind, tcp_ping};
pub use rate::RateLimiter;

use super::ProbeError;
use super::registry::{Call, Probe, Ran};
use crate::policy::Protocol;
use futures::future::BoxFuture;
use openmid_proto::discovery::{
    IdentifyRequest, IdentifyResponse, PingRequest, PingResponse, ScanRequest, ScanResponse,
};

/// The `Ping` entry of the [registry](super::registry).
pub struct PingProbe;

impl Probe for PingProbe {
    type Contract = openmid_proto::discovery::Ping;
    const PROTOCOL: Option<Protocol> = Some(Protocol::Scan);
    const CHECKS_TARGETS: bool = true;

    fn run<'a>(
        &'a self,
        req: PingRequest,
        call: Call<'a>,
    ) -> BoxFuture<'a, Result<Ran<PingResponse>, ProbeError>> {
        Box::pin(async move { Ok(Ran::response(ping::run(req, call).await?)) })
    }
}

/// The `Shazzam` entry of the [registry](super::registry).
pub struct ScanProbe;

impl Probe for ScanProbe {
    type Contract = openmid_proto::discovery::Shazzam;
    const PROTOCOL: Option<Protocol> = Some(Protocol::Scan);
    const CHECKS_TARGETS: bool = true;

    fn run<'a>(
        &'a self,
        req: ScanRequest,
        call: Call<'a>,
    ) -> BoxFuture<'a, Result<Ran<ScanResponse>, ProbeError>> {
        Box::pin(async move { Ok(Ran::response(scan::run(req, call).await?)) })
    }
}

/// The `Identify` entry of the [registry](super::registry): checks each connection
/// itself, under `policy.scan` (web and TLS) and `policy.snmp`.
pub struct IdentifyProbe;

impl Probe for IdentifyProbe {
    type Contract = openmid_proto::discovery::Identify;
    const PROTOCOL: Option<Protocol> = Some(Protocol::Scan);
    const CHECKS_TARGETS: bool = true;

    fn run<'a>(
        &'a self,
        req: IdentifyRequest,
        call: Call<'a>,
    ) -> BoxFuture<'a, Result<Ran<IdentifyResponse>, ProbeError>> {
        Box::pin(async move { Ok(Ran::response(identify::run(req, call).await?)) })
    }
}

/// A spawned task aborted when its owner is dropped (a cancelled job's).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
