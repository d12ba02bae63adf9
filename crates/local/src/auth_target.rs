//! A loopback service that checks credentials the way real APIs do, so the MID's REST
//! probe can be tested against each auth type: Basic, API key (header and query),
//! static Bearer, OAuth 2.0 client credentials, and a mutual-TLS listener with its own CA.
//! Wrong credentials are rejected with 401 and a message that never echoes the secret,
//! so tests can also check that canary secrets do not leak anywhere.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Realm named in `WWW-Authenticate` challenges of the protected routes.
const REALM: &str = "openmid-test";
/// Realm of the token endpoint's client authentication challenge.
const OAUTH_REALM: &str = "openmid-test-oauth";
/// Common name of the client certificate the service issues.
pub const CLIENT_CERT_CN: &str = "openmid-test-client";
/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The credentials the service accepts. Each field is what the matching route checks.
#[derive(Clone)]
pub struct AuthTargetConfig {
    /// Basic auth user name (`GET /basic`).
    pub username: String,
    /// Basic auth password (`GET /basic`).
    pub password: String,
    /// API key (`GET /apikey-header`, `GET /apikey-query`).
    pub api_key: String,
    /// Static bearer token (`GET /bearer`).
    pub bearer_token: String,
    /// OAuth client id (`POST /oauth/token`).
    pub oauth_client_id: String,
    /// OAuth client secret (`POST /oauth/token`).
    pub oauth_client_secret: String,
    /// Lifetime of issued access tokens, in seconds (0: expired at once).
    pub oauth_expires_in_secs: u64,
}

impl AuthTargetConfig {
    /// Fresh random credentials (unreserved characters only, so form-urlencoding leaves
    /// them unchanged), usable as canaries: each value occurs nowhere else.
    /// Tokens live one hour.
    pub fn random() -> Self {
        Self {
            username: format!("user-{}", &random_hex()[..16]),
            password: format!("pass-{}", random_hex()),
            api_key: format!("key-{}", random_hex()),
            bearer_token: format!("bearer-{}", random_hex()),
            oauth_client_id: format!("client-{}", &random_hex()[..16]),
            oauth_client_secret: format!("csecret-{}", random_hex()),
            oauth_expires_in_secs: 3600,
        }
    }
}

/// What the last successful token request looked like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// How the client authenticated: `"basic"` (Authorization header) or `"body"`
    /// (`client_id`/`client_secret` form parameters).
    pub client_auth: &'static str,
    /// The `scope` parameter, if sent.
    pub scope: Option<String>,
}

/// A running auth target: a plain HTTP listener with the credential routes and an
/// HTTPS listener that requires a client certificate.
pub struct AuthTarget {
    /// Plain HTTP address (127.0.0.1:port).
    pub addr: SocketAddr,
    /// Mutual-TLS address (127.0.0.1:port).
    pub tls_addr: SocketAddr,
    shared: Arc<Shared>,
    pki: Pki,
    shutdown: CancellationToken,
}

struct Shared {
    cfg: AuthTargetConfig,
    /// Issued access tokens and when they expire (`None`: never, the lifetime overflowed).
    tokens: Mutex<HashMap<String, Option<Instant>>>,
    tokens_issued: AtomicU64,
    last_token_request: Mutex<Option<TokenRequest>>,
    flaky: Mutex<HashMap<String, u64>>,
    tls_refused: AtomicU64,
}

struct Pki {
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    server_config: Arc<rustls::ServerConfig>,
}

/// The verified client certificate of a mutual-TLS connection.
#[derive(Clone)]
struct PeerIdentity {
    subject_cn: Option<String>,
}

