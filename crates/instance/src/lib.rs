//! The openmid instance (hub) as a library: the ECC queue, the MID registry, dispatch
//! and the HTTPS API. The `openmid instance` command and the test kit start it through
//! [`start`].

pub mod api;
pub mod audit;
pub mod auth;
pub mod blobs;
pub mod config;
pub mod connections;
mod dashboard;
pub mod discovery;
pub mod dispatch;
pub mod ecc;
pub mod error;
pub mod imports;
pub mod metrics;
pub mod otlp;
mod private_fs;
pub mod registry;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod topics;
pub mod vault;

use crate::api::AppState;
use crate::dispatch::Dispatcher;
use crate::ecc::{Store, StoreError};
use config::InstanceConfig;
use openmid_proto::secret::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Settings key of the admin token's hash.
const ADMIN_TOKEN_KEY: &str = "admin_token_hash";

/// Errors starting or running the instance.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// A setting is wrong.
    #[error("config: {0}")]
    Config(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The credential vault's key could not be read or made.
    #[error(transparent)]
    Vault(#[from] vault::VaultError),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Binding the listen address failed.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("server: {0}")]
    Serve(std::io::Error),
}

/// A running instance.
pub struct RunningInstance {
    /// Bound address.
    pub addr: SocketAddr,
    /// Base URL for clients on this host (`https://127.0.0.1:PORT` when bound to all
    /// interfaces).
    pub url: String,
    /// SHA-256 fingerprint of the served certificate.
    pub fingerprint: String,
    /// PEM file of the served certificate (a client's CA file for a self-signed one).
    pub cert_path: PathBuf,
    /// The admin API token, present only on the start that created it.
    pub admin_token: Option<Secret>,
    /// Data directory.
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    auth_failures: Arc<auth::AuthFailures>,
    tasks: TaskTracker,
    server: tokio::task::JoinHandle<()>,
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
}

/// Opens the store, prepares TLS and the admin token, and starts serving.
pub async fn start(config: InstanceConfig) -> Result<RunningInstance, InstanceError> {
    config.validate().map_err(InstanceError::Config)?;
    let store = ecc::open(&config.data_dir, config.database.as_ref()).await?;
    let identity = tls::load_or_create(
        &config.data_dir,
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
        &certificate_names(&config),
    )?;
    let (admin_token_hash, admin_token) = match store.get_setting(ADMIN_TOKEN_KEY).await? {
        Some(hash) => (hash, None),
        None => {
            let token = auth::new_token("omadm_");
            let hash = auth::hash_token(&token);
            store.put_setting(ADMIN_TOKEN_KEY, &hash).await?;
            (hash, Some(Secret::new(token)))
        }
    };
    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| InstanceError::Bind {
            addr: config.listen,
            source,
        })?;
    listener
        .set_nonblocking(true)
        .map_err(InstanceError::Serve)?;
    let addr = listener.local_addr().map_err(InstanceError::Serve)?;
    let config = Arc::new(config);
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let (vault, key_source) = vault::Vault::open(
        &config.data_dir,
        config.master_key.as_ref().map(|k| k.expose()),
    )?;
    tracing::info!(key_id = %vault.key_id(), source = ?key_source, "credential vault open");
    let other_key: Vec<String> = store
        .list_credentials()
        .await?
        .into_iter()
        .filter(|c| c.key_id != vault.key_id())
        .map(|c| c.name)
        .collect();
    if !other_key.is_empty() {
        // Starting anyway keeps the queue running; calls through these credentials
        // fail with a message naming the key mismatch until the right key is given.
        tracing::error!(
            key_id = %vault.key_id(),
            credentials = %other_key.join(", "),
            "these credentials were stored under another master key (OPENMID_MASTER_KEY or data_dir/master.key changed?): they cannot be used"
        );
    }
    if store.is_shared() && config.blob_dir.is_none() {
        tracing::warn!(
            "blobs are kept in data_dir/blobs, which only this node reads: with several nodes, set blob_dir to a directory they share"
        );
    }
    let dispatcher = Arc::new(Dispatcher::new(
        store.clone(),
        config.clone(),
        Arc::new(vault),
    ));
    dispatcher
        .start_fresh()
        .await
        .map_err(|e| InstanceError::Config(e.to_string()))?;
    tasks.spawn(dispatcher.clone().run_announcer(shutdown.clone()));
    tasks.spawn(dispatcher.clone().run_listener(shutdown.clone()));
    tasks.spawn(dispatcher.clone().run_sweeper(shutdown.clone()));
    tasks.spawn(discovery::run_advancer(
        dispatcher.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(metrics::run_assigner(dispatcher.clone(), shutdown.clone()));
    tasks.spawn(telemetry::run_upkeep(
        dispatcher.telemetry().clone(),
        shutdown.clone(),
    ));
    if let Some(rw) = &config.metrics.remote_write {
        let forwarder = metrics::remote_write::Forwarder::new(rw)
            .map_err(|e| InstanceError::Config(format!("metrics.remote_write: {e}")))?;
        tasks.spawn(forwarder.run(dispatcher.clone(), shutdown.clone()));
    }
    tasks.spawn(
        imports::scheduler::Scheduler::new(
            dispatcher.clone(),
            Arc::new(imports::scheduler::SystemClock),
        )
        .run(shutdown.clone()),
    );
    let auth_failures = Arc::new(auth::AuthFailures::default());
    let spans = match config.tracing.traces_url() {
        Ok(Some(url)) => Some(Arc::new(
            otlp::SpanExport::start(url, "openmid-instance", shutdown.clone())
                .map_err(|e| InstanceError::Config(format!("tracing.otlp_endpoint: {e}")))?,
        )),
        Ok(None) => None,
        Err(e) => return Err(InstanceError::Config(e)),
    };
    let app = api::router(AppState::new(api::Shared {
        dispatcher: dispatcher.clone(),
        admin_token_hash: Arc::new(admin_token_hash),
        config: config.clone(),
        shutdown: shutdown.clone(),
        auth_failures: auth_failures.clone(),
        spans,
    }));
    let listener = tokio::net::TcpListener::from_std(listener).map_err(InstanceError::Serve)?;
    let server = tokio::spawn(server::serve(
        listener,
        identity.server_config,
        app,
        server::ConnectionLimits::of(&config),
        shutdown.clone(),
    ));
    let host = if addr.ip().is_unspecified() {
        if addr.is_ipv4() {
            "127.0.0.1".to_string()
        } else {
            "[::1]".to_string()
        }
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    tracing::info!(%addr, fingerprint = %identity.fingerprint, "instance listening");
    Ok(RunningInstance {
        addr,
        url: format!("https://{host}:{}", addr.port()),
        fingerprint: identity.fingerprint,
        cert_path: identity.cert_path,
        admin_token,
        data_dir: config.data_dir.clone(),
        shutdown,
        auth_failures,
        tasks,
        server,
        store,
        dispatcher,
    })
}

/// The names the served certificate must carry: the configured host names, and the
/// listen address when it is one address (a client given the URL of the address the
/// instance listens on must be able to check the certificate against it). A wildcard
/// (`0.0.0.0`, `::`) says nothing about which address clients use.
fn certificate_names(config: &InstanceConfig) -> Vec<String> {
    let mut names = config.hostnames.clone();
    let ip = config.listen.ip();
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    names.sort();
    names.dedup();
    names
}

impl RunningInstance {
    /// Stops taking connections, ends long-polls, lets requests in flight finish (up to
    /// a few seconds), stops background tasks and closes the store.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        if let Err(e) = self.server.await {
            tracing::error!(error = %e, "server task failed");
        }
        self.tasks.close();
        self.tasks.wait().await;
        self.dispatcher
            .flush_express(std::time::Duration::from_secs(5))
            .await;
        self.dispatcher.leave().await;
        self.store.close().await;
    }

    /// Failed authentications since start (for metrics and tests).
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.total()
    }

    /// A token that stops the instance when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Replaces the admin token of the instance `config` describes (the old one stops
/// working at the instance's next start). Returns the new token.
pub async fn reset_admin_token(config: &InstanceConfig) -> Result<Secret, InstanceError> {
    let store = ecc::open(&config.data_dir, config.database.as_ref()).await?;
    let token = auth::new_token("omadm_");
    store
        .put_setting(ADMIN_TOKEN_KEY, &auth::hash_token(&token))
        .await?;
    store.close().await;
    Ok(Secret::new(token))
}
