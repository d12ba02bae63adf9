//! A discovery run, stage by stage: a `Ping` of the ranges, then a `Shazzam` of the
//! hosts that answered, then an `Identify` of what they are (HTTP `Server`, TLS
//! names, SNMP), then the devices filed. Each stage is one ECC job per chunk of
//! `chunk_size` addresses, addressed to the run's agent, so a cluster's members share
//! them and a chunk whose MID dies moves to another member like any job (a scan
//! continues after the hosts it reported). Hosts are merged by address across chunks
//! and attempts, so each is filed once. [`Discovery::advance`] moves a run on when
//! every job of its current stage has ended; the runner calls it every half second,
//! and every read calls it too.

use super::classify::{Evidence, classify};
use crate::dispatch::{DispatchError, Dispatcher, invalid};
use crate::ecc::{DeviceRow, DiscoveryRunRow, Record, StoreError};
use openmid_proto::api::NewOutput;
use openmid_proto::command_output::ChunkContent;
use openmid_proto::credential::CredentialRef;
use openmid_proto::devices::{
    DEFAULT_CHUNK_SIZE, DEFAULT_PORTS, Device, DevicePort, DiscoveryRun, DiscoveryState,
    NewDiscoveryRun, RunJob,
};
use openmid_proto::discovery::{
    HostIdentity, IdentifyHost, IdentifyRequest, IdentifyResponse, IdentifySnmp, PingResponse,
    PortSpec, ScanPage, expand_targets,
};
use openmid_proto::ecc::{Priority, State, Topic};
use openmid_proto::payload::Payload;
use openmid_proto::time::{now_ms, rfc3339};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Discovery, over the dispatcher's store.
pub struct Discovery<'a> {
    pub(super) dispatcher: &'a Dispatcher,
}

impl Dispatcher {
    /// Discovery runs and devices.
    pub fn discovery(&self) -> Discovery<'_> {
        Discovery { dispatcher: self }
    }
}