impl AuthTarget {
    /// Starts both listeners on 127.0.0.1 with free ports. Plain HTTP routes:
    /// `GET /basic`, `GET /apikey-header` (`X-API-Key`), `GET /apikey-query`
    /// (`?api_key=`), `GET /bearer`, `POST /oauth/token` (client credentials grant),
    /// `GET /oauth-protected` (a token from `/oauth/token`), and
    /// `GET /flaky?key=K&fail=N[&retry_after=S]` (503 for the first N calls with key K),
    /// `GET /redirect?to=URL[&status=N]` (a redirect, 302 unless told, to `URL`).
    /// HTTPS route: `GET /whoami` (only with a client certificate signed by
    /// [`ca_pem`](Self::ca_pem)).
    pub async fn start(cfg: AuthTargetConfig) -> std::io::Result<Self> {
        let pki = make_pki().map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            cfg,
            tokens: Mutex::new(HashMap::new()),
            tokens_issued: AtomicU64::new(0),
            last_token_request: Mutex::new(None),
            flaky: Mutex::new(HashMap::new()),
            tls_refused: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let tls_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let tls_addr = tls_listener.local_addr()?;
        let shutdown = CancellationToken::new();

        let app = Router::new()
            .route("/basic", get(basic))
            .route("/apikey-header", get(apikey_header))
            .route("/apikey-query", get(apikey_query))
            .route("/bearer", get(bearer))
            .route("/oauth/token", post(oauth_token))
            .route("/oauth-protected", get(oauth_protected))
            .route("/flaky", get(flaky))
            .route("/redirect", get(redirect))
            .with_state(shared.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "auth target failed");
            }
        });

        let tls_app = Router::new().route("/whoami", get(whoami));
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config.clone());
        tokio::spawn(serve_mutual_tls(
            tls_listener,
            acceptor,
            tls_app,
            shared.clone(),
            shutdown.clone(),
        ));
        Ok(Self {
            addr,
            tls_addr,
            shared,
            pki,
            shutdown,
        })
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `https://127.0.0.1:PORT` + `path` (the mutual-TLS listener).
    pub fn tls_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.tls_addr)
    }

    /// PEM of the service's own CA: trust it to reach the HTTPS listener.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// PEM of the client certificate (CN `openmid-test-client`) signed by the CA.
    pub fn client_cert_pem(&self) -> &str {
        &self.pki.client_cert_pem
    }

    /// PEM (PKCS#8) of the client certificate's private key.
    pub fn client_key_pem(&self) -> &str {
        &self.pki.client_key_pem
    }

    /// The credentials the service accepts.
    pub fn config(&self) -> &AuthTargetConfig {
        &self.shared.cfg
    }

    /// Access tokens issued by `POST /oauth/token` so far.
    pub fn tokens_issued(&self) -> u64 {
        self.shared.tokens_issued.load(Ordering::SeqCst)
    }

    /// The last successful token request.
    pub fn last_token_request(&self) -> Option<TokenRequest> {
        lock(&self.shared.last_token_request).clone()
    }

    /// Forgets all issued access tokens, so `/oauth-protected` rejects them (to test
    /// that a client fetches a new token after a 401).
    pub fn revoke_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// Calls of `GET /flaky` with `key` so far.
    pub fn calls(&self, key: &str) -> u64 {
        lock(&self.shared.flaky).get(key).copied().unwrap_or(0)
    }

    /// Connections to the HTTPS listener whose TLS handshake failed (no or a bad client
    /// certificate, or a client that does not trust the CA).
    pub fn tls_handshakes_refused(&self) -> u64 {
        self.shared.tls_refused.load(Ordering::SeqCst)
    }

    /// Stops both listeners.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for AuthTarget {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn random_hex() -> String {
    openmid_proto::secret::random_32()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn success(kind: &str) -> Response {
    Json(json!({"ok": true, "auth": kind})).into_response()
}

/// 401 with `{"error": what}` and, when given, a `WWW-Authenticate` challenge.
fn reject(what: &str, challenge: Option<String>) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, Json(json!({"error": what}))).into_response();
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

