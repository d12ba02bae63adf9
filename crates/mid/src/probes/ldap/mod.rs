//! `LDAPProbe`: a search of a directory inside the MID's network, its entries
//! streamed to the instance in pages, or the bind test.
//!
//! One job is one connection, in order:
//! 1. the URL's host is resolved and checked under `policy.ldap`, and the TCP
//!    connection opened to a checked address; TLS (LDAPS or StartTLS) verifies the
//!    certificate against the URL's host name ([`connect`]);
//! 2. the bind: a simple bind with the job's `ldap_bind` credential, or none
//!    (anonymous) without one;
//! 3. the bind test asks WhoAmI and ends; a search reads its entries page by page
//!    with the paged-results control ([`search`]), maps them to JSON ([`entry`]) and
//!    sends each page before reading on ([`pages`]);
//! 4. on cancellation or at the deadline the search is abandoned on the server and
//!    the connection unbound and closed.

mod connect;
mod entry;
mod pages;
mod search;

use super::ProbeError;
use super::credentials::Credential;
use super::output_stream::PageSink;
use super::registry::{Call, Probe, Ran};
use openmid_proto::ldap::{LdapOperation, LdapRequest, LdapResponse};
use pages::Pager;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest the goodbye (unbind) may take.
const UNBIND_TIMEOUT: Duration = Duration::from_secs(2);

/// The `LDAPProbe` entry of the [registry](super::registry). It watches the job's
/// cancellation and deadline itself: the search must be abandoned on the server.
pub struct LdapProbe;

impl Probe for LdapProbe {
    type Contract = openmid_proto::ldap::Ldap;
    const PROTOCOL: Option<crate::policy::Protocol> = Some(crate::policy::Protocol::Ldap);
    const WATCHES_CANCEL: bool = true;

    fn run<'a>(
        &'a self,
        req: LdapRequest,
        call: Call<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Ran<LdapResponse>, ProbeError>> {
        Box::pin(async move { Ok(Ran::response(run(req, call).await?)) })
    }
}

/// Runs one LDAP job.
pub async fn run(req: LdapRequest, call: Call<'_>) -> Result<LdapResponse, ProbeError> {
    let started_ms = openmid_proto::time::now_ms();
    let started = Instant::now();
    req.validate()
        .map_err(|e| ProbeError::InvalidInput(e.to_string()))?;
    let url = req
        .parsed_url()
        .map_err(|e| ProbeError::InvalidInput(e.to_string()))?;
    let login = match call.credential {
        Some(Credential::LdapBind { bind_dn, password }) => Some((bind_dn.as_str(), password)),
        Some(_) => {
            return Err(ProbeError::Credential(
                "an LDAP job needs an `ldap_bind` credential (bind DN and password), or none to bind anonymously".into(),
            ));
        }
        None => None,
    };
    let deadline = call
        .deadline
        .unwrap_or_else(|| Instant::now() + Duration::from_millis(req.timeout_ms()));
    let stop = Stop::new(&call.job.cancel, deadline, req.timeout_ms());
    let endpoint = stop
        .bound(connect::resolve(&call.ctx.policy, &url))
        .await??;
    let mut conn = stop.bound(connect::open(&req, &endpoint)).await??;
    let ldap = &mut conn.ldap;
    if let Some((dn, password)) = login {
        search::bind(ldap, dn, password, &stop).await?;
    }
    let mut response = LdapResponse {
        operation: req.operation,
        entries: 0,
        pages: 0,
        first_page: Vec::new(),
        bound_as: None,
        marker_max: None,
        truncated: false,
        referrals: Vec::new(),
        started_at: openmid_proto::time::rfc3339(started_ms),
        duration_ms: 0,
    };
    match req.operation {
        LdapOperation::Bind => {
            response.bound_as = Some(search::who_am_i(ldap, &stop).await?);
        }
        LdapOperation::Search => {
            let sink = PageSink::new(call.ctx.instance.clone(), &call.job.id, &stop.token)
                .starting_at(req.resume.as_ref().map_or(0, |r| r.next_page));
            let mut pager = Pager::new(&req, sink);
            let searched = match search::search(ldap, &req, &mut pager, &stop).await {
                Ok(searched) => searched,
                Err(e) => {
                    pager.abandon().await;
                    unbind(ldap).await;
                    return Err(e);
                }
            };
            let done = pager.finish().await;
            unbind(ldap).await;
            let done = done?;
            response.entries = done.entries;
            response.pages = done.pages;
            response.first_page = done.first_page;
            response.marker_max = done.marker_max;
            response.truncated = done.truncated;
            response.referrals = searched.referrals;
        }
    }
    if req.operation == LdapOperation::Bind {
        unbind(ldap).await;
    }
    response.duration_ms = started.elapsed().as_millis() as u64;
    Ok(response)
}

/// Says goodbye to the server (best effort, bounded).
async fn unbind(ldap: &mut ldap3::Ldap) {
    let _ = tokio::time::timeout(UNBIND_TIMEOUT, ldap.unbind()).await;
}

/// When a job must stop: its cancellation, or its deadline. The token fires for
/// either; the error says which.
struct Stop {
    /// Cancelled when the job must stop.
    pub token: CancellationToken,
    job: CancellationToken,
    timeout_ms: u64,
    timer: tokio::task::JoinHandle<()>,
}

impl Stop {
    fn new(job: &CancellationToken, deadline: Instant, timeout_ms: u64) -> Self {
        let token = job.child_token();
        let fire = token.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            fire.cancel();
        });
        Self {
            token,
            job: job.clone(),
            timeout_ms,
            timer,
        }
    }

    /// The error of a stopped job.
    pub fn error(&self) -> ProbeError {
        if self.job.is_cancelled() {
            ProbeError::Cancelled
        } else {
            ProbeError::Timeout(self.timeout_ms)
        }
    }

    /// Runs `work` unless the job stops first.
    pub async fn bound<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, ProbeError> {
        tokio::select! {
            out = work => Ok(out),
            () = self.token.cancelled() => Err(self.error()),
        }
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.timer.abort();
    }
}
