//! Discovery runs and devices on SQLite.

use super::*;
use crate::ecc::{DeviceRow, DiscoveryRunRow, DiscoveryScheduleRow, DiscoveryStore};

/// `SELECT` of every run column, then `$tail`.
macro_rules! select_runs {
    ($tail:literal) => {
        concat!(
            "SELECT id, request, state, started_at, finished_at, ping_output, scan_output, hosts_alive, devices_new, devices_updated, detail, jobs, schedule FROM discovery_runs ",
            $tail
        )
    };
}

/// `SELECT` of every device column, then `$tail`.
macro_rules! select_devices {
    ($tail:literal) => {
        concat!(
            "SELECT id, address, class, evidence, open_ports, rtt_ms, first_seen, last_seen, last_run, name, identity FROM devices ",
            $tail
        )
    };
}

/// `SELECT` of every schedule column, then `$tail`.
macro_rules! select_schedules {
    ($tail:literal) => {
        concat!(
            "SELECT name, spec, created_at, updated_at, next_run_at, schedule_anchor, last_run FROM discovery_schedules ",
            $tail
        )
    };
}

fn schedule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DiscoveryScheduleRow> {
    Ok(DiscoveryScheduleRow {
        name: r.get(0)?,
        spec: r.get(1)?,
        created_at: r.get(2)?,
        updated_at: r.get(3)?,
        next_run_at: r.get(4)?,
        schedule_anchor: r.get(5)?,
        last_run: r.get(6)?,
    })
}

/// How filing devices can fail: the store, or the run having moved on meanwhile
/// (then the devices written are undone with it).
enum Filing {
    Store(StoreError),
    Moved,
}

impl From<StoreError> for Filing {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<rusqlite::Error> for Filing {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(e.into())
    }
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn uncount(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DiscoveryRunRow> {
    Ok(DiscoveryRunRow {
        id: r.get(0)?,
        request: r.get(1)?,
        state: r.get(2)?,
        started_at: r.get(3)?,
        finished_at: r.get(4)?,
        ping_output: r.get(5)?,
        scan_output: r.get(6)?,
        hosts_alive: uncount(r.get(7)?),
        devices_new: uncount(r.get(8)?),
        devices_updated: uncount(r.get(9)?),
        detail: r.get(10)?,
        jobs: r.get(11)?,
        schedule: r.get(12)?,
    })
}

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        id: r.get(0)?,
        address: r.get(1)?,
        class: r.get(2)?,
        evidence: r.get(3)?,
        open_ports: r.get(4)?,
        rtt_ms: r.get(5)?,
        first_seen: r.get(6)?,
        last_seen: r.get(7)?,
        last_run: r.get(8)?,
        name: r.get(9)?,
        identity: r.get(10)?,
    })
}

/// Writes a run's moving columns if it is in state `from`.
fn update_run(c: &Connection, row: &DiscoveryRunRow, from: &str) -> Result<bool, StoreError> {
    Ok(c.prepare_cached(
        "UPDATE discovery_runs SET state = ?, finished_at = ?, scan_output = ?, hosts_alive = ?, \
             devices_new = ?, devices_updated = ?, detail = ?, jobs = ? WHERE id = ? AND state = ?",
    )?
    .execute(params![
        row.state,
        row.finished_at,
        row.scan_output,
        count(row.hosts_alive),
        count(row.devices_new),
        count(row.devices_updated),
        row.detail,
        row.jobs,
        row.id,
        from
    ])? > 0)
}

