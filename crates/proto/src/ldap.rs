//! Payloads of the `LDAPProbe` topic: a search of a directory (OpenLDAP, Active
//! Directory, 389-DS …) inside the MID's network, its entries streamed back in pages,
//! or a bind test (bind, then ask the server who it takes us for).
//!
//! A directory import can be far larger than one message, so entries travel as pages:
//! each page is one chunk of the output's `rows` stream, its data one JSON line
//! holding an [`LdapPage`]. The result ([`LdapResponse`]) comes last with the counts
//! and the first page, so a small search needs no paging.
//!
//! A job re-run on another MID after some pages were stored continues after them
//! ([`LdapResume`]). The server's paging cookie belongs to the connection that got
//! it, so the search is run again and its first `rows_done` entries are skipped; the
//! DN of the last skipped one must be the last stored one, or the job fails rather
//! than duplicate or lose entries.

use crate::credential::CredentialRef;
use crate::probe::{FieldError, Target, field_error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Entries per page (and per paged-results request) unless the request says
/// otherwise.
pub const DEFAULT_PAGE_SIZE: u32 = 500;
/// Most entries a page may be asked to hold.
pub const MAX_PAGE_SIZE: u32 = 10_000;
/// Longest a job runs when the request gives no `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 300_000;
/// Longest `timeout_ms` a request may ask for.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// Largest filter.
pub const MAX_FILTER_BYTES: usize = 16 * 1024;
/// Deepest nesting of a filter's parentheses.
pub const MAX_FILTER_DEPTH: usize = 64;
/// Largest base DN (and `last_dn`).
pub const MAX_DN_BYTES: usize = 4096;
/// Most attribute names in `attributes` or `binary_attributes`.
pub const MAX_ATTRIBUTES: usize = 1000;
/// Largest `ca_pem`.
pub const MAX_CA_PEM_BYTES: usize = 256 * 1024;
/// Attributes whose values are always returned base64: they hold bytes, not text,
/// in the common schemas (Active Directory's GUID and SID, photos, certificates).
pub const BINARY_ATTRIBUTES: [&str; 6] = [
    "objectGUID",
    "objectSid",
    "jpegPhoto",
    "thumbnailPhoto",
    "userCertificate",
    "cACertificate",
];

/// What the job does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LdapOperation {
    /// Search `base` and stream the entries.
    #[default]
    Search,
    /// The bind test: bind with the credential (anonymously without one), then ask
    /// the server with the WhoAmI extended operation (RFC 4532) who we are.
    Bind,
}

/// How deep a search goes below `base`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LdapScope {
    /// The base entry only.
    Base,
    /// The base's direct children.
    One,
    /// The base and everything below it.
    #[default]
    Sub,
}

/// Input of an `LDAPProbe` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapRequest {
    /// `ldap://host[:389]` or `ldaps://host[:636]` (an IPv6 literal in brackets); no
    /// DN or query part. The host is resolved and checked by the MID's egress policy
    /// (`policy.ldap`).
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding (refused with
    /// `ldaps://`, which is TLS already).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub start_tls: bool,
    /// PEM CA certificates the server's certificate must chain to; default the
    /// system's roots. Over TLS the certificate and the host name are always checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// An `ldap_bind` credential (bind DN and password), sealed to the MID at claim
    /// time; none binds anonymously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<CredentialRef>,
    /// `search` (default) or `bind`.
    #[serde(default)]
    pub operation: LdapOperation,
    /// The search base DN (empty: the root DSE).
    #[serde(default)]
    pub base: String,
    /// Search scope (default `sub`).
    #[serde(default)]
    pub scope: LdapScope,
    /// The filter, RFC 4515 (default `(objectClass=*)`).
    #[serde(default = "default_filter")]
    pub filter: String,
    /// Attributes returned (empty: all user attributes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
    /// Attributes returned base64 beside [`BINARY_ATTRIBUTES`] and any with the
    /// `;binary` option; a value that is not UTF-8 is base64 whatever its attribute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binary_attributes: Vec<String>,
    /// Entries per page, asked of the server with the paged-results control (RFC
    /// 2696) too (default 500, at most 10 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// Stop after this many entries (counted over all attempts); the result is then
    /// `truncated` if there were more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u64>,
    /// A change marker (`modifyTimestamp`, `uSNChanged` …) whose highest value the
    /// probe tracks (`marker_max`), for an incremental run to start from. Values
    /// compare as integers when both are integers, else as strings (right for
    /// GeneralizedTime values of one format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_attribute: Option<String>,
    /// Longest the whole job may take (default 300 000, at most 24 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Where a re-run continues (filled by the instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<LdapResume>,
}

