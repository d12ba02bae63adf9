//! Where a job's streamed output goes while it runs — a command's output
//! ([`CommandSink`]) and a SQL result's pages ([`PageSink`]), through one uploader.
//!
//! A command's output: every chunk is kept for the result up
//! to the request's `max_output_bytes`, and — when the MID has an instance — sent on to
//! the instance in batches (`POST /mid/v1/results/{output}/{attempt}/output`), so a
//! client can follow the output live and an output larger than the result's cap is
//! not lost.
//!
//! Memory stays bounded whatever the program writes: chunks wait for the uploader in
//! a channel of at most [`MAX_BUFFERED_BYTES`], and the uploader holds one batch. When
//! the instance is slow or unreachable the channel fills, [`CommandSink::chunk`] waits,
//! exec stops reading the pipes, and the program blocks on its full pipe: back-pressure
//! reaches the process, nothing is dropped. The uploader retries with back-off until
//! the instance answers; only a refusal (the attempt is no longer this MID's) ends the
//! streaming, logged, and the result still carries its first `max_output_bytes`.

use crate::exec::{ChunkBody, OutputChunk, OutputSink, SinkClosed, Stream};
use crate::session::backoff::Backoff;
use crate::session::client::{InstanceClient, SessionError};
use openmid_proto::command_output::{MAX_CHUNK_BYTES, OutputPost, OutputStream, WireChunk};
use openmid_proto::mid::JobRef;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A batch goes out once this much data waits…
pub const FLUSH_BYTES: usize = 256 * 1024;
/// …or once its first chunk is this old.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Most output waiting for the uploader (beside the batch being posted).
pub const MAX_BUFFERED_BYTES: usize = 2 * 1024 * 1024;
/// Longest a finished command waits for its streamed output to reach the instance.
const DELIVERY_WAIT: Duration = Duration::from_secs(60);
/// After the run was cancelled, how long the last chunks may still take to reach the
/// instance before the result goes without them.
const CANCELLED_GRACE: Duration = Duration::from_secs(5);

/// The sink handed to exec for one command.
pub struct CommandSink {
    kept: [Vec<u8>; 2],
    max_kept: usize,
    forward: Option<mpsc::Sender<OutputChunk>>,
    uploader: Option<JoinHandle<()>>,
    cancel: CancellationToken,
}

impl CommandSink {
    /// Keeps `max_kept` bytes per stream; streams to `instance` when given, holding at
    /// most [`MAX_BUFFERED_BYTES`] of chunks of up to `chunk_bytes` each.
    pub fn new(
        max_kept: u64,
        instance: Option<Arc<InstanceClient>>,
        job: &JobRef,
        chunk_bytes: usize,
        cancel: &CancellationToken,
    ) -> Self {
        let (forward, uploader) = match instance {
            Some(client) => {
                let slots = (MAX_BUFFERED_BYTES / chunk_bytes.max(1)).max(1);
                let (tx, rx) = mpsc::channel(slots);
                let task = tokio::spawn(upload(client, job.clone(), rx));
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        Self {
            kept: [Vec::new(), Vec::new()],
            max_kept: usize::try_from(max_kept).unwrap_or(usize::MAX),
            forward,
            uploader,
            cancel: cancel.clone(),
        }
    }

    /// Whether the output goes to the instance as it comes.
    pub fn streams(&self) -> bool {
        self.forward.is_some()
    }

    /// Waits until what was sent reached the instance — at most [`DELIVERY_WAIT`], or
    /// a few seconds once the job is cancelled — then gives the kept bytes: stdout,
    /// stderr. The bound matters: the result reaches the outbox (and survives a MID
    /// restart) only after this, so an unreachable instance must not hold it back for
    /// ever; the result still carries the first `max_output_bytes` of each stream.
    pub async fn finish(mut self) -> [Vec<u8>; 2] {
        drop(self.forward.take());
        if let Some(task) = self.uploader.take()
            && !delivered(task, &self.cancel).await
        {
            tracing::warn!(
                "the last output chunks of a command did not reach the instance in time; its result keeps the first max_output_bytes of each stream"
            );
        }
        std::mem::take(&mut self.kept)
    }

    fn keep(&mut self, chunk: &OutputChunk) {
        if let ChunkBody::Data(data) = &chunk.body {
            let kept = &mut self.kept[chunk.stream.index()];
            let room = self.max_kept.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..room.min(data.len())]);
        }
    }
}

