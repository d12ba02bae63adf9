//! Discovery runs and devices.

use crate::*;
use openmid_proto::devices::{
    Device, DiscoveryRun, DiscoverySchedule, DiscoveryScheduleInfo, NewDiscoveryRun,
};

impl ApiClient {
    /// Starts a discovery run.
    pub async fn start_discovery(
        &self,
        run: &NewDiscoveryRun,
    ) -> Result<DiscoveryRun, ClientError> {
        self.send(Method::POST, "api/v1/discovery/runs", run).await
    }

    /// One discovery run.
    pub async fn get_discovery_run(&self, id: &str) -> Result<DiscoveryRun, ClientError> {
        self.get(&format!("api/v1/discovery/runs/{}", encode(id)))
            .await
    }

    /// Discovery runs, newest first; of one schedule when given.
    pub async fn list_discovery_runs(
        &self,
        schedule: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DiscoveryRun>, ClientError> {
        let mut path = format!("api/v1/discovery/runs?limit={limit}");
        if let Some(schedule) = schedule {
            path.push_str(&format!("&schedule={}", encode(schedule)));
        }
        self.get(&path).await
    }

    /// Makes a discovery schedule.
    pub async fn create_discovery_schedule(
        &self,
        schedule: &DiscoverySchedule,
    ) -> Result<DiscoveryScheduleInfo, ClientError> {
        self.send(Method::POST, "api/v1/discovery/schedules", schedule)
            .await
    }

    /// Replaces a discovery schedule.
    pub async fn put_discovery_schedule(
        &self,
        schedule: &DiscoverySchedule,
    ) -> Result<DiscoveryScheduleInfo, ClientError> {
        let path = format!("api/v1/discovery/schedules/{}", encode(&schedule.name));
        self.send(Method::PUT, &path, schedule).await
    }

    /// Every discovery schedule.
    pub async fn list_discovery_schedules(
        &self,
    ) -> Result<Vec<DiscoveryScheduleInfo>, ClientError> {
        self.get("api/v1/discovery/schedules").await
    }

    /// One discovery schedule.
    pub async fn get_discovery_schedule(
        &self,
        name: &str,
    ) -> Result<DiscoveryScheduleInfo, ClientError> {
        self.get(&format!("api/v1/discovery/schedules/{}", encode(name)))
            .await
    }

    /// Deletes a discovery schedule (its runs stay).
    pub async fn delete_discovery_schedule(&self, name: &str) -> Result<(), ClientError> {
        self.delete(&format!("api/v1/discovery/schedules/{}", encode(name)))
            .await
    }

    /// Starts a run of a discovery schedule now (409 while its last run runs).
    pub async fn run_discovery_schedule(&self, name: &str) -> Result<DiscoveryRun, ClientError> {
        let path = format!("api/v1/discovery/schedules/{}/run", encode(name));
        self.send(Method::POST, &path, &serde_json::json!({})).await
    }

    /// Waits until discovery run `id` has ended (polling every `every`), at most
    /// `timeout`; gives it as it ended, or as it stands at the timeout.
    pub async fn wait_discovery_run(
        &self,
        id: &str,
        every: Duration,
        timeout: Duration,
    ) -> Result<DiscoveryRun, ClientError> {
        use openmid_proto::devices::DiscoveryState;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let run = self.get_discovery_run(id).await?;
            let done = matches!(run.state, DiscoveryState::Complete | DiscoveryState::Error);
            if done || tokio::time::Instant::now() >= deadline {
                return Ok(run);
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Devices by address, after `after`; of one class when given.
    pub async fn list_devices(
        &self,
        class: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Device>, ClientError> {
        let mut path = format!("api/v1/devices?limit={limit}");
        if let Some(class) = class {
            path.push_str(&format!("&class={}", encode(class)));
        }
        if let Some(after) = after {
            path.push_str(&format!("&after={}", encode(after)));
        }
        self.get(&path).await
    }

    /// One device, by id or address.
    pub async fn get_device(&self, key: &str) -> Result<Device, ClientError> {
        self.get(&format!("api/v1/devices/{}", encode(key))).await
    }
}
