//! The ECC queue on SQLite: outputs and inputs, claims and leases, results, cancels,
//! streamed output and purging. The decisions of a write live in [`super::operations`].

use super::*;
use crate::ecc::{Finished, NewAuditEntry, ResultAudit};

#[async_trait]
impl QueueStore for SqliteStore {
    async fn insert_output(&self, record: &Record) -> Result<(), StoreError> {
        let record = record.clone();
        self.writer
            .write(move |c| Ok(insert_record(c, &record)?))
            .await
    }

    async fn insert_output_once(
        &self,
        record: &Record,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotentHit>, StoreError> {
        let (record, key) = (record.clone(), key.clone());
        self.writer
            .write(move |c| {
                if let Some(hit) = idempotent_hit(c, &key.key, key.not_before)? {
                    return Ok(Some(hit));
                }
                // A key past the window is forgotten: this submission takes it over.
                c.prepare_cached(
                    "INSERT OR REPLACE INTO idempotency_keys (key, request_hash, output_id, created_at) VALUES (?, ?, ?, ?)",
                )?
                .execute(params![key.key, key.request_hash, record.id, key.now])?;
                insert_record(c, &record)?;
                Ok(None)
            })
            .await
    }

    async fn find_idempotent(
        &self,
        key: &str,
        not_before: i64,
    ) -> Result<Option<IdempotentHit>, StoreError> {
        self.read(|c| idempotent_hit(c, key, not_before))
    }

    async fn get_record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        self.read(|c| {
            ecc_row(
                c,
                concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE id = ?"),
                [id],
            )
        })
    }

    async fn input_for(&self, output_id: &str) -> Result<Option<Record>, StoreError> {
        self.read(|c| {
            ecc_row(
                c,
                concat!(
                    "SELECT ",
                    ecc_columns!(),
                    " FROM ecc WHERE queue = 'input' AND response_to = ?"
                ),
                [output_id],
            )
        })
    }

