//! The result sender: results leave the outbox in batches, their large bodies first,
//! and are removed once the instance has acknowledged them.

use super::*;

impl Session {
    /// Posts the outbox's results in batches; removes each once acknowledged.
    pub(super) async fn send_results(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = new_backoff();
        loop {
            let stopping = stop.is_cancelled();
            let batch = self.outbox.pending(RESULTS_PER_POST, RESULT_BYTES_PER_POST);
            if batch.is_empty() {
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = self.executor.result_ready.notified() => {}
                    _ = stop.cancelled() => {}
                }
                continue;
            }
            let batch = match self.upload_bodies(batch).await {
                Ok(batch) => batch,
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "uploading a response body failed; it stays in the outbox");
                    if stopping {
                        return;
                    }
                    if self.back_off(delay, &stop).await {
                        backoff.reset();
                    }
                    continue;
                }
            };
            let req = ResultsRequest {
                results: batch.iter().map(|r| (**r).clone()).collect(),
            };
            let limit = if stopping {
                Duration::from_secs(5)
            } else {
                Duration::from_secs(120)
            };
            // The batch is posted while the outbox's one group commit for it runs, not
            // after: a result leaves the outbox only once the instance acknowledged it,
            // and the instance acknowledges only what it has stored durably, so a power
            // loss during the post loses nothing the instance holds; what it does not
            // hold is either on disk here or — if the power went before the fsync —
            // still `processing` there, and its lease runs out and it runs again, as
            // with a power loss while the probe ran. Waiting for the fsync first would
            // put it on every result's path for no guarantee more.
            let (durable, posted) = tokio::join!(
                self.outbox.make_durable(),
                tokio::time::timeout(limit, self.client.post_results(&req))
            );
            if let Err(e) = durable {
                tracing::error!(error = %e, "could not make the outbox durable; results stay until acknowledged");
                if !matches!(posted, Ok(Ok(_))) {
                    if stop.is_cancelled() {
                        return;
                    }
                    self.back_off(backoff.next_delay(), &stop).await;
                    continue;
                }
            }
            match posted {
                Ok(Ok(resp)) => {
                    if backoff.failures() > 0 {
                        self.beat_now.notify_one();
                    }
                    backoff.reset();
                    let mut acked = Vec::with_capacity(resp.acks.len());
                    for ack in resp.acks {
                        if ack.outcome == AckOutcome::Superseded {
                            tracing::info!(output = %ack.output_id, attempt = ack.attempt, "instance discarded a result of a superseded attempt");
                        }
                        acked.push(openmid_proto::mid::JobRef {
                            output_id: ack.output_id,
                            attempt: ack.attempt,
                        });
                    }
                    self.outbox.remove(acked).await;
                    continue;
                }
                Ok(Err(SessionError::Refused { status: 413, .. })) if batch.len() == 1 => {
                    // One result larger than the instance accepts: report that instead
                    // of retrying forever; the output ends in error with the reason.
                    let big = &batch[0];
                    let size = big.payload.as_str().len();
                    tracing::error!(output = %big.output_id, bytes = size, "result too large for the instance; reporting an error instead");
                    let replacement = openmid_proto::mid::WorkResult {
                        payload: openmid_proto::payload::Payload::null(),
                        error: Some(format!(
                            "the result ({size} bytes) is larger than the instance accepts (max_request_bytes); lower max_response_bytes on the MID or raise the instance's limit"
                        )),
                        ..(**big).clone()
                    };
                    if let Err(e) = self.outbox.put(replacement).await {
                        tracing::error!(error = %e, "could not store the replacement result");
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, pending = self.outbox.len(), retry_in_ms = delay.as_millis() as u64, "posting results failed; they stay in the outbox");
                    if stopping {
                        return;
                    }
                    if self.back_off(delay, &stop).await {
                        backoff.reset();
                    }
                }
                Err(_) => {
                    tracing::warn!("posting results timed out; they stay in the outbox");
                    if stopping {
                        return;
                    }
                }
            }
        }
    }

    /// Uploads the body files of the batch's results (streamed from disk) and puts the
    /// blobs the instance answers in their payloads, in the outbox too, so a restart
    /// does not upload them again. A body the instance refuses (attempt superseded,
    /// over its `max_blob_bytes`) turns its result into an error result saying why;
    /// an unreachable instance fails the whole batch, to be tried again.
    async fn upload_bodies(
        &self,
        batch: Vec<Arc<WorkResult>>,
    ) -> Result<Vec<Arc<WorkResult>>, SessionError> {
        let mut out = Vec::with_capacity(batch.len());
        for result in batch {
            let Some(marker) = result.payload.field::<serde_json::Value>(BODY_FILE_KEY) else {
                out.push(result);
                continue;
            };
            let spilled: Option<SpilledBody> = serde_json::from_value(marker).ok();
            let job = JobRef {
                output_id: result.output_id.clone(),
                attempt: result.attempt,
            };
            let path = crate::outbox::body_path(self.outbox.dir(), &job);
            let started = Instant::now();
            let uploaded = self.client.upload_body(&job, &path).await;
            let mut updated = (*result).clone();
            match uploaded {
                Ok(blob) if spilled.as_ref().is_none_or(|s| s.sha256 == blob.sha256) => {
                    tracing::debug!(output = %job.output_id, attempt = job.attempt, bytes = blob.size, ms = started.elapsed().as_millis() as u64, "response body uploaded");
                    let mut payload = updated.payload.to_value();
                    if let Some(map) = payload.as_object_mut() {
                        map.remove(BODY_FILE_KEY);
                        map.insert(
                            "body_blob".into(),
                            serde_json::to_value(&blob).unwrap_or_default(),
                        );
                    }
                    updated.payload = payload.into();
                }
                Ok(blob) => {
                    updated.payload = openmid_proto::payload::Payload::null();
                    updated.error = Some(format!(
                        "the response body changed on its way to the instance (SHA-256 {} here, {} there); the call is reported as failed",
                        spilled.map_or_else(String::new, |s| s.sha256),
                        blob.sha256
                    ));
                }
                Err(e @ SessionError::Unreachable(_)) => return Err(e),
                Err(
                    e @ SessionError::Refused {
                        status: 401 | 403 | 426,
                        ..
                    },
                ) => {
                    return Err(e);
                }
                Err(e) => {
                    let size = spilled.map_or(0, |s| s.size);
                    tracing::warn!(output = %job.output_id, attempt = job.attempt, error = %e, "the instance did not take a response body");
                    updated.payload = openmid_proto::payload::Payload::null();
                    updated.error = Some(format!(
                        "the response body ({size} bytes) could not be stored on the instance: {e}"
                    ));
                }
            }
            if let Err(e) = self.outbox.put(updated.clone()).await {
                tracing::error!(error = %e, "could not store the result with its uploaded body");
            }
            out.push(Arc::new(updated));
        }
        Ok(out)
    }
}