fn basic_challenge(realm: &str) -> Option<String> {
    Some(format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
}

fn bearer_challenge(error: Option<&str>) -> Option<String> {
    Some(match error {
        Some(e) => format!("Bearer realm=\"{REALM}\", error=\"{e}\""),
        None => format!("Bearer realm=\"{REALM}\""),
    })
}

/// The credentials after `scheme` in the Authorization header (scheme case-insensitive).
fn authorization<'h>(headers: &'h HeaderMap, scheme: &str) -> Result<&'h str, &'static str> {
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
fn basic_credentials(headers: &HeaderMap) -> Result<(String, String), &'static str> {
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

async fn basic(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match basic_credentials(&headers) {
        Ok((user, password)) if user == s.cfg.username && password == s.cfg.password => {
            success("basic")
        }
        Ok(_) => reject("wrong username or password", basic_challenge(REALM)),
        Err(what) => reject(what, basic_challenge(REALM)),
    }
}

async fn redirect(Query(q): Query<HashMap<String, String>>) -> Response {
    let status = q
        .get("status")
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::FOUND);
    let to = q.get("to").cloned().unwrap_or_else(|| "/".into());
    (status, [(axum::http::header::LOCATION, to)]).into_response()
}

async fn apikey_header(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match headers.get("x-api-key").map(|v| v.as_bytes()) {
        None => reject("missing X-API-Key header", None),
        Some(key) if key == s.cfg.api_key.as_bytes() => success("api_key_header"),
        Some(_) => reject("wrong API key", None),
    }
}

async fn apikey_query(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match q.get("api_key") {
        None => reject("missing api_key query parameter", None),
        Some(key) if *key == s.cfg.api_key => success("api_key_query"),
        Some(_) => reject("wrong API key", None),
    }
}

async fn bearer(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match authorization(&headers, "Bearer") {
        Ok(token) if token == s.cfg.bearer_token => success("bearer"),
        Ok(_) => reject(
            "wrong bearer token",
            bearer_challenge(Some("invalid_token")),
        ),
        Err(what) => reject(what, bearer_challenge(None)),
    }
}

async fn oauth_protected(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
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

/// An OAuth error answer (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str, challenge: bool) -> Response {
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
async fn oauth_token(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
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

/// `GET /flaky?key=K&fail=N&retry_after=S`: 503 for the first N calls with key K.
async fn flaky(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
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

async fn whoami(Extension(peer): Extension<PeerIdentity>) -> Response {
    Json(json!({
        "ok": true,
        "auth": "client_certificate",
        "subject_cn": peer.subject_cn,
    }))
    .into_response()
}

/// The media type of a Content-Type value, lower-cased, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space).
fn form_decode(s: &str) -> Option<String> {
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
fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
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

/// Makes the CA, the server certificate (127.0.0.1, localhost) and the client
/// certificate, and a server config that requires a client certificate from the CA.
fn make_pki() -> Result<Pki, Box<dyn std::error::Error + Send + Sync>> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "openmid test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let server_key = KeyPair::generate()?;
    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "openmid test server");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params.signed_by(&server_key, &ca)?;

    let client_key = KeyPair::generate()?;
    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, CLIENT_CERT_CN);
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &ca)?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let chain: Vec<CertificateDer<'static>> = vec![server_cert.der().clone(), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Pki {
        ca_pem: ca.pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
        server_config: Arc::new(config),
    })
}

