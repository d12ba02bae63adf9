//! Helpers shared by this crate's tests: a raw HTTPS client for sending requests the
//! typed client would never build, and a protocol-level MID client.

use openmid_instance::config::InstanceConfig;
use openmid_mid::session::client::InstanceClient;
use openmid_proto::api::NewEnrollmentToken;
use openmid_proto::trust::client_config;
use openmid_testkit::{TestInstance, loopback_any_port};
use serde_json::Value;

/// A fresh instance in a temporary directory (kept alive by the returned guard).
pub async fn instance() -> (TestInstance, tempfile::TempDir) {
    instance_with(|_| {}).await
}

/// A fresh instance with adjusted settings.
pub async fn instance_with(
    adjust: impl FnOnce(&mut InstanceConfig),
) -> (TestInstance, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = InstanceConfig {
        data_dir: dir.path().to_path_buf(),
        listen: loopback_any_port(),
        // These tests drive the protocol by hand and do not keep a poll open the way a
        // real MID does; presence would take their MIDs for gone. The test of presence
        // itself sets its own grace.
        disconnect_grace_ms: 600_000,
        down_after_ms: 600_000,
        ..InstanceConfig::default()
    };
    adjust(&mut config);
    let instance = TestInstance::start_with(config, None)
        .await
        .expect("instance starts");
    (instance, dir)
}

/// Raw HTTPS access to an instance.
pub struct Raw {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// What a raw request got back.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The error code and message of an error answer.
    pub fn error(&self) -> (String, String) {
        (
            self.body["error"]["code"]
                .as_str()
                .unwrap_or("<no code>")
                .to_string(),
            self.body["error"]["message"]
                .as_str()
                .unwrap_or("<no message>")
                .to_string(),
        )
    }
}

impl Raw {
    pub fn new(instance: &TestInstance) -> Self {
        let tls = client_config(&instance.trust().expect("trust"))
            .expect("tls")
            .expect("custom trust");
        Self {
            http: reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .build()
                .expect("client"),
            base: instance.running.url.clone(),
            token: instance.token.expose().to_string(),
        }
    }

    /// Sends a request; `token` None sends no Authorization header, Some("") the admin token.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some("") => req = req.bearer_auth(&self.token),
            Some(t) => req = req.bearer_auth(t),
            None => {}
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.body(body).send().await.expect("request answered");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer { status, body }
    }

    /// A JSON POST with exactly these headers (besides content-type).
    pub async fn post_with_headers(
        &self,
        path: &str,
        headers: Vec<(&'static str, String)>,
        body: String,
    ) -> Answer {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.body(body).send().await.expect("request answered");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Answer { status, body }
    }

    /// An admin JSON request.
    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Answer {
        self.send(
            method,
            path,
            Some(""),
            Some("application/json"),
            body.to_string(),
        )
        .await
    }

    /// An admin GET.
    pub async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, Some(""), None, Vec::new()).await
    }
}

/// A protocol-level MID: the MID crate's own session client, driven by hand so a test
/// controls every poll, result and heartbeat.
pub async fn enrolled_client(
    instance: &TestInstance,
    name: &str,
    validate: bool,
) -> InstanceClient {
    enrolled_client_with(instance, name, validate, Default::default()).await
}

/// [`enrolled_client`] with a declared profile.
pub async fn enrolled_client_with(
    instance: &TestInstance,
    name: &str,
    validate: bool,
    profile: openmid_proto::mid::MidProfile,
) -> InstanceClient {
    let token = instance
        .api
        .create_enrollment_token(&NewEnrollmentToken::default())
        .await
        .expect("token");
    let config = instance.mid_config(name, std::path::Path::new("/nonexistent"), None);
    let client = openmid_testkit::enroll_protocol_client(&config, token.token, profile)
        .await
        .expect("enrolls");
    if validate {
        instance.api.validate_mid(name).await.expect("validate");
    }
    client
}
