//! The MID's one registration table of probes: topic → probe. A probe is typed by its
//! topic's [`Contract`] (in proto); the registry hides the types — it decodes the
//! payload once (and validates it by the contract, as the instance did at the door),
//! checks its network target against the egress policy, runs the probe, stopping it when the job is cancelled unless the probe watches the
//! cancellation itself, and encodes the response. Adding a probe is one file under
//! `probes/` implementing [`Probe`] and one line in [`PROBES`].

use super::credentials::Credential;
use super::http::SpilledBody;
use super::{
    JobContext, ProbeContext, ProbeError, command, discovery, file_import, ldap, metrics, rest,
    snmp, soap, sql, ssh,
};
use crate::policy::Protocol;
use futures::future::BoxFuture;
use openmid_proto::ecc::Topic;
use openmid_proto::payload::Payload;
use openmid_proto::probe::Contract;

/// Every probe this MID runs, one line each.
static PROBES: [&dyn Runs; 12] = [
    &Registered(rest::RestProbe),
    &Registered(soap::SoapProbe),
    &Registered(command::CommandProbe),
    &Registered(sql::SqlProbe),
    &Registered(ssh::SshProbe),
    &Registered(file_import::FileImportProbe),
    &Registered(ldap::LdapProbe),
    &Registered(discovery::PingProbe),
    &Registered(discovery::ScanProbe),
    &Registered(discovery::IdentifyProbe),
    &Registered(snmp::SnmpProbe),
    &Registered(metrics::MetricScrapeProbe),
];

/// What a probe gets besides its request.
pub struct Call<'a> {
    /// The job's credential, opened and resolved.
    pub credential: Option<&'a Credential>,
    /// The job: its id and cancellation.
    pub job: &'a JobContext,
    /// When the job must be over, from its request's timeout
    /// ([`Contract::timeout`]). A probe that watches cancellation watches this too
    /// (and may end sooner, by its policy's longest run time); the others are stopped
    /// here by the registry.
    pub deadline: Option<tokio::time::Instant>,
    /// What every probe may use (HTTP clients, the policy, the instance).
    pub ctx: &'a ProbeContext,
}

/// What a probe made.
pub struct Ran<R> {
    /// The topic's response.
    pub response: R,
    /// A response body written to a file beside the outbox instead of the response,
    /// uploaded to the instance before the result is posted.
    pub body_file: Option<SpilledBody>,
}

impl<R> Ran<R> {
    /// Just a response.
    pub fn response(response: R) -> Self {
        Self {
            response,
            body_file: None,
        }
    }
}

/// One topic's probe.
pub trait Probe: Send + Sync + 'static {
    /// Its topic's contract.
    type Contract: Contract;
    /// Whose egress rules its network target falls under, checked before it runs
    /// (and again where its connections open); `None` for a probe that reaches no
    /// network target of its request's (a command, checked by its own rules).
    const PROTOCOL: Option<Protocol> = None;
    /// Whether it watches the job's cancellation itself (it has something to clean
    /// up, such as a process group, or output to keep); otherwise a cancelled job's
    /// probe is dropped, which ends its requests.
    const WATCHES_CANCEL: bool = false;
    /// Whether it checks its targets under [`Probe::PROTOCOL`] itself, one by one,
    /// instead of the registry checking the contract's one target: a ping or scan
    /// touches many addresses and reports those refused rather than failing whole.
    const CHECKS_TARGETS: bool = false;
    /// Runs one request.
    fn run<'a>(
        &'a self,
        req: <Self::Contract as Contract>::Request,
        call: Call<'a>,
    ) -> BoxFuture<'a, Result<Ran<<Self::Contract as Contract>::Response>, ProbeError>>;
}

/// A probe with its types hidden.
trait Runs: Send + Sync {
    fn topic(&self) -> Topic;
    fn run<'a>(
        &'a self,
        payload: Payload,
        call: Call<'a>,
    ) -> BoxFuture<'a, Result<Payload, ProbeError>>;
}

struct Registered<P>(P);

impl<P: Probe> Runs for Registered<P> {
    fn topic(&self) -> Topic {
        P::Contract::TOPIC
    }

    fn run<'a>(
        &'a self,
        payload: Payload,
        call: Call<'a>,
    ) -> BoxFuture<'a, Result<Payload, ProbeError>> {
        Box::pin(async move {
            let req = openmid_proto::probe::decode_payload::<P::Contract>(&payload)
                .map_err(|e| ProbeError::InvalidInput(e.to_string()))?;
            if let (Some(protocol), Some(target), false) =
                (P::PROTOCOL, P::Contract::target(&req), P::CHECKS_TARGETS)
            {
                call.ctx.policy.check_host(
                    protocol,
                    &target.host,
                    target.port.unwrap_or_default(),
                )?;
            }
            let job = call.job;
            let timeout = P::Contract::timeout(&req);
            let call = Call {
                deadline: timeout.map(|t| tokio::time::Instant::now() + t),
                ..call
            };
            let ran = if P::WATCHES_CANCEL {
                self.0.run(req, call).await?
            } else {
                let at = call.deadline;
                let deadline = async move {
                    match at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = self.0.run(req, call) => r?,
                    _ = job.cancel.cancelled() => return Err(ProbeError::Cancelled),
                    _ = deadline => {
                        let ms = timeout.map_or(0, |t| t.as_millis() as u64);
                        return Err(ProbeError::Timeout(ms));
                    }
                }
            };
            let Some(file) = ran.body_file else {
                // The usual case: the response written straight as the result's text.
                return Payload::encode(&ran.response)
                    .map_err(|e| ProbeError::InvalidInput(e.to_string()));
            };
            let mut value = encode(&ran.response)?;
            if let Some(map) = value.as_object_mut() {
                map.insert(crate::outbox::BODY_FILE_KEY.into(), encode(&file)?);
            }
            Ok(Payload::from(value))
        })
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, ProbeError> {
    serde_json::to_value(value).map_err(|e| ProbeError::InvalidInput(e.to_string()))
}

/// The topics this MID has a probe for (reported in its heartbeats).
pub fn topics() -> Vec<Topic> {
    PROBES.iter().map(|p| p.topic()).collect()
}

/// Runs the probe for `topic`.
pub async fn run(topic: Topic, payload: Payload, call: Call<'_>) -> Result<Payload, ProbeError> {
    let probe = PROBES
        .iter()
        .find(|p| p.topic() == topic)
        .ok_or(ProbeError::Unsupported {
            topic,
            version: openmid_proto::BUILD_VERSION,
        })?;
    probe.run(payload, call).await
}
