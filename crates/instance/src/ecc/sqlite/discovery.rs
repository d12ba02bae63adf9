//! Discovery runs and devices on SQLite.

use super::*;
use crate::ecc::{DeviceRow, DiscoveryRunRow, DiscoveryStore};

/// `SELECT` of every run column, then `$tail`.
macro_rules! select_runs {
    ($tail:literal) => {
        concat!(
            "SELECT id, request, state, started_at, finished_at, ping_output, scan_output, hosts_alive, devices_new, devices_updated, detail FROM discovery_runs ",
            $tail
        )
    };
}

/// `SELECT` of every device column, then `$tail`.
macro_rules! select_devices {
    ($tail:literal) => {
        concat!(
            "SELECT id, address, class, evidence, open_ports, rtt_ms, first_seen, last_seen, last_run FROM devices ",
            $tail
        )
    };
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
    })
}

/// Writes a run's moving columns if it is in state `from`.
fn update_run(c: &Connection, row: &DiscoveryRunRow, from: &str) -> Result<bool, StoreError> {
    Ok(c.prepare_cached(
        "UPDATE discovery_runs SET state = ?, finished_at = ?, scan_output = ?, hosts_alive = ?, \
             devices_new = ?, devices_updated = ?, detail = ? WHERE id = ? AND state = ?",
    )?
    .execute(params![
        row.state,
        row.finished_at,
        row.scan_output,
        count(row.hosts_alive),
        count(row.devices_new),
        count(row.devices_updated),
        row.detail,
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
                    "INSERT INTO discovery_runs (id, request, state, started_at, ping_output) VALUES (?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    row.id,
                    row.request,
                    row.state,
                    row.started_at,
                    row.ping_output
                ])?;
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
        limit: u32,
    ) -> Result<Vec<DiscoveryRunRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(select_runs!(
                "WHERE (?1 IS NULL OR state = ?1) ORDER BY started_at DESC, id DESC LIMIT ?2"
            ))?
            .query_map(params![state, i64::from(limit)], run_row)?
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
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let (devices, mut finish) = (devices.to_vec(), finish.clone());
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
                            "UPDATE devices SET class = ?, evidence = ?, open_ports = ?, rtt_ms = ?, last_seen = ?, last_run = ? \
                             WHERE address = ?",
                        )?
                        .execute(params![
                            d.class,
                            d.evidence,
                            d.open_ports,
                            d.rtt_ms,
                            d.last_seen,
                            d.last_run,
                            d.address
                        ])?;
                        updated += 1;
                    } else {
                        c.prepare_cached(
                            "INSERT INTO devices (id, address, class, evidence, open_ports, rtt_ms, first_seen, last_seen, last_run) \
                             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                            d.last_run
                        ])?;
                        new += 1;
                    }
                }
                finish.devices_new = new;
                finish.devices_updated = updated;
                if update_run(c, &finish, "scanning")? {
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
}
