//! A discovery run, stage by stage: a `Ping` of the ranges, then a `Shazzam` of the
//! hosts that answered, then the devices filed — each stage one ECC job, so a stage
//! whose MID dies moves to another member like any job (a scan continues after the
//! hosts it reported). [`Discovery::advance`] moves a run on when its current stage's
//! job has ended; the runner calls it every half second, and every read calls it too.

use super::classify::{Evidence, classify};
use crate::dispatch::{DispatchError, Dispatcher, invalid};
use crate::ecc::{DeviceRow, DiscoveryRunRow, Record, StoreError};
use openmid_proto::api::NewOutput;
use openmid_proto::command_output::ChunkContent;
use openmid_proto::devices::{
    DEFAULT_PORTS, Device, DevicePort, DiscoveryRun, DiscoveryState, NewDiscoveryRun,
};
use openmid_proto::discovery::{PingResponse, PortSpec, ScanPage};
use openmid_proto::ecc::{Priority, State, Topic};
use openmid_proto::time::{now_ms, rfc3339};
use std::collections::BTreeMap;

/// Discovery, over the dispatcher's store.
pub struct Discovery<'a> {
    dispatcher: &'a Dispatcher,
}

impl Dispatcher {
    /// Discovery runs and devices.
    pub fn discovery(&self) -> Discovery<'_> {
        Discovery { dispatcher: self }
    }
}

