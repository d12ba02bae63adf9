//! Metric collection on SQLite: targets, assignments, and samples stored once per
//! (MID, batch sequence).

use super::*;
use crate::ecc::{
    MetricAssignmentRow, MetricSampleRow, MetricSeriesRow, MetricTargetRow, MetricsStore,
};
use openmid_proto::metrics::{NAME_LABEL, SampleBatch};

fn target_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MetricTargetRow> {
    Ok(MetricTargetRow {
        agent: r.get(0)?,
        name: r.get(1)?,
        target: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn series_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MetricSeriesRow> {
    Ok(MetricSeriesRow {
        id: r.get(0)?,
        mid: r.get(1)?,
        labels: r.get(2)?,
    })
}

/// NaN is kept as NULL.
fn read_value(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

fn next_id(c: &Connection, table: &str) -> Result<i64, StoreError> {
    let sql = format!("SELECT COALESCE(MAX(id), 0) + 1 FROM {table}");
    Ok(c.prepare_cached(&sql)?.query_row([], |r| r.get(0))?)
}

/// Sample ids are never reused, even after retention emptied the table: the
/// remote-write cursor is a sample id. The next one is kept in `settings`.
const NEXT_SAMPLE_ID: &str = "metrics.next_sample_id";

fn next_sample_id(c: &Connection) -> Result<i64, StoreError> {
    let kept: Option<String> = c
        .prepare_cached("SELECT value FROM settings WHERE key = ?")?
        .query_row([NEXT_SAMPLE_ID], |r| r.get(0))
        .optional()?;
    let kept = kept.and_then(|v| v.parse::<i64>().ok()).unwrap_or(1);
    Ok(kept.max(next_id(c, "metric_samples")?))
}

fn keep_next_sample_id(c: &Connection, next: i64) -> Result<(), StoreError> {
    c.prepare_cached("DELETE FROM settings WHERE key = ?")?
        .execute([NEXT_SAMPLE_ID])?;
    c.prepare_cached("INSERT INTO settings (key, value) VALUES (?, ?)")?
        .execute(params![NEXT_SAMPLE_ID, next.to_string()])?;
    Ok(())
}

#[async_trait]
impl MetricsStore for SqliteStore {
    async fn put_metric_target(&self, row: &MetricTargetRow) -> Result<bool, StoreError> {
        let row = row.clone();
        self.writer
            .write(move |c| {
                let updated = c
                    .prepare_cached(
                        "UPDATE metric_targets SET target = ? WHERE agent = ? AND name = ?",
                    )?
                    .execute(params![row.target, row.agent, row.name])?;
                if updated > 0 {
                    return Ok(false);
                }
                c.prepare_cached(
                    "INSERT INTO metric_targets (agent, name, target, created_at) VALUES (?, ?, ?, ?)",
                )?
                .execute(params![row.agent, row.name, row.target, row.created_at])?;
                Ok(true)
            })
            .await
    }

    async fn delete_metric_target(&self, agent: &str, name: &str) -> Result<bool, StoreError> {
        let (agent, name) = (agent.to_string(), name.to_string());
        self.writer
            .write(move |c| {
                Ok(
                    c.prepare_cached("DELETE FROM metric_targets WHERE agent = ? AND name = ?")?
                        .execute(params![agent, name])?
                        > 0,
                )
            })
            .await
    }

    async fn list_metric_targets(
        &self,
        agent: Option<&str>,
    ) -> Result<Vec<MetricTargetRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT agent, name, target, created_at FROM metric_targets \
                 WHERE (?1 IS NULL OR agent = ?1) ORDER BY agent, name",
            )?
            .query_map(params![agent], target_row)?
            .collect::<Result<_, _>>()?)
        })
    }

    async fn list_metric_assignments(&self) -> Result<Vec<MetricAssignmentRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT mid, version, digest, output, targets FROM metric_assignments ORDER BY mid",
            )?
            .query_map([], |r| {
                Ok(MetricAssignmentRow {
                    mid: r.get(0)?,
                    version: r.get(1)?,
                    digest: r.get(2)?,
                    output: r.get(3)?,
                    targets: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?)
        })
    }

    async fn put_metric_assignment(&self, row: &MetricAssignmentRow) -> Result<(), StoreError> {
        let row = row.clone();
        self.writer
            .write(move |c| {
                c.prepare_cached("DELETE FROM metric_assignments WHERE mid = ?")?
                    .execute([&row.mid])?;
                c.prepare_cached(
                    "INSERT INTO metric_assignments (mid, version, digest, output, targets) VALUES (?, ?, ?, ?, ?)",
                )?
                .execute(params![row.mid, row.version, row.digest, row.output, row.targets])?;
                Ok(())
            })
            .await
    }

    async fn store_samples(
        &self,
        mid: &str,
        batch: &SampleBatch,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (mid, batch) = (mid.to_string(), batch.clone());
        self.writer
            .write(move |c| {
                let seq = i64::try_from(batch.seq).unwrap_or(i64::MAX);
                let seen = c
                    .prepare_cached("SELECT 1 FROM metric_batches WHERE mid = ? AND seq = ?")?
                    .query_row(params![mid, seq], |_| Ok(()))
                    .optional()?
                    .is_some();
                if seen {
                    return Ok(true);
                }
                c.prepare_cached(
                    "INSERT INTO metric_batches (mid, seq, received_at) VALUES (?, ?, ?)",
                )?
                .execute(params![mid, seq, now])?;
                let mut series_id = next_id(c, "metric_series")?;
                let mut sample_id = next_sample_id(c)?;
                for s in &batch.series {
                    let name = s.labels.get(NAME_LABEL).cloned().unwrap_or_default();
                    // A BTreeMap serializes sorted: one text per label set.
                    let labels = serde_json::to_string(&s.labels).map_err(|e| {
                        StoreError::Corrupt {
                            id: name.clone(),
                            detail: e.to_string(),
                        }
                    })?;
                    let known: Option<i64> = c
                        .prepare_cached("SELECT id FROM metric_series WHERE mid = ? AND labels = ?")?
                        .query_row(params![mid, labels], |r| r.get(0))
                        .optional()?;
                    let id = match known {
                        Some(id) => id,
                        None => {
                            c.prepare_cached(
                                "INSERT INTO metric_series (id, mid, name, labels) VALUES (?, ?, ?, ?)",
                            )?
                            .execute(params![series_id, mid, name, labels])?;
                            series_id += 1;
                            series_id - 1
                        }
                    };
                    let mut insert = c.prepare_cached(
                        "INSERT INTO metric_samples (id, series, t_ms, value) VALUES (?, ?, ?, ?)",
                    )?;
                    for sample in &s.samples {
                        let value = (!sample.value.is_nan()).then_some(sample.value);
                        insert.execute(params![sample_id, id, sample.t_ms, value])?;
                        sample_id += 1;
                    }
                }
                keep_next_sample_id(c, sample_id)?;
                Ok(false)
            })
            .await
    }

    async fn find_series(
        &self,
        name: Option<&str>,
        limit: u32,
    ) -> Result<Vec<MetricSeriesRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT id, mid, labels FROM metric_series WHERE (?1 IS NULL OR name = ?1) ORDER BY id LIMIT ?2",
            )?
            .query_map(params![name, i64::from(limit)], series_row)?
            .collect::<Result<_, _>>()?)
        })
    }

    async fn read_samples(
        &self,
        series: i64,
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT t_ms, value FROM metric_samples WHERE series = ? AND t_ms >= ? AND t_ms <= ? \
                 ORDER BY t_ms, id LIMIT ?",
            )?
            .query_map(params![series, from, to, i64::from(limit)], |r| {
                Ok((r.get(0)?, read_value(r.get(1)?)))
            })?
            .collect::<Result<_, _>>()?)
        })
    }

    async fn samples_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<MetricSampleRow>, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT s.id, s.t_ms, s.value, m.id, m.mid, m.labels FROM metric_samples s \
                 JOIN metric_series m ON m.id = s.series WHERE s.id > ? ORDER BY s.id LIMIT ?",
            )?
            .query_map(params![after, i64::from(limit)], |r| {
                Ok(MetricSampleRow {
                    id: r.get(0)?,
                    t_ms: r.get(1)?,
                    value: read_value(r.get(2)?),
                    series: MetricSeriesRow {
                        id: r.get(3)?,
                        mid: r.get(4)?,
                        labels: r.get(5)?,
                    },
                })
            })?
            .collect::<Result<_, _>>()?)
        })
    }

    async fn purge_samples(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                let deleted = c
                    .prepare_cached(
                        "DELETE FROM metric_samples WHERE id IN \
                         (SELECT id FROM metric_samples WHERE t_ms < ? LIMIT ?)",
                    )?
                    .execute(params![before, i64::from(limit)])?;
                c.prepare_cached(
                    "DELETE FROM metric_batches WHERE rowid IN \
                     (SELECT rowid FROM metric_batches WHERE received_at < ? LIMIT ?)",
                )?
                .execute(params![before, i64::from(limit)])?;
                Ok(deleted as u64)
            })
            .await
    }
}
