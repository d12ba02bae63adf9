//! Cross-site request forgery: every state-changing form carries its session's CSRF
//! token (checked in constant time), and a request the browser says came from another
//! site (`Sec-Fetch-Site`, `Origin`) is refused before that. The session cookie is
//! `SameSite=Strict` too; each check stands without the others.

use super::page::DashError;
use super::session::Session;
use axum::http::{HeaderMap, Uri, header};
use std::collections::HashMap;

/// The form field carrying the token.
pub(super) const FIELD: &str = "csrf";

/// Refuses a request a browser marked as sent from another site. Requests without
/// these headers (scripts, old browsers) pass this check and are left to the token.
pub(super) fn check_origin(headers: &HeaderMap, uri: &Uri) -> Result<(), DashError> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !matches!(site, "same-origin" | "none") {
            return Err(DashError::Forbidden(format!(
                "refused: the browser says this form was sent from another site (Sec-Fetch-Site: {site})"
            )));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        // HTTP/1.1 names the host in `Host`, HTTP/2 in the URI's authority.
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        if !same_origin(origin, host) {
            return Err(DashError::Forbidden(
                "refused: this form was sent from another origin".into(),
            ));
        }
    }
    Ok(())
}

/// Whether `origin` (an `Origin` header) is `https://` this request's `Host`.
fn same_origin(origin: &str, host: &str) -> bool {
    !host.is_empty()
        && origin
            .strip_prefix("https://")
            .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// The origin check, then the form's token against the session's.
pub(super) fn check(
    session: &Session,
    headers: &HeaderMap,
    uri: &Uri,
    form: &HashMap<String, String>,
) -> Result<(), DashError> {
    check_origin(headers, uri)?;
    let given = form.get(FIELD).map(String::as_str).unwrap_or("");
    let matches = !given.is_empty()
        && aws_lc_rs::constant_time::verify_slices_are_equal(
            given.as_bytes(),
            session.csrf.as_bytes(),
        )
        .is_ok();
    if matches {
        Ok(())
    } else {
        Err(DashError::Forbidden(
            "refused: the form's CSRF token is missing or not this session's; reload the page and try again"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn u() -> Uri {
        Uri::from_static("/ui/logout")
    }

    fn check_origin_t(h: &HeaderMap) -> Result<(), DashError> {
        check_origin(h, &u())
    }

    fn with(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn other_sites_are_refused() {
        assert!(check_origin_t(&with(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(check_origin_t(&with(&[("sec-fetch-site", "same-site")])).is_err());
        assert!(
            check_origin_t(&with(&[
                ("origin", "https://evil.example"),
                ("host", "i:8443")
            ]))
            .is_err()
        );
        assert!(check_origin_t(&with(&[("origin", "null"), ("host", "i:8443")])).is_err());
        assert!(check_origin_t(&with(&[("origin", "http://i:8443"), ("host", "i:8443")])).is_err());
    }

    #[test]
    fn the_same_origin_passes() {
        assert!(check_origin(&HeaderMap::new(), &u()).is_ok());
        assert!(
            check_origin_t(&with(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://127.0.0.1:8443"),
                ("host", "127.0.0.1:8443"),
            ]))
            .is_ok()
        );
    }

    #[test]
    fn the_token_must_be_the_sessions() {
        let session = Session {
            id_hash: "h".into(),
            csrf: "right".into(),
        };
        let form = |v: &str| HashMap::from([(FIELD.to_string(), v.to_string())]);
        assert!(check(&session, &HeaderMap::new(), &u(), &form("right")).is_ok());
        assert!(check(&session, &HeaderMap::new(), &u(), &form("wrong")).is_err());
        assert!(check(&session, &HeaderMap::new(), &u(), &form("")).is_err());
        assert!(check(&session, &HeaderMap::new(), &u(), &HashMap::new()).is_err());
    }
}
