//! `POST /mid/v1/session`: a MID's session stream (protocol 2, HTTP/2 only). The
//! request body brings the MID's frames, the response body takes ours; each request
//! frame is served on a task of its own by the same dispatcher calls as its long-poll
//! route, so a poll waiting for work does not hold up a results frame behind it.
//!
//! The MID is authenticated once, when the stream opens; its row is read again for
//! every poll and heartbeat, so an invalidation or a status change is seen at the
//! next frame as it was at the next request. When the stream ends — the MID went
//! away, its connection broke, or the instance stops — the frames in flight end with
//! it, exactly as their requests would have: a poll's end starts the MID's disconnect
//! grace.

use super::AppState;
use super::error::ApiError;
use super::mid_session::MidSession;
use crate::dispatch::DispatchError;
use crate::ecc::{MidKey, MidRow};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use openmid_proto::PROTOCOL_HEADER;
use openmid_proto::mid::MidStatus;
use openmid_proto::session::{Decoder, Frame, FrameError, HEADER_LEN, JOINED_BYTES, Kind, joined};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::task::JoinSet;

/// Frames queued for the MID before a sender waits (the MID reads as fast as its
/// connection allows; this only smooths bursts).
const FRAMES_QUEUED: usize = 1024;

/// Time frames in flight get to answer when the instance stops.
const STOP_GRACE: Duration = Duration::from_secs(2);

pub(super) async fn session(
    State(state): State<AppState>,
    MidSession(mid): MidSession,
    version: Version,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let protocol = headers
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    if protocol < 2 {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "protocol_mismatch",
            "the session stream is protocol 2; protocol 1 MIDs use /mid/v1/poll, /results and /heartbeat",
        ));
    }
    if version != Version::HTTP_2 {
        return Err(ApiError::new(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "http2_required",
            "the session stream needs HTTP/2 (negotiated by TLS ALPN); use the long-poll routes over HTTP/1.1",
        ));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(FRAMES_QUEUED);
    tracing::debug!(mid = %mid.name, "session stream opened");
    tokio::spawn(serve(state, mid, body, tx));
    let mut rx = rx;
    // Frames waiting together go down as one piece of the body.
    let frames = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|first| first.map(|first| joined(first, || rx.try_recv().ok(), JOINED_BYTES)))
    })
    .map(Ok::<_, std::convert::Infallible>);
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.openmid.session")],
        Body::from_stream(frames),
    )
        .into_response())
}

/// Reads the MID's frames until the stream ends, serving each on a task of its own.
async fn serve(state: AppState, mid: MidRow, body: Body, tx: mpsc::Sender<Bytes>) {
    let lane = state.dispatcher.lanes().open(&mid.name, tx.clone());
    // A frame's body may be as large as a request's (`max_request_bytes`).
    let max = state.config.max_request_bytes as u64 + HEADER_LEN as u64;
    let mut decoder = Decoder::new(max);
    let mut incoming = body.into_data_stream();
    let mut tasks = JoinSet::new();
    // Requests in flight by frame id, to stop one the MID cancels.
    let mut serving: HashMap<u64, AbortHandle> = HashMap::new();
    let why = loop {
        tokio::select! {
            chunk = incoming.next() => match chunk {
                Some(Ok(bytes)) => decoder.extend(&bytes),
                Some(Err(e)) => break format!("stream broke: {e}"),
                None => break "the MID closed it".to_string(),
            },
            _ = tx.closed() => break "the MID stopped reading".to_string(),
            _ = state.shutdown.cancelled() => {
                // Polls answer at once on shutdown: give them a moment to go out.
                let _ = tokio::time::timeout(STOP_GRACE, async {
                    while tasks.join_next().await.is_some() {}
                })
                .await;
                break "the instance stops".to_string();
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(id) = done {
                    serving.remove(&id);
                }
                continue;
            }
        }
        let failed = loop {
            let next = decoder.next_frame();
            if let Ok(Some(frame)) = &next {
                state
                    .dispatcher
                    .telemetry()
                    .session_frame(frame_label(frame.kind));
            }
            match next {
                Ok(Some(frame)) if frame.kind == Kind::Cancel => {
                    if let Some(task) = serving.remove(&frame.id) {
                        task.abort();
                    }
                }
                Ok(Some(frame)) => {
                    let id = frame.id;
                    match dispatch(&state, &mid, frame, &tx, &mut tasks) {
                        Ok(Some(task)) => {
                            serving.insert(id, task);
                        }
                        Ok(None) => {}
                        Err(e) => break Some(e),
                    }
                }
                Ok(None) => break None,
                Err(FrameError::TooLong { kind, id, len, .. }) if kind.from_mid() => {
                    // As the long-poll routes answer a body over the limit: 413, and
                    // the MID reports the result as too large instead of retrying.
                    let refusal = Frame::refusal(
                        id,
                        413,
                        "payload_too_large",
                        &format!(
                            "a {len}-byte frame is over the instance's max_request_bytes ({})",
                            state.config.max_request_bytes
                        ),
                    );
                    if tx.send(Bytes::from(refusal.encode())).await.is_err() {
                        break Some("the MID stopped reading".into());
                    }
                }
                Err(e) => break Some(e.to_string()),
            }
        };
        if let Some(e) = failed {
            let _ = tx
                .send(Bytes::from(
                    Frame::refusal(0, 400, "invalid_frame", &e).encode(),
                ))
                .await;
            break format!("not a session stream: {e}");
        }
    };
    drop(lane);
    // Dropping the tasks ends what is still in flight, as a dropped request would.
    tasks.abort_all();
    tracing::debug!(mid = %mid.name, why, "session stream ended");
}

