//! Heartbeats: the MID's health, held jobs and policy denials every `heartbeat_ms`,
//! and what the instance answers (stop these jobs, this lease went elsewhere).

use super::*;

impl Session {
    /// Heartbeats: report health, renew the leases of running jobs.
    pub(super) async fn heartbeats(self: Arc<Self>, stop: CancellationToken) {
        let mut stats = crate::health::ProcessStats::new();
        // The first heartbeat goes out at once (the registry shows health from the
        // start, and polling waits for it); until one is answered they are retried
        // with the short back-off, not the heartbeat period.
        let mut opening = Some(new_backoff());
        let mut failed = false;
        loop {
            let every = match &mut opening {
                None => Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed)),
                Some(_) if !failed => Duration::ZERO,
                Some(backoff) => backoff.next_delay(),
            };
            if !every.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = self.beat_now.notified() => {}
                    _ = stop.cancelled() => return,
                }
            }
            let (cpu_percent, rss_bytes) = stats.sample();
            let running = self.executor.running();
            let mut held = running.clone();
            held.extend(self.outbox.held());
            let req = HeartbeatRequest {
                session: Some(self.session_id.clone()),
                running: held,
                version: BUILD_VERSION.to_string(),
                uptime_ms: self.started.elapsed().as_millis() as u64,
                outbox_len: self.outbox.len() as u64,
                outbox_bytes: self.outbox.bytes(),
                running_by_pool: self.executor.busy(),
                pool_sizes: self.executor.pool_sizes(),
                queued: 0,
                cpu_percent,
                rss_bytes,
                profile: self.config.profile(),
                policy_denials: self.config.policy.denials().total(),
            };
            match self.client.heartbeat(&req).await {
                Ok(resp) => {
                    self.telemetry.session_ok(Some(resp.status));
                    if opening.take().is_some() {
                        self.opened.send_replace(true);
                    }
                    if failed {
                        self.reconnected.notify_one();
                    }
                    failed = false;
                    self.set_status(resp.status);
                    if resp.rekey {
                        self.rekey().await;
                    }
                    // A job whose lease went elsewhere must not go on here: for a
                    // command that would mean two runs at once.
                    let lost: Vec<JobRef> = resp
                        .lost
                        .into_iter()
                        .filter(|j| running.contains(j))
                        .collect();
                    self.executor.stop(
                        &lost,
                        "lease lost: the instance gave this job to another MID",
                    );
                    self.executor
                        .stop(&resp.cancel, "cancelled on the instance");
                }
                Err(e) if e.is_fatal() && opening.is_some() => {
                    // Let the poll meet the same refusal: it ends the session with it.
                    tracing::error!(error = %e, "heartbeat refused");
                    self.opened.send_replace(true);
                    return;
                }
                Err(e) if e.is_fatal() => {
                    tracing::error!(error = %e, "heartbeat refused; stopping");
                    self.shutdown.cancel();
                }
                Err(e) => {
                    self.telemetry.session_failed(&e);
                    failed = true;
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
        }
    }
}