    async fn list_records(&self, f: &RecordFilter) -> Result<Vec<Record>, StoreError> {
        use rusqlite::types::Value;
        let mut sql = String::from(concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE 1 = 1"));
        let mut values: Vec<Value> = Vec::new();
        let mut filter = |clause: &str, value: Value| {
            sql.push_str(clause);
            values.push(value);
        };
        if let Some(queue) = f.queue {
            filter(" AND queue = ?", queue.as_str().to_string().into());
        }
        if let Some(state) = f.state {
            filter(" AND state = ?", state.as_str().to_string().into());
        }
        if let Some(agent) = &f.agent {
            filter(" AND agent = ?", agent.clone().into());
        }
        if let Some(topic) = f.topic {
            filter(" AND topic = ?", topic.as_str().to_string().into());
        }
        if let Some(correlator) = &f.correlator {
            filter(" AND correlator = ?", correlator.clone().into());
        }
        if let Some(after) = &f.after {
            filter(" AND id > ?", after.clone().into());
        }
        if let Some(before) = &f.before {
            filter(" AND id < ?", before.clone().into());
        }
        let order = if f.newest_first {
            " ORDER BY id DESC LIMIT ?"
        } else {
            " ORDER BY id LIMIT ?"
        };
        filter(order, i64::from(f.limit).into());
        self.read(|c| ecc_rows(c, &sql, rusqlite::params_from_iter(values)))
    }

    async fn claim_ready_outputs(&self, c: &Claim<'_>) -> Result<Vec<Record>, StoreError> {
        let open: Vec<(Priority, u32)> = Priority::ALL
            .into_iter()
            .map(|p| (p, c.capacity.get(p)))
            .filter(|(_, free)| *free > 0)
            .collect();
        if open.is_empty() {
            return Ok(Vec::new());
        }
        // Most polls find nothing: a read says so without queueing for the writer.
        let waiting: bool = self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM ecc WHERE queue = 'output' AND state = 'ready' AND assigned_to = ?)",
                )?
                .query_row([c.mid_name], |r| r.get(0))?)
        })?;
        if !waiting {
            return Ok(Vec::new());
        }
        let (mid, now, lease_until) = (c.mid_name.to_string(), c.now, c.lease_until);
        let mut claimed = self
            .writer
            .write(move |conn| {
                let mut claimed = Vec::new();
                for (priority, free) in open {
                    for id in ready_ids(conn, &mid, priority, free)? {
                        claimed.extend(ecc_row(
                            conn,
                            CLAIM_ONE,
                            params![mid, now, lease_until, id],
                        )?);
                    }
                }
                Ok::<_, StoreError>(claimed)
            })
            .await?;
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
        let mid_name = mid_name.to_string();
        let results: Vec<EncodedResult> = results
            .iter()
            .map(|r| EncodedResult {
                output_id: r.output_id.clone(),
                attempt: r.attempt,
                payload: r.payload.to_string(),
                error: r.error.clone(),
                duration_ms: i64::try_from(r.duration_ms).unwrap_or(i64::MAX),
            })
            .collect();
        self.writer
            .write(move |c| {
                results
                    .into_iter()
                    .enumerate()
                    .map(|(i, result)| {
                        let mut recorded = record_result(c, &mid_name, result, now)?;
                        for entry in audit.entries(i, &mid_name, &mut recorded, now) {
                            super::audit::insert_audit(c, &entry)?;
                        }
                        Ok(recorded)
                    })
                    .collect()
            })
            .await
    }

    async fn record_express(
        &self,
        finished: Arc<[Finished]>,
        audit: Arc<[NewAuditEntry]>,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |c| {
                let mut known = c.prepare_cached("SELECT 1 FROM ecc WHERE id = ?")?;
                for f in finished.iter() {
                    if known.exists([&f.output.id])? {
                        continue;
                    }
                    insert_record(c, &f.output)?;
                    insert_record(c, &f.input)?;
                }
                for entry in audit.iter() {
                    super::audit::insert_audit(c, entry)?;
                }
                Ok(())
            })
            .await
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
        let (mid_name, jobs) = (mid_name.to_string(), jobs.to_vec());
        self.writer
            .write(move |c| {
                let mut renew = c.prepare_cached(
                    "UPDATE ecc SET lease_expires_at = ? WHERE id = ? AND queue = 'output' AND state = 'processing' AND attempt = ? AND claimed_by = ?",
                )?;
                let mut lost = Vec::new();
                for job in jobs {
                    let renewed = renew.execute(params![
                        lease_until,
                        job.output_id,
                        i64::from(job.attempt),
                        mid_name
                    ])?;
                    if renewed == 0 {
                        lost.push(job);
                    }
                }
                Ok(lost)
            })
            .await
    }

    async fn expire_leases(&self, now: i64) -> Result<Vec<Record>, StoreError> {
        self.writer
            .write(move |c| {
                // In lease order, so the partial index `ecc_leases` answers it: ordered
                // by id, SQLite walked the whole table in id order instead, on every
                // sweep, in the writer (a third of the writer's time in `bench rest`,
                // and growing with every record kept).
                let lapsed = ecc_rows(
                    c,
                    concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE state = 'processing' AND lease_expires_at < ? ORDER BY lease_expires_at, id LIMIT 1000"),
                    [now],
                )?;
                end_leases(c, lapsed, "lease lapsed", now)
            })
            .await
    }

    async fn release_leases_of(
        &self,
        mid_name: &str,
        keep: &[JobRef],
        reason: &str,
        now: i64,
    ) -> Result<Vec<Record>, StoreError> {
        let (mid_name, reason) = (mid_name.to_string(), reason.to_string());
        let keep: std::collections::HashSet<(String, u32)> = keep
            .iter()
            .map(|j| (j.output_id.clone(), j.attempt))
            .collect();
        self.writer
            .write(move |c| {
                let mut running = ecc_rows(
                    c,
                    concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE queue = 'output' AND state = 'processing' AND claimed_by = ? ORDER BY id"),
                    [&mid_name],
                )?;
                running.retain(|r| !keep.contains(&(r.id.clone(), r.attempt)));
                end_leases(c, running, &reason, now)
            })
            .await
    }

    async fn extend_all_leases(&self, lease_until: i64) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                let changed = c
                    .prepare_cached(
                        "UPDATE ecc SET lease_expires_at = ? WHERE queue = 'output' AND state = 'processing' AND lease_expires_at < ?",
                    )?
                    .execute(params![lease_until, lease_until])?;
                Ok(changed as u64)
            })
            .await
    }

    async fn cancel_output(
        &self,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<Option<Cancelled>, StoreError> {
        let (id, reason) = (id.to_string(), reason.to_string());
        self.writer
            .write(move |c| {
                let Some(output) = ecc_row(
                    c,
                    concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE id = ? AND queue = 'output'"),
                    [&id],
                )?
                else {
                    return Ok(None);
                };
                Ok(Some(match output.state {
                    State::Ready => {
                        let row = ecc_row(
                            c,
                            concat!(
                                "UPDATE ecc SET state = 'cancelled', error = ?, processed_at = ?, lease_expires_at = NULL WHERE id = ? AND state = 'ready' RETURNING ",
                                ecc_columns!()
                            ),
                            params![reason, now, id],
                        )?;
                        Cancelled::Now(row.unwrap_or(output))
                    }
                    State::Processing => {
                        c.prepare_cached(
                            "INSERT OR IGNORE INTO cancel_requests (output_id, reason, requested_at) VALUES (?, ?, ?)",
                        )?
                        .execute(params![id, reason, now])?;
                        Cancelled::Stopping(output)
                    }
                    _ => Cancelled::AlreadyFinished(output),
                }))
            })
            .await
    }

    async fn cancelled_running(&self, mid_name: &str) -> Result<Vec<JobRef>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT e.id, e.attempt FROM cancel_requests r JOIN ecc e ON e.id = r.output_id WHERE e.state = 'processing' AND e.claimed_by = ?",
            )?;
            let jobs = stmt
                .query_map([mid_name], |r| {
                    Ok(JobRef {
                        output_id: r.get(0)?,
                        attempt: r.get::<_, i64>(1)?.try_into().unwrap_or(0),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(jobs)
        })
    }

    async fn purge_idempotency_keys(&self, before: i64) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                let deleted = c
                    .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?")?
                    .execute([before])?;
                Ok(deleted as u64)
            })
            .await
    }

    async fn purge_finished(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.writer
            .write(move |c| {
                let ids: Vec<String> = c
                    .prepare_cached(
                        // An import set's output stays as long as the import set: its rows are
                        // the output's chunks (`purge_import_sets` deletes both).
                        "SELECT id FROM ecc WHERE queue = 'output' AND state IN ('processed', 'error', 'cancelled') AND processed_at < ? \
                         AND id NOT IN (SELECT output_id FROM import_sets) ORDER BY id LIMIT ?",
                    )?
                    .query_map(params![before, i64::from(limit)], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut delete = c.prepare_cached(
                    "DELETE FROM ecc WHERE id = ? OR (queue = 'input' AND response_to = ?)",
                )?;
                let mut deleted = 0;
                for id in &ids {
                    deleted += delete.execute([id, id])? as u64;
                    // Its streamed output goes with it (not counted: not records).
                    output_chunks::purge(c, id)?;
                }
                Ok(deleted)
            })
            .await
    }

    async fn store_output_chunks(
        &self,
        mid_name: &str,
        output_id: &str,
        attempt: u32,
        chunks: Vec<openmid_proto::command_output::DecodedChunk>,
    ) -> Result<ChunksStored, StoreError> {
        let (mid_name, output_id) = (mid_name.to_string(), output_id.to_string());
        self.writer
            .write(move |c| output_chunks::store(c, &mid_name, &output_id, attempt, &chunks))
            .await
    }

    async fn carry_output_chunks(
        &self,
        output_id: &str,
        attempt: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let output_id = output_id.to_string();
        self.writer
            .write(move |c| output_chunks::carry(c, &output_id, attempt))
            .await
    }

    async fn output_chunks(
        &self,
        output_id: &str,
        attempt: u32,
        after: Option<u64>,
        limit: u32,
        max_bytes: usize,
    ) -> Result<Vec<openmid_proto::command_output::DecodedChunk>, StoreError> {
        self.read(|c| output_chunks::read(c, output_id, attempt, after, limit, max_bytes))
    }

    async fn last_output_chunk(
        &self,
        output_id: &str,
        attempt: u32,
    ) -> Result<Option<openmid_proto::command_output::DecodedChunk>, StoreError> {
        self.read(|c| output_chunks::last(c, output_id, attempt))
    }

    async fn load_by_mid(&self) -> Result<HashMap<String, Load>, StoreError> {
        let rows: Vec<(String, String, i64)> = self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT assigned_to, 'ready', COUNT(*) FROM ecc WHERE queue = 'output' AND state = 'ready' AND assigned_to IS NOT NULL GROUP BY assigned_to \
                 UNION ALL \
                 SELECT claimed_by, 'processing', COUNT(*) FROM ecc WHERE queue = 'output' AND state = 'processing' AND claimed_by IS NOT NULL GROUP BY claimed_by",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?)
        })?;
        Ok(crate::ecc::rows::load_by_mid(rows))
    }

    async fn movable_outputs(&self, limit: u32) -> Result<Vec<Record>, StoreError> {
        self.read(|c| {
            ecc_rows(
                c,
                concat!("SELECT ", ecc_columns!(), " FROM ecc WHERE queue = 'output' AND state = 'ready' AND agent NOT LIKE 'mid.server.%' ORDER BY id LIMIT ?"),
                [i64::from(limit)],
            )
        })
    }

    async fn assign_output(
        &self,
        id: &str,
        from: Option<&str>,
        to: Option<&str>,
        selection: &str,
    ) -> Result<bool, StoreError> {
        let (id, from, to, selection) = (
            id.to_string(),
            from.map(str::to_string),
            to.map(str::to_string),
            selection.to_string(),
        );
        self.writer
            .write(move |c| {
                let assigned = c
                    .prepare_cached(
                        "UPDATE ecc SET assigned_to = ?, selection = ? WHERE id = ? AND queue = 'output' AND state = 'ready' AND assigned_to IS ?",
                    )?
                    .execute(params![to, selection, id, from])?;
                Ok(assigned > 0)
            })
            .await
    }
}

