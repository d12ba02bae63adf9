//! The instance's settings. The binary fills this from a TOML file, `OPENMID_INSTANCE_*`
//! environment variables and flags; tests build it directly.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Instance settings. Every field has a default, so an empty file is a valid config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceConfig {
    /// Where the database, the TLS certificate and keys live.
    pub data_dir: PathBuf,
    /// The store: unset (the default) is SQLite, one file in `data_dir`;
    /// `postgres://user:password@host:5432/database` is PostgreSQL. A secret (it may
    /// hold a password): never logged or shown.
    pub database: Option<openmid_proto::secret::Secret>,
    /// Where blobs (large bodies, see `/api/v1/blobs`) are kept: unset is
    /// `data_dir/blobs`. Several nodes on one PostgreSQL need one directory they all
    /// read and write (a shared volume), or a blob uploaded through one node is not
    /// found through another.
    pub blob_dir: Option<PathBuf>,
    /// Address to listen on (HTTPS).
    pub listen: SocketAddr,
    /// Certificate chain (PEM) to serve instead of the self-signed one.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Extra host names or IPs for the self-signed certificate (made at first start).
    pub hostnames: Vec<String>,
    /// Lease length of a claimed output. A MID renews it by heartbeat; a lease that
    /// lapses returns the output to `ready` for another attempt.
    pub lease_ms: u64,
    /// How often MIDs heartbeat (and so renew leases).
    pub heartbeat_ms: u64,
    /// A MID whose long-poll connection dropped and did not come back within this is
    /// `down`, and its work moves to other eligible MIDs (a killed MID drops its
    /// connection at once, so this bounds failover time).
    pub disconnect_grace_ms: u64,
    /// A MID not heard from at all for this long is `down` (for partitions where no
    /// connection visibly closes).
    pub down_after_ms: u64,
    /// Longest a MID long-poll is held open.
    pub max_poll_wait_ms: u64,
    /// Default claims allowed per output.
    pub max_attempts: u32,
    /// Largest request body accepted, in bytes.
    pub max_request_bytes: usize,
    /// Largest blob (a request or response body streamed on its own, see
    /// `/api/v1/blobs`) accepted, in bytes; a larger upload is refused with 413.
    pub max_blob_bytes: u64,
    /// Longest `?wait=` an action call may ask for, in seconds.
    pub max_action_wait_secs: u64,
    /// Longest a client may take to finish the TLS handshake after connecting; a
    /// connection that says nothing is closed then instead of holding a file handle.
    pub tls_handshake_timeout_ms: u64,
    /// Longest a client may take to send a request's headers (HTTP/1.1), counted from
    /// the connection's start or the end of the previous answer: a silent or slow
    /// client is disconnected, and so is an HTTP/1.1 keep-alive connection that sends
    /// no new request within it. (HTTP/2 connections, which MIDs use, are bounded by
    /// `idle_timeout_ms` instead.)
    pub header_read_timeout_ms: u64,
    /// A connection with no request in progress for this long is closed. A MID's
    /// long-poll is a request in progress, so it is never cut by this, however long
    /// `max_poll_wait_ms` is.
    pub idle_timeout_ms: u64,
    /// Most connections served at once; 0 (the default) takes the process's open-file
    /// limit less room for the database, blobs and refusals. Past it a new connection
    /// gets one `503 too_many_connections` answer and is closed, so `/healthz` and
    /// MIDs already connected keep working. Each MID holds one connection.
    pub max_connections: usize,
    /// Finished records (processed, error, cancelled) older than this are deleted, so
    /// the queue does not grow without end. 0 keeps them for ever.
    pub retention_hours: u64,
    /// Days an import set (and its rows) is kept after its run ended, unless its
    /// data source says otherwise (`retention_days`).
    pub import_retention_days: u32,
    /// Days audit log entries are kept (0: for ever). Its own setting: audits are
    /// usually kept far longer than the queue's records.
    pub audit_retention_days: u32,
    /// Metric collection (the `[metrics]` table).
    pub metrics: MetricsConfig,
    /// Span export (the `[tracing]` table): `otlp_endpoint` names an OTLP/HTTP
    /// collector; off by default.
    pub tracing: openmid_proto::otlp::TracingSettings,
    /// When set, `GET /metrics` (the instance's own series) wants
    /// `Authorization: Bearer <metrics_token>`; unset, it is open like `/healthz`. A
    /// secret: never logged or shown.
    pub metrics_token: Option<openmid_proto::secret::Secret>,
    /// A dashboard session not used for this long ends (the next page asks for the
    /// admin token again). Pages refreshing themselves do not count as use.
    pub dashboard_session_idle_ms: u64,
    /// The master key credentials are encrypted with (32 bytes, base64 or hex). Never
    /// read from the file: the binary takes it from `OPENMID_MASTER_KEY`. Without it
    /// the key is `data_dir/master.key`, made at first start.
    #[serde(skip)]
    pub master_key: Option<openmid_proto::secret::Secret>,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("openmid-data"),
            database: None,
            blob_dir: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            tls_cert: None,
            tls_key: None,
            hostnames: Vec::new(),
            lease_ms: 30_000,
            heartbeat_ms: 10_000,
            disconnect_grace_ms: 1_000,
            down_after_ms: 30_000,
            max_poll_wait_ms: 30_000,
            max_attempts: 3,
            max_request_bytes: 32 * 1024 * 1024,
            max_blob_bytes: 1024 * 1024 * 1024,
            max_action_wait_secs: 300,
            retention_hours: 24 * 30,
            import_retention_days: 30,
            audit_retention_days: 365,
            tls_handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 0,
            metrics: MetricsConfig::default(),
            tracing: Default::default(),
            metrics_token: None,
            dashboard_session_idle_ms: 12 * 3_600_000,
            master_key: None,
        }
    }
}

