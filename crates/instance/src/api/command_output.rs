//! Streamed command output: the MID posts chunks while the command runs
//! (`POST /mid/v1/results/{output}/{attempt}/output`), an API client reads or follows
//! them (`GET /api/v1/actions/{id}/output`, NDJSON, one object per line).

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath as Path, ApiQuery as Query};
use super::mid_session::MidSession;
use crate::ecc::{ChunksStored, Record};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use openmid_proto::command_output::{
    ChunkContent, DecodedChunk, OutputAck, OutputEnd, OutputLine, OutputPost,
};
use openmid_proto::ecc::Queue;
use std::time::Duration;
use tokio::sync::mpsc;

/// Rows read from the store at a time for a reader.
const PAGE_ROWS: u32 = 256;
/// Data read from the store at a time for a reader (about: a page ends after the
/// chunk that passes it).
const PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Lines waiting for a slow reader: past them, reading the store waits too.
const LINES_BUFFERED: usize = 16;
/// A follower looks again this often even without a wake-up: signals are per node
/// and only make following fast; a missed one must not leave a follower hanging.
const RECHECK: Duration = Duration::from_secs(5);

/// The parameters of the MID's output route, by name so a bad one is named.
#[derive(serde::Deserialize)]
pub(super) struct OutputPath {
    output_id: String,
    attempt: u32,
}

/// `POST /mid/v1/results/{output_id}/{attempt}/output`: chunks of the attempt the MID
/// runs. A chunk already stored (a retried post) is not stored twice; chunks of an
/// attempt the MID no longer holds are refused 409 `not_held`.
pub(super) async fn mid_post_output(
    State(state): State<AppState>,
    MidSession(mid): MidSession,
    Path(OutputPath { output_id, attempt }): Path<OutputPath>,
    ApiJson(post): ApiJson<OutputPost>,
) -> Result<Json<OutputAck>, ApiError> {
    store_posted(&state, &mid.name, &output_id, attempt, &post)
        .await
        .map(Json)
}

/// Stores chunks a MID sent, by the route or on its session stream.
pub(super) async fn store_posted(
    state: &AppState,
    mid: &str,
    output_id: &str,
    attempt: u32,
    post: &OutputPost,
) -> Result<OutputAck, ApiError> {
    match state
        .dispatcher
        .store_output(mid, output_id, attempt, post)
        .await?
    {
        ChunksStored::Stored { stored, duplicate } => Ok(OutputAck { stored, duplicate }),
        ChunksStored::NotHeld {
            current_attempt: Some(now),
        } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_held",
            format!("attempt {attempt} of output `{output_id}` was superseded (now attempt {now})"),
        )),
        ChunksStored::NotHeld {
            current_attempt: None,
        } => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_held",
            format!(
                "this MID does not hold output `{output_id}` (finished, or re-assigned after a lapsed lease)"
            ),
        )),
    }
}

/// Query of the follow route.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FollowQuery {
    /// Only chunks with a greater `seq` (a reader resuming where it stopped).
    after: Option<u64>,
    /// `1`/`true`: stay open until the output finishes.
    follow: Option<String>,
}

impl FollowQuery {
    fn follow(&self) -> Result<bool, ApiError> {
        match self.follow.as_deref() {
            None | Some("0" | "false") => Ok(false),
            Some("1" | "true" | "") => Ok(true),
            Some(other) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("follow: `{other}` is not 1, 0, true or false"),
            )),
        }
    }
}

/// `GET /api/v1/actions/{id}/output[?after=SEQ][&follow=1]`: the output's stored chunks
/// as NDJSON; with `follow`, new ones as they are stored, then an `end` line once the
/// output finished.
pub(super) async fn follow_output(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<FollowQuery>,
) -> Result<Response, ApiError> {
    let follow = q.follow()?;
    let record = state
        .dispatcher
        .store()
        .get_record(&id)
        .await?
        .filter(|r| r.queue == Queue::Output)
        .ok_or_else(|| ApiError::not_found(format!("no action (output record) with id `{id}`")))?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(LINES_BUFFERED);
    tokio::spawn(async move {
        let reader = Reader {
            state,
            id,
            attempt: record.attempt,
            after: q.after,
            tx,
        };
        if let Err(e) = reader.run(follow).await {
            tracing::warn!(error = %e, "reading a command's output failed");
        }
    });
    let mut rx = rx;
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

/// Why a reader stopped early.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Store(#[from] crate::ecc::StoreError),
    #[error("the record went away while it was read")]
    Gone,
}

