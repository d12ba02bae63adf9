//! The OAuth 2.0 token endpoint (client-credentials grant) and the form parsing it needs.

use super::*;

/// An OAuth error answer (RFC 6749 §5.2).
pub(super) fn oauth_error(
    status: StatusCode,
    error: &str,
    description: &str,
    challenge: bool,
) -> Response {
    let mut response = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if challenge
        && let Some(value) =
            basic_challenge(OAUTH_REALM).and_then(|c| HeaderValue::from_str(&c).ok())
    {
        headers.insert(WWW_AUTHENTICATE, value);
    }
    response
}

/// `POST /oauth/token`: the client credentials grant (RFC 6749 §4.4). Client
/// authentication by HTTP Basic with form-urlencoded id and secret (§2.3.1) or by the
/// `client_id`/`client_secret` body parameters, never both.
pub(super) async fn oauth_token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bad_request =
        |what: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", what, false);
    let form_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(media_type)
        .is_some_and(|t| t == "application/x-www-form-urlencoded");
    if !form_type {
        return bad_request("Content-Type must be application/x-www-form-urlencoded");
    }
    let Some(pairs) = parse_form(&body) else {
        return bad_request("malformed form body");
    };
    let mut form = HashMap::new();
    for (k, v) in pairs {
        if form.insert(k, v).is_some() {
            return bad_request("a parameter is repeated");
        }
    }
    let invalid_client = |what: &str, challenge| {
        oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", what, challenge)
    };
    let client_auth = if headers.contains_key(AUTHORIZATION) {
        if form.contains_key("client_secret") {
            return bad_request("more than one client authentication method");
        }
        let (id, secret) = match basic_credentials(&headers) {
            Ok(pair) => pair,
            Err(what) => return invalid_client(what, true),
        };
        // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
        let (Some(id), Some(secret)) = (form_decode(&id), form_decode(&secret)) else {
            return invalid_client("malformed client credentials", true);
        };
        let body_id_differs = form.get("client_id").is_some_and(|b| *b != id);
        if id != s.cfg.oauth_client_id || secret != s.cfg.oauth_client_secret || body_id_differs {
            return invalid_client("wrong client credentials", true);
        }
        "basic"
    } else {
        match (form.get("client_id"), form.get("client_secret")) {
            (Some(id), Some(secret)) => {
                if *id != s.cfg.oauth_client_id || *secret != s.cfg.oauth_client_secret {
                    return invalid_client("wrong client credentials", false);
                }
                "body"
            }
            _ => return invalid_client("no client authentication", true),
        }
    };
    match form.get("grant_type").map(String::as_str) {
        None => return bad_request("missing grant_type"),
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
                false,
            );
        }
    }
    let scope = form.get("scope").cloned();
    let token = random_hex();
    let expiry = Instant::now().checked_add(Duration::from_secs(s.cfg.oauth_expires_in_secs));
    lock(&s.tokens).insert(token.clone(), expiry);
    s.tokens_issued.fetch_add(1, Ordering::SeqCst);
    *lock(&s.last_token_request) = Some(TokenRequest {
        client_auth,
        scope: scope.clone(),
    });
    let mut answer = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": s.cfg.oauth_expires_in_secs,
    });
    if let (Some(scope), Some(map)) = (scope, answer.as_object_mut()) {
        map.insert("scope".into(), Value::String(scope));
    }
    let mut response = Json(answer).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The media type of a Content-Type value, lower-cased, without parameters.
pub(super) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
pub(super) fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The name/value pairs of a form body, in order.
pub(super) fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_decode(k)?, form_decode(v)?))
        })
        .collect()
}