/// Starts serving one frame; a request is served on a task of its own, whose handle
/// comes back (the task returns the frame's id).
fn dispatch(
    state: &AppState,
    mid: &MidRow,
    frame: Frame,
    tx: &mpsc::Sender<Bytes>,
    tasks: &mut JoinSet<u64>,
) -> Result<Option<AbortHandle>, String> {
    let (state, mid, tx) = (state.clone(), mid.clone(), tx.clone());
    let id = frame.id;
    let task = match frame.kind {
        Kind::ExpressDone => {
            if !state.dispatcher.lanes().deliver(frame.id, frame.body) {
                tracing::debug!(mid = %mid.name, call = frame.id, "an express answer came after its caller gave up");
            }
            return Ok(None);
        }
        Kind::Poll => tasks.spawn(async move {
            let answer = match decode(&frame.body) {
                Ok(req) => match current(&state, &mid).await {
                    Ok(mid) => state
                        .dispatcher
                        .poll(&mid, &req, &state.shutdown)
                        .await
                        .map_err(ApiError::from),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            reply(&tx, frame.id, answer).await;
            id
        }),
        Kind::Results => tasks.spawn(async move {
            let answer = match decode(&frame.body) {
                Ok(req) => state
                    .dispatcher
                    .accept_results(&mid, &req)
                    .await
                    .map_err(ApiError::from),
                Err(e) => Err(e),
            };
            reply(&tx, frame.id, answer).await;
            id
        }),
        Kind::Heartbeat => tasks.spawn(async move {
            let answer = match decode(&frame.body) {
                Ok(req) => match current(&state, &mid).await {
                    Ok(mid) => state
                        .dispatcher
                        .heartbeat(&mid, &req)
                        .await
                        .map_err(ApiError::from),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            reply(&tx, frame.id, answer).await;
            id
        }),
        Kind::Output => tasks.spawn(async move {
            let answer = match decode::<openmid_proto::command_output::OutputFrame>(&frame.body) {
                Ok(f) => {
                    super::command_output::store_posted(
                        &state,
                        &mid.name,
                        &f.output_id,
                        f.attempt,
                        &f.post,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            reply(&tx, frame.id, answer).await;
            id
        }),
        other => return Err(format!("a MID does not send {other:?} frames")),
    };
    Ok(Some(task))
}

/// A MID frame's `kind` label.
fn frame_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Poll => "poll",
        Kind::Results => "results",
        Kind::Heartbeat => "heartbeat",
        Kind::ExpressDone => "express_done",
        Kind::Cancel => "cancel",
        Kind::Output => "output",
        _ => "other",
    }
}

/// The MID's row as it is now: refused once it is invalidated or removed.
async fn current(state: &AppState, mid: &MidRow) -> Result<MidRow, ApiError> {
    match state
        .dispatcher
        .store()
        .get_mid(MidKey::Id(&mid.id))
        .await
        .map_err(DispatchError::from)?
    {
        Some(row) => {
            // The express lane sees what this frame saw.
            state.dispatcher.lanes().refresh(&row);
            if row.status == MidStatus::Invalidated {
                return Err(crate::registry::RegistryError::Invalidated.into());
            }
            Ok(row)
        }
        None => Err(ApiError::unauthorized("unknown MID or wrong secret")),
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("frame body: {e}"),
        )
    })
}

/// About how long a reply's body is (an acknowledgement, a heartbeat's answer).
const REPLY_BYTES: usize = 256;

async fn reply<T: Serialize>(tx: &mpsc::Sender<Bytes>, id: u64, answer: Result<T, ApiError>) {
    let frame = match answer.map(|a| Frame::encode_json(Kind::Reply, id, &a, REPLY_BYTES)) {
        Ok(Ok(frame)) => frame,
        Ok(Err(e)) => Frame::refusal(id, 500, "internal", &e.to_string()).encode(),
        Err(e) => Frame::refusal(id, e.status.as_u16(), e.code, &e.message).encode(),
    };
    // A closed stream: the MID is gone, and so is whoever waited for this.
    let _ = tx.send(Bytes::from(frame)).await;
}
