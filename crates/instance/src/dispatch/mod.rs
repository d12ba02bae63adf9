//! Dispatch: turns API requests into output records and assigns each to a MID (directly,
//! through a cluster, or by `mid.auto` selection), hands them out by long-poll, records
//! results exactly once, notices MIDs that go away, and moves their work elsewhere.

mod caller_audit;
mod cancel;
pub mod express;
pub mod handoff;
mod heartbeat;
mod lifecycle;
pub mod nodes;
mod output;
mod poll;
pub mod presence;
mod results;
pub mod selection;
pub mod signals;
mod submit;
mod sweeper;

pub use crate::error::DispatchError;
pub(crate) use crate::error::invalid;
pub use crate::registry::lifecycle::AdminAction;
pub use results::MAX_RESULTS_PER_POST;
pub use submit::{IDEMPOTENCY_WINDOW, Idempotency, Submitted, Watch};

use crate::blobs::BlobStore;
use crate::config::InstanceConfig;
use crate::connections::{self, Connections};
use crate::ecc::{
    Cancelled, Claim, Finished, IdempotencyKey, IdempotentHit, Load, MidKey, MidRow, NewAuditEntry,
    Record, RecordedResult, ResultAudit, SessionChange, Store, StoreError,
};
use crate::vault::Vault;
use handoff::ParkedPolls;
use nodes::Node;
use openmid_proto::api::{MidHealth, NewOutput};
use openmid_proto::ecc::{Agent, Priority, Queue, State};
use openmid_proto::mid::{
    Ack, AckOutcome, HeartbeatRequest, HeartbeatResponse, JobRef, MidStatus, PollRequest,
    PollResponse, RekeyRequest, ResultsRequest, ResultsResponse, WorkItem,
};
use openmid_proto::payload::Payload;
use openmid_proto::time::{now_ms, rfc3339};
use presence::Presence;
use selection::{Choice, Needs};
use signals::Signals;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The dispatcher: shared by the API handlers and the background sweeper.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    config: Arc<InstanceConfig>,
    /// "New work for MID X" (key: `mid.server.X`).
    agents: Signals,
    /// "Output X finished" (key: output id).
    outputs: Signals,
    /// "Output X has new streamed output, or finished" (key: output id).
    progress: Signals,
    presence: Arc<Presence>,
    /// Long-polls waiting for work, for hand-off.
    parked: Arc<ParkedPolls>,
    /// Outputs just finished that an API call waits for: it takes them from here
    /// instead of reading them back from the store.
    finished: std::sync::Mutex<HashMap<String, Finished>>,
    rebalance_wanted: AtomicBool,
    /// Cancelled jobs to tell their MID about in its next poll answer, by MID name
    /// (its heartbeat tells it again from the store, should this be lost).
    cancels: std::sync::Mutex<HashMap<String, Vec<JobRef>>>,
    vault: Arc<Vault>,
    blobs: Arc<BlobStore>,
    /// This node among those sharing the store.
    node: Node,
    /// The instance's own series (`/metrics`).
    telemetry: Arc<crate::telemetry::Telemetry>,
    /// MIDs' session streams on this node, for the express lane.
    lanes: Arc<express::Lanes>,
    /// Writes express calls' records after they answered (started with the first).
    recorder: std::sync::OnceLock<express::Recorder>,
    /// Audit entries of API calls waiting on their outputs, for the results' writes.
    caller_audits: caller_audit::CallerAudits,
}

/// What `instance_nodes` calls this node: its host and listen address.
fn node_name(config: &InstanceConfig) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{host} {} (pid {})", config.listen, std::process::id())
}

fn mid_key(name: &str) -> String {
    format!("mid.server.{name}")
}

/// Capabilities a payload asks of its MID beyond its topic's (`mid_capabilities`).
fn more_capabilities(payload: &Payload) -> Vec<String> {
    payload
        .field::<Vec<serde_json::Value>>("mid_capabilities")
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Dispatcher {
    /// A dispatcher over `store`.
    pub fn new(store: Arc<dyn Store>, config: Arc<InstanceConfig>, vault: Arc<Vault>) -> Self {
        let node = Node::new(node_name(&config));
        Self {
            blobs: Arc::new(BlobStore::new(
                config
                    .blob_dir
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("blobs")),
                config.max_blob_bytes,
            )),
            store,
            config,
            vault,
            agents: Signals::default(),
            outputs: Signals::default(),
            progress: Signals::default(),
            presence: Arc::new(Presence::default()),
            parked: Arc::new(ParkedPolls::default()),
            finished: std::sync::Mutex::new(HashMap::new()),
            rebalance_wanted: AtomicBool::new(true),
            cancels: std::sync::Mutex::new(HashMap::new()),
            node,
            telemetry: Arc::new(crate::telemetry::Telemetry::new()),
            lanes: Arc::default(),
            recorder: std::sync::OnceLock::new(),
            caller_audits: Default::default(),
        }
    }

    /// The instance's own series, for hooks and `/metrics`.
    pub fn telemetry(&self) -> &Arc<crate::telemetry::Telemetry> {
        &self.telemetry
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The instance's settings.
    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    /// Days an import set is kept after it ended, by default.
    pub fn import_retention_days(&self) -> u32 {
        self.config.import_retention_days
    }

    /// Large request and response bodies.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Credentials and aliases.
    pub fn connections(&self) -> Connections<'_> {
        Connections {
            store: self.store.as_ref(),
            vault: &self.vault,
        }
    }

    async fn choose(
        &self,
        agent: &Agent,
        needs: &Needs<'_>,
        mids: &[MidRow],
        load: &HashMap<String, Load>,
    ) -> Result<Choice, DispatchError> {
        Ok(match agent {
            Agent::Server(name) => Choice::Mid {
                name: name.clone(),
                why: format!("addressed to mid.server.{name}"),
                by_rank: false,
            },
            Agent::Cluster(name) => {
                let cluster = self
                    .store
                    .get_cluster(name)
                    .await?
                    .ok_or_else(|| invalid("agent", format!("no cluster named `{name}`")))?;
                selection::in_cluster(&cluster, mids, load, needs.avoid)
            }
            Agent::Auto => selection::auto(needs, mids, load),
        })
    }

    /// Wakes a MID's long-poll (new work, validation, a status change), on whichever
    /// node it polls.
    pub fn wake_mid(&self, name: &str) {
        self.agents.signal(&mid_key(name));
        if !self.presence.has_open_poll(name) {
            self.announce(crate::ecc::Announcement::Work {
                mid: name.to_string(),
            });
        }
    }

    /// Marks that assignments should be re-checked at the next sweep (after a cluster
    /// or profile change).
    pub fn want_rebalance(&self) {
        self.rebalance_soon();
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.lease_ms).unwrap_or(i64::MAX)
    }
}
