//! The MID's end of the session stream ([`openmid_proto::session`]): one HTTP/2
//! request to `/mid/v1/session` that stays open, its request body carrying our frames
//! up and its response body the instance's frames down.
//!
//! Each request (poll, results, heartbeat) gets an id and waits for the frame that
//! answers it, so a poll waiting for work holds up nothing else. An express job
//! coming down is handed to the session (which runs it and answers on this stream).
//! When the stream ends, every request waiting on it fails as an unreachable
//! instance would, and the next request opens a new stream (on the next node, when
//! this one failed).

use super::client::SessionError;
use bytes::Bytes;
use openmid_proto::mid::WorkItem;
use openmid_proto::session::{self, Decoder, Frame, Kind};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Frames queued to go up before a sender waits.
const FRAMES_QUEUED: usize = 1024;

/// Given-up requests remembered, at most.
const MAX_GIVEN_UP: usize = 1024;

/// Largest frame accepted from the instance: a poll answer carries at most a batch of
/// jobs, each inside the instance's request limit.
const MAX_FRAME: u64 = 256 * 1024 * 1024;

/// What the instance pushes down a stream without being asked by a request waiting
/// for it.
pub enum Pushed {
    /// An express job to run and answer.
    Express(ExpressJob),
    /// Work claimed for this MID by a poll it had already given up (it asked again
    /// with other capacity): run like any claimed job, not left to its lease.
    Claimed(WorkItem),
}

/// An express job sent down a stream, and where its answer goes.
pub struct ExpressJob {
    /// The call's id, which the answer carries.
    pub call: u64,
    /// The job.
    pub item: WorkItem,
    /// The stream it came on (the answer goes back on it).
    pub up: mpsc::Sender<Bytes>,
}

/// About how long a result's fields are beside its payload, as JSON.
const RESULT_FIELDS_BYTES: usize = 256;

impl ExpressJob {
    /// Sends the job's answer up the stream it came on; lost (and logged) when that
    /// stream has ended, as the instance has then answered its caller with an error.
    pub async fn answer(&self, result: &openmid_proto::mid::WorkResult) {
        let hint = result.payload.as_str().len() + RESULT_FIELDS_BYTES;
        let frame = match Frame::encode_json(Kind::ExpressDone, self.call, result, hint) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::error!(error = %e, "could not encode an express answer");
                return;
            }
        };
        if self.up.send(Bytes::from(frame)).await.is_err() {
            tracing::warn!(output = %self.item.output_id, "the session stream ended before an express answer went up");
        }
    }
}

/// Why a stream could not be opened.
pub enum OpenError {
    /// The instance or the way to it does not do the stream (no HTTP/2, an older
    /// instance): use the long-poll routes.
    Unsupported(String),
    /// Opening failed as any request can.
    Session(SessionError),
}

/// One open session stream.
pub struct Stream {
    up: mpsc::Sender<Bytes>,
    waiting: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Frame>>>>,
    /// Requests given up before their answer came, and their kinds.
    given_up: Arc<std::sync::Mutex<HashMap<u64, Kind>>>,
    next: AtomicU64,
    ended: CancellationToken,
    /// It ended by breaking (not closed by us): the node may be gone.
    broke: Arc<AtomicBool>,
    /// The instance node it goes to.
    pub(super) node: usize,
}

