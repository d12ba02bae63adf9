//! The MID Server's settings. The binary reads them from TOML (with `OPENMID_MID_*`
//! environment overrides); tests build them directly.

use openmid_proto::secret::Secret;
use openmid_proto::trust::{Trust, parse_fingerprint};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// MID settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MidConfig {
    /// This MID's name on the instance (unique).
    pub name: String,
    /// The instance's base URL, e.g. `https://instance.example.com:8443`.
    pub instance_url: String,
    /// Other nodes of the same instance (sharing its store), tried in order when the
    /// current one does not answer; after the last comes `instance_url` again. The
    /// same `tls` trust applies to every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby_urls: Vec<String>,
    /// Where the MID keeps its identity (key pair, secret) and its outbox.
    pub state_dir: PathBuf,
    /// One-time enrollment token; needed only until the MID has enrolled.
    #[serde(default)]
    pub enrollment_token: Option<Secret>,
    /// How to trust the instance's certificate.
    #[serde(default)]
    pub tls: TlsTrust,
    /// Outbound HTTP proxy for reaching the instance (`http://host:port`). Without it
    /// the usual `HTTPS_PROXY` environment variables apply.
    #[serde(default)]
    pub proxy: Option<String>,
    /// The proxy's password as a reference, so it need not stand in this file:
    /// `{ env = "NAME" }` or `{ file = "/etc/openmid/proxy.pw" }`; the user name goes in
    /// the proxy URL (`http://USER@proxy:3128`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_password: Option<openmid_proto::credential::LocalSecret>,
    /// Worker pool sizes.
    #[serde(default)]
    pub pools: PoolSizes,
    /// When the outbox holds more than this many bytes of unacknowledged results, the
    /// MID stops claiming new work (back-pressure; nothing is ever deleted).
    #[serde(default = "default_outbox_limit")]
    pub outbox_limit_bytes: u64,
    /// How long a poll may wait at the instance for work.
    #[serde(default = "default_poll_wait")]
    pub poll_wait_ms: u64,
    /// How the session travels: `stream` (the default: one HTTP/2 stream carrying
    /// polls, results, heartbeats and express calls as frames; over a connection that
    /// is not HTTP/2 the MID falls back to long-polls by itself) or `long_poll` (one
    /// HTTPS request each, protocol 1, as the release before the stream spoke).
    #[serde(default)]
    pub transport: Transport,
    /// Largest response body a REST probe reads; larger ones fail with a clear error
    /// (never a truncated body).
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// REST response bodies up to this size travel inside the result; larger ones are
    /// written to a file under the outbox as they arrive and uploaded to the instance
    /// as a blob, so a large body never sits in the MID's memory.
    #[serde(default = "default_inline_body")]
    pub inline_body_bytes: usize,
    /// Capabilities this MID offers (`REST`, `SSH`, …, or `ALL`); empty means all.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Applications it serves (`Discovery`, `Orchestration`, …); empty means all.
    #[serde(default)]
    pub applications: Vec<String>,
    /// IP ranges it serves (`10.0.0.0/8`, `10.0.0.1-10.0.0.9`, `!10.9.0.0/16`); empty
    /// means all.
    #[serde(default)]
    pub ip_ranges: Vec<String>,
    /// Which local secrets (environment variables, files) a credential may name. A
    /// credential can only read what this allows, so a compromised instance cannot
    /// make the MID read and send out arbitrary files or variables.
    #[serde(default)]
    pub local_secrets: LocalSecretPolicy,
    /// What probes may reach and which commands may run (the `[policy]` table); checked
    /// when the config is read. Without it only the built-in refusals apply (loopback,
    /// link-local, metadata addresses) and no command runs.
    #[serde(default)]
    pub policy: crate::policy::EgressPolicy,
    /// Metric collection (the `[metrics]` table).
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// Span export (the `[tracing]` table): `otlp_endpoint` names an OTLP/HTTP
    /// collector; off by default.
    #[serde(default)]
    pub tracing: openmid_proto::otlp::TracingSettings,
    /// The MID's own `/metrics`, `/healthz` and `/readyz` (the `[telemetry]` table);
    /// without it the MID opens no listener at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetrySettings>,
}

/// Where the MID serves its own series and health (`[telemetry]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Address to listen on; loopback by default, so only a local agent (a node
    /// exporter's textfile collector, a local Prometheus agent) can read it.
    #[serde(default = "default_telemetry_listen")]
    pub listen: std::net::SocketAddr,
    /// Lets `listen` be a non-loopback address. Off by default: a MID is inside a
    /// private network and should accept no connection its operator did not mean to.
    #[serde(default)]
    pub allow_remote: bool,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            listen: default_telemetry_listen(),
            allow_remote: false,
        }
    }
}

