//! The routes that check one kind of authentication each, and their answers.

use super::*;

pub(super) fn success(kind: &str) -> Response {
    Json(json!({"ok": true, "auth": kind})).into_response()
}

/// 401 with `{"error": what}` and, when given, a `WWW-Authenticate` challenge.
pub(super) fn reject(what: &str, challenge: Option<String>) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, Json(json!({"error": what}))).into_response();
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

pub(super) fn basic_challenge(realm: &str) -> Option<String> {
    Some(format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
}

pub(super) fn bearer_challenge(error: Option<&str>) -> Option<String> {
    Some(match error {
        Some(e) => format!("Bearer realm=\"{REALM}\", error=\"{e}\""),
        None => format!("Bearer realm=\"{REALM}\""),
    })
}

/// The credentials after `scheme` in the Authorization header (scheme case-insensitive).
pub(super) fn authorization<'h>(
    headers: &'h HeaderMap,
    scheme: &str,
) -> Result<&'h str, &'static str> {
    let value = headers
        .get(AUTHORIZATION)
        .ok_or("missing Authorization header")?
        .to_str()
        .map_err(|_| "Authorization header is not ASCII")?;
    let (given, rest) = value
        .trim()
        .split_once(' ')
        .ok_or("malformed Authorization header")?;
    if !given.eq_ignore_ascii_case(scheme) {
        return Err("wrong Authorization scheme");
    }
    let rest = rest.trim();
    if rest.is_empty() {
        return Err("empty credentials in Authorization header");
    }
    Ok(rest)
}

/// User and password of a Basic Authorization header.
pub(super) fn basic_credentials(headers: &HeaderMap) -> Result<(String, String), &'static str> {
    let encoded = authorization(headers, "Basic")?;
    let decoded = BASE64
        .decode(encoded)
        .map_err(|_| "Basic credentials are not valid base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "Basic credentials are not UTF-8")?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or("Basic credentials lack the ':' separator")?;
    Ok((user.to_string(), password.to_string()))
}

pub(super) async fn basic(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match basic_credentials(&headers) {
        Ok((user, password)) if user == s.cfg.username && password == s.cfg.password => {
            success("basic")
        }
        Ok(_) => reject("wrong username or password", basic_challenge(REALM)),
        Err(what) => reject(what, basic_challenge(REALM)),
    }
}

pub(super) async fn redirect(Query(q): Query<HashMap<String, String>>) -> Response {
    let status = q
        .get("status")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::FOUND);
    let to = q.get("to").cloned().unwrap_or_else(|| "/".into());
    (status, [(axum::http::header::LOCATION, to)]).into_response()
}

pub(super) async fn apikey_header(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match headers.get("x-api-key").map(|v| v.as_bytes()) {
        None => reject("missing X-API-Key header", None),
        Some(key) if key == s.cfg.api_key.as_bytes() => success("api_key_header"),
        Some(_) => reject("wrong API key", None),
    }
}

pub(super) async fn apikey_query(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match q.get("api_key") {
        None => reject("missing api_key query parameter", None),
        Some(key) if *key == s.cfg.api_key => success("api_key_query"),
        Some(_) => reject("wrong API key", None),
    }
}

pub(super) async fn bearer(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match authorization(&headers, "Bearer") {
        Ok(token) if token == s.cfg.bearer_token => success("bearer"),
        Ok(_) => reject(
            "wrong bearer token",
            bearer_challenge(Some("invalid_token")),
        ),
        Err(what) => reject(what, bearer_challenge(None)),
    }
}

pub(super) async fn oauth_protected(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let token = match authorization(&headers, "Bearer") {
        Ok(token) => token,
        Err(what) => return reject(what, bearer_challenge(None)),
    };
    let mut tokens = lock(&s.tokens);
    match tokens.get(token).copied() {
        None => reject(
            "unknown access token",
            bearer_challenge(Some("invalid_token")),
        ),
        Some(Some(expiry)) if Instant::now() >= expiry => {
            tokens.remove(token);
            reject(
                "access token expired",
                bearer_challenge(Some("invalid_token")),
            )
        }
        Some(_) => success("oauth"),
    }
}

/// `GET /flaky?key=K&fail=N&retry_after=S`: 503 for the first N calls with key K.
pub(super) async fn flaky(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let bad = |what: &str| (StatusCode::BAD_REQUEST, Json(json!({"error": what}))).into_response();
    let Some(key) = q.get("key") else {
        return bad("missing key");
    };
    let Some(fail) = q.get("fail").and_then(|f| f.parse::<u64>().ok()) else {
        return bad("missing or non-numeric fail");
    };
    let retry_after = match q.get("retry_after").map(|r| HeaderValue::from_str(r)) {
        None => None,
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => return bad("retry_after is not a valid header value"),
    };
    let attempt = {
        let mut calls = lock(&s.flaky);
        let n = calls.entry(key.clone()).or_insert(0);
        *n += 1;
        *n
    };
    if attempt > fail {
        return Json(json!({"attempts": attempt})).into_response();
    }
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": format!("planned failure {attempt} of {fail}")})),
    )
        .into_response();
    if let Some(value) = retry_after {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

pub(super) async fn whoami(Extension(peer): Extension<PeerIdentity>) -> Response {
    Json(json!({
        "ok": true,
        "auth": "client_certificate",
        "subject_cn": peer.subject_cn,
    }))
    .into_response()
}
