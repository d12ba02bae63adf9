//! Metric collection on PostgreSQL: targets, assignments, and samples stored once per
//! (MID, batch sequence). Series and sample ids are allocated under a transaction-scoped
//! advisory lock, so ids grow in commit order across nodes: the remote-write cursor
//! (a sample id) never skips a sample committed late.

use super::PgStore;
use crate::ecc::{
    MetricAssignmentRow, MetricSampleRow, MetricSeriesRow, MetricTargetRow, MetricsStore,
    StoreError,
};
use async_trait::async_trait;
use openmid_proto::metrics::{NAME_LABEL, SampleBatch};
use sqlx::Row;
use sqlx::postgres::PgRow;

/// The advisory lock metric ids are allocated under.
const METRIC_IDS: i64 = 0x006f_7065_6e6d_6d73;

/// Sample ids are never reused, even after retention emptied the table: the
/// remote-write cursor is a sample id. The next one is kept in `settings`.
const NEXT_SAMPLE_ID: &str = "metrics.next_sample_id";

/// NaN is kept as NULL (as on SQLite, which stores a NaN REAL as NULL).
fn read_value(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

fn target_row(r: &PgRow) -> Result<MetricTargetRow, StoreError> {
    Ok(MetricTargetRow {
        agent: r.try_get(0)?,
        name: r.try_get(1)?,
        target: r.try_get(2)?,
        created_at: r.try_get(3)?,
    })
}

fn series_row(r: &PgRow) -> Result<MetricSeriesRow, StoreError> {
    Ok(MetricSeriesRow {
        id: r.try_get(0)?,
        mid: r.try_get(1)?,
        labels: r.try_get(2)?,
    })
}

#[async_trait]
impl MetricsStore for PgStore {
    async fn put_metric_target(&self, row: &MetricTargetRow) -> Result<bool, StoreError> {
        // xmax = 0 only on a row this statement inserted.
        Ok(sqlx::query_scalar(
            "INSERT INTO metric_targets (agent, name, target, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (agent, name) DO UPDATE SET target = excluded.target RETURNING (xmax = 0)",
        )
        .bind(&row.agent)
        .bind(&row.name)
        .bind(&row.target)
        .bind(row.created_at)
        .fetch_one(self.pool())
        .await?)
    }

    async fn delete_metric_target(&self, agent: &str, name: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("DELETE FROM metric_targets WHERE agent = $1 AND name = $2")
                .bind(agent)
                .bind(name)
                .execute(self.pool())
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn list_metric_targets(
        &self,
        agent: Option<&str>,
    ) -> Result<Vec<MetricTargetRow>, StoreError> {
        sqlx::query(
            "SELECT agent, name, target, created_at FROM metric_targets \
             WHERE ($1::TEXT IS NULL OR agent = $1) ORDER BY agent, name",
        )
        .bind(agent)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(target_row)
        .collect()
    }

    async fn list_metric_assignments(&self) -> Result<Vec<MetricAssignmentRow>, StoreError> {
        sqlx::query(
            "SELECT mid, version, digest, output, targets FROM metric_assignments ORDER BY mid",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(MetricAssignmentRow {
                mid: r.try_get(0)?,
                version: r.try_get(1)?,
                digest: r.try_get(2)?,
                output: r.try_get(3)?,
                targets: r.try_get(4)?,
            })
        })
        .collect()
    }

    async fn put_metric_assignment(&self, row: &MetricAssignmentRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO metric_assignments (mid, version, digest, output, targets) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (mid) DO UPDATE SET version = excluded.version, digest = excluded.digest, \
             output = excluded.output, targets = excluded.targets",
        )
        .bind(&row.mid)
        .bind(row.version)
        .bind(&row.digest)
        .bind(&row.output)
        .bind(&row.targets)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn store_samples(
        &self,
        mid: &str,
        batch: &SampleBatch,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let seq = i64::try_from(batch.seq).unwrap_or(i64::MAX);
        let fresh = sqlx::query(
            "INSERT INTO metric_batches (mid, seq, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(mid)
        .bind(seq)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !fresh {
            return Ok(true);
        }
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(METRIC_IDS)
            .execute(&mut *tx)
            .await?;
        let mut series_id: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM metric_series")
                .fetch_one(&mut *tx)
                .await?;
        let kept: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(NEXT_SAMPLE_ID)
            .fetch_optional(&mut *tx)
            .await?;
        let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM metric_samples")
            .fetch_one(&mut *tx)
            .await?;
        let mut sample_id = kept
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(1)
            .max(max);
        for s in &batch.series {
            let name = s.labels.get(NAME_LABEL).cloned().unwrap_or_default();
            // A BTreeMap serializes sorted: one text per label set.
            let labels = serde_json::to_string(&s.labels).map_err(|e| StoreError::Corrupt {
                id: name.clone(),
                detail: e.to_string(),
            })?;
            let known: Option<i64> =
                sqlx::query_scalar("SELECT id FROM metric_series WHERE mid = $1 AND labels = $2")
                    .bind(mid)
                    .bind(&labels)
                    .fetch_optional(&mut *tx)
                    .await?;
            let id = match known {
                Some(id) => id,
                None => {
                    sqlx::query(
                        "INSERT INTO metric_series (id, mid, name, labels) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(series_id)
                    .bind(mid)
                    .bind(&name)
                    .bind(&labels)
                    .execute(&mut *tx)
                    .await?;
                    series_id += 1;
                    series_id - 1
                }
            };
            // One statement per series, however many samples it has.
            let ids: Vec<i64> = (sample_id..).take(s.samples.len()).collect();
            let times: Vec<i64> = s.samples.iter().map(|p| p.t_ms).collect();
            let values: Vec<Option<f64>> = s
                .samples
                .iter()
                .map(|p| (!p.value.is_nan()).then_some(p.value))
                .collect();
            sqlx::query(
                "INSERT INTO metric_samples (id, series, t_ms, value) \
                 SELECT i, $2, t, v FROM UNNEST($1::BIGINT[], $3::BIGINT[], $4::DOUBLE PRECISION[]) AS u(i, t, v)",
            )
            .bind(&ids)
            .bind(id)
            .bind(&times)
            .bind(&values)
            .execute(&mut *tx)
            .await?;
            sample_id += i64::try_from(ids.len()).unwrap_or(0);
        }
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(NEXT_SAMPLE_ID)
        .bind(sample_id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(false)
    }

    async fn find_series(
        &self,
        name: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MetricSeriesRow>, StoreError> {
        sqlx::query(
            "SELECT id, mid, labels FROM metric_series WHERE ($1::TEXT IS NULL OR name = $1) ORDER BY id LIMIT $2",
        )
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(series_row)
        .collect()
    }

    async fn read_samples(
        &self,
        series: i64,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        sqlx::query(
            "SELECT t_ms, value FROM metric_samples WHERE series = $1 AND t_ms >= $2 AND t_ms <= $3 \
             ORDER BY t_ms, id LIMIT $4",
        )
        .bind(series)
        .bind(from)
        .bind(to)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, read_value(r.try_get(1)?))))
        .collect()
    }

    async fn samples_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<MetricSampleRow>, StoreError> {
        sqlx::query(
            "SELECT s.id, s.t_ms, s.value, m.id, m.mid, m.labels FROM metric_samples s \
             JOIN metric_series m ON m.id = s.series WHERE s.id > $1 ORDER BY s.id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(MetricSampleRow {
                id: r.try_get(0)?,
                t_ms: r.try_get(1)?,
                value: read_value(r.try_get(2)?),
                series: MetricSeriesRow {
                    id: r.try_get(3)?,
                    mid: r.try_get(4)?,
                    labels: r.try_get(5)?,
                },
            })
        })
        .collect()
    }

    async fn purge_samples(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM metric_samples WHERE id IN (SELECT id FROM metric_samples WHERE t_ms < $1 LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "DELETE FROM metric_batches WHERE (mid, seq) IN \
             (SELECT mid, seq FROM metric_batches WHERE received_at < $1 LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted)
    }
}
