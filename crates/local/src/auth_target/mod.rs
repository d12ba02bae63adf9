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
mod handlers;
mod mtls;
mod oauth;

use handlers::*;
use mtls::*;
use oauth::*;

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

#[cfg(test)]
mod tests;