impl Stream {
    /// Opens a stream with `request` (the session request, headers set) whose
    /// answer is read here. Express jobs and rescued work go to `pushed`.
    pub(super) async fn open(
        request: reqwest::RequestBuilder,
        node: usize,
        pushed: Option<mpsc::Sender<Pushed>>,
    ) -> Result<Arc<Stream>, OpenError> {
        let (up, mut up_rx) = mpsc::channel::<Bytes>(FRAMES_QUEUED);
        // Frames waiting together go up as one piece of the body.
        let body = futures::StreamExt::map(
            futures::stream::poll_fn(move |cx| {
                up_rx.poll_recv(cx).map(|first| {
                    first.map(|first| {
                        session::joined(first, || up_rx.try_recv().ok(), session::JOINED_BYTES)
                    })
                })
            }),
            Ok::<Bytes, std::convert::Infallible>,
        );
        let response = request
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/vnd.openmid.session",
            )
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map_err(|e| OpenError::Session(super::client::unreachable(&e)))?;
        let status = response.status();
        if matches!(status.as_u16(), 404 | 405 | 505) {
            return Err(OpenError::Unsupported(format!(
                "the instance answered {status} to the session stream"
            )));
        }
        let response = super::client::error_of(response)
            .await
            .map_err(OpenError::Session)?;
        if response.version() != reqwest::Version::HTTP_2 {
            return Err(OpenError::Unsupported(format!(
                "the connection to the instance is {:?}, not HTTP/2",
                response.version()
            )));
        }
        let stream = Arc::new(Stream {
            up: up.clone(),
            waiting: Arc::default(),
            given_up: Arc::default(),
            next: AtomicU64::new(1),
            ended: CancellationToken::new(),
            broke: Arc::default(),
            node,
        });
        tokio::spawn(read(
            response,
            Shared {
                waiting: stream.waiting.clone(),
                given_up: stream.given_up.clone(),
                ended: stream.ended.clone(),
                broke: stream.broke.clone(),
                up,
                pushed,
            },
        ));
        Ok(stream)
    }

    /// Whether the stream has ended.
    pub fn is_ended(&self) -> bool {
        self.ended.is_cancelled() || self.up.is_closed()
    }

    /// Whether it ended by breaking rather than being closed by us.
    pub fn broke(&self) -> bool {
        self.broke.load(Ordering::Relaxed)
    }

    /// Ends the stream (a rekey: the next one opens with the new credential).
    pub fn close(&self) {
        self.ended.cancel();
    }

    /// One request and its answer, within `timeout`.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        kind: Kind,
        body: &B,
        timeout: Duration,
    ) -> Result<T, SessionError> {
        let body =
            serde_json::to_vec(body).map_err(|e| SessionError::Setup(format!("encode: {e}")))?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let forget = || {
            self.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        };
        if self.is_ended() {
            forget();
            return Err(SessionError::Unreachable("the session stream ended".into()));
        }
        let frame = Bytes::from(Frame::new(kind, id, body).encode());
        if self.up.send(frame).await.is_err() {
            forget();
            return Err(SessionError::Unreachable("the session stream ended".into()));
        }
        // From here a caller who stops waiting (drops this future) cancels the
        // request on the instance, as dropping an HTTP request would.
        let mut pending = GiveUpOnDrop {
            stream: self,
            id,
            kind,
            armed: true,
        };
        let answer = tokio::select! {
            a = rx => a,
            _ = tokio::time::sleep(timeout) => {
                pending.armed = false;
                forget();
                // No answer in time on a stream that says nothing: it is stuck, and
                // the next request gets a new one.
                self.broke.store(true, Ordering::Relaxed);
                self.ended.cancel();
                return Err(SessionError::Unreachable(format!(
                    "no answer on the session stream within {} s",
                    timeout.as_secs()
                )));
            }
            _ = self.ended.cancelled() => {
                pending.armed = false;
                forget();
                return Err(SessionError::Unreachable("the session stream ended".into()));
            }
        };
        let frame =
            answer.map_err(|_| SessionError::Unreachable("the session stream ended".into()))?;
        match frame.kind {
            Kind::Reply => serde_json::from_slice(&frame.body)
                .map_err(|e| SessionError::Unreachable(format!("unreadable answer: {e}"))),
            Kind::Refusal => {
                let (status, error) = frame.refused().ok_or_else(|| {
                    SessionError::Unreachable("unreadable refusal on the session stream".into())
                })?;
                if status >= 500 {
                    return Err(SessionError::Unreachable(format!(
                        "{status}: {}",
                        error.error.message
                    )));
                }
                Err(SessionError::Refused {
                    status,
                    code: error.error.code,
                    message: error.error.message,
                })
            }
            other => Err(SessionError::Unreachable(format!(
                "a {other:?} frame answered a request"
            ))),
        }
    }
}

/// A request in flight: dropped before its answer, it tells the instance to stop
/// serving it and remembers it was given up (so work a given-up poll claimed anyway is
/// still run).
struct GiveUpOnDrop<'a> {
    stream: &'a Stream,
    id: u64,
    kind: Kind,
    armed: bool,
}

