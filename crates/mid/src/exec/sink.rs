//! Where a run's output goes as it arrives. The sink is awaited for every chunk and
//! nothing is read from the pipes meanwhile, so a slow sink slows the program (it
//! blocks on its full pipe) instead of output piling up in the MID's memory.

use super::chunker::OutputChunk;
use std::future::Future;
use tokio::sync::mpsc;

/// The sink is gone: nobody will read further output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the output sink is closed")]
pub struct SinkClosed;

/// Receives a run's output chunks, in `seq` order.
pub trait OutputSink: Send {
    /// Takes one chunk; returning later is how the sink applies back-pressure.
    fn chunk(&mut self, chunk: OutputChunk) -> impl Future<Output = Result<(), SinkClosed>> + Send;
}

/// A bounded channel: its capacity is how many chunks may wait for the reader.
impl OutputSink for mpsc::Sender<OutputChunk> {
    async fn chunk(&mut self, chunk: OutputChunk) -> Result<(), SinkClosed> {
        self.send(chunk).await.map_err(|_| SinkClosed)
    }
}

/// Collects everything in memory: for tests and small, already-bounded runs.
impl OutputSink for Vec<OutputChunk> {
    async fn chunk(&mut self, chunk: OutputChunk) -> Result<(), SinkClosed> {
        self.push(chunk);
        Ok(())
    }
}
