//! A MID's long-poll: claims what waits for it, or parks until work is assigned to it
//! (or handed to it), its status changes, a job of its is cancelled, or the wait ends;
//! the answer seals each claimed job's credential to this MID.

use super::*;
use openmid_proto::payload::Payload;
use tracing::Instrument;

impl Dispatcher {
    /// A MID back in touch after being `down` is `up` again; returns whether it was.
    pub(super) async fn restore_contact(&self, mid: &mut MidRow) -> Result<bool, DispatchError> {
        if mid.status == MidStatus::Down
            && let Some(row) = self
                .store
                .set_mid_status(
                    &mid.name,
                    &[MidStatus::Down],
                    MidStatus::Up,
                    "contact restored",
                    now_ms(),
                )
                .await?
        {
            tracing::info!(mid = %mid.name, "MID back in touch: up");
            *mid = row;
            self.rebalance_soon();
            return Ok(true);
        }
        Ok(false)
    }

    /// A MID's long-poll: claims work at once if there is some, else waits until work
    /// is assigned to it, its status changes, the wait runs out or the instance stops.
    /// The poll also tells the instance the MID is alive: a poll whose connection drops
    /// starts the disconnect grace.
    pub async fn poll(
        &self,
        mid: &MidRow,
        req: &PollRequest,
        shutdown: &CancellationToken,
    ) -> Result<PollResponse, DispatchError> {
        let (guard, newly) = self.presence.poll_started(&mid.name);
        let mut mid = mid.clone();
        // Down means the store forgot where it was attached, too.
        if self.restore_contact(&mut mid).await? || newly {
            self.attach(&mid.name).await;
        }
        let wait = Duration::from_millis(req.wait_ms.min(self.config.max_poll_wait_ms));
        let deadline = Instant::now() + wait;
        let notify = self.agents.subscribe(&mid_key(&mid.name));
        // The MID has not heard its current status yet: answer at once.
        let mut news =
            req.known_status.is_some_and(|known| known != mid.status) || mid.rekey_requested;
        let work = loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if mid.status.takes_work() && req.capacity.total() > 0 {
                let now = now_ms();
                let claimed = self
                    .store
                    .claim_ready_outputs(&Claim {
                        mid_name: &mid.name,
                        capacity: req.capacity,
                        now,
                        lease_until: now + self.lease_ms(),
                    })
                    .await?;
                if !claimed.is_empty() {
                    break claimed;
                }
            }
            if news || self.has_cancels(&mid.name) {
                break Vec::new();
            }
            let parking = (mid.status.takes_work() && req.capacity.total() > 0)
                .then(|| self.parked.park(&mid.name, req.capacity));
            let handed = async {
                match &parking {
                    Some(p) => p.handed().await,
                    None => std::future::pending().await,
                }
            };
            let timed_out = tokio::select! {
                _ = &mut notified => false,
                _ = handed => false,
                _ = tokio::time::sleep_until(deadline) => true,
                _ = shutdown.cancelled() => true,
            };
            if let Some(parking) = parking {
                let handed = parking.close().await;
                if !handed.is_empty() {
                    break handed;
                }
            }
            if timed_out {
                break Vec::new();
            }
            // A status change (validation, pause …) or a rekey request is news: answer now.
            if let Some(row) = self.store.get_mid(MidKey::Id(&mid.id)).await? {
                news = row.status != mid.status || (row.rekey_requested && !mid.rekey_requested);
                mid = row;
            }
        };
        guard.finish();
        Ok(self.poll_answer(&mid, work).await)
    }

    async fn poll_answer(&self, mid: &MidRow, claimed: Vec<Record>) -> PollResponse {
        self.telemetry.claimed(&claimed);
        let mut work = Vec::with_capacity(claimed.len());
        for r in claimed {
            let span = r.span("claim");
            let item = self.work_item(mid, r).instrument(span.clone()).await;
            span.in_scope(|| tracing::debug!(mid = %mid.name, attempt = item.attempt, topic = %item.topic, "claimed"));
            work.push(item);
        }
        PollResponse {
            status: mid.status,
            lease_ms: self.config.lease_ms,
            heartbeat_ms: self.config.heartbeat_ms,
            work,
            rekey: mid.rekey_requested,
            cancel: self.take_cancels(&mid.name),
        }
    }

    /// One claimed output as its MID gets it: resumed where an earlier attempt
    /// stopped, its credential sealed to this MID.
    pub(super) async fn work_item(&self, mid: &MidRow, mut r: Record) -> WorkItem {
        {
            let text = std::mem::take(&mut r.payload);
            let payload = self.resumed(&r, text).await;
            let credential = match payload
                .field::<serde_json::Value>("credential")
                .and_then(|c| c.get("id").and_then(|id| id.as_str()).map(str::to_string))
            {
                None => None,
                Some(credential_id) => {
                    // A failure here leaves the item without its credential: the MID
                    // then reports "credential not delivered" as the job's error,
                    // which names the problem where the caller looks.
                    match connections::seal_for_mid(
                        self.store.as_ref(),
                        &self.vault,
                        mid,
                        &r.id,
                        r.attempt,
                        &credential_id,
                    )
                    .await
                    {
                        Ok(sealed) => sealed,
                        Err(e) => {
                            tracing::error!(output = %r.id, error = %e, "could not seal a credential for a MID");
                            None
                        }
                    }
                }
            };
            WorkItem {
                payload,
                output_id: r.id,
                attempt: r.attempt,
                topic: r.topic,
                name: r.name,
                priority: r.priority,
                credential,
                traceparent: r.traceparent,
            }
        }
    }

    /// A new attempt at a topic that resumes continues after what the earlier ones
    /// streamed: their chunks become this attempt's, and the payload says where to go
    /// on from. When that cannot be worked out the attempt starts over, which is
    /// what every attempt did before resuming existed: logged, never silent.
    async fn resumed(&self, r: &Record, text: String) -> Payload {
        // What the store holds was written from a checked payload: it is JSON.
        let payload = Payload::from_text(text).unwrap_or_default();
        if r.attempt < 2 || !crate::topics::resumes(r.topic) {
            return payload;
        }
        let last = match self.store.carry_output_chunks(&r.id, r.attempt).await {
            Ok(Some(last)) => last,
            Ok(None) => return payload,
            Err(e) => {
                tracing::error!(output = %r.id, error = %e, "could not carry an output's streamed chunks to its new attempt");
                return payload;
            }
        };
        match crate::topics::resume(r.topic, &payload.to_value(), &last) {
            Ok(resumed) => {
                tracing::info!(output = %r.id, attempt = r.attempt, "a new attempt continues after the output stored so far");
                Payload::from(resumed)
            }
            Err(e) => {
                tracing::warn!(output = %r.id, error = %e, "a new attempt starts over: where to continue is unknown");
                payload
            }
        }
    }
}
