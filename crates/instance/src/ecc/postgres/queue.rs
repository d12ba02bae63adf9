//! The ECC queue on PostgreSQL: outputs and inputs, claims and leases, results,
//! cancels, streamed output and purging. A claim takes rows with
//! `FOR UPDATE SKIP LOCKED`, so several nodes claim at once without waiting on each
//! other or taking one output twice; a batch of results is one transaction.

use super::operations::{end_leases, idempotent_hit, insert_record, record_result};
use super::{PgStore, ecc_row, ecc_rows, output_chunks};
use crate::ecc::rows::ecc_columns;
use crate::ecc::{
    Cancelled, ChunksStored, Claim, Finished, IdempotencyKey, IdempotentHit, Load, NewAuditEntry,
    QueueStore, Record, RecordFilter, RecordedResult, ResultAudit, StoreError,
};
use async_trait::async_trait;
use openmid_proto::command_output::DecodedChunk;
use openmid_proto::ecc::{Priority, State};
use openmid_proto::mid::{JobRef, WorkResult};
use sqlx::Row;
use std::collections::HashMap;
use std::sync::Arc;

/// Lapsed leases ended per sweep (the rest wait for the next one).
const EXPIRE_BATCH: i64 = 1000;

#[async_trait]
impl QueueStore for PgStore {
    async fn insert_output(&self, record: &Record) -> Result<(), StoreError> {
        let mut c = self.pool().acquire().await?;
        insert_record(&mut c, record).await
    }

