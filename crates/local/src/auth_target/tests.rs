//! Tests of the service, against it running on loopback.

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
    let (status, _, body) = get(c.get(t.url("/apikey-header")).header("X-API-Key", "wrong")).await;
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
    let (status, headers, body) = get(c.get(t.url("/bearer")).bearer_auth("canary-7f3a9")).await;
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
        let chain = vec![CertificateDer::from_pem_slice(t.client_cert_pem().as_bytes()).unwrap()];
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
