//! Connection & Credential aliases end to end: a real instance, a real MID and real
//! target services on loopback — one that checks every auth type (and an OAuth 2.0
//! token endpoint, and a mutual-TLS listener), and a SOAP 1.1/1.2 service with a WSDL.

use openmid_client::{ActionOutcome, ApiClient, ClientError};
use openmid_mid::RunningMid;
use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::{ActionResult, NewCredential, RestAction, SoapAction};
use openmid_proto::credential::{
    ClientAuth, CredentialSpec, KeyPlacement, LocalSecret, REDACTED, SecretValue,
};
use openmid_proto::ecc::State;
use openmid_proto::mid::MidStatus;
use openmid_proto::rest::{RestResponse, RetryMode, RetryPolicy};
use openmid_proto::soap::{SoapResponse, SoapVersion};
use openmid_testkit::auth_target::CLIENT_CERT_CN;
use openmid_testkit::{AuthTarget, AuthTargetConfig, SoapService, TestInstance, loopback_any_port};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

pub const MID: &str = "mid-conn";

pub struct Rig {
    pub instance: TestInstance,
    pub mid: RunningMid,
    pub secrets_dir: std::path::PathBuf,
    pub dir: tempfile::TempDir,
}

impl Rig {
    /// An instance and one auto-validated MID that may read local secrets from
    /// `secrets_dir`.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let instance =
            TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
                .await
                .expect("instance");
        let secrets_dir = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets_dir).expect("secrets dir");
        let token = instance.auto_validating_token().await.expect("token");
        let mut config = instance.mid_config(MID, &dir.path().join("mid"), Some(token));
        config.local_secrets.dirs = vec![secrets_dir.clone()];
        let mut mid = openmid_mid::start(config).await.expect("MID starts");
        assert!(
            mid.wait_for_status(MidStatus::Up, Duration::from_secs(20))
                .await,
            "MID is up"
        );
        Self {
            instance,
            mid,
            secrets_dir,
            dir,
        }
    }

    pub fn api(&self) -> &ApiClient {
        &self.instance.api
    }

    pub async fn stop(self) {
        self.mid.shutdown().await.expect("MID stops");
        self.instance.shutdown().await;
    }
}

pub fn credential(name: &str, spec: CredentialSpec) -> NewCredential {
    NewCredential {
        name: name.into(),
        description: None,
        spec,
    }
}

pub fn http_alias(name: &str, base_url: &str, credential: Option<&str>) -> Alias {
    Alias {
        name: name.into(),
        description: None,
        kind: ConnectionKind::Http,
        base_url: base_url.into(),
        headers: Default::default(),
        timeout_ms: Some(10_000),
        retry: RetryPolicy::default(),
        credential: credential.map(str::to_string),
        execution: Execution {
            mid: Some(MID.into()),
            ..Execution::default()
        },
        soap_version: None,
        wsdl: None,
        ca_pem: None,
        host_key: None,
        pool_size: None,
        tls: None,
        options: Default::default(),
        durability: None,
    }
}

pub async fn rest(api: &ApiClient, action: &RestAction) -> ActionResult<RestResponse> {
    match api
        .rest_action(action, Duration::from_secs(30))
        .await
        .expect("action accepted")
    {
        ActionOutcome::Done(r) => *r,
        ActionOutcome::Pending(p) => panic!("not finished in 30 s: {p:?}"),
    }
}

pub async fn soap(api: &ApiClient, action: &SoapAction) -> ActionResult<SoapResponse> {
    match api
        .soap_action(action, Duration::from_secs(30))
        .await
        .expect("action accepted")
    {
        ActionOutcome::Done(r) => *r,
        ActionOutcome::Pending(p) => panic!("not finished in 30 s: {p:?}"),
    }
}

