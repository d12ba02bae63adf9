//! Probes: one module per topic, each with one entry point
//! `async fn run(input, credential, ctx) -> Result<Output, ProbeError>`. Adding a probe
//! is a new module and one line in [`run`].

pub mod command;
pub mod credentials;
pub mod discovery;
pub mod endpoint;
pub mod file_import;
pub mod http;
pub mod ldap;
pub mod metrics;
pub mod output_stream;
pub mod registry;
pub mod rest;
pub mod snmp;
pub mod soap;
pub mod soap_xml;
pub mod sql;
pub mod ssh;
pub mod urls;

use crate::config::LocalSecretPolicy;
use crate::policy::{Denial, EgressPolicy, PolicyResolver, Protocol};
use crate::session::client::InstanceClient;
use credentials::{Credential, TokenCache};
use openmid_proto::credential::CredentialSpec;
use openmid_proto::ecc::Topic;
use openmid_proto::mid::JobRef;
use openmid_proto::payload::Payload;
use openmid_proto::trace::TraceParent;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What every probe may use.
pub struct ProbeContext {
    /// HTTP client for REST/SOAP targets (connection pools are shared across jobs).
    pub http: reqwest::Client,
    /// Largest response body read.
    pub max_response_bytes: usize,
    /// Response bodies larger than this are spilled to a file (see [`ProbeContext::with_bodies`]).
    pub inline_body_bytes: usize,
    /// The outbox directory, under whose `bodies/` large response bodies are written;
    /// without it every body is read into memory.
    pub outbox_dir: Option<PathBuf>,
    /// The instance, for streaming request bodies kept there as blobs.
    pub instance: Option<Arc<InstanceClient>>,
    /// Where credentials' local secrets may come from.
    pub local_secrets: LocalSecretPolicy,
    /// OAuth 2.0 tokens, by client.
    pub tokens: TokenCache,
    /// What this MID may reach (its own config; the instance cannot widen it).
    pub policy: Arc<EgressPolicy>,
    /// SSH connections kept between jobs.
    pub ssh: ssh::SshPool,
    /// Metric collection, which `MetricScrape` jobs configure.
    pub metrics: Option<Arc<crate::metrics::Scraper>>,
    /// Clients for targets with their own CA, by a digest of the CA (a client holds its
    /// connection pool, so it is kept).
    tls_clients: Mutex<HashMap<String, reqwest::Client>>,
}

/// Most distinct TLS clients kept; past it the cache starts over (each holds a pool).
const MAX_TLS_CLIENTS: usize = 256;

fn client_builder(policy: &Arc<EgressPolicy>) -> reqwest::ClientBuilder {
    // Probe traffic goes straight to internal targets: the proxy (if any) is only for
    // reaching the instance.
    // Redirects are followed by `http::send` itself, which keeps credentials on the
    // call's own origin; no `Referer`, which would carry a query key to the next host.
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        // Every name is resolved under the egress policy: a name resolving to a
        // refused address (loopback, metadata, a denied range) is refused.
        .dns_resolver(Arc::new(PolicyResolver::new(
            policy.clone(),
            Protocol::Http,
        )))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
}

impl ProbeContext {
    /// Builds the context.
    pub fn new(
        max_response_bytes: usize,
        local_secrets: LocalSecretPolicy,
        policy: Arc<EgressPolicy>,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: client_builder(&policy).build()?,
            policy,
            max_response_bytes,
            inline_body_bytes: usize::MAX,
            outbox_dir: None,
            instance: None,
            local_secrets,
            tokens: TokenCache::default(),
            ssh: ssh::SshPool::default(),
            metrics: None,
            tls_clients: Mutex::new(HashMap::new()),
        })
    }

    /// Spills response bodies over `inline_body_bytes` to files under `outbox_dir`.
    pub fn with_bodies(mut self, outbox_dir: PathBuf, inline_body_bytes: usize) -> Self {
        self.outbox_dir = Some(outbox_dir);
        self.inline_body_bytes = inline_body_bytes;
        self
    }

    /// Where `Command` scripts are written for their run: beside the outbox (the MID's
    /// own state directory), else under the system's temporary directory.
    pub fn scripts_dir(&self) -> PathBuf {
        self.outbox_dir
            .as_deref()
            .and_then(std::path::Path::parent)
            .map_or_else(
                || std::env::temp_dir().join("openmid-scripts"),
                |state| state.join("scripts"),
            )
    }

    /// Where the SSH probe keeps host keys (`known_hosts`, the operator's, and
    /// `pinned_hosts`, trust-on-first-use pins): beside the outbox, else under the
    /// system's temporary directory.
    pub fn ssh_dir(&self) -> PathBuf {
        self.outbox_dir
            .as_deref()
            .and_then(std::path::Path::parent)
            .map_or_else(
                || std::env::temp_dir().join("openmid-ssh"),
                |state| state.join("ssh"),
            )
    }

    /// Lets `MetricScrape` jobs configure `scraper`.
    pub fn with_metrics(mut self, scraper: Arc<crate::metrics::Scraper>) -> Self {
        self.metrics = Some(scraper);
        self
    }

    /// Lets probes stream request bodies from the instance.
    pub fn with_instance(mut self, instance: Arc<InstanceClient>) -> Self {
        self.instance = Some(instance);
        self
    }

    /// The client for a target: the shared one, or one that trusts `ca_pem` and/or
    /// presents the credential's client certificate.
    pub fn client_for(
        &self,
        ca_pem: Option<&str>,
        credential: Option<&Credential>,
    ) -> Result<reqwest::Client, ProbeError> {
        let identity = match credential {
            Some(Credential::ClientCertificate { identity_pem }) => Some(identity_pem),
            _ => None,
        };
        if ca_pem.is_none() && identity.is_none() {
            return Ok(self.http.clone());
        }
        // Clients with only a CA are kept (they hold a connection pool). A client with
        // a client certificate holds its private key, so it is built for the job and
        // dropped with it: the key lives in the MID's memory only while a probe runs.
        let key = ca_pem.filter(|_| identity.is_none()).map(|pem| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pem.as_bytes());
            hex::encode(digest.as_ref())
        });
        if let Some(key) = &key
            && let Some(client) = self
                .tls_clients
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(key)
        {
            return Ok(client.clone());
        }
        let mut builder = client_builder(&self.policy);
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|_| {
                ProbeError::InvalidInput("ca_pem: not a PEM certificate bundle".into())
            })?;
            builder = builder.tls_certs_only(certs);
        }
        if let Some(pem) = identity {
            let identity = reqwest::Identity::from_pem(pem.expose().as_bytes()).map_err(|_| {
                ProbeError::Credential(
                    "client_certificate: the certificate and private key do not form a usable PEM identity"
                        .into(),
                )
            })?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|e| ProbeError::InvalidInput(format!("TLS settings: {e}")))?;
        if let Some(key) = key {
            let mut cache = self.tls_clients.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= MAX_TLS_CLIENTS {
                cache.clear();
            }
            cache.insert(key, client.clone());
        }
        Ok(client)
    }
}