    async fn insert_output_once(
        &self,
        record: &Record,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotentHit>, StoreError> {
        let mut tx = self.pool().begin().await?;
        // The key's row is the lock: a concurrent retry waits here, then sees the hit.
        sqlx::query(
            "INSERT INTO idempotency_keys (key, request_hash, output_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&key.key)
        .bind(&key.request_hash)
        .bind(&record.id)
        .bind(key.now)
        .execute(&mut *tx)
        .await?;
        let existing = sqlx::query(
            "SELECT output_id, request_hash, created_at FROM idempotency_keys WHERE key = $1 FOR UPDATE",
        )
        .bind(&key.key)
        .fetch_one(&mut *tx)
        .await?;
        let (output_id, request_hash, created_at): (String, String, i64) = (
            existing.try_get(0)?,
            existing.try_get(1)?,
            existing.try_get(2)?,
        );
        if output_id != record.id {
            if created_at >= key.not_before {
                return Ok(Some(IdempotentHit {
                    output_id,
                    request_hash,
                }));
            }
            // A key past the window is forgotten: this submission takes it over.
            sqlx::query(
                "UPDATE idempotency_keys SET request_hash = $2, output_id = $3, created_at = $4 WHERE key = $1",
            )
            .bind(&key.key)
            .bind(&key.request_hash)
            .bind(&record.id)
            .bind(key.now)
            .execute(&mut *tx)
            .await?;
        }
        insert_record(&mut tx, record).await?;
        tx.commit().await?;
        Ok(None)
    }

    async fn find_idempotent(
        &self,
        key: &str,
        not_before: i64,
    ) -> Result<Option<IdempotentHit>, StoreError> {
        let mut c = self.pool().acquire().await?;
        idempotent_hit(&mut c, key, not_before).await
    }

    async fn get_record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        ecc_row(
            self.pool(),
            sqlx::query(concat!(
                "SELECT ",
                ecc_columns!(),
                " FROM ecc WHERE id = $1"
            ))
            .bind(id),
        )
        .await
    }

    async fn input_for(&self, output_id: &str) -> Result<Option<Record>, StoreError> {
        ecc_row(
            self.pool(),
            sqlx::query(concat!(
                "SELECT ",
                ecc_columns!(),
                " FROM ecc WHERE queue = 'input' AND response_to = $1"
            ))
            .bind(output_id),
        )
        .await
    }

    async fn list_records(&self, f: &RecordFilter) -> Result<Vec<Record>, StoreError> {
        let mut sql = String::from(concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE 1 = 1"));
        let mut values: Vec<String> = Vec::new();
        let mut filter = |column: &str, value: String| {
            values.push(value);
            sql.push_str(&format!(" AND {column} ${}", values.len()));
        };
        if let Some(queue) = f.queue {
            filter("queue =", queue.as_str().to_string());
        }
        if let Some(state) = f.state {
            filter("state =", state.as_str().to_string());
        }
        if let Some(agent) = &f.agent {
            filter("agent =", agent.clone());
        }
        if let Some(topic) = f.topic {
            filter("topic =", topic.as_str().to_string());
        }
        if let Some(correlator) = &f.correlator {
            filter("correlator =", correlator.clone());
        }
        if let Some(after) = &f.after {
            filter("id >", after.clone());
        }
        if let Some(before) = &f.before {
            filter("id <", before.clone());
        }
        let order = if f.newest_first { "DESC" } else { "ASC" };
        sql.push_str(&format!(" ORDER BY id {order} LIMIT ${}", values.len() + 1));
        let mut query = sqlx::query(&sql);
        for value in values {
            query = query.bind(value);
        }
        ecc_rows(self.pool(), query.bind(i64::from(f.limit))).await
    }

    async fn claim_ready_outputs(&self, c: &Claim<'_>) -> Result<Vec<Record>, StoreError> {
        const CLAIM: &str = concat!(
            "UPDATE ecc SET state = 'processing', attempt = attempt + 1, claimed_by = $1, claimed_at = $2, lease_expires_at = $3 \
             WHERE id IN (SELECT id FROM ecc WHERE queue = 'output' AND state = 'ready' AND assigned_to = $1 AND priority = $4 \
             ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED) RETURNING ",
            ecc_columns!()
        );
        let open: Vec<(Priority, u32)> = Priority::ALL
            .into_iter()
            .map(|p| (p, c.capacity.get(p)))
            .filter(|(_, free)| *free > 0)
            .collect();
        if open.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool().begin().await?;
        let mut claimed = Vec::new();
        for (priority, free) in open {
            claimed.extend(
                ecc_rows(
                    &mut *tx,
                    sqlx::query(CLAIM)
                        .bind(c.mid_name)
                        .bind(c.now)
                        .bind(c.lease_until)
                        .bind(priority.rank())
                        .bind(i64::from(free)),
                )
                .await?,
            );
        }
        tx.commit().await?;
        claimed.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
        Ok(claimed)
    }

    async fn record_results(
        &self,
        mid_name: &str,
        results: &[WorkResult],
        mut audit: ResultAudit,
        now: i64,
    ) -> Result<Vec<RecordedResult>, StoreError> {
        // One transaction for the batch: one commit however many results a post holds.
        let mut tx = self.pool().begin().await?;
        let mut out = Vec::with_capacity(results.len());
        for (i, result) in results.iter().enumerate() {
            let mut recorded = record_result(&mut tx, mid_name, result, now).await?;
            for entry in audit.entries(i, mid_name, &mut recorded, now) {
                super::audit::insert_audit(&mut tx, &entry).await?;
            }
            out.push(recorded);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn record_express(
        &self,
        finished: Arc<[Finished]>,
        audit: Arc<[NewAuditEntry]>,
    ) -> Result<(), StoreError> {
        if finished.is_empty() && audit.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        for f in finished.iter() {
            let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM ecc WHERE id = $1")
                .bind(&f.output.id)
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_some() {
                continue;
            }
            insert_record(&mut tx, &f.output).await?;
            insert_record(&mut tx, &f.input).await?;
        }
        for entry in audit.iter() {
            super::audit::insert_audit(&mut tx, entry).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn renew_leases(
        &self,
        mid_name: &str,
        jobs: &[JobRef],
        lease_until: i64,
    ) -> Result<Vec<JobRef>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = jobs.iter().map(|j| j.output_id.clone()).collect();
        let attempts: Vec<i64> = jobs.iter().map(|j| i64::from(j.attempt)).collect();
        let renewed: Vec<String> = sqlx::query_scalar(
            "UPDATE ecc SET lease_expires_at = $1 FROM UNNEST($2::TEXT[], $3::BIGINT[]) AS j(id, attempt) \
             WHERE ecc.id = j.id AND ecc.attempt = j.attempt AND ecc.queue = 'output' AND ecc.state = 'processing' AND ecc.claimed_by = $4 \
             RETURNING ecc.id",
        )
        .bind(lease_until)
        .bind(&ids)
        .bind(&attempts)
        .bind(mid_name)
        .fetch_all(self.pool())
        .await?;
        Ok(jobs
            .iter()
            .filter(|j| !renewed.contains(&j.output_id))
            .cloned()
            .collect())
    }

    async fn expire_leases(&self, now: i64) -> Result<Vec<Record>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let lapsed = ecc_rows(
            &mut *tx,
            sqlx::query(concat!(
                "SELECT ",
                ecc_columns!(),
                " FROM ecc WHERE state = 'processing' AND lease_expires_at < $1 ORDER BY lease_expires_at, id LIMIT $2 FOR UPDATE SKIP LOCKED"
            ))
            .bind(now)
            .bind(EXPIRE_BATCH),
        )
        .await?;
        let changed = end_leases(&mut tx, lapsed, "lease lapsed", now).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn release_leases_of(
        &self,
        mid_name: &str,
        keep: &[JobRef],
        reason: &str,
        now: i64,
    ) -> Result<Vec<Record>, StoreError> {
        let keep: std::collections::HashSet<(&str, u32)> = keep
            .iter()
            .map(|j| (j.output_id.as_str(), j.attempt))
            .collect();
        let mut tx = self.pool().begin().await?;
        let mut running = ecc_rows(
            &mut *tx,
            sqlx::query(concat!(
                "SELECT ",
                ecc_columns!(),
                " FROM ecc WHERE queue = 'output' AND state = 'processing' AND claimed_by = $1 ORDER BY id FOR UPDATE"
            ))
            .bind(mid_name),
        )
        .await?;
        running.retain(|r| !keep.contains(&(r.id.as_str(), r.attempt)));
        let changed = end_leases(&mut tx, running, reason, now).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn extend_all_leases(&self, lease_until: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE ecc SET lease_expires_at = $1 WHERE queue = 'output' AND state = 'processing' AND lease_expires_at < $1",
        )
        .bind(lease_until)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    async fn purge_finished(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        // An import set's output stays as long as the import set (its rows are the
        // output's chunks). SKIP LOCKED: a purge never waits on a claim or a result.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM ecc WHERE queue = 'output' AND state IN ('processed', 'error', 'cancelled') AND processed_at < $1 \
             AND id NOT IN (SELECT output_id FROM import_sets) ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut deleted = 0;
        for id in &ids {
            deleted += sqlx::query(
                "DELETE FROM ecc WHERE id = $1 OR (queue = 'input' AND response_to = $1)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            output_chunks::purge(&mut tx, id).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn cancel_output(
        &self,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Option<Cancelled>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let Some(output) = ecc_row(
            &mut *tx,
            sqlx::query(concat!(
                "SELECT ",
                ecc_columns!(),
                " FROM ecc WHERE id = $1 AND queue = 'output' FOR UPDATE"
            ))
            .bind(id),
        )
        .await?
        else {
            return Ok(None);
        };
        let cancelled = match output.state {
            State::Ready => {
                let row = ecc_row(
                    &mut *tx,
                    sqlx::query(concat!(
                        "UPDATE ecc SET state = 'cancelled', error = $1, processed_at = $2, lease_expires_at = NULL WHERE id = $3 AND state = 'ready' RETURNING ",
                        ecc_columns!()
                    ))
                    .bind(reason)
                    .bind(now)
                    .bind(id),
                )
                .await?;
                Cancelled::Now(row.unwrap_or(output))
            }
            State::Processing => {
                sqlx::query(
                    "INSERT INTO cancel_requests (output_id, reason, requested_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                Cancelled::Stopping(output)
            }
            _ => Cancelled::AlreadyFinished(output),
        };
        tx.commit().await?;
        Ok(Some(cancelled))
    }

    async fn cancelled_running(&self, mid_name: &str) -> Result<Vec<JobRef>, StoreError> {
        sqlx::query(
            "SELECT e.id, e.attempt FROM cancel_requests r JOIN ecc e ON e.id = r.output_id WHERE e.state = 'processing' AND e.claimed_by = $1",
        )
        .bind(mid_name)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            Ok(JobRef {
                output_id: r.try_get(0)?,
                attempt: u32::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
            })
        })
        .collect()
    }

    async fn purge_idempotency_keys(&self, before: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(before)
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }

    async fn store_output_chunks(
        &self,
        mid_name: &str,
        output_id: &str,
        attempt: u32,
        chunks: Vec<DecodedChunk>,
    ) -> Result<ChunksStored, StoreError> {
        let mut tx = self.pool().begin().await?;
        let stored = output_chunks::store(&mut tx, mid_name, output_id, attempt, &chunks).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn carry_output_chunks(
        &self,
        output_id: &str,
        attempt: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let last = output_chunks::carry(&mut tx, output_id, attempt).await?;
        tx.commit().await?;
        Ok(last)
    }

    async fn output_chunks(
        &self,
        output_id: &str,
        attempt: u32,
        after: Option<u64>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<DecodedChunk>, StoreError> {
        let mut c = self.pool().acquire().await?;
        output_chunks::read(&mut c, output_id, attempt, after, limit, max_bytes).await
    }

    async fn last_output_chunk(
        &self,
        output_id: &str,
        attempt: u32,
    ) -> Result<Option<DecodedChunk>, StoreError> {
        let mut c = self.pool().acquire().await?;
        output_chunks::last(&mut c, output_id, attempt).await
    }

    async fn load_by_mid(&self) -> Result<HashMap<String, Load>, StoreError> {
        let rows = sqlx::query(
            "SELECT assigned_to, 'ready', COUNT(*) FROM ecc WHERE queue = 'output' AND state = 'ready' AND assigned_to IS NOT NULL GROUP BY assigned_to \
             UNION ALL \
             SELECT claimed_by, 'processing', COUNT(*) FROM ecc WHERE queue = 'output' AND state = 'processing' AND claimed_by IS NOT NULL GROUP BY claimed_by",
        )
        .fetch_all(self.pool())
        .await?;
        let rows = rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect::<Result<Vec<(String, String, i64)>, StoreError>>()?;
        Ok(crate::ecc::rows::load_by_mid(rows))
    }

    async fn movable_outputs(&self, limit: u32) -> Result<Vec<Record>, StoreError> {
        ecc_rows(
            self.pool(),
            sqlx::query(concat!(
                "SELECT ",
                ecc_columns!(),
                " FROM ecc WHERE queue = 'output' AND state = 'ready' AND agent NOT LIKE 'mid.server.%' ORDER BY id LIMIT $1"
            ))
            .bind(i64::from(limit)),
        )
        .await
    }

    async fn assign_output(
        &self,
        id: &str,
        from: Option<&str>,
        to: Option<&str>,
        selection: &str,
    ) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE ecc SET assigned_to = $1, selection = $2 WHERE id = $3 AND queue = 'output' AND state = 'ready' AND assigned_to IS NOT DISTINCT FROM $4",
        )
        .bind(to)
        .bind(selection)
        .bind(id)
        .bind(from)
        .execute(self.pool())
        .await?
        .rows_affected()
            > 0)
    }
}