fn default_filter() -> String {
    "(objectClass=*)".to_string()
}

/// Where a re-run continues: what its earlier attempts stored. The search is run
/// again and its first `rows_done` entries are skipped; the last skipped one must
/// have DN `last_dn`, else the directory's order changed and the job fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapResume {
    /// The number of the first page this attempt sends.
    pub next_page: u64,
    /// Entries stored by the earlier attempts.
    pub rows_done: u64,
    /// DN of the last stored entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_dn: Option<String>,
    /// The highest marker value stored so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_max: Option<String>,
}

/// One directory entry. A single-valued attribute is a JSON string, a multi-valued
/// one an array of strings; binary values are base64 (standard, padded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapEntry {
    /// Its distinguished name.
    pub dn: String,
    /// Its attributes, by name as the server wrote it.
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// One page of entries: the data of one chunk of the `rows` stream, as one JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapPage {
    /// Its number, from 0, continued across attempts.
    pub page: u64,
    /// Index of its first entry in the whole result, from 0.
    pub first_row: u64,
    /// The entries.
    pub entries: Vec<LdapEntry>,
    /// The highest `marker_attribute` value so far, over the whole run (the last page
    /// carries the run's highest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_max: Option<String>,
}

/// Result of an `LDAPProbe` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LdapResponse {
    /// What was done.
    pub operation: LdapOperation,
    /// Entries read, over all attempts (a re-run's `rows_done` included).
    pub entries: u64,
    /// Pages sent, over all attempts (the next page number).
    pub pages: u64,
    /// The first page this attempt read, so a small search needs no paging; also
    /// sent as a page of the `rows` stream.
    pub first_page: Vec<LdapEntry>,
    /// The bind test: who the server says we are (WhoAmI's authorization id, e.g.
    /// `dn:cn=reader,dc=corp`; empty for anonymous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_as: Option<String>,
    /// The highest `marker_attribute` value seen over the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker_max: Option<String>,
    /// Reading stopped at `max_entries` and there were more.
    pub truncated: bool,
    /// Search references the server returned (not followed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrals: Vec<String>,
    /// When the attempt started, RFC 3339.
    pub started_at: String,
    /// How long it ran.
    pub duration_ms: u64,
}

/// A request's URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapUrl {
    /// `ldaps://`: TLS from the first byte.
    pub ldaps: bool,
    /// The host name or IP address (an IPv6 literal without brackets).
    pub host: String,
    /// The port (default 389, or 636 for `ldaps`).
    pub port: u16,
}

impl LdapRequest {
    /// Entries per page.
    pub fn page_size(&self) -> u32 {
        self.page_size.unwrap_or(DEFAULT_PAGE_SIZE)
    }

    /// The whole job's time limit.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }

    /// The URL, checked.
    pub fn parsed_url(&self) -> Result<LdapUrl, FieldError> {
        parse_url(&self.url)
    }

    /// Whether the connection is TLS (LDAPS or StartTLS).
    pub fn is_tls(&self) -> bool {
        self.start_tls || self.url.to_ascii_lowercase().starts_with("ldaps:")
    }

