//! Heartbeats (health, profile, lease renewal, a new process session releasing what
//! the previous process held) and rekeying.

use super::*;

impl Dispatcher {
    /// A MID's heartbeat: records its health and profile, renews the leases of what it
    /// runs, and tells it its status.
    pub async fn heartbeat(
        &self,
        mid: &MidRow,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, DispatchError> {
        self.presence.contact(&mid.name);
        let mut mid = mid.clone();
        if self.restore_contact(&mut mid).await? {
            self.attach(&mid.name).await;
        }
        for range in &req.profile.ip_ranges {
            openmid_proto::iprange::IpRanges::parse(std::slice::from_ref(range))
                .map_err(|e| invalid("profile.ip_ranges", e.to_string()))?;
        }
        let now = now_ms();
        let health = MidHealth {
            version: req.version.chars().take(64).collect(),
            uptime_ms: req.uptime_ms,
            running_by_pool: req.running_by_pool,
            pool_sizes: req.pool_sizes,
            queued: req.queued,
            outbox_len: req.outbox_len,
            outbox_bytes: req.outbox_bytes,
            cpu_percent: req.cpu_percent,
            rss_bytes: req.rss_bytes,
            policy_denials: req.policy_denials,
            reported_at: rfc3339(now),
        };
        if mid.declared_profile != req.profile {
            self.rebalance_soon();
        }
        let session = self
            .store
            .record_heartbeat(&mid.id, &health, &req.profile, req.session.as_deref(), now)
            .await?;
        if let SessionChange::New { previous } = session {
            // A new process of this MID: whatever the old one held and this one does not
            // list (running or waiting in its outbox) will never be answered. Release
            // it now rather than after the lease.
            let reason = match previous {
                Some(_) => format!("MID {} restarted (new process session)", mid.name),
                None => format!("MID {} started a new session", mid.name),
            };
            let released = self
                .store
                .release_leases_of(&mid.name, &req.running, &reason, now)
                .await?;
            if !released.is_empty() {
                tracing::warn!(mid = %mid.name, outputs = released.len(), "{reason}: work the previous process held is released");
            }
            self.after_lapse(released).await?;
        }
        let lost = self
            .store
            .renew_leases(&mid.name, &req.running, now + self.lease_ms())
            .await?;
        let cancel = self.store.cancelled_running(&mid.name).await?;
        Ok(HeartbeatResponse {
            cancel,
            status: mid.status,
            lease_ms: self.config.lease_ms,
            lost,
            rekey: mid.rekey_requested,
        })
    }

    /// An admin asks a MID to make a new key pair and secret.
    pub async fn request_rekey(&self, name: &str) -> Result<MidRow, DispatchError> {
        let row = self
            .store
            .request_rekey(name, true)
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no MID named `{name}`")))?;
        if row.status == MidStatus::Invalidated {
            return Err(DispatchError::Conflict(format!(
                "MID `{name}` is invalidated"
            )));
        }
        self.wake_mid(name);
        Ok(row)
    }

    /// A MID sends its new key and secret.
    pub async fn rekey(&self, mid: &MidRow, req: &RekeyRequest) -> Result<(), DispatchError> {
        crate::registry::check_key_and_secret(&req.public_key, &req.secret)
            .map_err(|e| invalid("rekey", e.to_string()))?;
        self.store
            .rekey_mid(
                &mid.id,
                &crate::auth::hash_token(req.secret.expose()),
                &req.public_key,
            )
            .await?;
        tracing::info!(mid = %mid.name, "MID rekeyed");
        Ok(())
    }
}
