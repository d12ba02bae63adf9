//! This node among the others that share its store.
//!
//! Every node says it is alive every [`NODE_BEAT`]; one that has not for
//! [`NODE_TIMEOUT`] is dead. One node at a time holds the `sweeper` lease and does the
//! housekeeping that must happen once (lapsed leases, moving work, MIDs whose node
//! died, retention, discovery and metric assignments): when it dies its lease lapses
//! and the next node to renew takes it, within [`LEADER_LEASE`]. Wake-ups that another
//! node may be waiting for are announced after their write commits; what other nodes
//! announce is applied here as if it had happened on this node.

use super::*;
use crate::ecc::{Announcement, Heard, NodeRow};

/// How often a node says it is alive and renews what it leads.
pub const NODE_BEAT: Duration = Duration::from_millis(500);

/// A node silent this long is dead: its MIDs have this long plus the disconnect grace
/// to come back through another node before they are `down`.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the sweeper lease lasts without renewal: how soon another node takes the
/// housekeeping over when its holder dies.
pub const LEADER_LEASE: Duration = Duration::from_secs(3);

/// The lease one node's sweeper holds.
const SWEEPER_LEASE: &str = "sweeper";

pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// This node: who it is, whether it leads, and what it has to tell the others.
pub struct Node {
    row: NodeRow,
    leader: AtomicBool,
    outbox: std::sync::Mutex<Vec<Announcement>>,
    queued: tokio::sync::Notify,
}

impl Node {
    /// A node starting now, named for an operator reading `instance_nodes`.
    pub fn new(name: String) -> Self {
        let now = now_ms();
        Self {
            row: NodeRow {
                id: uuid::Uuid::now_v7().simple().to_string(),
                name,
                started_at: now,
                last_seen: now,
            },
            leader: AtomicBool::new(false),
            outbox: std::sync::Mutex::new(Vec::new()),
            queued: tokio::sync::Notify::new(),
        }
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        &self.row.id
    }
}

impl Dispatcher {
    /// This node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Whether this node does the housekeeping that must happen once.
    pub fn is_leader(&self) -> bool {
        self.node.leader.load(Ordering::Relaxed)
    }

    /// Queues an announcement for the other nodes (sent by [`Dispatcher::run_announcer`]
    /// in batches, off the caller's path). Nothing is queued when no other node shares
    /// the store.
    pub(super) fn announce(&self, announcement: Announcement) {
        if !self.store.is_shared() {
            return;
        }
        self.node
            .outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(announcement);
        self.node.queued.notify_one();
    }

