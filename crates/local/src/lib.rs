//! The parts of openmid run together on one host, as `openmid demo` and `openmid bench`
//! do: an instance in this process with a fresh data directory, instances and MIDs as
//! `openmid` processes (with their memory and CPU read from `/proc`), MID configs for
//! them, and the demo's "internal" services (a plain HTTP service, and one that checks
//! every credential type with an OAuth token endpoint and a mutual-TLS listener).
//! Product code: the shipped binary uses it. The test-only servers (a SOAP service, a
//! CONNECT proxy) live in `openmid-testkit`, which builds on this.

pub mod auth_target;
pub mod bodies;
pub mod databases;
pub mod exporter;
pub mod netns;
pub mod process;
pub mod slapd;
pub mod snmpd;
pub mod sshd;
pub mod target;
pub mod test_network;

use openmid_client::ApiClient;
use openmid_instance::config::InstanceConfig;
use openmid_instance::{RunningInstance, start as start_instance};
use openmid_mid::config::{MidConfig, TlsTrust};
use openmid_mid::policy::{EgressPolicy, NetworkConfig, PolicyConfig};
use openmid_mid::{RunningMid, start as start_mid_server};
use openmid_proto::api::NewEnrollmentToken;
use openmid_proto::mid::MidStatus;
use openmid_proto::secret::Secret;
use openmid_proto::trust::Trust;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use auth_target::{AuthTarget, AuthTargetConfig};
pub use exporter::Exporter;
pub use process::{InstanceProcess, MidProcess, NodeOptions};
pub use target::TargetService;