/// Why a probe failed. The message goes into the input record's `error`, so it must
/// say what failed without carrying secrets.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The payload does not fit the topic.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// This MID has no probe for the topic.
    #[error("this MID ({version}) has no probe for topic {topic}")]
    Unsupported {
        /// The topic.
        topic: Topic,
        /// Our version.
        version: &'static str,
    },
    /// The credential could not be opened, resolved or used.
    #[error("credential: {0}")]
    Credential(String),
    /// The target could not be reached or answered badly.
    #[error("{0}")]
    Target(String),
    /// The target answered, but not as the topic expects (a SOAP call answered with an
    /// HTML 401 page): an error all the same, with what it answered kept as the
    /// result's response so the caller sees more than a sentence.
    #[error("{message}")]
    Answered {
        /// What went wrong, as for [`ProbeError::Target`].
        message: String,
        /// The topic's response type, as JSON, describing the answer.
        response: Box<serde_json::Value>,
    },
    /// The call took longer than allowed.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The job was stopped: cancelled, or its lease lost.
    #[error("stopped: the job was cancelled or its lease was lost")]
    Cancelled,
    /// The MID's egress policy refuses the target (the message names the rule).
    #[error(transparent)]
    Policy(#[from] Denial),
    /// The response exceeded the size cap.
    #[error(
        "response body exceeds the {limit}-byte limit ({setting}); nothing was truncated, the call is reported as failed"
    )]
    TooLarge {
        /// The cap.
        limit: usize,
        /// What sets it.
        setting: &'static str,
    },
}

impl ProbeError {
    /// The payload of the failed job's input record: what the target answered when the
    /// error kept it ([`ProbeError::Answered`]), else null.
    pub fn into_response(self) -> Payload {
        match self {
            ProbeError::Answered { response, .. } => Payload::from(*response),
            _ => Payload::null(),
        }
    }
}

/// What one job carries into its probe besides its payload.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The output and attempt (names files kept on the job's behalf).
    pub id: JobRef,
    /// Cancelled when the job must stop: the instance cancelled it, or its lease was
    /// lost and the work went elsewhere. A probe that holds something to clean up (a
    /// process group) watches it; the others are simply dropped.
    pub cancel: CancellationToken,
    /// The MID's span of the job: the trace the instance gave it, with this MID's own
    /// span id, sent as `traceparent` on the REST and SOAP requests the job makes.
    pub trace: Option<TraceParent>,
}

impl JobContext {
    /// A context for `id` that nothing has cancelled.
    pub fn new(id: JobRef) -> Self {
        Self {
            id,
            cancel: CancellationToken::new(),
            trace: None,
        }
    }

    /// The job in the trace of `traceparent` (the instance's span of it), with a span
    /// of this MID's own; a job without one (from an older instance), or with one that
    /// does not parse, starts a trace here.
    pub fn traced(mut self, traceparent: Option<&str>) -> Self {
        self.trace = Some(TraceParent::continue_or_start(traceparent).0);
        self
    }

    /// `headers` with this job's `traceparent` in place of any the request gave (the
    /// job's trace is the caller's already; two would make it ambiguous).
    pub fn with_trace_header(
        &self,
        mut headers: std::collections::BTreeMap<String, String>,
    ) -> std::collections::BTreeMap<String, String> {
        if let Some(trace) = &self.trace {
            headers.retain(|name, _| !name.eq_ignore_ascii_case(openmid_proto::trace::HEADER));
            headers.insert(openmid_proto::trace::HEADER.into(), trace.to_string());
        }
        headers
    }
}

/// Runs the probe for `topic` ([`registry`]), with the job's credential (opened, not
/// yet resolved: local secrets are read here, under the MID's policy).
pub async fn run(
    topic: Topic,
    payload: Payload,
    credential: Option<CredentialSpec>,
    job: &JobContext,
    ctx: &ProbeContext,
) -> Result<Payload, ProbeError> {
    let credential = credential
        .map(|spec| credentials::resolve(spec, &ctx.local_secrets))
        .transpose()?;
    let call = registry::Call {
        credential: credential.as_ref(),
        job,
        deadline: None,
        ctx,
    };
    registry::run(topic, payload, call).await
}