impl Discovery<'_> {
    /// Starts a run: its ping is queued at once.
    pub async fn start(&self, request: NewDiscoveryRun) -> Result<DiscoveryRun, DispatchError> {
        request
            .validate()
            .map_err(|e| invalid(&e.field, e.message))?;
        let id = format!("dsc_{}", uuid::Uuid::now_v7().simple());
        let mut ping = serde_json::json!({"targets": request.targets, "count": 2});
        if let Some(t) = request.timeout_ms {
            ping["timeout_ms"] = t.into();
        }
        let output = self
            .submit(&request.agent, Topic::Ping, ping, &id, "ping")
            .await?;
        let row = DiscoveryRunRow {
            id,
            request: serde_json::to_string(&request).map_err(|e| invalid("body", e.to_string()))?,
            state: DiscoveryState::Pinging.as_str().into(),
            started_at: now_ms(),
            finished_at: None,
            ping_output: output,
            scan_output: None,
            hosts_alive: 0,
            devices_new: 0,
            devices_updated: 0,
            detail: None,
        };
        self.dispatcher.store().insert_discovery_run(&row).await?;
        tracing::info!(run = %row.id, "discovery run started");
        show(row)
    }

    /// One run, moved on first if it can be.
    pub async fn run(&self, id: &str) -> Result<DiscoveryRun, DispatchError> {
        let row = self
            .dispatcher
            .store()
            .get_discovery_run(id)
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no discovery run `{id}`")))?;
        show(self.advance(row).await?)
    }

    /// Runs, newest first.
    pub async fn runs(&self, limit: u32) -> Result<Vec<DiscoveryRun>, DispatchError> {
        let rows = self
            .dispatcher
            .store()
            .list_discovery_runs(None, limit)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(show(self.advance(row).await?)?);
        }
        Ok(out)
    }

    /// Devices by address.
    pub async fn devices(
        &self,
        class: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Device>, DispatchError> {
        self.dispatcher
            .store()
            .list_devices(class, after, limit)
            .await?
            .into_iter()
            .map(device)
            .collect()
    }

    /// One device, by id or address.
    pub async fn device(&self, key: &str) -> Result<Device, DispatchError> {
        let row = self
            .dispatcher
            .store()
            .get_device(key)
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no device `{key}`")))?;
        device(row)
    }

    /// Moves every unfinished run on; how many moved.
    pub async fn advance_all(&self) -> Result<u32, DispatchError> {
        let store = self.dispatcher.store();
        let mut moved = 0;
        for state in [DiscoveryState::Pinging, DiscoveryState::Scanning] {
            for row in store.list_discovery_runs(Some(state.as_str()), 100).await? {
                let before = row.state.clone();
                if self.advance(row).await?.state != before {
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }

    /// `row` moved on as far as its jobs allow.
    pub async fn advance(
        &self,
        mut row: DiscoveryRunRow,
    ) -> Result<DiscoveryRunRow, DispatchError> {
        let store = self.dispatcher.store();
        let request: NewDiscoveryRun = serde_json::from_str(&row.request).map_err(|e| {
            DispatchError::Store(StoreError::Corrupt {
                id: row.id.clone(),
                detail: format!("discovery request: {e}"),
            })
        })?;
        if row.state == DiscoveryState::Pinging.as_str() {
            let Some(ping) = self.ended(&row.ping_output).await? else {
                return Ok(row);
            };
            let from = row.state.clone();
            match alive(&ping, store).await? {
                Err(why) => {
                    row.state = DiscoveryState::Error.as_str().into();
                    row.finished_at = Some(now_ms());
                    row.detail = Some(format!("ping: {why}"));
                }
                Ok(hosts) if hosts.is_empty() => {
                    row.state = DiscoveryState::Complete.as_str().into();
                    row.finished_at = Some(now_ms());
                    row.detail = Some("no host answered".into());
                }
                Ok(hosts) => {
                    let ports: Vec<PortSpec> = if request.ports.is_empty() {
                        DEFAULT_PORTS
                            .iter()
                            .map(|p| PortSpec::Number(u32::from(*p)))
                            .collect()
                    } else {
                        request.ports.clone()
                    };
                    let mut scan = serde_json::json!({
                        "targets": hosts.keys().collect::<Vec<_>>(),
                        "ports": ports,
                    });
                    if let Some(rate) = request.rate_per_sec {
                        scan["rate_per_sec"] = rate.into();
                    }
                    if let Some(t) = request.timeout_ms {
                        scan["timeout_ms"] = t.into();
                    }
                    let output = self
                        .submit(&request.agent, Topic::Shazzam, scan, &row.id, "scan")
                        .await?;
                    row.state = DiscoveryState::Scanning.as_str().into();
                    row.scan_output = Some(output);
                    row.hosts_alive = hosts.len() as u64;
                }
            }
            if !store.update_discovery_run(&row, &from).await? {
                return self.reread(&row.id).await;
            }
        }
        if row.state == DiscoveryState::Scanning.as_str() {
            let Some(scan_id) = row.scan_output.clone() else {
                return Ok(row);
            };
            let Some(scan) = self.ended(&scan_id).await? else {
                return Ok(row);
            };
            if scan.state != State::Processed {
                row.state = DiscoveryState::Error.as_str().into();
                row.finished_at = Some(now_ms());
                row.detail = Some(format!(
                    "scan: {}",
                    scan.error.clone().unwrap_or_else(|| scan.state.to_string())
                ));
                store.update_discovery_run(&row, "scanning").await?;
                return self.reread(&row.id).await;
            }
            let Some(ping) = store.get_record(&row.ping_output).await? else {
                return Ok(row);
            };
            let hosts = alive(&ping, store).await?.unwrap_or_default();
            let open = self.open_ports(&scan).await?;
            let now = now_ms();
            let devices: Vec<DeviceRow> = hosts
                .iter()
                .map(|(address, rtt)| {
                    let ports = open.get(address).cloned().unwrap_or_default();
                    let evidence = Evidence {
                        open_ports: ports.iter().map(|p| p.port).collect(),
                        banners: ports
                            .iter()
                            .filter_map(|p| p.banner.clone().map(|b| (p.port, b)))
                            .collect(),
                        ..Evidence::default()
                    };
                    let class = classify(&evidence);
                    DeviceRow {
                        id: uuid::Uuid::now_v7().to_string(),
                        address: address.clone(),
                        class: class.class.as_str().into(),
                        evidence: serde_json::to_string(&class.reasons)
                            .unwrap_or_else(|_| "[]".into()),
                        open_ports: serde_json::to_string(&ports).unwrap_or_else(|_| "[]".into()),
                        rtt_ms: *rtt,
                        first_seen: now,
                        last_seen: now,
                        last_run: row.id.clone(),
                    }
                })
                .collect();
            row.state = DiscoveryState::Complete.as_str().into();
            row.finished_at = Some(now);
            if let Some((new, updated)) = store.file_devices(&devices, &row).await? {
                tracing::info!(run = %row.id, new, updated, "discovery run filed its devices");
            }
            return self.reread(&row.id).await;
        }
        Ok(row)
    }

    async fn reread(&self, id: &str) -> Result<DiscoveryRunRow, DispatchError> {
        self.dispatcher
            .store()
            .get_discovery_run(id)
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no discovery run `{id}`")))
    }

    /// The output `id` if it has ended.
    async fn ended(&self, id: &str) -> Result<Option<Record>, DispatchError> {
        Ok(self
            .dispatcher
            .store()
            .get_record(id)
            .await?
            .filter(|r| !matches!(r.state, State::Ready | State::Processing)))
    }

    async fn submit(
        &self,
        agent: &str,
        topic: Topic,
        payload: serde_json::Value,
        run: &str,
        stage: &str,
    ) -> Result<String, DispatchError> {
        let record = self
            .dispatcher
            .submit(NewOutput {
                agent: agent.to_string(),
                topic,
                name: Some(format!("discovery {run}: {stage}")),
                source: Some(format!("discovery:{run}")),
                payload,
                priority: Some(Priority::Standard),
                correlator: Some(run.to_string()),
                max_attempts: None,
                at_most_once: false,
                application: None,
            })
            .await?;
        Ok(record.id)
    }

    /// Every host's open ports from the scan's pages.
    async fn open_ports(
        &self,
        scan: &Record,
    ) -> Result<BTreeMap<String, Vec<DevicePort>>, DispatchError> {
        let store = self.dispatcher.store();
        let mut out: BTreeMap<String, Vec<DevicePort>> = BTreeMap::new();
        let mut after = None;
        loop {
            let chunks = store
                .output_chunks(&scan.id, scan.attempt, after, 256, 8 * 1024 * 1024)
                .await?;
            let Some(last) = chunks.last() else {
                return Ok(out);
            };
            after = Some(last.seq);
            for chunk in &chunks {
                let ChunkContent::Data(data) = &chunk.content else {
                    continue;
                };
                let page: ScanPage = serde_json::from_slice(data).map_err(|e| {
                    DispatchError::Store(StoreError::Corrupt {
                        id: scan.id.clone(),
                        detail: format!("scan page {}: {e}", chunk.seq),
                    })
                })?;
                for host in page.hosts {
                    out.entry(host.address)
                        .or_default()
                        .extend(host.open.into_iter().map(|p| DevicePort {
                            port: p.port,
                            banner: p.banner,
                        }));
                }
            }
        }
    }
}

/// The hosts a finished ping found alive, with their round-trip time; the ping's
/// error when it failed.
async fn alive(
    ping: &Record,
    store: &dyn crate::ecc::Store,
) -> Result<Result<BTreeMap<String, Option<f64>>, String>, DispatchError> {
    if ping.state != State::Processed {
        return Ok(Err(ping
            .error
            .clone()
            .unwrap_or_else(|| ping.state.to_string())));
    }
    let Some(input) = store.input_for(&ping.id).await? else {
        return Ok(Err("its result is gone".into()));
    };
    let response: PingResponse = serde_json::from_str(&input.payload).map_err(|e| {
        DispatchError::Store(StoreError::Corrupt {
            id: input.id.clone(),
            detail: format!("ping result: {e}"),
        })
    })?;
    Ok(Ok(response
        .hosts
        .into_iter()
        .filter(|h| h.alive)
        .map(|h| (h.address, h.rtt_avg_ms))
        .collect()))
}

fn show(row: DiscoveryRunRow) -> Result<DiscoveryRun, DispatchError> {
    let corrupt = |detail: String| {
        DispatchError::Store(StoreError::Corrupt {
            id: row.id.clone(),
            detail,
        })
    };
    Ok(DiscoveryRun {
        request: serde_json::from_str(&row.request)
            .map_err(|e| corrupt(format!("request: {e}")))?,
        state: DiscoveryState::parse(&row.state)
            .ok_or_else(|| corrupt(format!("state `{}`", row.state)))?,
        started_at: rfc3339(row.started_at),
        finished_at: row.finished_at.map(rfc3339),
        ping_output: row.ping_output.clone(),
        scan_output: row.scan_output.clone(),
        hosts_alive: row.hosts_alive,
        devices_new: row.devices_new,
        devices_updated: row.devices_updated,
        detail: row.detail.clone(),
        id: row.id,
    })
}

fn device(row: DeviceRow) -> Result<Device, DispatchError> {
    let corrupt = |detail: String| {
        DispatchError::Store(StoreError::Corrupt {
            id: row.id.clone(),
            detail,
        })
    };
    Ok(Device {
        evidence: serde_json::from_str(&row.evidence)
            .map_err(|e| corrupt(format!("evidence: {e}")))?,
        open_ports: serde_json::from_str(&row.open_ports)
            .map_err(|e| corrupt(format!("open ports: {e}")))?,
        id: row.id.clone(),
        address: row.address.clone(),
        class: row.class.clone(),
        rtt_ms: row.rtt_ms,
        first_seen: rfc3339(row.first_seen),
        last_seen: rfc3339(row.last_seen),
        last_run: row.last_run.clone(),
    })
}
