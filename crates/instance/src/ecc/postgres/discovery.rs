//! Discovery runs and devices on PostgreSQL. Filing a run's devices and ending the
//! run is one transaction; a device's address is unique, so two runs filing one
//! address at once update one device.

use super::{PgStore, to_db};
use crate::ecc::{DeviceRow, DiscoveryRunRow, DiscoveryScheduleRow, DiscoveryStore, StoreError};
use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

const RUN_COLUMNS: &str = "id, request, state, started_at, finished_at, ping_output, scan_output, hosts_alive, devices_new, devices_updated, detail, jobs, schedule";
const DEVICE_COLUMNS: &str = "id, address, class, evidence, open_ports, rtt_ms, first_seen, last_seen, last_run, name, identity";
const SCHEDULE_COLUMNS: &str =
    "name, spec, created_at, updated_at, next_run_at, schedule_anchor, last_run";

fn schedule_row(r: &PgRow) -> Result<DiscoveryScheduleRow, StoreError> {
    Ok(DiscoveryScheduleRow {
        name: r.try_get(0)?,
        spec: r.try_get(1)?,
        created_at: r.try_get(2)?,
        updated_at: r.try_get(3)?,
        next_run_at: r.try_get(4)?,
        schedule_anchor: r.try_get(5)?,
        last_run: r.try_get(6)?,
    })
}

fn run_row(r: &PgRow) -> Result<DiscoveryRunRow, StoreError> {
    Ok(DiscoveryRunRow {
        id: r.try_get(0)?,
        request: r.try_get(1)?,
        state: r.try_get(2)?,
        started_at: r.try_get(3)?,
        finished_at: r.try_get(4)?,
        ping_output: r.try_get(5)?,
        scan_output: r.try_get(6)?,
        hosts_alive: super::count(r, 7)?,
        devices_new: super::count(r, 8)?,
        devices_updated: super::count(r, 9)?,
        detail: r.try_get(10)?,
        jobs: r.try_get(11)?,
        schedule: r.try_get(12)?,
    })
}

fn device_row(r: &PgRow) -> Result<DeviceRow, StoreError> {
    Ok(DeviceRow {
        id: r.try_get(0)?,
        address: r.try_get(1)?,
        class: r.try_get(2)?,
        evidence: r.try_get(3)?,
        open_ports: r.try_get(4)?,
        rtt_ms: r.try_get(5)?,
        first_seen: r.try_get(6)?,
        last_seen: r.try_get(7)?,
        last_run: r.try_get(8)?,
        name: r.try_get(9)?,
        identity: r.try_get(10)?,
    })
}

async fn update_run(
    c: &mut PgConnection,
    row: &DiscoveryRunRow,
    from: &str,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "UPDATE discovery_runs SET state = $1, finished_at = $2, scan_output = $3, hosts_alive = $4, \
         devices_new = $5, devices_updated = $6, detail = $7, jobs = $10 WHERE id = $8 AND state = $9",
    )
    .bind(&row.state)
    .bind(row.finished_at)
    .bind(&row.scan_output)
    .bind(to_db(row.hosts_alive))
    .bind(to_db(row.devices_new))
    .bind(to_db(row.devices_updated))
    .bind(&row.detail)
    .bind(&row.id)
    .bind(from)
    .bind(&row.jobs)
    .execute(c)
    .await?
    .rows_affected()
        > 0)
}

#[async_trait]
impl DiscoveryStore for PgStore {
    async fn insert_discovery_run(&self, row: &DiscoveryRunRow) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO discovery_runs (id, request, state, started_at, ping_output, jobs, schedule) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(&row.request)
        .bind(&row.state)
        .bind(row.started_at)
        .bind(&row.ping_output)
        .bind(&row.jobs)
        .bind(&row.schedule)
        .execute(&mut *tx)
        .await?;
        if let Some(schedule) = &row.schedule {
            sqlx::query("UPDATE discovery_schedules SET last_run = $1 WHERE name = $2")
                .bind(&row.id)
                .bind(schedule)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_discovery_run(&self, id: &str) -> Result<Option<DiscoveryRunRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM discovery_runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(run_row)
        .transpose()
    }

