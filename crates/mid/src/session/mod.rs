//! The session with the instance: enroll once, then three loops over one HTTPS client —
//! long-poll for work, post results from the outbox, heartbeat to renew leases. Every
//! connection is opened by the MID.

pub mod backoff;
pub mod client;
mod heartbeat;
pub mod proxy;
mod results;
pub mod stream;

use crate::MidError;
use crate::config::MidConfig;
use crate::executor::Executor;
use crate::keys::Identity;
use crate::outbox::{BODY_FILE_KEY, Outbox};
use crate::probes::http::SpilledBody;
use backoff::Backoff;
use client::{InstanceClient, SessionError};
use openmid_proto::BUILD_VERSION;
use openmid_proto::mid::{
    AckOutcome, Capacity, EnrollRequest, HeartbeatRequest, JobRef, MidStatus, PollRequest,
    ResultsRequest, WorkResult,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// Results posted per request.
const RESULTS_PER_POST: usize = 256;
/// Bytes of results per request (past the first result), well inside the instance's
/// default request limit.
const RESULT_BYTES_PER_POST: u64 = 4 * 1024 * 1024;

/// A MID's session.
pub struct Session {
    pub(crate) config: Arc<MidConfig>,
    pub(crate) client: Arc<InstanceClient>,
    pub(crate) identity: Arc<std::sync::Mutex<Identity>>,
    pub(crate) executor: Arc<Executor>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) status: watch::Sender<Option<MidStatus>>,
    pub(crate) started: Instant,
    pub(crate) heartbeat_ms: AtomicU64,
    /// This process's session id, sent in heartbeats: a new one tells the instance
    /// that what an earlier process of this MID held is gone.
    pub(crate) session_id: String,
    /// The instance answered again after requests to it failed: whoever backs off
    /// (the result sender, the heartbeat) goes at once instead of sleeping on.
    pub(crate) reconnected: Notify,
    /// A heartbeat is wanted now (after a reconnect: renew the leases at once).
    pub(crate) beat_now: Notify,
    /// Set once the first heartbeat of this process was answered: polling starts only
    /// then, so the instance learns of the new session (and releases what an earlier
    /// process held) before this one claims anything.
    pub(crate) opened: watch::Sender<bool>,
    /// The MID's own series and readiness.
    pub(crate) telemetry: Arc<crate::telemetry::Telemetry>,
}

/// A new random session id.
pub(crate) fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    // A failure of the system RNG leaves a time-based id: still new per process.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ u128::from(std::process::id())).to_le_bytes();
    }
    hex::encode(bytes)
}

fn new_backoff() -> Backoff {
    Backoff::new(
        Duration::from_millis(200),
        Duration::from_millis(openmid_proto::mid::MAX_RECONNECT_DELAY_MS),
    )
}

impl Session {
    /// Runs until `shutdown` is cancelled or the instance refuses the MID for good.
    /// On the way out it lets running jobs finish (their results go to the outbox) and
    /// makes one last attempt to post what the outbox holds.
    pub async fn run(self) -> Result<(), MidError> {
        self.enroll().await?;
        let Some(bearer) = self.identity().bearer() else {
            return Ok(()); // shut down before enrollment finished
        };
        self.client.set_bearer(bearer);
        let this = Arc::new(self);
        if this.identity().has_pending_rekey() {
            // A rekey was cut short: finish it (sending the same keys again is harmless).
            this.rekey().await;
        }
        let background = CancellationToken::new();
        // Set before any stream opens, so none comes up without a place for its work.
        let (to_run, pushed) = tokio::sync::mpsc::channel::<stream::Pushed>(1024);
        this.client.take_pushed(to_run);
        let pushed = tokio::spawn(this.clone().run_pushed(pushed, background.clone()));
        let sender = tokio::spawn(this.clone().send_results(background.clone()));
        let heart = tokio::spawn(this.clone().heartbeats(background.clone()));
        let outcome = this.poll_for_work().await;
        // While running jobs finish, keep one idle poll open: the instance then knows this
        // MID is still here and does not hand its work to another.
        let drain = this.executor.drain();
        tokio::pin!(drain);
        {
            // Scoped so the idle poll is dropped once the jobs are done: left pending,
            // it would keep the stream opener's lock and the heartbeat task would wait
            // on it for ever.
            let present = this.keep_presence();
            tokio::pin!(present);
            tokio::select! {
                _ = &mut drain => {}
                _ = &mut present => (&mut drain).await,
            }
        }
        background.cancel();
        let _ = pushed.await;
        this.client.close_stream();
        let _ = sender.await;
        let _ = heart.await;
        if !this.outbox.is_empty() {
            tracing::warn!(
                results = this.outbox.len(),
                "stopping with unacknowledged results; they stay in the outbox and are posted at the next start"
            );
        }
        outcome
    }