impl Drop for GiveUpOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let s = self.stream;
        s.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        {
            let mut given_up = s.given_up.lock().unwrap_or_else(|e| e.into_inner());
            // A cancelled request usually gets no answer at all, so its entry would
            // stay: past a bound the old ones go (an answer that late is not coming).
            if given_up.len() >= MAX_GIVEN_UP {
                given_up.clear();
            }
            given_up.insert(self.id, self.kind);
        }
        let cancel = Bytes::from(Frame::new(Kind::Cancel, self.id, Vec::new()).encode());
        // A full queue: the instance then serves the request to its end, and what a
        // poll claims comes back as a given-up answer, which is still run.
        let _ = s.up.try_send(cancel);
    }
}

/// What the reader shares with the stream.
struct Shared {
    waiting: Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Frame>>>>,
    given_up: Arc<std::sync::Mutex<HashMap<u64, Kind>>>,
    ended: CancellationToken,
    broke: Arc<AtomicBool>,
    up: mpsc::Sender<Bytes>,
    pushed: Option<mpsc::Sender<Pushed>>,
}

impl Shared {
    async fn push(&self, what: Pushed) -> bool {
        match &self.pushed {
            Some(pushed) => pushed.send(what).await.is_ok(),
            None => {
                tracing::warn!("work came down a stream that takes none");
                true
            }
        }
    }

    /// An answer nobody waits for: a given-up poll's work is run all the same.
    async fn unclaimed(&self, frame: Frame) -> bool {
        let given_up = self
            .given_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&frame.id);
        if given_up != Some(Kind::Poll) || frame.kind != Kind::Reply {
            return true;
        }
        let Ok(answer) = serde_json::from_slice::<openmid_proto::mid::PollResponse>(&frame.body)
        else {
            return true;
        };
        for item in answer.work {
            tracing::debug!(output = %item.output_id, "running work a given-up poll claimed");
            if !self.push(Pushed::Claimed(item)).await {
                return false;
            }
        }
        true
    }
}

/// Reads the instance's frames until the stream ends, then fails what still waits.
async fn read(mut response: reqwest::Response, shared: Shared) {
    let mut decoder = Decoder::new(MAX_FRAME);
    let why = 'read: loop {
        let chunk = tokio::select! {
            c = response.chunk() => c,
            _ = shared.ended.cancelled() => break 'read None,
        };
        match chunk {
            Ok(Some(bytes)) => decoder.extend(&bytes),
            Ok(None) => break Some("the instance ended it".to_string()),
            Err(e) => break Some(super::client::unreachable(&e).to_string()),
        }
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => break 'read Some(format!("not a session stream: {e}")),
            };
            match frame.kind {
                Kind::Reply | Kind::Refusal if frame.id == 0 => {
                    let why = frame
                        .refused()
                        .map(|(_, e)| e.error.message)
                        .unwrap_or_default();
                    break 'read Some(format!("the instance refused the stream: {why}"));
                }
                Kind::Reply | Kind::Refusal => {
                    let waiter = shared
                        .waiting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&frame.id);
                    match waiter {
                        Some(waiter) => {
                            if let Err(frame) = waiter.send(frame)
                                && !shared.unclaimed(frame).await
                            {
                                break 'read Some("the MID is stopping".to_string());
                            }
                        }
                        None => {
                            if !shared.unclaimed(frame).await {
                                break 'read Some("the MID is stopping".to_string());
                            }
                        }
                    }
                }
                Kind::Express => {
                    let item = match serde_json::from_slice::<WorkItem>(&frame.body) {
                        Ok(item) => item,
                        Err(e) => {
                            tracing::warn!(error = %e, "an express job does not read; ignoring it");
                            continue;
                        }
                    };
                    let job = ExpressJob {
                        call: frame.id,
                        item,
                        up: shared.up.clone(),
                    };
                    if !shared.push(Pushed::Express(job)).await {
                        break 'read Some("the MID is stopping".to_string());
                    }
                }
                other => break 'read Some(format!("the instance sent a {other:?} frame")),
            }
        }
    };
    if let Some(why) = why {
        shared.broke.store(true, Ordering::Relaxed);
        tracing::info!(why, "session stream ended");
    }
    shared.ended.cancel();
    // Dropping the senders fails every request still waiting on this stream.
    shared
        .waiting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
}