    async fn list_discovery_runs(
        &self,
        state: Option<&str>,
        schedule: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DiscoveryRunRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM discovery_runs WHERE ($1::TEXT IS NULL OR state = $1) AND ($3::TEXT IS NULL OR schedule = $3) \
             ORDER BY started_at DESC, id DESC LIMIT $2"
        ))
        .bind(state)
        .bind(i64::from(limit))
        .bind(schedule)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(run_row)
        .collect()
    }

    async fn update_discovery_run(
        &self,
        row: &DiscoveryRunRow,
        from: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.pool().acquire().await?;
        update_run(&mut c, row, from).await
    }

    async fn file_devices(
        &self,
        devices: &[DeviceRow],
        finish: &DiscoveryRunRow,
        from: &str,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let (mut new, mut updated) = (0u64, 0u64);
        for d in devices {
            // xmax = 0 only on a row this statement inserted.
            let inserted: bool = sqlx::query_scalar(
                "INSERT INTO devices (id, address, class, evidence, open_ports, rtt_ms, first_seen, last_seen, last_run, name, identity) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (address) DO UPDATE SET \
                 class = excluded.class, evidence = excluded.evidence, open_ports = excluded.open_ports, \
                 rtt_ms = excluded.rtt_ms, last_seen = excluded.last_seen, last_run = excluded.last_run, \
                 name = COALESCE(excluded.name, devices.name), identity = excluded.identity \
                 RETURNING (xmax = 0)",
            )
            .bind(&d.id)
            .bind(&d.address)
            .bind(&d.class)
            .bind(&d.evidence)
            .bind(&d.open_ports)
            .bind(d.rtt_ms)
            .bind(d.first_seen)
            .bind(d.last_seen)
            .bind(&d.last_run)
            .bind(&d.name)
            .bind(&d.identity)
            .fetch_one(&mut *tx)
            .await?;
            if inserted {
                new += 1;
            } else {
                updated += 1;
            }
        }
        let mut finish = finish.clone();
        finish.devices_new = new;
        finish.devices_updated = updated;
        if !update_run(&mut tx, &finish, from).await? {
            // Another node filed it first: this filing is undone.
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some((new, updated)))
    }

    async fn list_devices(
        &self,
        class: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeviceRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE ($1::TEXT IS NULL OR class = $1) AND ($2::TEXT IS NULL OR address > $2) \
             ORDER BY address LIMIT $3"
        ))
        .bind(class)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(device_row)
        .collect()
    }

    async fn get_device(&self, key: &str) -> Result<Option<DeviceRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 OR address = $1"
        ))
        .bind(key)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(device_row)
        .transpose()
    }

    async fn put_discovery_schedule(&self, row: &DiscoveryScheduleRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO discovery_schedules (name, spec, created_at, updated_at, next_run_at, schedule_anchor) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
             updated_at = excluded.updated_at, next_run_at = excluded.next_run_at, \
             schedule_anchor = excluded.schedule_anchor",
        )
        .bind(&row.name)
        .bind(&row.spec)
        .bind(row.created_at)
        .bind(row.updated_at)
        .bind(row.next_run_at)
        .bind(row.schedule_anchor)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn get_discovery_schedule(
        &self,
        name: &str,
    ) -> Result<Option<DiscoveryScheduleRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM discovery_schedules WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(schedule_row)
        .transpose()
    }

    async fn list_discovery_schedules(&self) -> Result<Vec<DiscoveryScheduleRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM discovery_schedules ORDER BY name"
        ))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(schedule_row)
        .collect()
    }

    async fn delete_discovery_schedule(&self, name: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("DELETE FROM discovery_schedules WHERE name = $1")
                .bind(name)
                .execute(self.pool())
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn due_discovery_schedules(
        &self,
        now: i64,
        limit: u32,
    ) -> Result<Vec<DiscoveryScheduleRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SCHEDULE_COLUMNS} FROM discovery_schedules WHERE next_run_at IS NOT NULL AND next_run_at <= $1 \
             ORDER BY next_run_at LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(schedule_row)
        .collect()
    }

    async fn reschedule_discovery_schedule(
        &self,
        name: &str,
        expected: Option<i64>,
        next_run_at: Option<i64>,
        anchor: Option<i64>,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE discovery_schedules SET next_run_at = $1, schedule_anchor = COALESCE($2, schedule_anchor) \
             WHERE name = $3 AND next_run_at IS NOT DISTINCT FROM $4",
        )
        .bind(next_run_at)
        .bind(anchor)
        .bind(name)
        .bind(expected)
        .execute(self.pool())
        .await?
        .rows_affected()
            > 0)
    }
}