#[async_trait]
impl DiscoveryStore for SqliteStore {
    async fn insert_discovery_run(&self, row: &DiscoveryRunRow) -> Result<(), StoreError> {
        let row = row.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO discovery_runs (id, request, state, started_at, ping_output, jobs, schedule) VALUES (?, ?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    row.id,
                    row.request,
                    row.state,
                    row.started_at,
                    row.ping_output,
                    row.jobs,
                    row.schedule
                ])?;
                if let Some(schedule) = &row.schedule {
                    c.prepare_cached("UPDATE discovery_schedules SET last_run = ? WHERE name = ?")?
                        .execute(params![row.id, schedule])?;
                }
                Ok(())
            })
            .await
    }

    async fn get_discovery_run(&self, id: &str) -> Result<Option<DiscoveryRunRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_runs!("WHERE id = ?"))?
                .query_row([id], run_row)
                .optional()?)
        })
    }

    async fn list_discovery_runs(
        &self,
        state: Option<&str>,
        schedule: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DiscoveryRunRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_runs!(
                "WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR schedule = ?2) ORDER BY started_at DESC, id DESC LIMIT ?3"
            ))?
            .query_map(params![state, schedule, i64::from(limit)], run_row)?
            .collect::<Result<_, _>>()?)
        })
    }

    async fn update_discovery_run(
        &self,
        row: &DiscoveryRunRow,
        from: &str,
    ) -> Result<bool, StoreError> {
        let (row, from) = (row.clone(), from.to_string());
        self.writer.write(move |c| update_run(c, &row, &from)).await
    }

    async fn file_devices(
        &self,
        devices: &[DeviceRow],
        finish: &DiscoveryRunRow,
        from: &str,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let (devices, mut finish, from) = (devices.to_vec(), finish.clone(), from.to_string());
        let filed = self
            .writer
            .write(move |c| -> Result<(u64, u64), Filing> {
                let (mut new, mut updated) = (0u64, 0u64);
                for d in &devices {
                    let known: bool = c
                        .prepare_cached("SELECT 1 FROM devices WHERE address = ?")?
                        .query_row([&d.address], |_| Ok(true))
                        .optional()?
                        .unwrap_or(false);
                    if known {
                        c.prepare_cached(
                            "UPDATE devices SET class = ?, evidence = ?, open_ports = ?, rtt_ms = ?, last_seen = ?, last_run = ?, \
                             name = COALESCE(?, name), identity = ? WHERE address = ?",
                        )?
                        .execute(params![
                            d.class,
                            d.evidence,
                            d.open_ports,
                            d.rtt_ms,
                            d.last_seen,
                            d.last_run,
                            d.name,
                            d.identity,
                            d.address
                        ])?;
                        updated += 1;
                    } else {
                        c.prepare_cached(
                            "INSERT INTO devices (id, address, class, evidence, open_ports, rtt_ms, first_seen, last_seen, last_run, name, identity) \
                             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        )?
                        .execute(params![
                            d.id,
                            d.address,
                            d.class,
                            d.evidence,
                            d.open_ports,
                            d.rtt_ms,
                            d.first_seen,
                            d.last_seen,
                            d.last_run,
                            d.name,
                            d.identity
                        ])?;
                        new += 1;
                    }
                }
                finish.devices_new = new;
                finish.devices_updated = updated;
                if update_run(c, &finish, &from)? {
                    Ok((new, updated))
                } else {
                    // Another node ended it first: an error undoes this attempt's writes.
                    Err(Filing::Moved)
                }
            })
            .await;
        match filed {
            Ok(counts) => Ok(Some(counts)),
            Err(Filing::Moved) => Ok(None),
            Err(Filing::Store(e)) => Err(e),
        }
    }

    async fn list_devices(
        &self,
        class: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeviceRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_devices!(
                "WHERE (?1 IS NULL OR class = ?1) AND (?2 IS NULL OR address > ?2) ORDER BY address LIMIT ?3"
            ))?
            .query_map(params![class, after, i64::from(limit)], device_row)?
            .collect::<Result<_, _>>()?)
        })
    }

    async fn get_device(&self, key: &str) -> Result<Option<DeviceRow>, StoreError> {
        self.read(|c| {
            Ok(
                c.prepare_cached(select_devices!("WHERE id = ?1 OR address = ?1"))?
                    .query_row([key], device_row)
                    .optional()?,
            )
        })
    }

    async fn put_discovery_schedule(&self, row: &DiscoveryScheduleRow) -> Result<(), StoreError> {
        let row = row.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO discovery_schedules (name, spec, created_at, updated_at, next_run_at, schedule_anchor) \
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
                     updated_at = excluded.updated_at, next_run_at = excluded.next_run_at, \
                     schedule_anchor = excluded.schedule_anchor",
                )?
                .execute(params![
                    row.name,
                    row.spec,
                    row.created_at,
                    row.updated_at,
                    row.next_run_at,
                    row.schedule_anchor
                ])?;
                Ok(())
            })
            .await
    }

    async fn get_discovery_schedule(
        &self,
        name: &str,
    ) -> Result<Option<DiscoveryScheduleRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_schedules!("WHERE name = ?"))?
                .query_row([name], schedule_row)
                .optional()?)
        })
    }

    async fn list_discovery_schedules(&self) -> Result<Vec<DiscoveryScheduleRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_schedules!("ORDER BY name"))?
                .query_map([], schedule_row)?
                .collect::<Result<_, _>>()?)
        })
    }

    async fn delete_discovery_schedule(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                Ok(
                    c.prepare_cached("DELETE FROM discovery_schedules WHERE name = ?")?
                        .execute([name])?
                        > 0,
                )
            })
            .await
    }

    async fn due_discovery_schedules(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<DiscoveryScheduleRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_schedules!(
                "WHERE next_run_at IS NOT NULL AND next_run_at <= ? ORDER BY next_run_at LIMIT ?"
            ))?
            .query_map(params![now, i64::from(limit)], schedule_row)?
            .collect::<Result<_, _>>()?)
        })
    }

    async fn reschedule_discovery_schedule(
        &self,
        name: &str,
        expected: Option<i64>,
        next_run_at: Option<i64>,
        anchor: Option<i64>,
    ) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |c| {
                Ok(c.prepare_cached(
                    "UPDATE discovery_schedules SET next_run_at = ?, schedule_anchor = COALESCE(?, schedule_anchor) \
                     WHERE name = ? AND next_run_at IS ?",
                )?
                .execute(params![next_run_at, anchor, name, expected])?
                    > 0)
            })
            .await
    }
}