    /// Checks what can be checked without the server; errors name the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        let url = self.parsed_url()?;
        if self.start_tls && url.ldaps {
            return Err(field_error(
                "start_tls",
                "cannot be used with ldaps:// (already TLS): use ldap:// with start_tls, or ldaps:// alone",
            ));
        }
        if let Some(pem) = &self.ca_pem {
            if !self.is_tls() {
                return Err(field_error(
                    "ca_pem",
                    "is given but the connection is not TLS (use ldaps:// or start_tls)",
                ));
            }
            if pem.len() > MAX_CA_PEM_BYTES || !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(field_error(
                    "ca_pem",
                    format!("must be PEM certificates (at most {MAX_CA_PEM_BYTES} bytes)"),
                ));
            }
        }
        check_dn("base", &self.base)?;
        check_filter(&self.filter).map_err(|m| field_error("filter", m))?;
        check_attributes("attributes", &self.attributes, true)?;
        check_attributes("binary_attributes", &self.binary_attributes, false)?;
        if let Some(size) = self.page_size
            && !(1..=MAX_PAGE_SIZE).contains(&size)
        {
            return Err(field_error(
                "page_size",
                format!("must be 1–{MAX_PAGE_SIZE}, got {size}"),
            ));
        }
        if self.max_entries == Some(0) {
            return Err(field_error("max_entries", "must be at least 1"));
        }
        if let Some(marker) = &self.marker_attribute
            && !is_attribute_name(marker)
        {
            return Err(field_error(
                "marker_attribute",
                format!("`{marker}` is not an attribute name"),
            ));
        }
        if let Some(t) = self.timeout_ms
            && !(1..=MAX_TIMEOUT_MS).contains(&t)
        {
            return Err(field_error(
                "timeout_ms",
                format!("must be 1–{MAX_TIMEOUT_MS}, got {t}"),
            ));
        }
        if let Some(resume) = &self.resume {
            if self.operation == LdapOperation::Bind {
                return Err(field_error("resume", "a bind test is not resumed"));
            }
            match &resume.last_dn {
                None if resume.rows_done > 0 => {
                    return Err(field_error(
                        "resume.last_dn",
                        "is needed once entries were stored",
                    ));
                }
                Some(dn) => check_dn("resume.last_dn", dn)?,
                None => {}
            }
        }
        Ok(())
    }
}

/// Takes an LDAP URL apart: `ldap` or `ldaps`, a host, an optional port, nothing else.
pub fn parse_url(text: &str) -> Result<LdapUrl, FieldError> {
    let bad = |m: String| field_error("url", m);
    let url = url::Url::parse(text).map_err(|e| bad(format!("`{text}` is not a URL: {e}")))?;
    let ldaps = match url.scheme() {
        "ldap" => false,
        "ldaps" => true,
        other => {
            return Err(bad(format!(
                "scheme `{other}` is not allowed: use ldap or ldaps"
            )));
        }
    };
    let host = match url.host() {
        Some(url::Host::Domain(name)) if !name.is_empty() => name.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err(bad("has no host".into())),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "must not carry a user or password (use a credential)".into()
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "must be just scheme, host and port: the base, scope and filter are fields of their own"
                .into(),
        ));
    }
    let port = url.port().unwrap_or(if ldaps { 636 } else { 389 });
    if port == 0 {
        return Err(bad("port must be 1–65535".into()));
    }
    Ok(LdapUrl { ldaps, host, port })
}

fn check_dn(field: &str, dn: &str) -> Result<(), FieldError> {
    if dn.len() > MAX_DN_BYTES || dn.contains('\0') {
        return Err(field_error(
            field,
            format!("must be at most {MAX_DN_BYTES} bytes without NUL characters"),
        ));
    }
    Ok(())
}

/// Whether `name` is an attribute description: a name or OID with options
/// (`userCertificate;binary`).
pub fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b';'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