impl Discovery<'_> {
    /// Starts a run by hand: its ping jobs are queued at once, one per chunk of the
    /// targets.
    pub async fn start(&self, request: NewDiscoveryRun) -> Result<DiscoveryRun, DispatchError> {
        self.start_run(request, None).await
    }

    /// Starts a run, for `schedule` when a schedule starts it.
    pub(super) async fn start_run(
        &self,
        request: NewDiscoveryRun,
        schedule: Option<&str>,
    ) -> Result<DiscoveryRun, DispatchError> {
        request
            .validate()
            .map_err(|e| invalid(&e.field, e.message))?;
        for (i, alias) in request.snmp_aliases.iter().enumerate() {
            self.snmp_identity(i, alias).await?;
        }
        let addresses = expand_targets("targets", &request.targets)
            .map_err(|e| invalid(&e.field, e.message))?;
        let size = chunk_size(&request);
        let chunks: Vec<Vec<String>> = if addresses.len() <= size {
            vec![request.targets.clone()]
        } else {
            addresses
                .chunks(size)
                .map(|c| c.iter().map(ToString::to_string).collect())
                .collect()
        };
        let id = format!("dsc_{}", uuid::Uuid::now_v7().simple());
        let mut jobs = RunJobs::default();
        for (i, targets) in chunks.iter().enumerate() {
            let mut ping = serde_json::json!({"targets": targets, "count": 2});
            if let Some(t) = request.timeout_ms {
                ping["timeout_ms"] = t.into();
            }
            let stage = stage_name("ping", i, chunks.len());
            jobs.ping.push(
                self.submit(&request.agent, Topic::Ping, ping.into(), &id, &stage)
                    .await?,
            );
        }
        let row = DiscoveryRunRow {
            id,
            request: serde_json::to_string(&request).map_err(|e| invalid("body", e.to_string()))?,
            state: DiscoveryState::Pinging.as_str().into(),
            started_at: now_ms(),
            finished_at: None,
            ping_output: jobs.ping.first().cloned().unwrap_or_default(),
            scan_output: None,
            jobs: Some(jobs.encode()),
            schedule: schedule.map(str::to_string),
            hosts_alive: 0,
            devices_new: 0,
            devices_updated: 0,
            detail: None,
        };
        self.dispatcher.store().insert_discovery_run(&row).await?;
        tracing::info!(run = %row.id, chunks = chunks.len(), "discovery run started");
        show(row)
    }

    /// The SNMP identity of a run's `i`-th alias; a missing or wrong alias is the
    /// run's field's error.
    pub(super) async fn snmp_identity(
        &self,
        i: usize,
        alias: &str,
    ) -> Result<(IdentifySnmp, CredentialRef), DispatchError> {
        self.dispatcher
            .connections()
            .snmp_identity(alias)
            .await
            .map_err(|e| match e {
                DispatchError::Invalid { message, .. } => {
                    invalid(&format!("snmp_aliases[{i}]"), message)
                }
                DispatchError::NotFound(message) => invalid(&format!("snmp_aliases[{i}]"), message),
                e => e,
            })
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

    /// Runs, newest first; of one schedule when given.
    pub async fn runs(
        &self,
        schedule: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DiscoveryRun>, DispatchError> {
        let rows = self
            .dispatcher
            .store()
            .list_discovery_runs(None, schedule, limit)
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
        for state in [
            DiscoveryState::Pinging,
            DiscoveryState::Scanning,
            DiscoveryState::Identifying,
        ] {
            for row in store
                .list_discovery_runs(Some(state.as_str()), None, 100)
                .await?
            {
                let before = row.state.clone();
                if self.advance(row).await?.state != before {
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }

    /// `row` moved on as far as its jobs allow: a stage moves on once every one of
    /// its chunks' jobs ended; a failed chunk is kept in the run's jobs with its
    /// error, and the run goes on with the others (it fails only when every ping
    /// chunk failed).
    pub async fn advance(&self, row: DiscoveryRunRow) -> Result<DiscoveryRunRow, DispatchError> {
        // One advance at a time in this process: the runner and every read advance
        // runs, and two of them moving one run on at once would both queue the next
        // stage's jobs (the loser's compare-and-set would leave its jobs orphaned).
        // Across nodes, only the one that leads moves runs on (others show them as
        // they are; the leader's advancer moves them within its tick).
        let _one = ADVANCING.lock().await;
        let row = self.reread(&row.id).await?;
        if !self.dispatcher.is_leader() {
            return Ok(row);
        }
        self.advance_locked(row).await
    }

    async fn advance_locked(
        &self,
        mut row: DiscoveryRunRow,
    ) -> Result<DiscoveryRunRow, DispatchError> {
        let corrupt = |detail: String| {
            DispatchError::Store(StoreError::Corrupt {
                id: row.id.clone(),
                detail,
            })
        };
        let request: NewDiscoveryRun = serde_json::from_str(&row.request)
            .map_err(|e| corrupt(format!("discovery request: {e}")))?;
        let mut jobs = RunJobs::of(&row).map_err(|e| corrupt(format!("jobs: {e}")))?;
        let from = row.state.clone();
        if from == DiscoveryState::Pinging.as_str() {
            let Some(pings) = self.all_ended(&jobs.ping).await? else {
                return Ok(row);
            };
            let hosts = self.alive(&pings, &mut jobs).await?;
            if jobs.failed_of(&jobs.ping) == jobs.ping.len() {
                row.state = DiscoveryState::Error.as_str().into();
                row.finished_at = Some(now_ms());
                row.detail = Some(format!("ping: {}", jobs.first_error(&jobs.ping)));
            } else if hosts.is_empty() {
                row.state = DiscoveryState::Complete.as_str().into();
                row.finished_at = Some(now_ms());
                row.detail = Some(jobs.detail("no host answered"));
            } else {
                let ports: Vec<PortSpec> = if request.ports.is_empty() {
                    DEFAULT_PORTS
                        .iter()
                        .map(|p| PortSpec::Number(u32::from(*p)))
                        .collect()
                } else {
                    request.ports.clone()
                };
                let addresses: Vec<&String> = hosts.keys().collect();
                let chunks: Vec<&[&String]> = addresses.chunks(chunk_size(&request)).collect();
                for (i, chunk) in chunks.iter().enumerate() {
                    let mut scan = serde_json::json!({"targets": chunk, "ports": ports});
                    if let Some(rate) = request.rate_per_sec {
                        scan["rate_per_sec"] = rate.into();
                    }
                    if let Some(t) = request.timeout_ms {
                        scan["timeout_ms"] = t.into();
                    }
                    let stage = stage_name("scan", i, chunks.len());
                    jobs.scan.push(
                        self.submit(&request.agent, Topic::Shazzam, scan.into(), &row.id, &stage)
                            .await?,
                    );
                }
                row.state = DiscoveryState::Scanning.as_str().into();
                row.scan_output = jobs.scan.first().cloned();
                row.hosts_alive = hosts.len() as u64;
            }
            row.jobs = Some(jobs.encode());
            if !self
                .dispatcher
                .store()
                .update_discovery_run(&row, &from)
                .await?
            {
                return self.reread(&row.id).await;
            }
            return Ok(row);
        }
        if from == DiscoveryState::Scanning.as_str() {
            let Some(scans) = self.all_ended(&jobs.scan).await? else {
                return Ok(row);
            };
            let open = self.open_ports(&scans, &mut jobs).await?;
            let pings = self.records(&jobs.ping).await?;
            let hosts = self.alive(&pings, &mut jobs).await?;
            let mut asked = 0;
            let addresses: Vec<&String> = hosts.keys().collect();
            let chunks: Vec<&[&String]> = addresses.chunks(chunk_size(&request)).collect();
            for (i, chunk) in chunks.iter().enumerate() {
                for (a, identify) in self
                    .identify_jobs(&request, chunk, &open)
                    .await?
                    .into_iter()
                    .enumerate()
                {
                    let stage = stage_name(
                        &format!(
                            "identify{}",
                            if a == 0 {
                                String::new()
                            } else {
                                format!(" snmp {a}")
                            }
                        ),
                        i,
                        chunks.len(),
                    );
                    let payload =
                        Payload::encode(&identify).map_err(|e| invalid("body", e.to_string()))?;
                    jobs.identify.push(
                        self.submit(&request.agent, Topic::Identify, payload, &row.id, &stage)
                            .await?,
                    );
                    asked += 1;
                }
            }
            row.jobs = Some(jobs.encode());
            if asked > 0 {
                row.state = DiscoveryState::Identifying.as_str().into();
                if !self
                    .dispatcher
                    .store()
                    .update_discovery_run(&row, &from)
                    .await?
                {
                    return self.reread(&row.id).await;
                }
                return Ok(row);
            }
            return self
                .file(row, &jobs, &hosts, &open, &BTreeMap::new(), &from)
                .await;
        }
        if from == DiscoveryState::Identifying.as_str() {
            let Some(identified) = self.all_ended(&jobs.identify).await? else {
                return Ok(row);
            };
            let identities = self.identities(&identified, &mut jobs).await?;
            let scans = self.records(&jobs.scan).await?;
            let open = self.open_ports(&scans, &mut jobs).await?;
            let pings = self.records(&jobs.ping).await?;
            let hosts = self.alive(&pings, &mut jobs).await?;
            row.jobs = Some(jobs.encode());
            return self
                .file(row, &jobs, &hosts, &open, &identities, &from)
                .await;
        }
        Ok(row)
    }

    /// Files the run's devices and ends it, if it is still in `from`.
    async fn file(
        &self,
        mut row: DiscoveryRunRow,
        jobs: &RunJobs,
        hosts: &BTreeMap<String, Option<f64>>,
        open: &BTreeMap<String, Vec<DevicePort>>,
        identities: &BTreeMap<String, HostIdentity>,
        from: &str,
    ) -> Result<DiscoveryRunRow, DispatchError> {
        let now = now_ms();
        let devices: Vec<DeviceRow> = hosts
            .iter()
            .map(|(address, rtt)| {
                let ports = open.get(address).cloned().unwrap_or_default();
                let identity = identities.get(address);
                let evidence = evidence_of(&ports, identity);
                let class = classify(&evidence);
                DeviceRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    address: address.clone(),
                    class: class.class.as_str().into(),
                    evidence: serde_json::to_string(&class.reasons).unwrap_or_else(|_| "[]".into()),
                    open_ports: serde_json::to_string(&ports).unwrap_or_else(|_| "[]".into()),
                    name: identity.and_then(name_of),
                    identity: identity.and_then(|i| serde_json::to_string(i).ok()),
                    rtt_ms: *rtt,
                    first_seen: now,
                    last_seen: now,
                    last_run: row.id.clone(),
                }
            })
            .collect();
        row.state = DiscoveryState::Complete.as_str().into();
        row.finished_at = Some(now);
        if !jobs.failed.is_empty() {
            row.detail = Some(jobs.detail("devices filed"));
        }
        if let Some((new, updated)) = self
            .dispatcher
            .store()
            .file_devices(&devices, &row, from)
            .await?
        {
            tracing::info!(run = %row.id, new, updated, failed = jobs.failed.len(), "discovery run filed its devices");
        }
        self.reread(&row.id).await
    }

    /// The identify jobs of one chunk of hosts: the first asks their web and TLS
    /// ports and, with the run's first snmp alias, their SNMP agents; each further
    /// alias is one more job asking SNMP only. None when there is nothing to ask.
    async fn identify_jobs(
        &self,
        request: &NewDiscoveryRun,
        hosts: &[&String],
        open: &BTreeMap<String, Vec<DevicePort>>,
    ) -> Result<Vec<IdentifyRequest>, DispatchError> {
        let mut snmp = Vec::with_capacity(request.snmp_aliases.len());
        for (i, alias) in request.snmp_aliases.iter().enumerate() {
            snmp.push(self.snmp_identity(i, alias).await?);
        }
        let timeout_ms = request.timeout_ms.unwrap_or(2000).max(500);
        let mut out = Vec::new();
        let mut first: Vec<IdentifyHost> = Vec::new();
        for address in hosts {
            let ports: Vec<u16> = open
                .get(*address)
                .map(|p| p.iter().map(|p| p.port).collect())
                .unwrap_or_default();
            let host = IdentifyHost {
                address: (*address).clone(),
                http_ports: ports
                    .iter()
                    .copied()
                    .filter(|p| HTTP_PORTS.contains(p))
                    .collect(),
                tls_ports: ports
                    .iter()
                    .copied()
                    .filter(|p| TLS_PORTS.contains(p))
                    .collect(),
            };
            if !snmp.is_empty() || !host.http_ports.is_empty() || !host.tls_ports.is_empty() {
                first.push(host);
            }
        }
        let mut snmp = snmp.into_iter();
        if !first.is_empty() {
            let (snmp, credential) = snmp.next().unzip();
            out.push(IdentifyRequest {
                hosts: first,
                snmp,
                credential,
                timeout_ms,
                concurrency: 64,
                max_run_ms: None,
            });
        }
        for (alias, credential) in snmp {
            out.push(IdentifyRequest {
                hosts: hosts
                    .iter()
                    .map(|a| IdentifyHost {
                        address: (*a).clone(),
                        http_ports: Vec::new(),
                        tls_ports: Vec::new(),
                    })
                    .collect(),
                snmp: Some(alias),
                credential: Some(credential),
                timeout_ms,
                concurrency: 64,
                max_run_ms: None,
            });
        }
        Ok(out)
    }

    pub(super) async fn reread(&self, id: &str) -> Result<DiscoveryRunRow, DispatchError> {
        self.dispatcher
            .store()
            .get_discovery_run(id)
            .await?
            .ok_or_else(|| DispatchError::NotFound(format!("no discovery run `{id}`")))
    }

    /// The records of `ids`, those gone left out.
    async fn records(&self, ids: &[String]) -> Result<Vec<Record>, DispatchError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.dispatcher.store().get_record(id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Every one of `ids`' records once all have ended; `None` while one runs.
    async fn all_ended(&self, ids: &[String]) -> Result<Option<Vec<Record>>, DispatchError> {
        let records = self.records(ids).await?;
        Ok((!records
            .iter()
            .any(|r| matches!(r.state, State::Ready | State::Processing)))
        .then_some(records))
    }

    async fn submit(
        &self,
        agent: &str,
        topic: Topic,
        payload: Payload,
        run: &str,
        stage: &str,
    ) -> Result<String, DispatchError> {
        let record = self
            .dispatcher
            .submit(NewOutput {
                durability: Default::default(),
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

    /// The hosts the run's finished pings found alive, each once, with their
    /// round-trip time; a failed ping is noted in `jobs`.
    async fn alive(
        &self,
        pings: &[Record],
        jobs: &mut RunJobs,
    ) -> Result<BTreeMap<String, Option<f64>>, DispatchError> {
        let mut out = BTreeMap::new();
        for ping in pings {
            match alive(ping, self.dispatcher.store()).await? {
                Ok(hosts) => {
                    for (address, rtt) in hosts {
                        out.entry(address).or_insert(rtt);
                    }
                }
                Err(why) => jobs.fail(&ping.id, why),
            }
        }
        Ok(out)
    }

    /// Every host's open ports from the finished scans' pages, each host and port
    /// once however many chunks or attempts reported it; a failed scan is noted in
    /// `jobs` and what its stored pages found is kept.
    async fn open_ports(
        &self,
        scans: &[Record],
        jobs: &mut RunJobs,
    ) -> Result<BTreeMap<String, Vec<DevicePort>>, DispatchError> {
        let store = self.dispatcher.store();
        let mut out: BTreeMap<String, BTreeMap<u16, DevicePort>> = BTreeMap::new();
        for scan in scans {
            if scan.state != State::Processed {
                jobs.fail(
                    &scan.id,
                    scan.error.clone().unwrap_or_else(|| scan.state.to_string()),
                );
            }
            let mut after = None;
            loop {
                let chunks = store
                    .output_chunks(&scan.id, scan.attempt, after, 256, 8 * 1024 * 1024)
                    .await?;
                let Some(last) = chunks.last() else {
                    break;
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
                        let ports = out.entry(host.address).or_default();
                        for p in host.open {
                            ports.entry(p.port).or_insert(DevicePort {
                                port: p.port,
                                banner: p.banner,
                            });
                        }
                    }
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|(a, ports)| (a, ports.into_values().collect()))
            .collect())
    }

    /// What the finished identify jobs learned, merged per host: the first SNMP
    /// identity that answered, every web answer and TLS name once.
    async fn identities(
        &self,
        records: &[Record],
        jobs: &mut RunJobs,
    ) -> Result<BTreeMap<String, HostIdentity>, DispatchError> {
        let mut out: BTreeMap<String, HostIdentity> = BTreeMap::new();
        for record in records {
            if record.state != State::Processed {
                jobs.fail(
                    &record.id,
                    record
                        .error
                        .clone()
                        .unwrap_or_else(|| record.state.to_string()),
                );
                continue;
            }
            let Some(input) = self.dispatcher.store().input_for(&record.id).await? else {
                jobs.fail(&record.id, "its result is gone".into());
                continue;
            };
            let response: IdentifyResponse = serde_json::from_str(&input.payload).map_err(|e| {
                DispatchError::Store(StoreError::Corrupt {
                    id: input.id.clone(),
                    detail: format!("identify result: {e}"),
                })
            })?;
            for host in response.hosts {
                let merged = out
                    .entry(host.address.clone())
                    .or_insert_with(|| HostIdentity {
                        address: host.address.clone(),
                        ..HostIdentity::default()
                    });
                for w in host.web {
                    if !merged.web.contains(&w) {
                        merged.web.push(w);
                    }
                }
                for n in host.tls_names {
                    if !merged.tls_names.contains(&n) {
                        merged.tls_names.push(n);
                    }
                }
                if merged.snmp.is_none() {
                    merged.snmp = host.snmp;
                }
                merged.errors.extend(host.errors);
            }
        }
        for identity in out.values_mut() {
            if identity.snmp.is_some() {
                identity.errors.retain(|e| !e.starts_with("snmp:"));
            }
        }
        Ok(out)
    }
}

/// Held while a run is moved on.
static ADVANCING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Ports asked for an HTTP `Server` header in plain text.
const HTTP_PORTS: [u16; 5] = [80, 8000, 8008, 8080, 8888];
/// Ports shaken hands with for a TLS certificate (then asked over TLS).
const TLS_PORTS: [u16; 3] = [443, 8443, 9443];

/// A run's chunk size.
fn chunk_size(request: &NewDiscoveryRun) -> usize {
    request.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE).max(1) as usize
}

/// A job's name within its run: `ping`, or `ping 2/5` when the stage has chunks.
fn stage_name(stage: &str, i: usize, of: usize) -> String {
    if of > 1 {
        format!("{stage} {}/{of}", i + 1)
    } else {
        stage.to_string()
    }
}

/// What classification reads of a host: its ports and banners, and what it said.
fn evidence_of(ports: &[DevicePort], identity: Option<&HostIdentity>) -> Evidence {
    let mut e = Evidence {
        open_ports: ports.iter().map(|p| p.port).collect(),
        banners: ports
            .iter()
            .filter_map(|p| p.banner.clone().map(|b| (p.port, b)))
            .collect(),
        ..Evidence::default()
    };
    if let Some(identity) = identity {
        e.http_server = identity.web.iter().find_map(|w| w.server.clone());
        e.tls_names = identity.tls_names.clone();
        if let Some(snmp) = &identity.snmp {
            e.sys_descr = snmp.sys_descr.clone();
            e.sys_object_id = snmp.sys_object_id.clone();
        }
    }
    e
}

/// A device's name from what it said: its SNMP `sysName`, else the first name of
/// its TLS certificate that reads as a host's DNS name — not a wildcard, and not a
/// common name that is a sentence ("rcgen self signed cert") or a bare `localhost`.
fn name_of(identity: &HostIdentity) -> Option<String> {
    identity
        .snmp
        .as_ref()
        .and_then(|s| s.sys_name.clone())
        .filter(|n| !n.trim().is_empty())
        .or_else(|| identity.tls_names.iter().find(|n| host_name(n)).cloned())
}

/// Whether `name` is a dotted DNS host name.
fn host_name(name: &str) -> bool {
    name.contains('.')
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// Every job of a run by stage, and the failed ones' errors: the `jobs` column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunJobs {
    /// Ping jobs, one per chunk of the targets.
    #[serde(default)]
    pub ping: Vec<String>,
    /// Scan jobs, one per chunk of the hosts that answered.
    #[serde(default)]
    pub scan: Vec<String>,
    /// Identify jobs.
    #[serde(default)]
    pub identify: Vec<String>,
    /// Jobs that failed, by output id, with their error.
    #[serde(default)]
    pub failed: BTreeMap<String, String>,
}

impl RunJobs {
    /// A row's jobs (a run from before chunks: its one ping and scan).
    fn of(row: &DiscoveryRunRow) -> Result<Self, serde_json::Error> {
        match &row.jobs {
            Some(text) => serde_json::from_str(text),
            None => Ok(Self {
                ping: vec![row.ping_output.clone()],
                scan: row.scan_output.iter().cloned().collect(),
                ..Self::default()
            }),
        }
    }

    fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    fn fail(&mut self, id: &str, why: String) {
        self.failed.entry(id.to_string()).or_insert(why);
    }

    fn failed_of(&self, ids: &[String]) -> usize {
        ids.iter()
            .filter(|id| self.failed.contains_key(*id))
            .count()
    }

    fn first_error(&self, ids: &[String]) -> String {
        ids.iter()
            .find_map(|id| self.failed.get(id).cloned())
            .unwrap_or_default()
    }

    /// `what`, then how many jobs of each stage failed and the first error.
    fn detail(&self, what: &str) -> String {
        let mut parts = vec![what.to_string()];
        for (stage, ids) in [
            ("ping", &self.ping),
            ("scan", &self.scan),
            ("identify", &self.identify),
        ] {
            let failed = self.failed_of(ids);
            if failed > 0 {
                parts.push(format!(
                    "{failed} of {} {stage} jobs failed: {}",
                    ids.len(),
                    self.first_error(ids)
                ));
            }
        }
        parts.join("; ")
    }

    /// The jobs as the API shows them.
    fn shown(&self) -> Vec<RunJob> {
        let mut out = Vec::new();
        for (stage, ids) in [
            ("ping", &self.ping),
            ("scan", &self.scan),
            ("identify", &self.identify),
        ] {
            for (i, id) in ids.iter().enumerate() {
                out.push(RunJob {
                    stage: stage.into(),
                    chunk: i as u32,
                    output: id.clone(),
                    error: self.failed.get(id).cloned(),
                });
            }
        }
        out
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
    let jobs = RunJobs::of(&row).map_err(|e| corrupt(format!("jobs: {e}")))?;
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
        errors: jobs.failed.len() as u64,
        jobs: jobs.shown(),
        detail: row.detail.clone(),
        schedule: row.schedule.clone(),
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
        identity: row
            .identity
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt(format!("identity: {e}")))?,
        name: row.name.clone(),
        id: row.id.clone(),
        address: row.address.clone(),
        class: row.class.clone(),
        rtt_ms: row.rtt_ms,
        first_seen: rfc3339(row.first_seen),
        last_seen: rfc3339(row.last_seen),
        last_run: row.last_run.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmid_proto::discovery::{SnmpIdentity, WebAnswer};

    fn row(jobs: Option<&str>) -> DiscoveryRunRow {
        DiscoveryRunRow {
            id: "dsc_1".into(),
            request: "{}".into(),
            state: "scanning".into(),
            started_at: 0,
            finished_at: None,
            ping_output: "p1".into(),
            scan_output: Some("s1".into()),
            jobs: jobs.map(str::to_string),
            schedule: None,
            hosts_alive: 0,
            devices_new: 0,
            devices_updated: 0,
            detail: None,
        }
    }

    #[test]
    fn a_run_from_before_chunks_has_its_one_ping_and_scan() {
        let jobs = RunJobs::of(&row(None)).expect("jobs");
        assert_eq!(
            (jobs.ping, jobs.scan),
            (vec!["p1".into()], vec!["s1".into()])
        );
    }

    #[test]
    fn failed_chunks_are_shown_and_counted_by_stage() {
        let mut jobs = RunJobs {
            ping: vec!["p1".into(), "p2".into()],
            scan: vec!["s1".into(), "s2".into(), "s3".into()],
            ..RunJobs::default()
        };
        jobs.fail("s2", "lease lost 3 times".into());
        jobs.fail("s2", "a later reason is not kept".into());
        let back = RunJobs::of(&row(Some(&jobs.encode()))).expect("round trip");
        assert_eq!(back, jobs);
        assert_eq!(jobs.failed_of(&jobs.scan), 1);
        assert_eq!(
            jobs.detail("devices filed"),
            "devices filed; 1 of 3 scan jobs failed: lease lost 3 times"
        );
        let shown = jobs.shown();
        assert_eq!(shown.len(), 5);
        assert_eq!(shown[3].stage, "scan");
        assert_eq!(shown[3].chunk, 1);
        assert_eq!(shown[3].error.as_deref(), Some("lease lost 3 times"));
    }

    #[test]
    fn a_name_comes_from_sysname_then_a_tls_name_that_is_not_a_wildcard() {
        let mut identity = HostIdentity {
            address: "198.18.0.5".into(),
            tls_names: vec![
                "*.corp.test".into(),
                "rcgen self signed cert".into(),
                "localhost".into(),
                "web5.corp.test".into(),
            ],
            ..HostIdentity::default()
        };
        assert_eq!(name_of(&identity).as_deref(), Some("web5.corp.test"));
        identity.snmp = Some(SnmpIdentity {
            sys_name: Some("web5".into()),
            ..SnmpIdentity::default()
        });
        assert_eq!(name_of(&identity).as_deref(), Some("web5"));
        assert_eq!(name_of(&HostIdentity::default()), None);
    }

    #[test]
    fn what_a_host_said_reaches_classification() {
        let identity = HostIdentity {
            address: "198.18.0.5".into(),
            web: vec![WebAnswer {
                port: 443,
                tls: true,
                status: Some(200),
                server: Some("Microsoft-IIS/10.0".into()),
            }],
            tls_names: vec!["iis.corp.test".into()],
            ..HostIdentity::default()
        };
        let ports = [DevicePort {
            port: 443,
            banner: None,
        }];
        let e = evidence_of(&ports, Some(&identity));
        assert_eq!(e.http_server.as_deref(), Some("Microsoft-IIS/10.0"));
        assert_eq!(
            classify(&e).class,
            crate::discovery::classify::DeviceClass::WindowsServer
        );
        let e = evidence_of(&ports, None);
        assert_eq!(
            classify(&e).class,
            crate::discovery::classify::DeviceClass::WebServer
        );
    }
}
