//! `SNMPProbe`: reads from an SNMP agent inside the MID's network — get, get-next, a
//! walk (get-next or get-bulk) or a table — over v1, v2c or v3 (USM with SHA-1 or
//! SHA-2 authentication and AES-128 privacy).
//!
//! One job, in order:
//! 1. the credential is checked against the version (a community for v1/v2c, a USM
//!    user for v3);
//! 2. the host is resolved and each address checked under `policy.snmp`; the UDP
//!    socket is connected to the first checked address only ([`transport`]);
//! 3. the requests are encoded by the probe's own BER codec ([`ber`], [`v3`],
//!    [`usm`]), each answer waited for `timeout_ms` and resent `retries` times;
//! 4. a walk stops at the end of its subtree, endOfMibView, a non-increasing OID or
//!    `max_varbinds` ([`walk`]); a table read groups its walk into rows ([`table`]).
//!
//! Cancellation and the job's deadline are the registry's: dropping the job's
//! future drops its socket, and nothing is left to clean up on the agent.

pub mod ber;
mod session;
mod table;
mod transport;
pub mod usm;
pub mod v3;
mod value;
mod walk;

use super::ProbeError;
use super::credentials::Credential;
use super::endpoint::Endpoint;
use super::registry::{Call, Probe, Ran};
use crate::policy::Protocol;
use openmid_proto::snmp::{SnmpOperation, SnmpRequest, SnmpResponse, SnmpVersion, parse_oid};
use session::{Security, Session, User};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The `SNMPProbe` entry of the [registry](super::registry).
pub struct SnmpProbe;

impl Probe for SnmpProbe {
    type Contract = openmid_proto::snmp::Snmp;
    const PROTOCOL: Option<Protocol> = Some(Protocol::Snmp);

    fn run<'a>(
        &'a self,
        req: SnmpRequest,
        call: Call<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Ran<SnmpResponse>, ProbeError>> {
        Box::pin(async move { Ok(Ran::response(run(req, call).await?)) })
    }
}

/// How the credential secures the job's messages, checked against the version.
fn security(req: &SnmpRequest, credential: Option<&Credential>) -> Result<Security, ProbeError> {
    match (req.version, credential) {
        (SnmpVersion::V1 | SnmpVersion::V2c, Some(Credential::SnmpCommunity { community })) => {
            Ok(Security::Community {
                version: if req.version == SnmpVersion::V1 { 0 } else { 1 },
                community: community.clone(),
            })
        }
        (
            SnmpVersion::V3,
            Some(Credential::SnmpV3 {
                username,
                auth,
                privacy,
            }),
        ) => {
            let auth = auth
                .as_ref()
                .map(|(p, pw)| usm::AuthProtocol::parse(p).map(|p| (p, pw.clone())))
                .transpose()
                .map_err(ProbeError::Credential)?;
            let privacy = privacy
                .as_ref()
                .map(|(p, pw)| usm::PrivProtocol::parse(p).map(|p| (p, pw.clone())))
                .transpose()
                .map_err(ProbeError::Credential)?;
            if privacy.is_some() && auth.is_none() {
                return Err(ProbeError::Credential(
                    "an snmp_v3 credential with privacy needs authentication too (USM has no privacy without it)".into(),
                ));
            }
            Ok(Security::Usm {
                user: User {
                    name: username.clone(),
                    auth,
                    privacy,
                },
                context: req.context_name.clone().unwrap_or_default().into_bytes(),
            })
        }
        (SnmpVersion::V3, _) => Err(ProbeError::Credential(
            "an SNMPv3 job needs an `snmp_v3` credential".into(),
        )),
        _ => Err(ProbeError::Credential(
            "an SNMP v1/v2c job needs an `snmp_community` credential".into(),
        )),
    }
}