impl Drop for CommandSink {
    fn drop(&mut self) {
        if let Some(task) = self.uploader.take() {
            task.abort();
        }
    }
}

impl OutputSink for CommandSink {
    async fn chunk(&mut self, chunk: OutputChunk) -> Result<(), SinkClosed> {
        self.keep(&chunk);
        let Some(forward) = &self.forward else {
            return Ok(());
        };
        // A cancelled job stops waiting for a full channel: its process group is
        // being stopped and the result must not wait on an unreachable instance.
        // A chunk shares the pump's buffer; a copy of its own frees that at once, so
        // what waits in the channel is what the bound counts.
        let chunk = OutputChunk {
            body: match chunk.body {
                ChunkBody::Data(data) => ChunkBody::Data(bytes::Bytes::copy_from_slice(&data)),
                marker => marker,
            },
            ..chunk
        };
        let sent = tokio::select! {
            sent = forward.send(chunk) => sent.is_ok(),
            () = self.cancel.cancelled() => false,
        };
        if !sent {
            // The uploader ended (refused) or the job was cancelled: keep for the
            // result only.
            self.forward = None;
        }
        Ok(())
    }
}

/// Sends chunks from `rx` in batches until the channel closes and all were delivered,
/// or the instance refuses them.
async fn upload<T: Upload>(client: Arc<InstanceClient>, job: JobRef, mut rx: mpsc::Receiver<T>) {
    let mut batch: Vec<WireChunk> = Vec::new();
    let mut bytes = 0usize;
    let mut due = Instant::now();
    let mut open = true;
    while open || !batch.is_empty() {
        if open && bytes < FLUSH_BYTES {
            tokio::select! {
                received = rx.recv() => match received {
                    Some(chunk) => {
                        if batch.is_empty() {
                            due = Instant::now() + FLUSH_INTERVAL;
                        }
                        bytes += chunk.len();
                        batch.push(chunk.into_wire());
                        if bytes < FLUSH_BYTES {
                            continue;
                        }
                    }
                    None => open = false,
                },
                () = tokio::time::sleep_until(due), if !batch.is_empty() => {}
            }
        }
        if batch.is_empty() {
            continue;
        }
        let post = OutputPost {
            chunks: std::mem::take(&mut batch),
        };
        bytes = 0;
        if let Err(e) = deliver(&client, &job, &post).await {
            tracing::warn!(output = %job.output_id, attempt = job.attempt, error = %e, "the instance refused the job's streamed output: it is no longer streamed (the result keeps its first part)");
            return;
        }
    }
}