fn default_telemetry_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 9464))
}

/// How scraped samples wait for the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Most bytes of samples kept on disk while the instance is unreachable; when
    /// full, scrapes are skipped (and counted in `openmid_scrape_skipped_total`),
    /// never samples deleted.
    #[serde(default = "default_metrics_buffer")]
    pub buffer_max_bytes: u64,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            buffer_max_bytes: default_metrics_buffer(),
        }
    }
}

fn default_metrics_buffer() -> u64 {
    64 * 1024 * 1024
}

/// Where local secrets may come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSecretPolicy {
    /// Environment variables whose names start with one of these may be read
    /// (default `OPENMID_SECRET_`).
    #[serde(default = "default_env_prefixes")]
    pub env_prefixes: Vec<String>,
    /// Files inside these directories may be read (default: none).
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
}

impl Default for LocalSecretPolicy {
    fn default() -> Self {
        Self {
            env_prefixes: default_env_prefixes(),
            dirs: Vec::new(),
        }
    }
}

fn default_env_prefixes() -> Vec<String> {
    vec!["OPENMID_SECRET_".to_string()]
}

fn default_outbox_limit() -> u64 {
    512 * 1024 * 1024
}
fn default_poll_wait() -> u64 {
    25_000
}
fn default_max_response() -> usize {
    256 * 1024 * 1024
}
fn default_inline_body() -> usize {
    1024 * 1024
}

/// How the MID verifies the instance. Give at most one; with none, the operating
/// system's root certificates are used.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsTrust {
    /// A PEM file of CA certificates (or the instance's own self-signed certificate).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The SHA-256 fingerprint the instance printed at first start.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Accept any certificate: anyone between the MID and the instance can then read and
    /// change all traffic, credentials included. For throwaway experiments only.
    #[serde(default)]
    pub dangerously_accept_any_certificate: bool,
}

/// Worker slots per priority.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolSizes {
    /// API calls people and flows wait on.
    pub interactive: u32,
    /// Work that must not queue behind bulk jobs.
    pub expedited: u32,
    /// Bulk work.
    pub standard: u32,
}

impl Default for PoolSizes {
    fn default() -> Self {
        Self {
            interactive: 32,
            expedited: 8,
            standard: 8,
        }
    }
}

/// A config problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key at fault.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn bad(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        message: message.into(),
    }
}

/// How a MID's session travels (`transport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// Frames on one HTTP/2 stream (protocol 2).
    #[default]
    Stream,
    /// One HTTPS request per poll, results batch and heartbeat (protocol 1).
    LongPoll,
}