/// The oldest ready outputs of one MID at one priority, oldest first. The scan goes
/// along `ecc_ready` (assigned_to, priority, id), whose order past the two equalities
/// is the id's, so it needs no `ORDER BY`; and it stops after `free` rows instead of
/// saying `LIMIT ?`. An `ORDER BY` with an equality on a bound parameter or with a
/// `LIMIT ?` makes this SQLite build re-prepare the statement every time it runs — in
/// a profile of the durable path, parsing the claim again was 14 % of the writer
/// thread (`every_claim_statement_is_prepared_once` checks it stays planned once).
const READY_IDS: &str = "SELECT id FROM ecc INDEXED BY ecc_ready \
     WHERE queue = 'output' AND state = 'ready' AND assigned_to = ? AND priority = ?";

/// Claims one ready output by id (none if it is no longer ready).
const CLAIM_ONE: &str = concat!(
    "UPDATE ecc SET state = 'processing', attempt = attempt + 1, claimed_by = ?1, claimed_at = ?2, lease_expires_at = ?3 \
     WHERE id = ?4 AND queue = 'output' AND state = 'ready' RETURNING ",
    ecc_columns!()
);

fn ready_ids(
    conn: &rusqlite::Connection,
    mid: &str,
    priority: Priority,
    free: u32,
) -> Result<Vec<String>, StoreError> {
    let mut statement = conn.prepare_cached(READY_IDS)?;
    let mut rows = statement.query(params![mid, priority.rank()])?;
    let mut ids = Vec::with_capacity(free.min(64) as usize);
    while ids.len() < free as usize {
        match rows.next()? {
            Some(row) => ids.push(row.get(0)?),
            None => break,
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// The claim's statements are planned once and reused: run again with other
    /// values, SQLite does not parse them anew.
    #[test]
    fn every_claim_statement_is_prepared_once() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        for (_, sql) in crate::ecc::migrations::MIGRATIONS {
            conn.execute_batch(sql).expect("migrate");
        }
        for (i, mid) in ["m1", "m2", "m1", "m3"].into_iter().enumerate() {
            let now = 1_000 + i as i64;
            conn.execute(
                super::super::INSERT_RECORD,
                params![
                    format!("id-{i}"),
                    "output",
                    format!("mid.server.{mid}"),
                    "RESTProbe",
                    "n",
                    "s",
                    "{}",
                    "ready",
                    1,
                    None::<String>,
                    None::<String>,
                    0,
                    3,
                    false,
                    None::<String>,
                    None::<String>,
                    None::<i64>,
                    now,
                    None::<i64>,
                    None::<i64>,
                    None::<i64>,
                    mid,
                    None::<String>,
                    None::<String>,
                    None::<String>
                ],
            )
            .expect("insert");
            let ids = ready_ids(&conn, mid, Priority::Expedited, 4).expect("ids");
            assert_eq!(ids, [format!("id-{i}")], "the one ready output of {mid}");
            let claimed = ecc_row(&conn, CLAIM_ONE, params![mid, now, now + 10, ids[0]])
                .expect("claim")
                .expect("claimed");
            assert_eq!((claimed.state, claimed.attempt), (State::Processing, 1));
            assert!(
                ecc_row(&conn, CLAIM_ONE, params![mid, now, now + 10, ids[0]])
                    .expect("claim again")
                    .is_none(),
                "claimed once"
            );
        }
        let select = conn.prepare_cached(READY_IDS).expect("prepare");
        assert_eq!(
            select.get_status(StatementStatus::RePrepare),
            0,
            "{READY_IDS}"
        );
        drop(select);
        let claim = conn.prepare_cached(CLAIM_ONE).expect("prepare");
        assert_eq!(
            claim.get_status(StatementStatus::RePrepare),
            0,
            "{CLAIM_ONE}"
        );
    }
}