/// Posts one batch, retrying with back-off while the instance cannot be reached.
/// `Err` only for a refusal, which a retry would not change.
async fn deliver(
    client: &InstanceClient,
    job: &JobRef,
    post: &OutputPost,
) -> Result<(), SessionError> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        match client.post_output(job, post).await {
            Ok(_) => return Ok(()),
            Err(e @ (SessionError::Refused { .. } | SessionError::Setup(_))) => return Err(e),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::debug!(output = %job.output_id, error = %e, ?delay, "output post failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// What the uploader carries: a command's chunk as exec cut it, or a chunk already
/// in its wire form (a SQL page).
trait Upload: Send + 'static {
    /// Data bytes it holds (what the batch's flush threshold counts).
    fn len(&self) -> usize;
    /// The chunk as posted.
    fn into_wire(self) -> WireChunk;
}

impl Upload for OutputChunk {
    fn len(&self) -> usize {
        match &self.body {
            ChunkBody::Data(data) => data.len(),
            ChunkBody::Truncated { .. } => 0,
        }
    }

    fn into_wire(self) -> WireChunk {
        let stream = match self.stream {
            Stream::Stdout => OutputStream::Stdout,
            Stream::Stderr => OutputStream::Stderr,
        };
        match self.body {
            ChunkBody::Data(data) => WireChunk::data(stream, self.seq, self.offset, &data),
            ChunkBody::Truncated { dropped_bytes } => {
                WireChunk::truncated(stream, self.seq, self.offset, dropped_bytes)
            }
        }
    }
}

impl Upload for WireChunk {
    fn len(&self) -> usize {
        self.data.as_ref().map_or(0, |d| d.len() / 4 * 3)
    }

    fn into_wire(self) -> WireChunk {
        self
    }
}

/// Waits for an uploader to deliver what it was given: at most [`DELIVERY_WAIT`], or
/// [`CANCELLED_GRACE`] once the job is cancelled; aborts it past that. Whether it
/// delivered.
async fn delivered(mut task: JoinHandle<()>, cancel: &CancellationToken) -> bool {
    let done = tokio::select! {
        r = tokio::time::timeout(DELIVERY_WAIT, &mut task) => r.is_ok(),
        () = cancel.cancelled() => {
            tokio::time::timeout(CANCELLED_GRACE, &mut task).await.is_ok()
        }
    };
    if !done {
        task.abort();
    }
    done
}

/// Where a SQL result's pages go: each page is one chunk of the `rows` stream, posted
/// through the same uploader as a command's output, with the same bound — at most
/// [`MAX_BUFFERED_BYTES`] of pages wait (two full pages), so [`PageSink::page`] waits
/// while the instance is slow, the probe stops reading rows, and the server waits on
/// its full socket. Without an instance the pages are not kept anywhere (the result
/// carries the first one).
pub struct PageSink {
    forward: Option<mpsc::Sender<WireChunk>>,
    uploader: Option<JoinHandle<()>>,
    cancel: CancellationToken,
    seq: u64,
    offset: u64,
}

impl PageSink {
    /// Streams to `instance` when given; `cancel` stops waiting for a full channel.
    pub fn new(
        instance: Option<Arc<InstanceClient>>,
        job: &JobRef,
        cancel: &CancellationToken,
    ) -> Self {
        let (forward, uploader) = match instance {
            Some(client) => {
                let slots = (MAX_BUFFERED_BYTES / MAX_CHUNK_BYTES).max(1);
                let (tx, rx) = mpsc::channel(slots);
                (
                    Some(tx),
                    Some(tokio::spawn(upload(client, job.clone(), rx))),
                )
            }
            None => (None, None),
        };
        Self {
            forward,
            uploader,
            cancel: cancel.clone(),
            seq: 0,
            offset: 0,
        }
    }

    /// Numbers the chunks from `seq`: a resumed read continues the output's sequence
    /// after the pages earlier attempts stored (the instance keeps them as this
    /// attempt's), one chunk per page, so `seq` is the page number.
    pub fn starting_at(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }

    /// Whether pages go to the instance.
    pub fn streams(&self) -> bool {
        self.forward.is_some()
    }

    /// Sends one page's JSON line (at most [`MAX_CHUNK_BYTES`], not empty), waiting
    /// while two pages wait already. After a refusal or once the job is cancelled,
    /// pages are dropped.
    pub async fn page(&mut self, line: &[u8]) {
        let Some(forward) = &self.forward else {
            return;
        };
        let chunk = WireChunk::data(OutputStream::Rows, self.seq, self.offset, line);
        self.seq += 1;
        self.offset += line.len() as u64;
        let sent = tokio::select! {
            sent = forward.send(chunk) => sent.is_ok(),
            () = self.cancel.cancelled() => false,
        };
        if !sent {
            self.forward = None;
        }
    }

    /// Waits until the pages sent reached the instance (bounded as a command's
    /// output is); whether they all did.
    pub async fn finish(mut self) -> bool {
        drop(self.forward.take());
        match self.uploader.take() {
            Some(task) => delivered(task, &self.cancel).await,
            None => true,
        }
    }
}

impl Drop for PageSink {
    fn drop(&mut self) {
        if let Some(task) = self.uploader.take() {
            task.abort();
        }
    }
}