/// Errors of the kit, with what failed.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    /// The instance did not start.
    #[error("instance: {0}")]
    Instance(#[from] openmid_instance::InstanceError),
    /// The MID did not start.
    #[error("MID: {0}")]
    Mid(#[from] openmid_mid::MidError),
    /// An API call failed.
    #[error("API: {0}")]
    Api(#[from] openmid_client::ClientError),
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// File access failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A session request failed.
    #[error("session: {0}")]
    Session(String),
    /// The admin token is unknown (a restarted instance does not print it again).
    #[error("no admin token: pass the one from the first start")]
    NoAdminToken,
}

/// A running instance with an admin client.
pub struct LocalInstance {
    /// The instance.
    pub running: RunningInstance,
    /// Admin API client.
    pub api: ApiClient,
    /// Admin token.
    pub token: Secret,
}

impl LocalInstance {
    /// Starts an instance with its data in `data_dir`, listening on `listen`
    /// (`127.0.0.1:0` for a free port). `token` is the admin token of an instance that
    /// ran in `data_dir` before (it is printed only on the first start).
    pub async fn start_in(
        data_dir: &Path,
        listen: SocketAddr,
        token: Option<Secret>,
    ) -> Result<Self, KitError> {
        Self::start_with(
            InstanceConfig {
                data_dir: data_dir.to_path_buf(),
                listen,
                ..InstanceConfig::default()
            },
            token,
        )
        .await
    }

    /// Starts an instance with a full config.
    pub async fn start_with(
        config: InstanceConfig,
        token: Option<Secret>,
    ) -> Result<Self, KitError> {
        let running = start_instance(config).await?;
        let token = running
            .admin_token
            .clone()
            .or(token)
            .ok_or(KitError::NoAdminToken)?;
        let api = ApiClient::new(&running.url, token.clone(), &Self::trust_of(&running)?)?;
        Ok(Self {
            running,
            api,
            token,
        })
    }

    fn trust_of(running: &RunningInstance) -> Result<Trust, KitError> {
        Ok(Trust::CaPem(std::fs::read(&running.cert_path)?))
    }

    /// Trust in this instance's certificate (its PEM as CA).
    pub fn trust(&self) -> Result<Trust, KitError> {
        Self::trust_of(&self.running)
    }

    /// A MID config for this instance: state in `state_dir`, trusting the instance's
    /// certificate file.
    pub fn mid_config(&self, name: &str, state_dir: &Path, token: Option<String>) -> MidConfig {
        mid_config(
            &self.running.url,
            &self.running.cert_path,
            name,
            state_dir,
            token,
        )
    }

    /// Makes an enrollment token, starts a MID named `name` with it and waits until the
    /// instance has registered it. With `validate`, the MID is validated (through the
    /// admin API, as an admin would) and the call returns once the MID knows it is `up`.
    pub async fn start_mid(
        &self,
        name: &str,
        state_dir: &Path,
        validate: bool,
    ) -> Result<RunningMid, KitError> {
        let token = self
            .api
            .create_enrollment_token(&NewEnrollmentToken::default())
            .await?;
        let mut mid = start_mid_server(self.mid_config(name, state_dir, Some(token.token))).await?;
        if !mid
            .wait_for_status(MidStatus::ValidationPending, Duration::from_secs(20))
            .await
        {
            return Err(KitError::Timeout(format!("MID {name} did not enroll")));
        }
        if validate {
            self.api.validate_mid(name).await?;
            if !mid
                .wait_for_status(MidStatus::Up, Duration::from_secs(20))
                .await
            {
                return Err(KitError::Timeout(format!(
                    "MID {name} did not see its validation"
                )));
            }
        }
        Ok(mid)
    }

    /// An enrollment token that validates the MID at once.
    pub async fn auto_validating_token(&self) -> Result<String, KitError> {
        auto_validating_token(&self.api).await
    }

    /// Where the instance keeps its data.
    pub fn data_dir(&self) -> PathBuf {
        self.running.data_dir.clone()
    }

    /// Stops the instance.
    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

/// A MID config for the instance at `url` whose certificate (or CA) is `ca_file`.
pub fn mid_config(
    url: &str,
    ca_file: &Path,
    name: &str,
    state_dir: &Path,
    token: Option<String>,
) -> MidConfig {
    MidConfig {
        name: name.to_string(),
        instance_url: url.to_string(),
        standby_urls: Vec::new(),
        state_dir: state_dir.to_path_buf(),
        enrollment_token: token.map(Secret::new),
        tls: TlsTrust {
            ca_file: Some(ca_file.to_path_buf()),
            ..TlsTrust::default()
        },
        proxy: None,
        proxy_password: None,
        pools: Default::default(),
        outbox_limit_bytes: 512 * 1024 * 1024,
        poll_wait_ms: 25_000,
        transport: Default::default(),
        max_response_bytes: 8 * 1024 * 1024,
        inline_body_bytes: 1024 * 1024,
        capabilities: Vec::new(),
        applications: Vec::new(),
        ip_ranges: Vec::new(),
        local_secrets: Default::default(),
        policy: loopback_policy(),
        metrics: Default::default(),
        tracing: Default::default(),
        telemetry: None,
    }
}

/// The egress policy of a MID whose HTTP targets all run on this host (tests and the
/// demo): the built-in refusal of loopback addresses lifted for `127.0.0.0/8` and
/// `::1`, and nothing else reachable.
pub fn loopback_policy() -> EgressPolicy {
    let config = PolicyConfig {
        http: NetworkConfig {
            allow_cidrs: vec!["127.0.0.0/8".into(), "::1/128".into()],
            ..NetworkConfig::default()
        },
        ..PolicyConfig::default()
    };
    // A constant table that compiles; were it ever not to, the MID would refuse
    // loopback and every test would say so.
    EgressPolicy::new(config).unwrap_or_default()
}

/// An enrollment token that validates the MID enrolling with it at once.
pub async fn auto_validating_token(api: &ApiClient) -> Result<String, KitError> {
    Ok(api
        .create_enrollment_token(&NewEnrollmentToken {
            auto_validate: true,
            ..Default::default()
        })
        .await?
        .token)
}

/// Enrolls a hand-driven MID that speaks the real session protocol (the MID crate's own
/// client) without running a MID: tests and benchmarks then poll, post results and
/// heartbeat themselves. `token` is an enrollment token; the key is a placeholder.
pub async fn enroll_protocol_client(
    config: &MidConfig,
    token: String,
    profile: openmid_proto::mid::MidProfile,
) -> Result<openmid_mid::session::client::InstanceClient, KitError> {
    let session = |e: openmid_mid::session::client::SessionError| KitError::Session(e.to_string());
    let client = openmid_mid::session::client::InstanceClient::new(config).map_err(session)?;
    let secret = Secret::new(format!("{}-secret-{}", config.name, "x".repeat(40)));
    let enrolled = client
        .enroll(&openmid_proto::mid::EnrollRequest {
            token: Secret::new(token),
            name: config.name.clone(),
            public_key: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            secret: secret.clone(),
            protocol_version: client.protocol(),
            version: "protocol-client".into(),
            hostname: "test-host".into(),
            profile,
        })
        .await
        .map_err(session)?;
    client.set_bearer(Secret::new(format!(
        "{}.{}",
        enrolled.mid_id,
        secret.expose()
    )));
    Ok(client)
}

/// Checks `check` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `RESTProbe` output: GET `url`, run by `agent`, tagged with `correlator`.
pub fn rest_output(agent: &str, url: &str, correlator: &str) -> openmid_proto::api::NewOutput {
    openmid_proto::api::NewOutput {
        durability: Default::default(),
        agent: agent.to_string(),
        topic: openmid_proto::ecc::Topic::RESTProbe,
        name: None,
        source: None,
        payload: serde_json::json!({ "url": url }).into(),
        priority: None,
        correlator: Some(correlator.to_string()),
        max_attempts: None,
        at_most_once: false,
        application: None,
    }
}

/// A loopback address with a free port chosen by the kernel.
pub fn loopback_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
