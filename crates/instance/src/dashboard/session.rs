//! Logging in and out, and the session every other page needs.
//!
//! The admin token (the same one `/api/v1` takes, checked by the same
//! [`token_matches`]) buys a session: a random 256-bit id in a cookie that is
//! `HttpOnly` (no script reads it), `Secure`, `SameSite=Strict` (no other site's page
//! sends it) and `__Host-` (only this origin sets it). The store keeps only a hash of
//! the id, with its CSRF token and expiry, so several instance nodes sharing one
//! PostgreSQL accept one session, and a copy of the database lets nobody in.

use super::csrf;
use super::page::{DashError, Layout, form, render};
use crate::api::AppState;
use crate::auth::{hash_token, new_token, token_matches};
use crate::ecc::DashboardSessionRow;
use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use openmid_proto::time::now_ms;

/// The session cookie's name. `__Host-`: the browser takes it only when `Secure`,
/// without `Domain` and with `Path=/`.
pub(super) const COOKIE: &str = "__Host-openmid_session";

/// Where a request without a session is sent.
const LOGIN: &str = "/ui/login";

/// A logged-in request's session.
pub(super) struct Session {
    /// Hash of the session id (the store's key).
    pub id_hash: String,
    /// The token every state-changing form of this session must carry.
    pub csrf: String,
}

/// The session id the request's cookie carries, if any.
fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty())
}

/// How long after its last use a session ends.
fn idle_ms(state: &AppState) -> i64 {
    i64::try_from(state.config.dashboard_session_idle_ms).unwrap_or(i64::MAX / 2)
}

/// A session's expiry is written again only when it moved on by this much (a quarter
/// of the idle time, at most a minute): a page view is a read, not a write, mostly.
fn refresh_after(idle: i64) -> i64 {
    (idle / 4).min(60_000)
}

/// Sends a request without a live session to the login page. An htmx request (a
/// fragment refreshing itself) is told by `HX-Redirect`, so the whole page moves
/// rather than the login form landing inside a table.
fn to_login(parts: &Parts) -> Response {
    if parts.headers.contains_key("hx-request") {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut()
            .insert("hx-redirect", HeaderValue::from_static(LOGIN));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        return r;
    }
    Redirect::to(LOGIN).into_response()
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(id) = cookie_value(&parts.headers) else {
            return Err(to_login(parts));
        };
        let id_hash = hash_token(id);
        let now = now_ms();
        let store = state.dispatcher.store();
        let row = store
            .get_dashboard_session(&id_hash, now)
            .await
            .map_err(|e| DashError::from(e).into_response())?;
        let Some(row) = row else {
            return Err(to_login(parts));
        };
        // A fragment polling itself is not someone using the dashboard: only pages and
        // forms move the idle timeout on.
        let background = parts.headers.contains_key("hx-request") && parts.method == "GET";
        let idle = idle_ms(state);
        if !background && now + idle - row.expires_at >= refresh_after(idle) {
            store
                .touch_dashboard_session(&id_hash, now, now + idle)
                .await
                .map_err(|e| DashError::from(e).into_response())?;
        }
        Ok(Session {
            id_hash,
            csrf: row.csrf_token,
        })
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    layout: Layout,
    error: Option<String>,
}

/// `GET /ui/login`: the form (or, with a live session, on to the dashboard).
pub(super) async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_value(&headers)
        && let Ok(Some(_)) = state
            .dispatcher
            .store()
            .get_dashboard_session(&hash_token(id), now_ms())
            .await
    {
        return Redirect::to("/ui/mids").into_response();
    }
    login_form(StatusCode::OK, None)
}

fn login_form(status: StatusCode, error: Option<String>) -> Response {
    render(
        status,
        &LoginPage {
            layout: Layout::new("", None),
            error,
        },
    )
}

/// `POST /ui/login`: the admin token for a session. A wrong token is counted and
/// logged like a refused API call (peer and route, never the token).
pub(super) async fn login(State(state): State<AppState>, parts: Parts, body: Bytes) -> Response {
    if let Err(e) = csrf::check_origin(&parts.headers, &parts.uri) {
        return e.into_response();
    }
    let fields = form(&body);
    let token = fields.get("token").map(|t| t.trim()).unwrap_or("");
    if token.is_empty() {
        crate::api::record_auth_failure(&state, &parts.extensions, &parts.uri, "no admin token");
        return login_form(
            StatusCode::UNAUTHORIZED,
            Some("Enter the admin token.".into()),
        );
    }
    if !token_matches(token, &state.admin_token_hash) {
        crate::api::record_auth_failure(
            &state,
            &parts.extensions,
            &parts.uri,
            "invalid admin token",
        );
        return login_form(
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token.".into()),
        );
    }
    match start(&state).await {
        Ok(id) => {
            let mut r = Redirect::to("/ui/mids").into_response();
            r.headers_mut().insert(header::SET_COOKIE, set_cookie(&id));
            r
        }
        Err(e) => e.into_response(),
    }
}

/// Makes a session; returns its id (the cookie's value).
async fn start(state: &AppState) -> Result<String, DashError> {
    let store = state.dispatcher.store();
    let now = now_ms();
    // Expired sessions go at each login: cheap (indexed), and no sweeper is needed.
    store.purge_dashboard_sessions(now).await?;
    let id = new_token("omdsh_");
    store
        .insert_dashboard_session(&DashboardSessionRow {
            id_hash: hash_token(&id),
            csrf_token: new_token(""),
            created_at: now,
            last_seen_at: now,
            expires_at: now + idle_ms(state),
        })
        .await?;
    tracing::info!("dashboard session started");
    Ok(id)
}

fn set_cookie(id: &str) -> HeaderValue {
    // The id is base64url: nothing in it needs quoting.
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("__Host-openmid_session=; Path=/; Secure"))
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-openmid_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}

/// `POST /ui/logout`: ends the session in the store (so no node accepts it again)
/// and drops the cookie.
pub(super) async fn logout(
    State(state): State<AppState>,
    session: Session,
    parts: Parts,
    body: Bytes,
) -> Response {
    if let Err(e) = csrf::check(&session, &parts.headers, &parts.uri, &form(&body)) {
        return e.into_response();
    }
    if let Err(e) = state
        .dispatcher
        .store()
        .delete_dashboard_session(&session.id_hash)
        .await
    {
        return DashError::from(e).into_response();
    }
    tracing::info!("dashboard session ended");
    let mut r = Redirect::to(LOGIN).into_response();
    r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(cookie).expect("value"),
        );
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(
            cookie_value(&headers("a=1; __Host-openmid_session=omdsh_x ; b=2")),
            Some("omdsh_x")
        );
        assert_eq!(cookie_value(&headers("openmid_session=omdsh_x")), None);
        assert_eq!(cookie_value(&headers("__Host-openmid_session=")), None);
        assert_eq!(cookie_value(&HeaderMap::new()), None);
    }

    proptest! {
        #[test]
        fn any_cookie_header_parses_without_panic(s in "[ -~]{0,200}") {
            if let Ok(v) = HeaderValue::from_str(&s) {
                let mut h = HeaderMap::new();
                h.insert(header::COOKIE, v);
                let _ = cookie_value(&h);
            }
        }
    }
}