impl InstanceConfig {
    /// Checks values that would make the instance misbehave.
    pub fn validate(&self) -> Result<(), String> {
        self.tracing.traces_url()?;
        if let Some(url) = &self.database {
            crate::ecc::Backend::parse(url.expose())?;
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key must be given together".into());
        }
        if self.heartbeat_ms == 0 || self.lease_ms < 2 * self.heartbeat_ms {
            return Err(format!(
                "lease_ms ({}) must be at least twice heartbeat_ms ({}), which must be > 0",
                self.lease_ms, self.heartbeat_ms
            ));
        }
        if self.down_after_ms < 2 * self.heartbeat_ms {
            return Err(format!(
                "down_after_ms ({}) must be at least twice heartbeat_ms ({})",
                self.down_after_ms, self.heartbeat_ms
            ));
        }
        if self.max_poll_wait_ms < 1_000 {
            return Err(
                "max_poll_wait_ms must be at least 1000 (MIDs would poll in a tight loop)".into(),
            );
        }
        if self.disconnect_grace_ms < 100 {
            return Err("disconnect_grace_ms must be at least 100".into());
        }
        if !(1..=10).contains(&self.max_attempts) {
            return Err(format!("max_attempts ({}) must be 1–10", self.max_attempts));
        }
        if self.max_request_bytes < 1024 {
            return Err("max_request_bytes must be at least 1024".into());
        }
        if self.max_blob_bytes < 1024 * 1024 {
            return Err("max_blob_bytes must be at least 1 MiB (1048576)".into());
        }
        if self.dashboard_session_idle_ms < 1_000 {
            return Err("dashboard_session_idle_ms must be at least 1000".into());
        }
        for (name, value) in [
            ("tls_handshake_timeout_ms", self.tls_handshake_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if value == 0 {
                return Err(format!("{name} must be greater than 0"));
            }
        }
        self.metrics.validate()
    }
}

/// Metric collection's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Samples older than this are deleted (in small batches, by the sweeper's purge).
    pub retention_hours: u64,
    /// Also send every sample to a time-series store (`[metrics.remote_write]`).
    pub remote_write: Option<RemoteWriteConfig>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            retention_hours: 24,
            remote_write: None,
        }
    }
}

impl MetricsConfig {
    fn validate(&self) -> Result<(), String> {
        if self.retention_hours == 0 {
            return Err("metrics.retention_hours must be at least 1".into());
        }
        if let Some(rw) = &self.remote_write {
            let url =
                url::Url::parse(&rw.url).map_err(|e| format!("metrics.remote_write.url: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err("metrics.remote_write.url: use http or https".into());
            }
            if rw.bearer_token.is_some() && rw.username.is_some() {
                return Err(
                    "metrics.remote_write: give bearer_token or username/password, not both".into(),
                );
            }
            if rw.password.is_some() && rw.username.is_none() {
                return Err("metrics.remote_write.password needs username".into());
            }
            if rw.batch_samples == 0 || rw.batch_samples > 100_000 {
                return Err("metrics.remote_write.batch_samples must be 1–100000".into());
            }
        }
        Ok(())
    }
}

/// Where samples are forwarded with the Prometheus remote-write protocol (1.0).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    /// Sent as `Authorization: Bearer …` (never logged).
    #[serde(default)]
    pub bearer_token: Option<openmid_proto::secret::Secret>,
    /// Basic authentication's user.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic authentication's password (never logged).
    #[serde(default)]
    pub password: Option<openmid_proto::secret::Secret>,
    /// Most samples per request.
    #[serde(default = "default_batch_samples")]
    pub batch_samples: u32,
}

fn default_batch_samples() -> u32 {
    2_000
}