fn check_attributes(field: &str, names: &[String], selectors: bool) -> Result<(), FieldError> {
    if names.len() > MAX_ATTRIBUTES {
        return Err(field_error(
            field,
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    for (i, name) in names.iter().enumerate() {
        // `*` (all user attributes), `+` (operational ones) and `1.1` (none) select.
        let selector = selectors && matches!(name.as_str(), "*" | "+");
        if !selector && !is_attribute_name(name) {
            return Err(field_error(
                &format!("{field}[{i}]"),
                format!("`{name}` is not an attribute name"),
            ));
        }
    }
    Ok(())
}

/// Checks a filter's outline: one parenthesised filter, parentheses balanced (a
/// parenthesis inside a value is written `\28`/`\29`, RFC 4515), not too deep or
/// long, no NUL. The server checks the rest and says what it refuses.
pub fn check_filter(filter: &str) -> Result<(), String> {
    if filter.len() > MAX_FILTER_BYTES || filter.contains('\0') {
        return Err(format!(
            "must be at most {MAX_FILTER_BYTES} bytes without NUL characters"
        ));
    }
    let text = filter.trim();
    if !text.starts_with('(') {
        return Err("must start with `(`, e.g. `(objectClass=person)`".into());
    }
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => {
                depth += 1;
                if depth > MAX_FILTER_DEPTH {
                    return Err(format!("nests deeper than {MAX_FILTER_DEPTH} levels"));
                }
            }
            ')' => {
                if depth == 0 {
                    return Err(format!("has an unmatched `)` at byte {i}"));
                }
                depth -= 1;
                if depth == 0 && i + 1 != text.len() {
                    return Err(format!(
                        "has text after its closing `)` at byte {i} (combine filters with `(&…)` or `(|…)`)"
                    ));
                }
            }
            _ => {}
        }
    }
    if depth > 0 {
        return Err(format!("has {depth} unclosed `(`"));
    }
    if text.contains("()") {
        return Err("has an empty `()`".into());
    }
    Ok(())
}

/// Whether `a` is a higher marker value than `b`: as integers when both are integers
/// (`uSNChanged`), else as strings (GeneralizedTime of one format sorts as text).
pub fn marker_greater(a: &str, b: &str) -> bool {
    match (a.parse::<i128>(), b.parse::<i128>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => a > b,
    }
}

/// The `LDAPProbe` topic.
pub struct Ldap;

impl crate::probe::Contract for Ldap {
    const TOPIC: crate::ecc::Topic = crate::ecc::Topic::LDAPProbe;
    type Request = LdapRequest;
    type Response = LdapResponse;

    fn validate(req: &LdapRequest) -> Result<(), FieldError> {
        req.validate()
    }

    fn target(req: &LdapRequest) -> Option<Target> {
        let url = req.parsed_url().ok()?;
        Some(Target {
            host: url.host,
            port: Some(url.port),
        })
    }

    fn credential(req: &LdapRequest) -> Option<&CredentialRef> {
        req.credential.as_ref()
    }

    /// Always bounded: the default applies when the request gives none.
    fn timeout(req: &LdapRequest) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(req.timeout_ms()))
    }

    /// A search that moved to another MID continues after the last page the
    /// instance stored, by re-running it and skipping the entries stored.
    const RESUMES: bool = true;

    fn resume(req: &mut LdapRequest, last: &[u8]) -> Result<(), FieldError> {
        let page: LdapPage = serde_json::from_slice(last).map_err(|e| {
            field_error(
                "resume",
                format!("the last stored page does not parse: {e}"),
            )
        })?;
        let rows_done = page.first_row + page.entries.len() as u64;
        let last_dn = page.entries.last().map(|e| e.dn.clone());
        if rows_done > 0 && last_dn.is_none() {
            return Err(field_error(
                "resume",
                "the last stored page has no entry to continue after",
            ));
        }
        req.resume = Some(LdapResume {
            next_page: page.page + 1,
            rows_done,
            last_dn,
            marker_max: page.marker_max,
        });
        Ok(())
    }
}

/// `POST /api/v1/actions/ldap`: a search (or bind test) run by a MID against the
/// directory of an alias of kind `ldap`. Entries stream back in pages while it runs
/// (`GET /api/v1/actions/{id}/output`, stream `rows`); the result holds the counts and
/// the first page.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapAction {
    /// The alias (kind `ldap`).
    pub alias: String,
    /// `search` (default) or `bind` (the bind test).
    #[serde(default)]
    pub operation: LdapOperation,
    /// The search base (default: the alias's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Search scope (default `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<LdapScope>,
    /// The filter (default `(objectClass=*)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Attributes returned (default all user attributes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
    /// Further attributes returned base64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binary_attributes: Vec<String>,
    /// Entries per page (default 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// Stop after this many entries (the result says `truncated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u64>,
    /// Longest run in milliseconds (default: the alias's `timeout_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Never run it twice: after a lost MID it ends in `error` instead.
    #[serde(default)]
    pub at_most_once: bool,
    /// Caller's correlator for the output record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlator: Option<String>,
}

#[cfg(test)]
mod tests;
