//! An admin's changes to a MID's status (the allowed transitions are
//! [`crate::registry::lifecycle`]) and removing a MID.

use super::*;

impl Dispatcher {
    /// An admin changes a MID's status.
    pub async fn admin_action(
        &self,
        name: &str,
        action: AdminAction,
    ) -> Result<MidRow, DispatchError> {
        let (from, to, reason) = action.transition();
        let row = self
            .store
            .set_mid_status(name, from, to, reason, now_ms())
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no MID named `{name}`")))?;
        if row.status != to {
            return Err(DispatchError::Conflict(format!(
                "MID `{name}` is {}: it cannot be made {} from there",
                row.status.as_str(),
                to.as_str()
            )));
        }
        tracing::info!(mid = %name, status = to.as_str(), "admin changed MID status");
        self.lanes.refresh(&row);
        if to == MidStatus::Invalidated {
            self.presence.forget(name);
            self.release_leases(name, "MID was invalidated").await?;
        }
        if to == MidStatus::Up {
            self.presence.contact(name);
        }
        self.rebalance_soon();
        self.wake_mid(name);
        Ok(row)
    }

    /// An admin removes a MID that is invalidated or was never validated, so its name
    /// can enroll again. Work addressed to it alone ends in `error`; cluster and auto
    /// work moves on.
    pub async fn delete_mid(&self, name: &str) -> Result<u64, DispatchError> {
        let row = self
            .store
            .get_mid(MidKey::Name(name))
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no MID named `{name}`")))?;
        if !matches!(
            row.status,
            MidStatus::Invalidated | MidStatus::ValidationPending
        ) {
            return Err(DispatchError::Conflict(format!(
                "MID `{name}` is {}: invalidate it first",
                row.status.as_str()
            )));
        }
        let ended = self.store.delete_mid(&row.id, name, now_ms()).await?;
        self.presence.forget(name);
        self.rebalance_soon();
        tracing::info!(mid = %name, ended, "MID deleted");
        Ok(ended)
    }
}
