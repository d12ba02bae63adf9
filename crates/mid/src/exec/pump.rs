//! Reads a process's stdout and stderr at once, as the bytes arrive, and hands them to
//! the sink as numbered chunks. One loop, one task: while the sink is awaited nothing
//! else is read, so memory stays at one buffer and one pending chunk per stream
//! whatever the program writes, and a slow sink makes the program wait on its pipe.
//!
//! Output that trickles in is not held until a chunk fills: pending bytes go out once
//! they are `flush_every` old, so someone following the job sees lines promptly.

use super::chunker::{Chunker, OutputChunk, Piece, Stream, StreamTotals};
use super::error::ExecError;
use super::sink::OutputSink;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The two output streams of a run, being read.
#[derive(Debug)]
pub(crate) struct Pump<O, E> {
    stdout: Option<O>,
    stderr: Option<E>,
    chunkers: [Chunker; 2],
    complete: [bool; 2],
    /// When the oldest byte not yet sent arrived, per stream.
    pending_since: [Option<Instant>; 2],
    next_seq: u64,
    read_size: usize,
    flush_every: Duration,
}

enum Event {
    Stop,
    Read(Stream, io::Result<usize>),
    Flush,
}

impl<O, E> Pump<O, E>
where
    O: AsyncRead + Unpin + Send,
    E: AsyncRead + Unpin + Send,
{
    /// Reads into chunks of at most `max_chunk` bytes, keeps at most `cap` bytes per
    /// stream, sends pending bytes once they are `flush_every` old.
    pub fn new(stdout: O, stderr: E, max_chunk: usize, cap: u64, flush_every: Duration) -> Self {
        let chunkers = [Chunker::new(max_chunk, cap), Chunker::new(max_chunk, cap)];
        Self {
            stdout: Some(stdout),
            stderr: Some(stderr),
            chunkers,
            complete: [false; 2],
            pending_since: [None; 2],
            next_seq: 0,
            read_size: max_chunk.max(1),
            flush_every,
        }
    }

    /// Runs until both streams end or `stop` is cancelled (a process outside the group
    /// holds a pipe open); either way what is pending goes out, then the markers of
    /// capped streams. Fails if a pipe cannot be read or the sink is closed.
    pub async fn run<S: OutputSink>(
        &mut self,
        sink: &mut S,
        stop: &CancellationToken,
    ) -> Result<(), ExecError> {
        let mut stdout_buf = vec![0u8; self.read_size];
        let mut stderr_buf = vec![0u8; self.read_size];
        let mut pieces = Vec::new();
        while self.stdout.is_some() || self.stderr.is_some() {
            let flush_at = self
                .pending_since
                .iter()
                .flatten()
                .min()
                .map(|since| *since + self.flush_every);
            let event = tokio::select! {
                biased;
                () = stop.cancelled() => Event::Stop,
                r = read(&mut self.stdout, &mut stdout_buf), if self.stdout.is_some() => {
                    Event::Read(Stream::Stdout, r)
                }
                r = read(&mut self.stderr, &mut stderr_buf), if self.stderr.is_some() => {
                    Event::Read(Stream::Stderr, r)
                }
                () = sleep_until(flush_at), if flush_at.is_some() => Event::Flush,
            };
            match event {
                Event::Stop => break,
                Event::Read(stream, Ok(0)) => {
                    match stream {
                        Stream::Stdout => self.stdout = None,
                        Stream::Stderr => self.stderr = None,
                    }
                    self.complete[stream.index()] = true;
                    self.chunkers[stream.index()].finish(&mut pieces);
                    self.pending_since[stream.index()] = None;
                    self.deliver(stream, &mut pieces, sink).await?;
                }
                Event::Read(stream, Ok(n)) => {
                    let buf = match stream {
                        Stream::Stdout => &stdout_buf,
                        Stream::Stderr => &stderr_buf,
                    };
                    self.chunkers[stream.index()].push(&buf[..n], &mut pieces);
                    self.mark_pending(stream);
                    self.deliver(stream, &mut pieces, sink).await?;
                }
                Event::Read(_, Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Event::Read(stream, Err(source)) => {
                    return Err(ExecError::Read { stream, source });
                }
                Event::Flush => {
                    for stream in Stream::BOTH {
                        self.chunkers[stream.index()].flush(&mut pieces);
                        // A held-back partial character waits another interval.
                        self.pending_since[stream.index()] = None;
                        self.mark_pending(stream);
                        self.deliver(stream, &mut pieces, sink).await?;
                    }
                }
            }
        }
        for stream in Stream::BOTH {
            self.chunkers[stream.index()].finish(&mut pieces);
            self.deliver(stream, &mut pieces, sink).await?;
        }
        Ok(())
    }

    /// The counts of both streams, stdout first.
    pub fn totals(&self) -> [StreamTotals; 2] {
        Stream::BOTH.map(|stream| StreamTotals {
            complete: self.complete[stream.index()],
            ..self.chunkers[stream.index()].totals()
        })
    }

    fn mark_pending(&mut self, stream: Stream) {
        let since = &mut self.pending_since[stream.index()];
        if !self.chunkers[stream.index()].has_pending() {
            *since = None;
        } else if since.is_none() {
            *since = Some(Instant::now());
        }
    }

    async fn deliver<S: OutputSink>(
        &mut self,
        stream: Stream,
        pieces: &mut Vec<Piece>,
        sink: &mut S,
    ) -> Result<(), ExecError> {
        for piece in pieces.drain(..) {
            let chunk = OutputChunk {
                stream,
                seq: self.next_seq,
                offset: piece.offset,
                body: piece.body,
            };
            self.next_seq += 1;
            sink.chunk(chunk).await.map_err(|_| ExecError::SinkClosed)?;
        }
        Ok(())
    }
}

/// Reads from `reader`; never completes when there is none (its branch is disabled).
async fn read<R: AsyncRead + Unpin>(reader: &mut Option<R>, buf: &mut [u8]) -> io::Result<usize> {
    match reader {
        Some(reader) => reader.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::chunker::ChunkBody;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Delivers its reads as split, one per call (a longer one across calls).
    struct Reads(VecDeque<Vec<u8>>);

    impl AsyncRead for Reads {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut next) = self.0.pop_front() {
                let n = next.len().min(buf.remaining());
                buf.put_slice(&next[..n]);
                if n < next.len() {
                    self.0.push_front(next.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    fn pump_all(
        out: Vec<Vec<u8>>,
        err: Vec<Vec<u8>>,
        max_chunk: usize,
        cap: u64,
    ) -> (Vec<OutputChunk>, [StreamTotals; 2]) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        runtime.block_on(async {
            // Empty reads would read as the end of the stream.
            let keep = |v: Vec<Vec<u8>>| v.into_iter().filter(|r| !r.is_empty()).collect();
            let mut pump = Pump::new(
                Reads(keep(out)),
                Reads(keep(err)),
                max_chunk,
                cap,
                Duration::from_millis(100),
            );
            let mut sink = Vec::new();
            let stop = CancellationToken::new();
            pump.run(&mut sink, &stop)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            (sink, pump.totals())
        })
    }

    proptest! {
        #[test]
        fn both_streams_come_through_numbered_and_capped(
            out in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..500), 0..12),
            err in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..500), 0..12),
            max_chunk in 1usize..300,
            cap in 0u64..4000,
        ) {
            let inputs = [out.concat(), err.concat()];
            let (chunks, totals) = pump_all(out, err, max_chunk, cap);
            for pair in chunks.windows(2) {
                prop_assert_eq!(pair[1].seq, pair[0].seq + 1);
            }
            prop_assert!(chunks.first().is_none_or(|c| c.seq == 0));
            for stream in Stream::BOTH {
                let input = &inputs[stream.index()];
                let mine: Vec<&OutputChunk> = chunks.iter().filter(|c| c.stream == stream).collect();
                let mut rebuilt = Vec::new();
                let mut dropped = None;
                for (i, chunk) in mine.iter().enumerate() {
                    match &chunk.body {
                        ChunkBody::Data(d) => {
                            prop_assert!(d.len() <= max_chunk.max(4));
                            prop_assert_eq!(chunk.offset, rebuilt.len() as u64);
                            rebuilt.extend_from_slice(d);
                        }
                        ChunkBody::Truncated { dropped_bytes } => {
                            prop_assert_eq!(i, mine.len() - 1);
                            dropped = Some(*dropped_bytes);
                        }
                    }
                }
                let kept = input.len().min(usize::try_from(cap).unwrap_or(usize::MAX));
                prop_assert_eq!(&rebuilt[..], &input[..kept]);
                let over = (input.len() as u64).checked_sub(cap).filter(|d| *d > 0);
                prop_assert_eq!(dropped, over);
                let t = totals[stream.index()];
                prop_assert_eq!(t.seen_bytes, input.len() as u64);
                prop_assert_eq!(t.kept_bytes, kept as u64);
                prop_assert_eq!(t.dropped_bytes, over.unwrap_or(0));
                prop_assert!(t.complete);
            }
        }
    }
}
