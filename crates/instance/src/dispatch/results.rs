//! Results: a MID's batch recorded exactly once, and API calls that wait for an
//! output to finish (handed the finished records in memory when they wait).

use super::*;

/// Largest batch of results accepted in one post.
pub const MAX_RESULTS_PER_POST: usize = 1000;

impl Dispatcher {
    /// Records a batch of results from a MID and wakes whoever waits on them.
    pub async fn accept_results(
        &self,
        mid: &MidRow,
        req: &ResultsRequest,
    ) -> Result<ResultsResponse, DispatchError> {
        self.presence.contact(&mid.name);
        if req.results.len() > MAX_RESULTS_PER_POST {
            return Err(invalid(
                "results",
                format!("at most {MAX_RESULTS_PER_POST} results per post"),
            ));
        }
        let now = now_ms();
        let ids = || req.results.iter().map(|r| r.output_id.as_str());
        // What a MID ran is audited once, where its result is recorded (a repeated
        // post is `Duplicate` and not again); a caller waiting on the output has its
        // entry written there too.
        let audit = ResultAudit {
            job: Some(crate::audit::jobs::entry),
            callers: self.caller_audits.take(ids()),
        };
        let recorded = self
            .store
            .record_results(&mid.name, &req.results, audit, now)
            .await;
        let written: Vec<bool> = match &recorded {
            Ok(recorded) => recorded.iter().map(|r| r.caller_audited).collect(),
            Err(_) => Vec::new(),
        };
        self.caller_audits.settle(ids(), &written);
        let recorded = recorded?;
        let mut acks = Vec::with_capacity(recorded.len());
        for (
            result,
            RecordedResult {
                outcome, finished, ..
            },
        ) in req.results.iter().zip(recorded)
        {
            self.telemetry.result(outcome, finished.as_ref());
            match outcome {
                AckOutcome::Recorded => {
                    // The job's span is made for the debug line only, so only when
                    // that line is wanted: per result, it is not free.
                    if let Some(finished) = &finished
                        && tracing::enabled!(tracing::Level::DEBUG)
                    {
                        finished.output.span("result").in_scope(|| {
                            tracing::debug!(
                                mid = %mid.name,
                                attempt = result.attempt,
                                state = %finished.output.state,
                                "result recorded"
                            )
                        });
                    }
                    if let Some(finished) = finished
                        && self.outputs.is_awaited(&result.output_id)
                    {
                        self.keep_finished(finished);
                    }
                    self.signal_finished(&result.output_id);
                }
                AckOutcome::Superseded => tracing::info!(
                    output = %result.output_id,
                    attempt = result.attempt,
                    mid = %mid.name,
                    "discarded a result of a superseded attempt"
                ),
                AckOutcome::Duplicate | AckOutcome::Unknown => {}
            }
            acks.push(Ack {
                output_id: result.output_id.clone(),
                attempt: result.attempt,
                outcome,
            });
        }
        Ok(ResultsResponse { acks })
    }

    /// Waits up to `wait` for an output to finish; returns it as it is then, with its
    /// input when that is already at hand (else the caller reads it).
    pub async fn wait_finished(
        &self,
        id: &str,
        wait: Duration,
        mut watch: Option<submit::Watch>,
    ) -> Result<(Record, Option<Record>), DispatchError> {
        let deadline = Instant::now() + wait;
        let notify = self.outputs.subscribe(id);
        let outcome = loop {
            if let Some(watch) = watch.take() {
                // Armed before the output was written: nothing can have finished it
                // unseen, so there is no need to read it back first.
                tokio::select! {
                    _ = watch.woken() => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(Finished { output, input }) = self.take_finished(id) {
                break Ok((output, Some(input)));
            }
            let record = match self.store.get_record(id).await {
                Ok(Some(record)) => record,
                Ok(None) => {
                    break Err(DispatchError::NotFound(format!(
                        "no ECC record with id `{id}`"
                    )));
                }
                Err(e) => break Err(e.into()),
            };
            if record.is_finished() || Instant::now() >= deadline {
                break Ok((record, None));
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        };
        // Whatever was kept for this call and not used must not stay behind.
        drop(notify);
        if !self.outputs.is_awaited(id) {
            self.take_finished(id);
        }
        outcome
    }

    /// Leaves the audit entry of the API call waiting on `output_id` (as it reads when
    /// the call answers 200), to be written with the result that finishes the output
    /// ([`caller_audit`]).
    pub fn leave_caller_audit(&self, output_id: &str, entry: NewAuditEntry) {
        self.caller_audits.leave(output_id, entry);
    }

    /// Whether the entry left for `output_id` was written with its result (then the
    /// output is finished); when not, it is the caller's to write. Waits out a write
    /// under way.
    pub async fn caller_audit_written(&self, output_id: &str) -> bool {
        self.caller_audits.written(output_id).await
    }

    /// Drops the entry left for `output_id` by a caller that is gone.
    pub fn forget_caller_audit(&self, output_id: &str) {
        self.caller_audits.forget(output_id);
    }

    /// Keeps a finished output for the API call waiting on it.
    pub(super) fn keep_finished(&self, finished: Finished) {
        let mut kept = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        // Entries whose waiter left between the check and the insert would stay:
        // sweep them when the map grows.
        if kept.len() >= 1024 {
            kept.retain(|id, _| self.outputs.is_awaited(id));
        }
        kept.insert(finished.output.id.clone(), finished);
    }

    pub(super) fn take_finished(&self, id: &str) -> Option<Finished> {
        self.finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    }
}