/// The subject CN of a DER certificate.
fn subject_cn(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// Accepts TLS connections (rustls has verified the client certificate by the time the
/// handshake completes) and serves `app` on each with the peer's identity as an
/// extension. Served by hand rather than by axum-server so the handler can see the
/// certificate of its own connection.
async fn serve_mutual_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let tcp = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "auth target: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, app, shared, stop) =
            (acceptor.clone(), app.clone(), shared.clone(), stop.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    shared.tls_refused.fetch_add(1, Ordering::SeqCst);
                    tracing::debug!(error = %e, "auth target: TLS handshake refused");
                    return;
                }
                Err(_) => {
                    shared.tls_refused.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            };
            let peer = PeerIdentity {
                subject_cn: tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first())
                    .and_then(subject_cn),
            };
            let service = hyper_util::service::TowerToHyperService::new(app.layer(Extension(peer)));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "auth target: TLS connection ended");
                    }
                }
                _ = stop.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    async fn target() -> AuthTarget {
        AuthTarget::start(AuthTargetConfig::random())
            .await
            .expect("start")
    }

    async fn get(req: reqwest::RequestBuilder) -> (u16, HeaderMap, Value) {
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json::<Value>().await.expect("json body");
        (status, headers, body)
    }

    #[tokio::test]
    async fn basic_accepts_right_and_rejects_wrong() {
        let t = target().await;
        let c = reqwest::Client::new();
        let cfg = t.config().clone();
        let (status, _, body) = get(c
            .get(t.url("/basic"))
            .basic_auth(&cfg.username, Some(&cfg.password)))
        .await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"ok": true, "auth": "basic"}));

        let (status, headers, body) = get(c
            .get(t.url("/basic"))
            .basic_auth(&cfg.username, Some("nope")))
        .await;
        assert_eq!(status, 401);
        assert!(
            headers[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        assert!(!body.to_string().contains(&cfg.password));

        let (status, _, _) = get(c.get(t.url("/basic"))).await;
        assert_eq!(status, 401);
        let (status, _, _) = get(c.get(t.url("/basic")).bearer_auth(&cfg.password)).await;
        assert_eq!(status, 401);
    }

    #[tokio::test]
    async fn api_keys_and_bearer() {
        let t = target().await;
        let c = reqwest::Client::new();
        let cfg = t.config().clone();
        let (status, _, body) = get(c
            .get(t.url("/apikey-header"))
            .header("X-API-Key", &cfg.api_key))
        .await;
        assert_eq!(
            (status, body["auth"].as_str()),
            (200, Some("api_key_header"))
        );
        let (status, _, body) =
            get(c.get(t.url("/apikey-header")).header("X-API-Key", "wrong")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("wrong API key"))
        );
        let (status, _, _) = get(c.get(t.url("/apikey-header"))).await;
        assert_eq!(status, 401);

        let (status, _, body) =
            get(c.get(t.url(&format!("/apikey-query?api_key={}", cfg.api_key)))).await;
        assert_eq!(
            (status, body["auth"].as_str()),
            (200, Some("api_key_query"))
        );
        let (status, _, _) = get(c.get(t.url("/apikey-query?api_key=wrong"))).await;
        assert_eq!(status, 401);

        let (status, _, body) = get(c.get(t.url("/bearer")).bearer_auth(&cfg.bearer_token)).await;
        assert_eq!((status, body["auth"].as_str()), (200, Some("bearer")));
        let (status, headers, body) =
            get(c.get(t.url("/bearer")).bearer_auth("canary-7f3a9")).await;
        assert_eq!(status, 401);
        assert!(
            headers[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        assert!(!body.to_string().contains("canary-7f3a9"));
    }

    #[tokio::test]
    async fn oauth_client_credentials_flow() {
        let t = target().await;
        let c = reqwest::Client::new();
        let cfg = t.config().clone();
        let form = |extra: &[(&str, &str)]| {
            let mut pairs = vec![("grant_type", "client_credentials")];
            pairs.extend_from_slice(extra);
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        };
        let post = |body: String| {
            c.post(t.url("/oauth/token"))
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
        };

        // Client authentication in the Authorization header.
        let (status, headers, body) = get(post(form(&[("scope", "read write")]))
            .basic_auth(&cfg.oauth_client_id, Some(&cfg.oauth_client_secret)))
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "read write");
        let token = body["access_token"].as_str().unwrap().to_string();
        assert_eq!(t.tokens_issued(), 1);
        assert_eq!(
            t.last_token_request(),
            Some(TokenRequest {
                client_auth: "basic",
                scope: Some("read write".into())
            })
        );
        let (status, _, body) = get(c.get(t.url("/oauth-protected")).bearer_auth(&token)).await;
        assert_eq!((status, body["auth"].as_str()), (200, Some("oauth")));

        // Client authentication in the body.
        let (status, _, body) = get(post(form(&[
            ("client_id", &cfg.oauth_client_id),
            ("client_secret", &cfg.oauth_client_secret),
        ])))
        .await;
        assert_eq!(status, 200);
        assert!(body.get("scope").is_none());
        assert_eq!(t.tokens_issued(), 2);

        // Wrong client, wrong grant, both methods at once.
        let (status, headers, body) =
            get(post(form(&[])).basic_auth(&cfg.oauth_client_id, Some("wrong"))).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
        assert!(headers.contains_key(WWW_AUTHENTICATE));
        let (status, _, body) = get(post(form(&[
            ("client_id", &cfg.oauth_client_id),
            ("client_secret", "wrong"),
        ])))
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
        let (status, _, body) = get(
            post("grant_type=password&username=a&password=b".to_string())
                .basic_auth(&cfg.oauth_client_id, Some(&cfg.oauth_client_secret)),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unsupported_grant_type"))
        );
        let (status, _, body) = get(post(form(&[("client_secret", &cfg.oauth_client_secret)]))
            .basic_auth(&cfg.oauth_client_id, Some(&cfg.oauth_client_secret)))
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request"))
        );
        assert_eq!(t.tokens_issued(), 2);

        // Unknown and revoked tokens.
        let (status, _, _) = get(c.get(t.url("/oauth-protected")).bearer_auth("made-up")).await;
        assert_eq!(status, 401);
        t.revoke_tokens();
        let (status, headers, _) = get(c.get(t.url("/oauth-protected")).bearer_auth(&token)).await;
        assert_eq!(status, 401);
        assert!(
            headers[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }

    #[tokio::test]
    async fn oauth_tokens_expire() {
        let t = AuthTarget::start(AuthTargetConfig {
            oauth_expires_in_secs: 0,
            ..AuthTargetConfig::random()
        })
        .await
        .expect("start");
        let c = reqwest::Client::new();
        let cfg = t.config().clone();
        let (status, _, body) = get(c
            .post(t.url("/oauth/token"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .basic_auth(&cfg.oauth_client_id, Some(&cfg.oauth_client_secret))
            .body("grant_type=client_credentials"))
        .await;
        assert_eq!(status, 200);
        let token = body["access_token"].as_str().unwrap();
        let (status, _, body) = get(c.get(t.url("/oauth-protected")).bearer_auth(token)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("access token expired"))
        );
    }

    #[tokio::test]
    async fn flaky_fails_then_succeeds() {
        let t = target().await;
        let c = reqwest::Client::new();
        for attempt in 1..=2 {
            let resp = c
                .get(t.url("/flaky?key=a&fail=2&retry_after=3"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 503, "attempt {attempt}");
            assert_eq!(resp.headers()[RETRY_AFTER], "3");
        }
        let (status, _, body) = get(c.get(t.url("/flaky?key=a&fail=2&retry_after=3"))).await;
        assert_eq!((status, body["attempts"].as_u64()), (200, Some(3)));
        assert_eq!(t.calls("a"), 3);

        let resp = c.get(t.url("/flaky?key=b&fail=1")).send().await.unwrap();
        assert_eq!(resp.status(), 503);
        assert!(!resp.headers().contains_key(RETRY_AFTER));
        assert_eq!(t.calls("b"), 1);
        assert_eq!(t.calls("c"), 0);
    }

    fn tls_client(t: &AuthTarget, with_cert: bool) -> reqwest::Client {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(t.ca_pem().as_bytes()).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = if with_cert {
            let chain =
                vec![CertificateDer::from_pem_slice(t.client_cert_pem().as_bytes()).unwrap()];
            let key = PrivateKeyDer::from_pem_slice(t.client_key_pem().as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn mutual_tls_needs_the_client_certificate() {
        let t = target().await;
        let (status, _, body) = get(tls_client(&t, true).get(t.tls_url("/whoami"))).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            json!({"ok": true, "auth": "client_certificate", "subject_cn": CLIENT_CERT_CN})
        );
        assert_eq!(t.tls_handshakes_refused(), 0);

        let refused = tls_client(&t, false).get(t.tls_url("/whoami")).send().await;
        assert!(refused.is_err(), "{refused:?}");
        assert!(
            crate::wait_until(Duration::from_secs(5), || async {
                t.tls_handshakes_refused() == 1
            })
            .await
        );
    }
}