/// The host resolved under `policy.snmp`, each address checked with the port; the
/// first allowed one.
async fn resolve(call: &Call<'_>, req: &SnmpRequest) -> Result<SocketAddr, ProbeError> {
    let endpoint = Endpoint::resolve(&call.ctx.policy, Protocol::Snmp, &req.host, req.port).await?;
    endpoint
        .addrs
        .first()
        .copied()
        .ok_or_else(|| ProbeError::Target(format!("{} has no address", req.host)))
}

fn oid(text: &str) -> Result<Vec<u32>, ProbeError> {
    parse_oid(text).map_err(ProbeError::InvalidInput)
}

/// Runs one SNMP job.
pub async fn run(req: SnmpRequest, call: Call<'_>) -> Result<SnmpResponse, ProbeError> {
    let started = Instant::now();
    req.validate()
        .map_err(|e| ProbeError::InvalidInput(e.to_string()))?;
    let security = security(&req, call.credential)?;
    let addr = resolve(&call, &req).await?;
    let shown = if req.host.contains(':') {
        format!("[{}]:{}", req.host, req.port)
    } else {
        format!("{}:{}", req.host, req.port)
    };
    let transport = transport::Transport::open(
        addr,
        shown.clone(),
        Duration::from_millis(req.timeout_ms()),
        req.retries(),
    )
    .await?;
    let mut session = Session::new(transport, security);
    let bulk_ok = req.version != SnmpVersion::V1;
    let mut response = SnmpResponse {
        varbinds: Vec::new(),
        table: None,
        engine_id: None,
        duration_ms: 0,
        truncated: false,
    };
    match &req.operation {
        SnmpOperation::Get { oids } | SnmpOperation::GetNext { oids } => {
            let kind = if matches!(req.operation, SnmpOperation::Get { .. }) {
                ber::tag::GET
            } else {
                ber::tag::GET_NEXT
            };
            let oids = oids.iter().map(|o| oid(o)).collect::<Result<Vec<_>, _>>()?;
            let pdu = session.request(kind, &oids, (0, 0)).await?;
            if pdu.error_status == 2 {
                let at = usize::try_from(pdu.error_index).unwrap_or(0);
                let which = req_oid(&req, at);
                return Err(ProbeError::Target(format!(
                    "the agent at {shown} has no such name: {which}"
                )));
            }
            response.varbinds = pdu
                .varbinds
                .iter()
                .map(|(o, v)| value::varbind(o, v))
                .collect();
        }
        SnmpOperation::Walk { oid: root } | SnmpOperation::BulkWalk { oid: root, .. } => {
            let bulk = match &req.operation {
                SnmpOperation::BulkWalk {
                    max_repetitions, ..
                } => Some(*max_repetitions),
                _ => None,
            };
            let walked = walk::walk(&mut session, &oid(root)?, bulk, req.max_varbinds()).await?;
            response.truncated = walked.truncated;
            response.varbinds = walked
                .varbinds
                .iter()
                .map(|(o, v)| value::varbind(o, v))
                .collect();
        }
        SnmpOperation::Table { oid: root, columns } => {
            let root = oid(root)?;
            let bulk = bulk_ok.then_some(openmid_proto::snmp::DEFAULT_MAX_REPETITIONS);
            let walked = walk::walk(&mut session, &root, bulk, req.max_varbinds()).await?;
            response.truncated = walked.truncated;
            response.table = Some(table::rows(&root, &walked.varbinds, columns.as_deref()));
        }
    }
    response.engine_id = session.engine_id().map(hex::encode);
    response.duration_ms = started.elapsed().as_millis() as u64;
    Ok(response)
}

/// The request's OID at `index` (from 1), for a v1 noSuchName error.
fn req_oid(req: &SnmpRequest, index: usize) -> String {
    match &req.operation {
        SnmpOperation::Get { oids } | SnmpOperation::GetNext { oids } => index
            .checked_sub(1)
            .and_then(|i| oids.get(i))
            .cloned()
            .unwrap_or_else(|| oids.join(", ")),
        _ => String::new(),
    }
}