    /// Says this node is alive and takes or renews the sweeper lease; returns whether
    /// it leads now. A failure to write counts as not leading: another node may take
    /// the lease meanwhile.
    pub(super) async fn beat(&self) -> bool {
        let now = now_ms();
        let row = NodeRow {
            last_seen: now,
            ..self.node.row.clone()
        };
        let leads = match self.store.node_alive(&row).await {
            // Nobody else can use this store (one process has a SQLite file): this
            // node leads, even while a crashed predecessor's lease has not lapsed.
            Ok(()) if !self.store.is_shared() => true,
            Ok(()) => self
                .store
                .hold_lease(SWEEPER_LEASE, self.node.id(), now, now + ms(LEADER_LEASE))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "renewing the sweeper lease failed");
                    false
                }),
            Err(e) => {
                tracing::warn!(error = %e, "saying this node is alive failed");
                false
            }
        };
        let was = self.node.leader.swap(leads, Ordering::Relaxed);
        if leads && !was {
            tracing::info!(node = %self.node.id(), "this node does the housekeeping now");
            self.rebalance_wanted.store(true, Ordering::Relaxed);
        } else if was && !leads {
            tracing::warn!(node = %self.node.id(), "another node does the housekeeping now");
        }
        leads
    }

    /// Other nodes alive now.
    pub(super) async fn other_live_nodes(&self) -> Result<Vec<NodeRow>, DispatchError> {
        if !self.store.is_shared() {
            return Ok(Vec::new());
        }
        let since = now_ms() - ms(NODE_TIMEOUT);
        Ok(self
            .store
            .live_nodes(since)
            .await?
            .into_iter()
            .filter(|n| n.id != self.node.id())
            .collect())
    }

    /// The nodes seen within the last hour, for operators.
    pub async fn list_nodes(&self) -> Result<Vec<openmid_proto::api::InstanceNode>, DispatchError> {
        let now = now_ms();
        let leader = self.store.lease_holder(SWEEPER_LEASE, now).await?;
        let leader = if self.store.is_shared() {
            leader
        } else {
            Some(self.node.id().to_string())
        };
        Ok(self
            .store
            .live_nodes(now - 3_600_000)
            .await?
            .into_iter()
            .map(|n| openmid_proto::api::InstanceNode {
                alive: n.last_seen >= now - ms(NODE_TIMEOUT),
                leader: leader.as_deref() == Some(n.id.as_str()),
                answering: n.id == self.node.id(),
                started_at: rfc3339(n.started_at),
                last_seen: rfc3339(n.last_seen),
                name: n.name,
                id: n.id,
            })
            .collect())
    }

    /// At a clean stop: gives up the sweeper lease at once and counts this node as
    /// dead from now, so its MIDs get the usual time to come back through another
    /// node before they are `down`.
    pub async fn leave(&self) {
        let gone = NodeRow {
            last_seen: now_ms() - ms(NODE_TIMEOUT),
            ..self.node.row.clone()
        };
        let left = async {
            self.store
                .release_lease(SWEEPER_LEASE, self.node.id())
                .await?;
            self.store.node_alive(&gone).await
        };
        if let Err(e) = left.await {
            tracing::warn!(error = %e, "could not tell the other nodes this one stops");
        }
        self.node.leader.store(false, Ordering::Relaxed);
    }

    /// Sends queued announcements, many per statement, until `shutdown`.
    pub async fn run_announcer(self: Arc<Self>, shutdown: CancellationToken) {
        if !self.store.is_shared() {
            return;
        }
        loop {
            let queued = self.node.queued.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            let batch =
                std::mem::take(&mut *self.node.outbox.lock().unwrap_or_else(|e| e.into_inner()));
            if batch.is_empty() {
                tokio::select! {
                    () = &mut queued => continue,
                    () = shutdown.cancelled() => return,
                }
            }
            if let Err(e) = self.store.announce(self.node.id(), &batch).await {
                // Waiters on other nodes still find the work or the result within
                // their own deadlines (polls and waits re-read when they end).
                tracing::warn!(error = %e, announcements = batch.len(), "announcing to the other nodes failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Applies what the other nodes announce, until `shutdown`.
    pub async fn run_listener(self: Arc<Self>, shutdown: CancellationToken) {
        let mut heard = match self.store.listen().await {
            Ok(Some(rx)) => rx,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen to the other nodes: wake-ups from them are lost");
                return;
            }
        };
        loop {
            let next = tokio::select! {
                next = heard.recv() => next,
                () = shutdown.cancelled() => return,
            };
            match next {
                None => return,
                Some(Heard::Said(node, _)) if node == self.node.id() => {}
                Some(Heard::Said(_, said)) => self.heard(said).await,
                Some(Heard::Reconnected) => {
                    // Anything may have been said meanwhile: everyone waiting here
                    // looks again.
                    self.agents.signal_all();
                    self.outputs.signal_all();
                    self.progress.signal_all();
                    self.rebalance_wanted.store(true, Ordering::Relaxed);
                }
            }
        }
    }

    async fn heard(&self, said: Announcement) {
        match said {
            Announcement::Work { mid } => self.agents.signal(&mid_key(&mid)),
            Announcement::Finished { output } => {
                self.outputs.signal(&output);
                self.progress.signal(&output);
            }
            Announcement::Progress { output } => self.progress.signal(&output),
            Announcement::Cancel {
                mid,
                output,
                attempt,
            } => {
                // Only the node it polls tells it (its heartbeat hears it anyway).
                if self.presence.has_open_poll(&mid) {
                    self.queue_cancel(
                        &mid,
                        JobRef {
                            output_id: output,
                            attempt,
                        },
                    );
                    self.agents.signal(&mid_key(&mid));
                }
            }
            Announcement::Present { mid, node } => {
                tracing::debug!(%mid, %node, "MID polls another node now");
                self.presence.moved_away(&mid);
            }
            Announcement::Rebalance => self.rebalance_wanted.store(true, Ordering::Relaxed),
        }
    }

    /// Records that `mid`'s long-poll is attached to this node, and tells the others.
    pub(super) async fn attach(&self, mid: &str) {
        if let Err(e) = self.store.set_presence(mid, self.node.id(), now_ms()).await {
            tracing::warn!(%mid, error = %e, "could not record which node a MID polls");
            return;
        }
        self.announce(Announcement::Present {
            mid: mid.to_string(),
            node: self.node.id().to_string(),
        });
    }

    /// Marks that assignments should be re-checked, on whichever node leads.
    pub(super) fn rebalance_soon(&self) {
        self.rebalance_wanted.store(true, Ordering::Relaxed);
        if !self.is_leader() {
            self.announce(Announcement::Rebalance);
        }
    }
}