    fn identity(&self) -> std::sync::MutexGuard<'_, Identity> {
        self.identity.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mid_name(&self) -> String {
        self.config.name.clone()
    }

    async fn enroll(&self) -> Result<(), MidError> {
        if self.identity().mid_id.is_some() {
            return Ok(());
        }
        let token = self.config.enrollment_token.clone().ok_or_else(|| {
            MidError::Config(
                "enrollment_token: this MID has not enrolled yet; put a token from `openmid ctl enroll-token create` in the config".into(),
            )
        })?;
        let req = {
            let identity = self.identity();
            EnrollRequest {
                token,
                name: identity.name.clone(),
                public_key: identity.public_key_b64(),
                secret: identity.secret.clone(),
                protocol_version: self.client.protocol(),
                version: BUILD_VERSION.to_string(),
                hostname: hostname(),
                profile: self.config.profile(),
            }
        };
        let mut backoff = new_backoff();
        loop {
            let attempt = tokio::select! {
                r = self.client.enroll(&req) => r,
                _ = self.shutdown.cancelled() => return Ok(()),
            };
            match attempt {
                Ok(resp) => {
                    self.identity()
                        .set_enrolled(resp.mid_id)
                        .map_err(MidError::Identity)?;
                    tracing::info!(mid = %resp.name, status = resp.status.as_str(), "enrolled with the instance");
                    self.status.send_replace(Some(resp.status));
                    return Ok(());
                }
                Err(e) if e.is_fatal() => {
                    self.telemetry.session_refused(&e);
                    return Err(MidError::Refused(e.to_string()));
                }
                Err(e) => {
                    self.telemetry
                        .session_failed(&format!("enrollment failed: {e}"));
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "enrollment failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.cancelled() => return Ok(()),
                    }
                }
            }
        }
    }

    fn set_status(&self, status: MidStatus) {
        let previous = self.status.send_replace(Some(status));
        if previous != Some(status) {
            match status {
                MidStatus::ValidationPending => tracing::warn!(
                    mid = %self.mid_name(),
                    "waiting for an admin to validate this MID (openmid ctl mids validate {})",
                    self.mid_name()
                ),
                s => tracing::info!(mid = %self.mid_name(), status = s.as_str(), "MID status"),
            }
        }
    }

    /// Keeps one long-poll open at all times — with free slots it asks for work, with
    /// none it only tells the instance this MID is alive (a dropped connection is how
    /// the instance notices a dead MID in about a second). A poll without capacity is
    /// cut short when a slot frees up.
    async fn poll_for_work(self: &Arc<Self>) -> Result<(), MidError> {
        let mut opened = self.opened.subscribe();
        tokio::select! {
            _ = opened.wait_for(|o| *o) => {}
            _ = self.shutdown.cancelled() => return Ok(()),
        }
        let mut backoff = new_backoff();
        let mut throttled = false;
        while !self.shutdown.is_cancelled() {
            let over = self.outbox.over_limit();
            if over != throttled {
                throttled = over;
                if over {
                    tracing::warn!(
                        bytes = self.outbox.bytes(),
                        "outbox past its limit: taking no new work until the instance acknowledges results"
                    );
                } else {
                    tracing::info!("outbox back under its limit: taking work again");
                }
            }
            let capacity = if over {
                Capacity::default()
            } else {
                self.executor.capacity()
            };
            let req = PollRequest {
                capacity,
                wait_ms: self.config.poll_wait_ms,
                known_status: *self.status.borrow(),
            };
            let poll = self.client.poll(&req);
            tokio::pin!(poll);
            // While the poll waits, a pool it asked nothing for may get a free slot:
            // then ask again, so that pool's work is not left waiting for the poll.
            let answer = loop {
                let slot_freed = self.executor.slot_freed.notified();
                tokio::pin!(slot_freed);
                slot_freed.as_mut().enable();
                if !over && self.executor.capacity().opens_pool_of(&capacity) {
                    break None;
                }
                tokio::select! {
                    r = &mut poll => break Some(r),
                    _ = &mut slot_freed => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)), if over => break None,
                    _ = self.shutdown.cancelled() => return Ok(()),
                }
            };
            let Some(answer) = answer else { continue };
            match answer {
                Ok(resp) => {
                    self.telemetry.session_ok(Some(resp.status));
                    if backoff.failures() > 0 {
                        tracing::info!("connected to the instance again");
                        self.instance_back();
                    }
                    backoff.reset();
                    self.heartbeat_ms
                        .store(resp.heartbeat_ms.max(100), Ordering::Relaxed);
                    self.set_status(resp.status);
                    self.executor
                        .stop(&resp.cancel, "cancelled on the instance");
                    for item in resp.work {
                        self.executor.spawn(item);
                    }
                    if resp.rekey {
                        self.rekey().await;
                    }
                }
                Err(e) if e.is_fatal() => {
                    self.telemetry.session_refused(&e);
                    tracing::error!(error = %e, "the instance refused this MID; stopping");
                    return Err(MidError::Refused(e.to_string()));
                }
                Err(e) => {
                    self.telemetry.session_failed(&e);
                    self.pause_after(&mut backoff, &e, "poll").await
                }
            }
        }
        Ok(())
    }

    /// Runs what the instance pushes down the session stream: express jobs, each in
    /// its pool and answered on the stream it came by (they skip the outbox: they
    /// have no durable record to answer yet), and work claimed by a poll this MID had
    /// given up, run as any claimed job.
    async fn run_pushed(
        self: Arc<Self>,
        mut incoming: tokio::sync::mpsc::Receiver<stream::Pushed>,
        stop: CancellationToken,
    ) {
        let running = tokio_util::task::TaskTracker::new();
        loop {
            let job = tokio::select! {
                j = incoming.recv() => j,
                _ = stop.cancelled() => None,
            };
            match job {
                Some(stream::Pushed::Express(job)) => {
                    let executor = self.executor.clone();
                    running.spawn(async move {
                        let result = executor.run_express(job.item.clone()).await;
                        job.answer(&result).await;
                    });
                }
                Some(stream::Pushed::Claimed(item)) => self.executor.spawn(item),
                None => break,
            }
        }
        running.close();
        running.wait().await;
    }

    /// Idle polls (no capacity), one after the other, until refused for good.
    async fn keep_presence(&self) {
        loop {
            let req = PollRequest {
                capacity: Capacity::default(),
                wait_ms: self.config.poll_wait_ms,
                known_status: *self.status.borrow(),
            };
            match self.client.poll(&req).await {
                Ok(resp) => {
                    self.set_status(resp.status);
                    self.executor
                        .stop(&resp.cancel, "cancelled on the instance");
                }
                Err(e) if e.is_fatal() => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    /// Makes a new key pair and secret, saves them as pending, sends them, and switches
    /// to them once the instance has them.
    async fn rekey(&self) {
        let begun = self.identity().begin_rekey();
        let (public_key, secret) = match begun {
            Ok(keys) => keys,
            Err(e) => {
                tracing::error!(error = %e, "could not save new keys for a rekey");
                return;
            }
        };
        let req = openmid_proto::mid::RekeyRequest { public_key, secret };
        let sent = self.client.rekey(&req).await;
        let sent = match sent {
            // The instance already has the new keys (a rekey cut short by a crash).
            Err(SessionError::Refused { status: 401, .. }) => {
                let bearer = self.identity().bearer_with(&req.secret);
                if let Some(bearer) = bearer {
                    self.client.set_bearer(bearer);
                }
                self.client.rekey(&req).await
            }
            other => other,
        };
        match sent {
            Ok(()) => {
                let finished = {
                    let mut identity = self.identity();
                    identity.finish_rekey().map(|()| identity.bearer())
                };
                match finished {
                    Ok(Some(bearer)) => {
                        self.client.set_bearer(bearer);
                        tracing::info!("rekeyed: new key pair and secret in use");
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "could not save the new keys"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "rekey failed; will retry when asked again"),
        }
    }

    /// The instance answers again: post the outbox and renew leases now, not when
    /// their own back-off runs out.
    fn instance_back(&self) {
        self.reconnected.notify_one();
        self.beat_now.notify_one();
    }

    /// Sleeps `delay`, cut short by shutdown or `stop` or by the instance answering
    /// again. Returns whether the instance answered.
    async fn back_off(&self, delay: Duration, stop: &CancellationToken) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = self.reconnected.notified() => true,
            _ = stop.cancelled() => false,
        }
    }

    async fn pause_after(&self, backoff: &mut Backoff, e: &SessionError, what: &str) {
        let delay = backoff.next_delay();
        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "{what} failed");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
