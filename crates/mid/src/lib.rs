//! The openmid MID Server as a library: it enrolls with an instance, long-polls for
//! work, runs probes in bounded pools, keeps results in a durable outbox until the
//! instance acknowledges them. The `openmid mid` command and the test kit start it
//! through [`start`].

pub mod config;
pub mod exec;
pub mod executor;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod otlp;
pub mod outbox;
pub mod policy;
pub mod probes;
pub mod session;
pub mod telemetry;

use config::MidConfig;
use executor::Executor;
use keys::Identity;
use openmid_proto::mid::MidStatus;
use outbox::Outbox;
use probes::ProbeContext;
use session::Session;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// Errors of the MID.
#[derive(Debug, thiserror::Error)]
pub enum MidError {
    /// A setting is wrong.
    #[error("config: {0}")]
    Config(String),
    /// The identity could not be loaded or saved.
    #[error(transparent)]
    Identity(#[from] keys::IdentityError),
    /// The outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    /// The instance refused this MID for good.
    #[error("{0}")]
    Refused(String),
    /// The session task failed.
    #[error("session task: {0}")]
    Task(String),
}

/// A running MID.
pub struct RunningMid {
    /// The MID's name.
    pub name: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), MidError>>,
    status: watch::Receiver<Option<MidStatus>>,
}

/// Checks the config, loads or makes the identity, opens the outbox and starts the
/// session (enrollment, if needed, happens in the session with retries).
pub async fn start(config: MidConfig) -> Result<RunningMid, MidError> {
    config
        .validate()
        .map_err(|e| MidError::Config(e.to_string()))?;
    let identity = Identity::load_or_create(&config.state_dir, &config.name)?;
    let outbox = Arc::new(Outbox::open(
        &config.state_dir.join("outbox"),
        config.outbox_limit_bytes,
    )?);
    let client = Arc::new(
        session::client::InstanceClient::new(&config)
            .map_err(|e| MidError::Config(e.to_string()))?,
    );
    let shutdown = CancellationToken::new();
    let ctx = ProbeContext::new(
        config.max_response_bytes,
        config.local_secrets.clone(),
        Arc::new(config.policy.clone()),
    )
    .map_err(|e| MidError::Config(format!("probe HTTP client: {e}")))?
    .with_bodies(outbox.dir().to_path_buf(), config.inline_body_bytes)
    .with_instance(client.clone());
    // Scraping runs beside the session from the kept assignment, whether or not the
    // instance answers; the forwarder posts what it buffered once it does.
    let scraper = metrics::Scraper::start(
        &config.state_dir.join("metrics"),
        &config.metrics,
        ctx.http.clone(),
        ctx.policy.clone(),
        shutdown.clone(),
    )
    .map_err(|e| MidError::Config(e.to_string()))?;
    tokio::spawn(scraper.clone().forward(client.clone()));
    let ctx = Arc::new(ctx.with_metrics(scraper));
    let result_ready = Arc::new(Notify::new());
    if !outbox.is_empty() {
        result_ready.notify_one();
    }
    let identity = Arc::new(std::sync::Mutex::new(identity));
    let spans = match config.tracing.traces_url() {
        Ok(Some(url)) => Some(Arc::new(
            otlp::SpanExport::start(url, "openmid-mid", shutdown.clone())
                .map_err(|e| MidError::Config(format!("tracing.otlp_endpoint: {e}")))?,
        )),
        Ok(None) => None,
        Err(e) => return Err(MidError::Config(e)),
    };
    let telemetry = Arc::new(telemetry::Telemetry::new());
    tokio::spawn(telemetry::run_upkeep(telemetry.clone(), shutdown.clone()));
    let policy = config.policy.clone();
    let executor = Arc::new(
        Executor::new(
            config.pools,
            ctx,
            outbox.clone(),
            result_ready,
            identity.clone(),
            telemetry.clone(),
        )
        .with_spans(spans, config.name.clone()),
    );
    if let Some(settings) = &config.telemetry {
        let sources = telemetry::listener::Sources {
            telemetry: telemetry.clone(),
            executor: executor.clone(),
            outbox: outbox.clone(),
            policy,
            shutdown: shutdown.clone(),
        };
        telemetry::listener::start(settings.listen, sources)
            .await
            .map_err(|e| MidError::Config(format!("telemetry.listen {}: {e}", settings.listen)))?;
    }
    let (status_tx, status) = watch::channel(None);
    let name = config.name.clone();
    let session = Session {
        config: Arc::new(config),
        client,
        identity,
        executor,
        outbox,
        shutdown: shutdown.clone(),
        status: status_tx,
        started: Instant::now(),
        heartbeat_ms: AtomicU64::new(10_000),
        session_id: session::new_session_id(),
        reconnected: Notify::new(),
        beat_now: Notify::new(),
        opened: watch::channel(false).0,
        telemetry,
    };
    let task = tokio::spawn(session.run());
    Ok(RunningMid {
        name,
        shutdown,
        task,
        status,
    })
}

impl RunningMid {
    /// The status the instance last reported (None before the first answer).
    pub fn status(&self) -> Option<MidStatus> {
        *self.status.borrow()
    }

    /// Waits until the instance reports `want`, up to `timeout`. Returns whether it did.
    pub async fn wait_for_status(&mut self, want: MidStatus, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.status.wait_for(|s| *s == Some(want)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A token that stops the MID when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops taking work, lets running jobs finish, posts what it can, and returns.
    pub async fn shutdown(self) -> Result<(), MidError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the session ends (shutdown, or refused by the instance).
    pub async fn wait(self) -> Result<(), MidError> {
        self.task.await.map_err(|e| MidError::Task(e.to_string()))?
    }
}