impl MidConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(t) = &self.telemetry
            && !t.listen.ip().is_loopback()
            && !t.allow_remote
        {
            return Err(bad(
                "telemetry.listen",
                format!(
                    "{} is not a loopback address: use 127.0.0.1 or [::1], or set telemetry.allow_remote = true to serve metrics to the network",
                    t.listen
                ),
            ));
        }
        if !openmid_proto::is_valid_name(&self.name) {
            return Err(bad(
                "name",
                format!(
                    "`{}` is not a valid MID name (1–64 of A-Z a-z 0-9 . _ -)",
                    self.name
                ),
            ));
        }
        let urls = std::iter::once(("instance_url", None, &self.instance_url)).chain(
            self.standby_urls
                .iter()
                .enumerate()
                .map(|(i, u)| ("standby_urls", Some(i), u)),
        );
        for (key, index, value) in urls {
            let which = index.map(|i| format!("[{i}] ")).unwrap_or_default();
            let url = reqwest::Url::parse(value)
                .map_err(|e| bad(key, format!("{which}`{value}`: {e}")))?;
            if url.scheme() != "https" {
                return Err(bad(
                    key,
                    format!(
                        "{which}must be an https:// URL: the MID only talks to the instance over TLS"
                    ),
                ));
            }
        }
        if let Err(e) = self.tracing.traces_url() {
            let detail = e
                .strip_prefix("tracing.otlp_endpoint: ")
                .unwrap_or(&e)
                .to_string();
            return Err(bad("tracing.otlp_endpoint", detail));
        }
        for (key, size) in [
            ("pools.interactive", self.pools.interactive),
            ("pools.expedited", self.pools.expedited),
            ("pools.standard", self.pools.standard),
        ] {
            if !(1..=1024).contains(&size) {
                return Err(bad(key, format!("must be 1–1024, got {size}")));
            }
        }
        if !(1_000..=120_000).contains(&self.poll_wait_ms) {
            return Err(bad(
                "poll_wait_ms",
                format!("must be 1000–120000, got {}", self.poll_wait_ms),
            ));
        }
        if self.metrics.buffer_max_bytes < 4096 {
            // Below a few scrapes' worth nothing would ever fit, and the skipped count
            // could never travel.
            return Err(bad("metrics.buffer_max_bytes", "must be at least 4096"));
        }
        if self.outbox_limit_bytes < 1024 * 1024 {
            return Err(bad("outbox_limit_bytes", "must be at least 1 MiB"));
        }
        if self.max_response_bytes < 1024 {
            return Err(bad("max_response_bytes", "must be at least 1024"));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.inline_body_bytes) {
            return Err(bad(
                "inline_body_bytes",
                format!("must be 1024–67108864, got {}", self.inline_body_bytes),
            ));
        }
        openmid_proto::iprange::IpRanges::parse(&self.ip_ranges)
            .map_err(|e| bad("ip_ranges", e.to_string()))?;
        match (&self.proxy, &self.proxy_password) {
            (Some(proxy), password) => {
                crate::session::proxy::ProxySettings::new(proxy, password.as_ref())
                    .map_err(|e| bad(e.key, e.message))?;
            }
            (None, Some(_)) => return Err(bad("proxy_password", "is given without a proxy")),
            (None, None) => {}
        }
        self.trust()?;
        Ok(())
    }

    /// What this MID declares it offers.
    pub fn profile(&self) -> openmid_proto::mid::MidProfile {
        openmid_proto::mid::MidProfile {
            capabilities: self.capabilities.clone(),
            applications: self.applications.clone(),
            ip_ranges: self.ip_ranges.clone(),
            topics: crate::probes::registry::topics(),
        }
    }

    /// The trust setting, read from `tls` (reads the CA file).
    pub fn trust(&self) -> Result<Trust, ConfigError> {
        let t = &self.tls;
        let given = usize::from(t.ca_file.is_some())
            + usize::from(t.fingerprint.is_some())
            + usize::from(t.dangerously_accept_any_certificate);
        if given > 1 {
            return Err(bad(
                "tls",
                "give only one of ca_file, fingerprint, dangerously_accept_any_certificate",
            ));
        }
        if let Some(path) = &t.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| bad("tls.ca_file", format!("{}: {e}", path.display())))?;
            return Ok(Trust::CaPem(pem));
        }
        if let Some(fp) = &t.fingerprint {
            return parse_fingerprint(fp)
                .map(Trust::Fingerprint)
                .map_err(|e| bad("tls.fingerprint", e.to_string()));
        }
        if t.dangerously_accept_any_certificate {
            return Ok(Trust::DangerAcceptAnyCertificate);
        }
        Ok(Trust::SystemRoots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MidConfig {
        toml::from_str(
            "name = \"m1\"\ninstance_url = \"https://instance:8443\"\nstate_dir = \"/tmp/m1\"\n[tls]\nfingerprint = \"AB:CD:AB:CD:AB:CD:AB:CD:AB:CD:AB:CD:AB:CD:AB:CD:AB:CD:AB:CD:AB:CD:AB:CD:AB:CD:AB:CD:AB:CD:AB:CD\"\n",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_good_config_passes_and_bad_values_name_their_key() {
        assert!(config().validate().is_ok());
        type Breaker = fn(&mut MidConfig);
        let cases: [(&str, Breaker); 11] = [
            ("telemetry.listen", |c| {
                c.telemetry = Some(super::TelemetrySettings {
                    listen: "0.0.0.0:9464".parse().unwrap_or_else(|e| panic!("{e}")),
                    allow_remote: false,
                })
            }),
            ("name", |c| c.name = "a b".into()),
            ("standby_urls", |c| {
                c.standby_urls = vec!["https://b:8443".into(), "http://c:8443".into()]
            }),
            ("instance_url", |c| {
                c.instance_url = "http://instance".into()
            }),
            ("poll_wait_ms", |c| c.poll_wait_ms = 0),
            ("outbox_limit_bytes", |c| c.outbox_limit_bytes = 10),
            ("metrics.buffer_max_bytes", |c| {
                c.metrics.buffer_max_bytes = 100
            }),
            ("ip_ranges", |c| c.ip_ranges = vec!["10.0.0.0/40".into()]),
            ("pools.standard", |c| c.pools.standard = 0),
            ("tls", |c| c.tls.dangerously_accept_any_certificate = true),
            ("tls.fingerprint", |c| c.tls.fingerprint = Some("zz".into())),
        ];
        for (key, break_it) in cases {
            let mut c = config();
            break_it(&mut c);
            let err = c.validate().err().map(|e| e.key);
            assert_eq!(err, Some(key));
        }
    }
}