fn status_and_body(r: &ActionResult<RestResponse>) -> (u16, serde_json::Value) {
    let resp = r
        .response
        .as_ref()
        .unwrap_or_else(|| panic!("a response, got error {:?}", r.error));
    let body = serde_json::from_str(resp.body.as_deref().unwrap_or("null")).unwrap_or_default();
    (resp.status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_type_reaches_the_target_and_wrong_credentials_are_refused() {
    let rig = Rig::start().await;
    let api = rig.api();
    let target = AuthTarget::start(AuthTargetConfig::random())
        .await
        .expect("auth target");
    let cfg = target.config().clone();
    let base = target.url("");
    let cases: Vec<(&str, CredentialSpec, &str, &str)> = vec![
        (
            "basic",
            CredentialSpec::Basic {
                username: cfg.username.clone(),
                password: SecretValue::stored(&cfg.password),
            },
            "/basic",
            "basic",
        ),
        (
            "key-header",
            CredentialSpec::ApiKey {
                key_name: "X-API-Key".into(),
                placement: KeyPlacement::Header,
                key: SecretValue::stored(&cfg.api_key),
            },
            "/apikey-header",
            "api_key_header",
        ),
        (
            "key-query",
            CredentialSpec::ApiKey {
                key_name: "api_key".into(),
                placement: KeyPlacement::Query,
                key: SecretValue::stored(&cfg.api_key),
            },
            "/apikey-query",
            "api_key_query",
        ),
        (
            "bearer",
            CredentialSpec::Bearer {
                token: SecretValue::stored(&cfg.bearer_token),
            },
            "/bearer",
            "bearer",
        ),
        (
            "oauth-basic",
            CredentialSpec::Oauth2ClientCredentials {
                token_url: target.url("/oauth/token"),
                client_id: cfg.oauth_client_id.clone(),
                client_secret: SecretValue::stored(&cfg.oauth_client_secret),
                scope: Some("read".into()),
                audience: None,
                client_auth: ClientAuth::Basic,
            },
            "/oauth-protected",
            "oauth",
        ),
    ];
    for (name, spec, path, auth) in &cases {
        api.create_credential(&credential(name, spec.clone()))
            .await
            .expect("credential created");
        api.create_alias(&http_alias(name, &base, Some(name)))
            .await
            .expect("alias created");
        let r = rest(api, &RestAction::via(*name, *path)).await;
        assert_eq!(r.state, State::Processed, "{name}: {:?}", r.error);
        let (status, body) = status_and_body(&r);
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["auth"], *auth, "{name}");
    }

    // Wrong secrets are sent, and refused by the target, not papered over.
    for (name, spec) in [
        (
            "basic",
            CredentialSpec::Basic {
                username: cfg.username.clone(),
                password: SecretValue::stored("wrong-password"),
            },
        ),
        (
            "bearer",
            CredentialSpec::Bearer {
                token: SecretValue::stored("wrong-token"),
            },
        ),
    ] {
        api.put_credential(&credential(name, spec))
            .await
            .expect("credential changed");
        let path = if name == "basic" { "/basic" } else { "/bearer" };
        let r = rest(api, &RestAction::via(name, path)).await;
        assert_eq!(status_and_body(&r).0, 401, "{name} with a wrong secret");
    }
    // No credential at all: refused.
    api.create_alias(&http_alias("anonymous", &base, None))
        .await
        .expect("alias");
    let r = rest(api, &RestAction::via("anonymous", "/basic")).await;
    assert_eq!(status_and_body(&r).0, 401);

    // OAuth: one token serves many calls; a revoked token is replaced once.
    let before = target.tokens_issued();
    for _ in 0..5 {
        let r = rest(api, &RestAction::via("oauth-basic", "/oauth-protected")).await;
        assert_eq!(status_and_body(&r).0, 200);
    }
    assert_eq!(target.tokens_issued(), before, "the cached token is reused");
    target.revoke_tokens();
    let r = rest(api, &RestAction::via("oauth-basic", "/oauth-protected")).await;
    assert_eq!(status_and_body(&r).0, 200, "a fresh token after a 401");
    assert_eq!(target.tokens_issued(), before + 1);
    assert_eq!(
        target.last_token_request().map(|t| t.client_auth),
        Some("basic")
    );

    // Client credentials in the body, and a wrong client secret named clearly.
    api.create_credential(&credential(
        "oauth-body",
        CredentialSpec::Oauth2ClientCredentials {
            token_url: target.url("/oauth/token"),
            client_id: cfg.oauth_client_id.clone(),
            client_secret: SecretValue::stored("not-the-secret"),
            scope: None,
            audience: None,
            client_auth: ClientAuth::Body,
        },
    ))
    .await
    .expect("credential");
    api.create_alias(&http_alias("oauth-body", &base, Some("oauth-body")))
        .await
        .expect("alias");
    let r = rest(api, &RestAction::via("oauth-body", "/oauth-protected")).await;
    assert_eq!(r.state, State::Error);
    let error = r.error.unwrap_or_default();
    assert!(
        error.contains("OAuth token endpoint") && error.contains("invalid_client"),
        "{error}"
    );
    assert!(!error.contains("not-the-secret"), "{error}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_and_internal_cas_work_and_local_secrets_stay_on_the_mid() {
    let rig = Rig::start().await;
    let api = rig.api();
    let target = AuthTarget::start(AuthTargetConfig::random())
        .await
        .expect("auth target");
    // The private key stays on the MID host: the credential names a file there.
    let key_file = rig.secrets_dir.join("client.key");
    std::fs::write(&key_file, target.client_key_pem()).expect("key file");
    api.create_credential(&credential(
        "mtls",
        CredentialSpec::ClientCertificate {
            certificate_pem: target.client_cert_pem().into(),
            private_key_pem: SecretValue::Local(LocalSecret::File(key_file.display().to_string())),
        },
    ))
    .await
    .expect("credential");
    let mut alias = http_alias("mtls", &target.tls_url(""), Some("mtls"));
    alias.ca_pem = Some(target.ca_pem().into());
    api.create_alias(&alias).await.expect("alias");
    let r = rest(api, &RestAction::via("mtls", "/whoami")).await;
    let (status, body) = status_and_body(&r);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subject_cn"], CLIENT_CERT_CN);

    // Without the client certificate the TLS handshake fails, and the error says so.
    let mut bare = http_alias("no-cert", &target.tls_url(""), None);
    bare.ca_pem = Some(target.ca_pem().into());
    api.create_alias(&bare).await.expect("alias");
    let r = rest(api, &RestAction::via("no-cert", "/whoami")).await;
    assert_eq!(r.state, State::Error, "{:?}", r.response);

    // A local secret outside what the MID allows is refused by the MID itself.
    let cfg = target.config().clone();
    let outside = rig.dir.path().join("outside-password");
    std::fs::write(&outside, &cfg.password).expect("file");
    api.create_credential(&credential(
        "sneaky",
        CredentialSpec::Basic {
            username: cfg.username.clone(),
            password: SecretValue::Local(LocalSecret::File(outside.display().to_string())),
        },
    ))
    .await
    .expect("credential");
    api.create_alias(&http_alias("sneaky", &target.url(""), Some("sneaky")))
        .await
        .expect("alias");
    let r = rest(api, &RestAction::via("sneaky", "/basic")).await;
    assert_eq!(r.state, State::Error);
    let error = r.error.unwrap_or_default();
    assert!(error.contains("local_secrets"), "{error}");
    // The same password in an allowed file works.
    let inside = rig.secrets_dir.join("password");
    std::fs::write(&inside, format!("{}\n", cfg.password)).expect("file");
    api.put_credential(&credential(
        "sneaky",
        CredentialSpec::Basic {
            username: cfg.username.clone(),
            password: SecretValue::Local(LocalSecret::File(inside.display().to_string())),
        },
    ))
    .await
    .expect("credential");
    let r = rest(api, &RestAction::via("sneaky", "/basic")).await;
    assert_eq!(status_and_body(&r).0, 200);
    // The instance shows where the secret lives, not a value.
    let shown = api.get_credential("sneaky").await.expect("credential");
    assert_eq!(
        shown.spec,
        CredentialSpec::Basic {
            username: cfg.username.clone(),
            password: SecretValue::Local(LocalSecret::File(inside.display().to_string())),
        }
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_alias_policy_and_retry_after() {
    let rig = Rig::start().await;
    let api = rig.api();
    let target = AuthTarget::start(AuthTargetConfig::random())
        .await
        .expect("auth target");
    let mut alias = http_alias("flaky", &target.url(""), None);
    alias.retry = RetryPolicy {
        mode: RetryMode::Exponential,
        max_retries: 3,
        delay_ms: 50,
        ..RetryPolicy::default()
    };
    api.create_alias(&alias).await.expect("alias");
    let started = Instant::now();
    let mut action = RestAction::via("flaky", "/flaky");
    action.query = [("key", "a"), ("fail", "2"), ("retry_after", "1")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = rest(api, &action).await;
    let (status, body) = status_and_body(&r);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attempts"], 3);
    assert_eq!(r.response.as_ref().map(|r| r.attempts), Some(3));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 was honoured twice ({:?})",
        started.elapsed()
    );
    // More failures than retries: the last answer comes back as it is.
    let mut action = RestAction::via("flaky", "/flaky");
    action.query = [("key", "b"), ("fail", "9")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let r = rest(api, &action).await;
    assert_eq!(status_and_body(&r).0, 503);
    assert_eq!(target.calls("b"), 4, "one attempt and three retries");
    rig.stop().await;
}

pub fn soap_alias(name: &str, endpoint: &str, credential: Option<&str>) -> Alias {
    Alias {
        kind: ConnectionKind::Soap,
        ..http_alias(name, endpoint, credential)
    }
}

pub fn add(alias: &str, version: SoapVersion, a: i64, b: i64) -> SoapAction {
    let mut params = serde_json::Map::new();
    params.insert("a".into(), json!(a));
    params.insert("b".into(), json!(b));
    SoapAction {
        alias: alias.into(),
        version: Some(version),
        soap_action: Some("urn:openmid:test:calc#Add".into()),
        operation: Some("Add".into()),
        namespace: Some(openmid_testkit::soap_service::CALC_NS.into()),
        params,
        ..SoapAction::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soap_11_and_12_calls_return_results_and_structured_faults() {
    let rig = Rig::start().await;
    let api = rig.api();
    let user = "soap-user".to_string();
    let password = format!(
        "soap-pw-{}",
        hex::encode(openmid_proto::secret::random_32())
    );
    let service = SoapService::start(Some((user.clone(), password.clone())))
        .await
        .expect("soap service");
    api.create_credential(&credential(
        "soap-basic",
        CredentialSpec::Basic {
            username: user,
            password: SecretValue::stored(&password),
        },
    ))
    .await
    .expect("credential");
    api.create_alias(&soap_alias(
        "calc",
        &service.url("/calc"),
        Some("soap-basic"),
    ))
    .await
    .expect("alias");
    for version in [SoapVersion::V1_1, SoapVersion::V1_2] {
        let r = soap(api, &add("calc", version, 20, 22)).await;
        assert_eq!(r.state, State::Processed, "{version}: {:?}", r.error);
        let resp = r.response.expect("response");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.version, version);
        assert!(resp.fault.is_none(), "{:?}", resp.fault);
        assert_eq!(
            resp.result,
            Some(json!({"AddResponse": {"result": "42"}})),
            "{version}"
        );
        let headers = service.last_request_headers().expect("headers");
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        match version {
            SoapVersion::V1_1 => {
                assert!(content_type.starts_with("text/xml"), "{content_type}");
                assert_eq!(
                    headers.get("soapaction").and_then(|v| v.to_str().ok()),
                    Some("\"urn:openmid:test:calc#Add\"")
                );
            }
            SoapVersion::V1_2 => {
                assert!(
                    content_type.starts_with("application/soap+xml")
                        && content_type.contains("action=\"urn:openmid:test:calc#Add\""),
                    "{content_type}"
                );
            }
        }

        // A Fault comes back taken apart, not as an opaque 500.
        let mut divide = add("calc", version, 7, 0);
        divide.operation = Some("Divide".into());
        divide.soap_action = Some("urn:openmid:test:calc#Divide".into());
        let r = soap(api, &divide).await;
        assert_eq!(r.state, State::Processed, "the call itself worked");
        let resp = r.response.expect("response");
        assert_eq!(resp.status, 500);
        let fault = resp.fault.expect("a fault");
        assert!(
            fault.code.ends_with(match version {
                SoapVersion::V1_1 => "Client",
                SoapVersion::V1_2 => "Sender",
            }),
            "{fault:?}"
        );
        assert_eq!(fault.reason, "division by zero");
        assert!(
            fault
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("DivideFault") && d.contains(">7<")),
            "{fault:?}"
        );
    }

    // The Body's XML given as is, with characters XML must escape.
    let text = "a < b & \"c\" — ünïcødé";
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;");
    let r = soap(
        api,
        &SoapAction {
            alias: "calc".into(),
            version: Some(SoapVersion::V1_2),
            body: Some(format!(
                "<c:Echo xmlns:c=\"urn:openmid:test:calc\"><c:text>{escaped}</c:text></c:Echo>"
            )),
            ..SoapAction::default()
        },
    )
    .await;
    let resp = r.response.expect("response");
    assert_eq!(resp.result, Some(json!({"EchoResponse": {"text": text}})));
    assert!(resp.body.is_some_and(|b| b.contains("EchoResponse")));

    // A broken Body is refused at the API door (422 naming `body`), before anything is
    // queued or sent (crates/openmid/tests/soap.rs has the details).
    let calls = service.calls();
    let refused = api
        .soap_action(
            &SoapAction {
                alias: "calc".into(),
                body: Some("<Echo><text>unclosed</Echo>".into()),
                ..SoapAction::default()
            },
            Duration::from_secs(30),
        )
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Api { status: 422, message, .. }) if message.starts_with("body")),
        "{refused:?}"
    );
    assert_eq!(service.calls(), calls, "nothing was sent");

    // The WSDL through an http alias with the same credential.
    api.create_alias(&http_alias(
        "calc-http",
        &service.url(""),
        Some("soap-basic"),
    ))
    .await
    .expect("alias");
    let mut wsdl = RestAction::via("calc-http", "/calc");
    wsdl.query.insert("wsdl".into(), String::new());
    let r = rest(api, &wsdl).await;
    let resp = r.response.expect("response");
    assert_eq!(resp.status, 200);
    assert!(resp.body.unwrap_or_default().contains("wsdl:definitions"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_aliases_refuse_bad_input_and_never_show_secrets() {
    let rig = Rig::start().await;
    let api = rig.api();
    let canary = format!("canary-{}", hex::encode(openmid_proto::secret::random_32()));
    let created = api
        .create_credential(&credential(
            "svc",
            CredentialSpec::Basic {
                username: "svc".into(),
                password: SecretValue::stored(&canary),
            },
        ))
        .await
        .expect("created");
    assert_eq!(
        created.spec,
        CredentialSpec::Basic {
            username: "svc".into(),
            password: SecretValue::stored(REDACTED),
        }
    );
    let err = |e: ClientError| match e {
        ClientError::Api {
            status, message, ..
        } => (status, message),
        other => panic!("an API error, got {other}"),
    };
    // Duplicate name, `***` on create, unknown alias credential, wrong kind, in use.
    let (status, _) = err(api
        .create_credential(&credential(
            "svc",
            CredentialSpec::Bearer {
                token: SecretValue::stored("x"),
            },
        ))
        .await
        .expect_err("duplicate"));
    assert_eq!(status, 409);
    let (status, message) = err(api
        .create_credential(&credential(
            "new",
            CredentialSpec::Bearer {
                token: SecretValue::stored(REDACTED),
            },
        ))
        .await
        .expect_err("*** on create"));
    assert_eq!(status, 422);
    assert!(message.starts_with("token"), "{message}");
    let (status, message) = err(api
        .create_alias(&http_alias("a", "http://127.0.0.1:9/", Some("nope")))
        .await
        .expect_err("unknown credential"));
    assert_eq!(status, 422);
    assert!(message.contains("nope"), "{message}");
    let (status, message) = err(api
        .create_alias(&http_alias("a", "ftp://x/", None))
        .await
        .expect_err("bad url"));
    assert_eq!((status, message.starts_with("base_url")), (422, true));
    api.create_credential(&credential(
        "db",
        CredentialSpec::Database {
            username: "u".into(),
            password: SecretValue::stored("p"),
        },
    ))
    .await
    .expect("db credential");
    let (status, message) = err(api
        .create_alias(&http_alias("a", "http://127.0.0.1:9/", Some("db")))
        .await
        .expect_err("db credential on http"));
    assert_eq!(status, 422);
    assert!(message.contains("database"), "{message}");
    api.create_alias(&http_alias("a", "http://127.0.0.1:9/", Some("svc")))
        .await
        .expect("alias");
    let (status, message) = err(api.delete_credential("svc").await.expect_err("in use"));
    assert_eq!(status, 409);
    assert!(message.contains('a'), "{message}");
    // Actions: alias of the wrong kind, escaping path, unknown alias.
    let (status, _) = err(api
        .soap_action(
            &SoapAction {
                alias: "a".into(),
                operation: Some("X".into()),
                ..SoapAction::default()
            },
            Duration::ZERO,
        )
        .await
        .expect_err("http alias for soap"));
    assert_eq!(status, 422);
    let (status, message) = err(api
        .rest_action(
            &RestAction::via("a", "http://evil.example/x"),
            Duration::ZERO,
        )
        .await
        .expect_err("escaping path"));
    assert_eq!(
        (status, message.starts_with("path")),
        (422, true),
        "{message}"
    );
    let (status, _) = err(api
        .rest_action(&RestAction::via("nope", "/x"), Duration::ZERO)
        .await
        .expect_err("unknown alias"));
    assert_eq!(status, 422);
    // Raw bodies with unknown types or fields are refused with the problem named.
    let http = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    for (body, expect) in [
        (json!({"name": "k", "type": "kerberos"}), "kerberos"),
        (
            json!({"name": "k", "type": "bearer", "token": "t", "extra": 1}),
            "extra",
        ),
        (json!({"type": "bearer", "token": "t"}), "name"),
    ] {
        let resp = http
            .post(format!("{}api/v1/credentials", api.base_url()))
            .bearer_auth(rig.instance.token.expose())
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status().as_u16(), 422, "{body}");
        let text = resp.text().await.unwrap_or_default();
        assert!(text.contains(expect), "{text}");
    }
    // Update keeps a `***` secret, and nothing ever shows the value.
    api.put_credential(&credential(
        "svc",
        CredentialSpec::Basic {
            username: "svc2".into(),
            password: SecretValue::stored(REDACTED),
        },
    ))
    .await
    .expect("update");
    let listed = serde_json::to_string(&api.list_credentials().await.expect("list")).expect("json");
    assert!(listed.contains("svc2") && !listed.contains(&canary));
    let db = std::fs::read(rig.instance.data_dir().join("openmid.db")).unwrap_or_default();
    let wal = std::fs::read(rig.instance.data_dir().join("openmid.db-wal")).unwrap_or_default();
    for file in [&db, &wal] {
        assert!(
            !file.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "the database holds the secret in clear"
        );
    }
    assert!(Path::new(&rig.instance.data_dir().join("master.key")).exists());
    rig.stop().await;
}
