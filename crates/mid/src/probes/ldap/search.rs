//! The operations on an open connection: the bind, the WhoAmI question of the bind
//! test, and the search, read page by page with the paged-results control (RFC 2696).
//!
//! Each request asks for `page_size` entries and hands back the server's cookie for
//! the next; entries go to the [`Pager`] one by one as they arrive. The control is
//! sent non-critical, so a directory that does not know it answers the plain search
//! in one go (no control in its answer) and the pager still cuts the output into
//! pages; one that refuses it outright is asked again without it. A job stopped
//! (cancelled, or at its deadline) abandons the search on the server before the
//! connection is closed.
//!
//! Memory: `ldap3` queues a search's answers without bound while the pager waits on
//! a slow instance, so what waits is at most one server page (`page_size` entries)
//! — or, on a directory that does not page, the rest of the result.

use super::Stop;
use super::entry::{Item, Mapper};
use super::pages::{Flow, Pager};
use crate::probes::ProbeError;
use ldap3::asn1::{PL, parse_tag};
use ldap3::controls::{PagedResults, RawControl};
use ldap3::exop::WhoAmI;
use ldap3::{Ldap, LdapError, LdapResult, Scope};
use openmid_proto::ldap::{LdapRequest, LdapScope};
use openmid_proto::secret::Secret;

/// The paged-results control's OID.
const PAGED_RESULTS: &str = "1.2.840.113556.1.4.319";

/// Binds as `dn` with a simple bind. An empty password is refused here: servers
/// take it as an unauthenticated bind that "succeeds" with no rights (RFC 4513
/// §5.1.2), which a bind test must not report as a login.
pub(super) async fn bind(
    ldap: &mut Ldap,
    dn: &str,
    password: &Secret,
    stop: &Stop,
) -> Result<(), ProbeError> {
    if password.expose().is_empty() {
        return Err(ProbeError::Credential(
            "the ldap_bind credential's password is empty: that would be an unauthenticated bind, not a login"
                .into(),
        ));
    }
    let result = stop
        .bound(ldap.simple_bind(dn, password.expose()))
        .await?
        .map_err(|e| ldap_error("the bind", e))?;
    if result.rc != 0 {
        return Err(ProbeError::Target(format!(
            "the directory refused the bind as `{dn}`: {}",
            described(&result)
        )));
    }
    Ok(())
}

/// Who the server says the connection is bound as (RFC 4532: `dn:…`, `u:…`, or empty
/// for anonymous).
pub(super) async fn who_am_i(ldap: &mut Ldap, stop: &Stop) -> Result<String, ProbeError> {
    let answer = stop
        .bound(ldap.extended(WhoAmI))
        .await?
        .map_err(|e| ldap_error("the WhoAmI operation", e))?;
    let (exop, result) = (answer.0, answer.1);
    if result.rc != 0 {
        return Err(ProbeError::Target(format!(
            "the directory refused the WhoAmI operation: {}",
            described(&result)
        )));
    }
    Ok(String::from_utf8_lossy(exop.val.as_deref().unwrap_or_default()).into_owned())
}

/// What the search gave besides its entries.
#[derive(Debug, Default)]
pub(super) struct Searched {
    /// Search references returned (not followed).
    pub referrals: Vec<String>,
}

