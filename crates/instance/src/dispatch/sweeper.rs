//! Housekeeping: the state at start, MIDs that went away, lapsed leases, moving work
//! between eligible MIDs, drained MIDs, and retention.

use super::*;

impl Dispatcher {
    /// At instance start, when no other node is running on the store: nobody is
    /// connected yet, whatever the registry said before the stop. MIDs that were `up`
    /// become `down` until their first poll restores them, so no new work is assigned
    /// to a MID that may never come back; presence starts empty. Running work keeps
    /// its lease for one more `lease_ms` from now, plus the MIDs' longest reconnect
    /// back-off — the time the instance was down is not the MIDs' fault — so a MID
    /// that reconnects and heartbeats keeps its jobs, and one that does not loses them
    /// then.
    ///
    /// A node joining running ones changes nothing: their MIDs are connected, and
    /// those that move to this node are welcome.
    pub async fn start_fresh(&self) -> Result<(), DispatchError> {
        let now = now_ms();
        self.beat().await;
        let others = self.other_live_nodes().await?;
        if !others.is_empty() {
            tracing::info!(
                node = %self.node.id(),
                running = others.len(),
                "joining the instance nodes already running on this store"
            );
            return Ok(());
        }
        for mid in self.store.list_mids().await? {
            if mid.status == MidStatus::Up {
                self.store
                    .set_mid_status(
                        &mid.name,
                        &[MidStatus::Up],
                        MidStatus::Down,
                        "instance restarted: not reconnected yet",
                        now,
                    )
                    .await?;
            }
        }
        self.store.clear_all_presence().await?;
        let reconnect = i64::try_from(openmid_proto::mid::MAX_RECONNECT_DELAY_MS).unwrap_or(0);
        let extended = self
            .store
            .extend_all_leases(now + self.lease_ms().saturating_add(reconnect))
            .await?;
        if extended > 0 {
            tracing::info!(
                outputs = extended,
                "running work keeps its lease while its MIDs reconnect"
            );
        }
        self.rebalance_wanted.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Ends the leases of everything a MID runs, so the work runs elsewhere.
    pub(super) async fn release_leases(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<(), DispatchError> {
        let changed = self
            .store
            .release_leases_of(name, &[], reason, now_ms())
            .await?;
        if !changed.is_empty() {
            tracing::warn!(mid = %name, outputs = changed.len(), "{reason}: its running work is released");
        }
        self.after_lapse(changed).await
    }

    /// Outputs whose lease ended: wake waiters of those that ended in error, and move
    /// the others (addressed to a cluster or `mid.auto`) to another eligible MID.
    pub(super) async fn after_lapse(&self, changed: Vec<Record>) -> Result<(), DispatchError> {
        if changed.is_empty() {
            return Ok(());
        }
        let mids = self.store.list_mids().await?;
        let mut load = self.store.load_by_mid().await?;
        for output in changed {
            match output.state {
                State::Ready => {
                    self.reassign(&output, &mids, &mut load, output.claimed_by.as_deref())
                        .await?;
                }
                _ => self.signal_finished(&output.id),
            }
        }
        Ok(())
    }

    /// Re-chooses the MID of one ready output; `avoid` is a MID not to pick again when
    /// another is eligible.
    pub(super) async fn reassign(
        &self,
        output: &Record,
        mids: &[MidRow],
        load: &mut HashMap<String, Load>,
        avoid: Option<&str>,
    ) -> Result<(), DispatchError> {
        let Ok(agent) = output.agent.parse::<Agent>() else {
            return Ok(());
        };
        if let Agent::Server(name) = &agent {
            // Addressed to one MID: it waits for that MID.
            self.wake_mid(name);
            return Ok(());
        }
        let current = output.assigned_to.as_deref();
        let eligible = |name: &str| {
            mids.iter()
                .any(|m| m.name == name && m.status == MidStatus::Up)
        };
        let payload = Payload::from_text(output.payload.clone()).unwrap_or_default();
        let needs = Needs {
            capability: output.topic.capability(),
            application: output.application.as_deref(),
            target_ip: crate::topics::check(output.topic, &payload)
                .ok()
                .and_then(|c| c.target_ip),
            avoid,
            more_capabilities: more_capabilities(&payload),
            topic: Some(output.topic),
        };
        let choice = match self.choose(&agent, &needs, mids, load).await {
            Ok(c) => c,
            Err(DispatchError::Invalid { message, .. }) => Choice::Nobody { why: message },
            Err(e) => return Err(e),
        };
        let by_rank = matches!(choice, Choice::Mid { by_rank: true, .. });
        let (to, why) = match choice {
            // Load-balanced and auto work stays where it is while that MID is eligible;
            // failover work follows the first up member.
            _ if avoid.is_none() && !by_rank && current.is_some_and(eligible) => return Ok(()),
            Choice::Mid { name, .. } if Some(name.as_str()) == current => return Ok(()),
            Choice::Mid { name, why, .. } => (Some(name), why),
            Choice::Nobody { why } => (None, why),
        };
        if current.is_none() && to.is_none() {
            return Ok(());
        }
        if self
            .store
            .assign_output(&output.id, current, to.as_deref(), &why)
            .await?
        {
            if let Some(old) = current.and_then(|c| load.get_mut(c)) {
                old.ready = old.ready.saturating_sub(1);
            }
            if let Some(new) = &to {
                load.entry(new.clone()).or_default().ready += 1;
                self.wake_mid(new);
            }
            self.telemetry.reassigned(output);
            tracing::info!(output = %output.id, from = ?current, to = ?to, "{why}");
        }
        Ok(())
    }

    /// Re-checks where every movable ready output is assigned.
    pub async fn rebalance(&self) -> Result<(), DispatchError> {
        let outputs = self.store.movable_outputs(1000).await?;
        if outputs.is_empty() {
            return Ok(());
        }
        let mids = self.store.list_mids().await?;
        let mut load = self.store.load_by_mid().await?;
        for output in &outputs {
            self.reassign(output, &mids, &mut load, None).await?;
        }
        Ok(())
    }

    /// MIDs whose polls reached this node and that went away become `down` and their
    /// work moves — unless the store says they poll another live node now (they moved
    /// there, and this node only forgets them).
    pub async fn sweep_presence(&self) -> Result<(), DispatchError> {
        let grace = Duration::from_millis(self.config.disconnect_grace_ms);
        let down_after = Duration::from_millis(self.config.down_after_ms);
        let gone = self.presence.gone(grace, down_after);
        if gone.is_empty() {
            return Ok(());
        }
        let live: Vec<String> = self
            .store
            .live_nodes(now_ms() - nodes::ms(nodes::NODE_TIMEOUT))
            .await?
            .into_iter()
            .map(|n| n.id)
            .collect();
        for gone in gone {
            self.presence.forget(&gone.name);
            if let Some(at) = self.store.presence_of(&gone.name).await?
                && at.node != self.node.id()
                && live.contains(&at.node)
            {
                tracing::debug!(mid = %gone.name, node = %at.node, "MID left for another node");
                continue;
            }
            self.mark_down(&gone.name, &gone.reason).await?;
        }
        Ok(())
    }

    /// A MID that went away: `down`, its running work released, its presence
    /// forgotten, and assignments re-checked.
    async fn mark_down(&self, name: &str, reason: &str) -> Result<(), DispatchError> {
        let row = self
            .store
            .set_mid_status(name, &[MidStatus::Up], MidStatus::Down, reason, now_ms())
            .await?;
        if row.is_some_and(|r| r.status == MidStatus::Down) {
            tracing::warn!(mid = %name, %reason, "MID is down");
        }
        self.store.clear_presence(name, self.node.id()).await?;
        self.release_leases(name, &format!("MID {name} went away"))
            .await?;
        self.rebalance_soon();
        Ok(())
    }

    /// MIDs attached to a node that died and that have not come back through another
    /// within [`nodes::NODE_TIMEOUT`] and the disconnect grace after its last sign of
    /// life: `down`, as if their own connection had dropped.
    async fn sweep_orphans(&self) -> Result<(), DispatchError> {
        let silent_since = now_ms()
            - nodes::ms(nodes::NODE_TIMEOUT)
            - i64::try_from(self.config.disconnect_grace_ms).unwrap_or(i64::MAX);
        for orphan in self.store.orphaned_mids(silent_since).await? {
            let reason = format!(
                "its instance node {} stopped and it did not come back through another",
                orphan.node
            );
            self.store
                .set_mid_status(
                    &orphan.mid_name,
                    &[MidStatus::Up],
                    MidStatus::Down,
                    &reason,
                    now_ms(),
                )
                .await?;
            tracing::warn!(mid = %orphan.mid_name, %reason, "MID is down");
            self.store
                .clear_presence(&orphan.mid_name, &orphan.node)
                .await?;
            self.release_leases(
                &orphan.mid_name,
                &format!("MID {} went away", orphan.mid_name),
            )
            .await?;
            self.rebalance_wanted.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// One round of the housekeeping one node does for all (the leader): MIDs whose
    /// node died, lapsed leases returned to the queue, drained MIDs marked,
    /// assignments re-checked when something changed.
    pub async fn sweep(&self) -> Result<(), DispatchError> {
        self.sweep_presence().await?;
        if !self.is_leader() {
            return Ok(());
        }
        self.sweep_orphans().await?;
        let lapsed = self.store.expire_leases(now_ms()).await?;
        self.telemetry.leases_lapsed(&lapsed);
        for output in &lapsed {
            tracing::warn!(output = %output.id, attempt = output.attempt, mid = ?output.claimed_by, state = output.state.as_str(), "lease lapsed");
        }
        self.after_lapse(lapsed).await?;
        let mids = self.store.list_mids().await?;
        if mids.iter().any(|m| m.status == MidStatus::Draining) {
            let load = self.store.load_by_mid().await?;
            for mid in mids.iter().filter(|m| m.status == MidStatus::Draining) {
                if load.get(&mid.name).is_none_or(|l| l.processing == 0) {
                    self.store
                        .set_mid_status(
                            &mid.name,
                            &[MidStatus::Draining],
                            MidStatus::Drained,
                            "drained: no running work left",
                            now_ms(),
                        )
                        .await?;
                    tracing::info!(mid = %mid.name, "MID drained");
                }
            }
        }
        if self.rebalance_wanted.swap(false, Ordering::Relaxed) {
            self.rebalance().await?;
        }
        Ok(())
    }

    /// Deletes finished records older than the retention, a thousand per transaction so
    /// the writer is never held long. Returns how many went.
    pub async fn purge_old_records(&self) -> Result<u64, DispatchError> {
        let keys = self
            .store
            .purge_idempotency_keys(now_ms().saturating_sub(super::submit::idempotency_window_ms()))
            .await?;
        if keys > 0 {
            tracing::debug!(keys, "forgot idempotency keys past their window");
        }
        match crate::audit::purge(
            self.store.as_ref(),
            self.config.audit_retention_days,
            now_ms(),
        )
        .await
        {
            Ok(0) => {}
            Ok(entries) => {
                tracing::info!(entries, "purged audit entries past audit_retention_days")
            }
            Err(e) => tracing::error!(error = %e, "purging the audit log failed"),
        }
        if self.config.retention_hours == 0 {
            return Ok(0);
        }
        let age = i64::try_from(self.config.retention_hours.saturating_mul(3_600_000))
            .unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(age);
        let mut total = 0;
        loop {
            let deleted = self.store.purge_finished(before, 1000).await?;
            total += deleted;
            if deleted == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        if total > 0 {
            tracing::info!(
                records = total,
                "purged finished records past the retention"
            );
        }
        // Blobs go by the same age: the records naming them are gone by now.
        let age = Duration::from_secs(self.config.retention_hours.saturating_mul(3_600));
        match self.blobs.purge_older_than(age).await {
            Ok(0) => {}
            Ok(files) => tracing::info!(files, "purged blob files past the retention"),
            Err(e) => tracing::error!(error = %e, "purging blobs failed"),
        }
        Ok(total)
    }

    /// Runs [`Dispatcher::sweep`] until `shutdown`; every few seconds it also re-checks
    /// assignments, so work waiting for a cluster member is picked up, and every ten
    /// minutes it purges records past the retention.
    pub async fn run_sweeper(self: Arc<Self>, shutdown: CancellationToken) {
        let period = Duration::from_millis((self.config.disconnect_grace_ms / 5).clamp(50, 250));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rounds = 0u64;
        let started = Instant::now();
        let mut next_purge = Duration::ZERO;
        let mut next_beat = Duration::ZERO;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    rounds += 1;
                    if rounds.is_multiple_of(20) {
                        self.rebalance_wanted.store(true, Ordering::Relaxed);
                    }
                    if started.elapsed() >= next_beat {
                        next_beat = started.elapsed() + nodes::NODE_BEAT;
                        self.beat().await;
                    }
                    if self.is_leader() && started.elapsed() >= next_purge {
                        next_purge = started.elapsed() + Duration::from_secs(600);
                        if let Err(e) = self.purge_old_records().await {
                            tracing::error!(error = %e, "purge failed");
                        }
                    }
                    if let Err(e) = self.sweep().await {
                        tracing::error!(error = %e, "sweep failed");
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