/// One reader of one output, on its own task: it writes lines into the response
/// body's channel and stops when the reader hangs up.
struct Reader {
    state: AppState,
    id: String,
    attempt: u32,
    after: Option<u64>,
    tx: mpsc::Sender<Result<Bytes, std::convert::Infallible>>,
}

impl Reader {
    async fn run(mut self, follow: bool) -> Result<(), ReadError> {
        let notify = self.state.dispatcher.output_progress(&self.id);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // The record is read before the chunks: a MID stores all its chunks
            // before its result, so a finished record means every chunk is there.
            let record = self
                .state
                .dispatcher
                .store()
                .get_record(&self.id)
                .await?
                .ok_or(ReadError::Gone)?;
            if record.attempt != self.attempt {
                // From no claim to the first one is no restart; nor is a new attempt
                // of a topic that resumes: it carries on after the chunks seen.
                let restarted = self.attempt > 0 && !crate::topics::resumes(record.topic);
                self.attempt = record.attempt;
                if restarted || !crate::topics::resumes(record.topic) {
                    self.after = None;
                }
                if restarted
                    && !self
                        .send(&OutputLine::Restart {
                            attempt: self.attempt,
                        })
                        .await
                {
                    return Ok(());
                }
            }
            if !self.send_stored().await? {
                return Ok(());
            }
            if record.is_finished() {
                let end = self.end(record).await?;
                self.send(&end).await;
                return Ok(());
            }
            if !follow {
                return Ok(());
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(RECHECK) => {}
                () = self.tx.closed() => return Ok(()),
                () = self.state.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Sends every stored chunk after `after`; false when the reader hung up.
    async fn send_stored(&mut self) -> Result<bool, ReadError> {
        loop {
            let chunks = self
                .state
                .dispatcher
                .store()
                .output_chunks(&self.id, self.attempt, self.after, PAGE_ROWS, PAGE_BYTES)
                .await?;
            if chunks.is_empty() {
                return Ok(true);
            }
            for chunk in chunks {
                self.after = Some(chunk.seq);
                if !self.send(&line(chunk)).await {
                    return Ok(false);
                }
            }
        }
    }

    /// The last line: the state, and the exit when the command ran.
    async fn end(&self, record: Record) -> Result<OutputLine, ReadError> {
        let input = self.state.dispatcher.store().input_for(&record.id).await?;
        // Any streaming topic's response (a command's, an SSH command's) says how the
        // program ended in the same two fields; a SQL result has neither.
        let response: Option<EndFields> = input
            .as_ref()
            .and_then(|i| serde_json::from_str(&i.payload).ok());
        Ok(OutputLine::End {
            end: OutputEnd {
                state: record.state,
                exit: response.as_ref().and_then(|r| r.exit.clone()),
                ended_by: response.as_ref().and_then(|r| r.ended_by),
                error: record.error,
            },
        })
    }

    /// False when the reader hung up.
    async fn send(&self, line: &OutputLine) -> bool {
        let mut bytes = match serde_json::to_vec(line) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "an output line could not be encoded");
                return false;
            }
        };
        bytes.push(b'\n');
        self.tx.send(Ok(Bytes::from(bytes))).await.is_ok()
    }
}

/// How a streaming job's program ended, from its response.
#[derive(serde::Deserialize)]
struct EndFields {
    #[serde(default)]
    exit: Option<openmid_proto::command::CommandExit>,
    #[serde(default)]
    ended_by: Option<openmid_proto::command::CommandEnd>,
}

fn line(chunk: DecodedChunk) -> OutputLine {
    match chunk.content {
        ChunkContent::Data(bytes) => {
            OutputLine::chunk(chunk.stream, chunk.seq, chunk.offset, bytes)
        }
        ChunkContent::Truncated(truncated) => OutputLine::Truncated {
            stream: chunk.stream,
            seq: chunk.seq,
            offset: chunk.offset,
            truncated,
        },
    }
}