/// Runs the search, all its pages, into `pager`.
pub(super) async fn search(
    ldap: &mut Ldap,
    req: &LdapRequest,
    pager: &mut Pager,
    stop: &Stop,
) -> Result<Searched, ProbeError> {
    let mapper = Mapper::new(&req.binary_attributes);
    let scope = match req.scope {
        LdapScope::Base => Scope::Base,
        LdapScope::One => Scope::OneLevel,
        LdapScope::Sub => Scope::Subtree,
    };
    let page_size = i32::try_from(req.page_size()).unwrap_or(i32::MAX);
    let mut out = Searched::default();
    let mut cookie: Vec<u8> = Vec::new();
    let mut paged = true;
    let mut requests = 0u64;
    loop {
        requests += 1;
        if paged {
            let control: RawControl = PagedResults {
                size: page_size,
                cookie: std::mem::take(&mut cookie),
            }
            .into();
            ldap.with_controls(control);
        }
        let mut stream = stop
            .bound(ldap.streaming_search(&req.base, scope, &req.filter, req.attributes.clone()))
            .await?
            .map_err(|e| search_error(req, e))?;
        let mut received = 0u64;
        loop {
            let next = tokio::select! {
                next = stream.next() => Some(next),
                () = stop.token.cancelled() => None,
            };
            let Some(next) = next else {
                let id = stream.ldap_handle().last_id();
                let _ = stream.finish().await;
                abandon(ldap, id).await;
                return Err(stop.error());
            };
            let Some(item) = next.map_err(|e| search_error(req, e))? else {
                break;
            };
            received += 1;
            let item = mapper
                .item(item.0)
                .map_err(|m| ProbeError::Target(format!("the directory sent {m}")))?;
            match item {
                Item::Entry(entry) => {
                    if pager.push(entry).await? == Flow::Full {
                        let id = stream.ldap_handle().last_id();
                        let _ = stream.finish().await;
                        abandon(ldap, id).await;
                        return Ok(out);
                    }
                }
                Item::Reference(uris) => out.referrals.extend(uris),
                Item::Other => {}
            }
        }
        let result = stream.finish().await;
        // A directory refusing the control itself (rather than ignoring it) is asked
        // once more without it, before anything was read: unavailableCriticalExtension,
        // unwillingToPerform, or adminLimitExceeded (slapd's answer to a login whose
        // limits disable paging).
        if paged && requests == 1 && received == 0 && matches!(result.rc, 11 | 12 | 53) {
            tracing::info!(
                rc = result.rc,
                "the directory refused the paged-results control; searching without it"
            );
            paged = false;
            continue;
        }
        if result.rc != 0 {
            return Err(result_error(req, &result));
        }
        match paged.then(|| next_cookie(&result)).flatten() {
            Some(next) if !next.is_empty() => cookie = next,
            // No cookie (the last page) or no control (the server does not page: it
            // sent everything at once).
            _ => return Ok(out),
        }
    }
}

/// Asks the server to stop the search `id` (best effort: the connection closes
/// next anyway).
async fn abandon(ldap: &mut Ldap, id: i32) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), ldap.abandon(id)).await;
}

/// The cookie in the server's paged-results answer, or `None` without one. Parsed
/// here rather than by `ldap3`, whose parser panics on a malformed value.
fn next_cookie(result: &LdapResult) -> Option<Vec<u8>> {
    let control = result.ctrls.iter().find(|c| c.1.ctype == PAGED_RESULTS)?;
    let value = control.1.val.as_deref()?;
    let (_, tag) = parse_tag(value).ok()?;
    let PL::C(parts) = tag.payload else {
        return None;
    };
    match parts.into_iter().nth(1)?.payload {
        PL::P(cookie) => Some(cookie),
        PL::C(_) => None,
    }
}

/// An LDAP result code with its name and the server's words.
fn described(result: &LdapResult) -> String {
    let text = result.to_string();
    // ldap3 writes `rc=49 (invalidCredentials), dn: "", text: "…"`.
    let mut out = text
        .split(", dn:")
        .next()
        .unwrap_or(&text)
        .replace("rc=", "result ");
    if !result.text.is_empty() {
        out.push_str(&format!(": {}", result.text));
    }
    out
}

fn result_error(req: &LdapRequest, result: &LdapResult) -> ProbeError {
    let what = match result.rc {
        32 => format!("the base `{}` does not exist", req.base),
        34 => format!("the base `{}` is not a valid DN", req.base),
        3 => "the server's time limit passed".to_string(),
        4 => "the server's size limit was reached (it caps what this login may read)".to_string(),
        50 => "the login may not read this".to_string(),
        _ => "the search failed".to_string(),
    };
    ProbeError::Target(format!("{what}: {}", described(result)))
}

fn search_error(req: &LdapRequest, e: LdapError) -> ProbeError {
    match e {
        LdapError::FilterParsing => ProbeError::InvalidInput(format!(
            "filter: `{}` is not a valid LDAP filter (RFC 4515)",
            req.filter
        )),
        other => ldap_error("the search", other),
    }
}

fn ldap_error(what: &str, e: LdapError) -> ProbeError {
    match e {
        LdapError::LdapResult { result } => {
            ProbeError::Target(format!("{what} failed: {}", described(&result)))
        }
        other => ProbeError::Target(format!("{what} failed: {other}")),
    }
}
