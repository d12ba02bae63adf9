//! One run from start to outcome: the process, its stdin, its output and its end
//! (exit, timeout, cancellation) driven together on the caller's task, so dropping the
//! run's future drops everything — and the process group's `Drop` then stops the
//! group.

use super::error::ExecError;
use super::outcome::{EndedBy, Exit, Outcome};
use super::pump::Pump;
use super::sink::OutputSink;
use super::spawn::{CommandSpec, spawn};
use openmid_proto::time::now_ms;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How runs are carried out; the MID's config sets them for all command jobs.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Largest chunk handed to the sink (raised to 4 bytes, so a UTF-8 character fits).
    pub chunk_bytes: usize,
    /// Pending output goes out once it is this old, even if the chunk is not full.
    pub flush_interval: Duration,
    /// Output kept per stream; the rest is read, counted and dropped, with a marker.
    pub max_output_bytes: u64,
    /// Between SIGTERM and SIGKILL when the group is stopped.
    pub kill_grace: Duration,
    /// After the process group is gone, how long output may still take to reach its
    /// end (a process that left the group holding a pipe) and then to be accepted by
    /// the sink.
    pub drain_timeout: Duration,
}

impl Default for ExecOptions {
    /// 64 KiB chunks (a pipe's default buffer), flushed every 100 ms, 16 MiB per
    /// stream, 2 s grace and drain.
    fn default() -> Self {
        Self {
            chunk_bytes: 64 * 1024,
            flush_interval: Duration::from_millis(100),
            max_output_bytes: 16 * 1024 * 1024,
            kill_grace: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(2),
        }
    }
}

/// Runs `spec` to its end, sending its output to `sink`, stopping its process group
/// on timeout or when `cancel` is cancelled. A program that fails is an `Ok` outcome
/// with its exit code or signal; `Err` means it could not be started or watched.
/// Dropping the returned future stops the group too.
pub async fn run<S: OutputSink>(
    spec: CommandSpec,
    options: &ExecOptions,
    sink: &mut S,
    cancel: &CancellationToken,
) -> Result<Outcome, ExecError> {
    let started_at_ms = now_ms();
    let started = Instant::now();
    let mut spawned = spawn(&spec, options.kill_grace).await?;
    let deadline = started + spec.timeout;

    let mut pump = Pump::new(
        spawned.stdout,
        spawned.stderr,
        options.chunk_bytes,
        options.max_output_bytes,
        options.flush_interval,
    );
    let stop_pump = CancellationToken::new();
    let pump_failed = CancellationToken::new();
    // The futures borrow the group and the pump; the block ends those borrows.
    let (controlled, pumped) = {
        let group = &mut spawned.group;
        let control = async {
            let ended_by = tokio::select! {
                biased;
                status = group.wait() => status.map(|_| Some(EndedBy::Exit)),
                () = cancel.cancelled() => Ok(Some(EndedBy::Cancelled)),
                () = tokio::time::sleep_until(deadline) => Ok(Some(EndedBy::Timeout)),
                // The output cannot be delivered: stop the group, report the error.
                () = pump_failed.cancelled() => Ok(None),
            }
            .map_err(|source| ExecError::Control { source })?;
            let stopped = group
                .stop(options.kill_grace)
                .await
                .map_err(|source| ExecError::Control { source })?;
            Ok::<_, ExecError>((ended_by, stopped))
        };
        let pumping = async {
            let result = pump.run(sink, &stop_pump).await;
            if result.is_err() {
                pump_failed.cancel();
            }
            result
        };
        let feeding = feed(spawned.stdin.take(), spec.stdin);
        tokio::pin!(control, pumping, feeding);
        let mut pumped = None;
        let mut fed = false;
        let controlled = loop {
            tokio::select! {
                ended = &mut control => break ended,
                result = &mut pumping, if pumped.is_none() => pumped = Some(result),
                () = &mut feeding, if !fed => fed = true,
            }
        };
        let pumped = match pumped {
            Some(result) => result,
            None if controlled.is_ok() => {
                drain(pumping.as_mut(), &stop_pump, options.drain_timeout).await
            }
            None => Ok(()),
        };
        (controlled, pumped)
    };
    let (ended_by, stopped) = controlled?;
    pumped?;
    // `None` only when the pump failed, which returned above.
    let ended_by = ended_by.ok_or(ExecError::SinkClosed)?;
    let [stdout, stderr] = pump.totals();
    Ok(Outcome {
        exit: Exit::from(stopped.status),
        ended_by,
        started_at_ms,
        ended_at_ms: now_ms(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        stdout,
        stderr,
        strays_stopped: ended_by == EndedBy::Exit && stopped.found_running,
        survivors: stopped.survivors,
    })
}

/// Lets the pump reach the end of both streams, then stops it (a pipe held open by a
/// process that left the group), then gives up on a sink that accepts nothing.
async fn drain<F>(
    mut pumping: std::pin::Pin<&mut F>,
    stop: &CancellationToken,
    limit: Duration,
) -> Result<(), ExecError>
where
    F: Future<Output = Result<(), ExecError>>,
{
    if let Ok(result) = tokio::time::timeout(limit, pumping.as_mut()).await {
        return result;
    }
    stop.cancel();
    tokio::time::timeout(limit, pumping.as_mut())
        .await
        .unwrap_or(Err(ExecError::SinkStalled { waited: limit * 2 }))
}

/// Writes the job's bytes to stdin, then closes it so the program sees its end. A
/// program that exits (or closes stdin) without reading it all is not an error.
async fn feed(stdin: Option<ChildStdin>, data: Option<Vec<u8>>) {
    let (Some(mut stdin), Some(data)) = (stdin, data) else {
        return;
    };
    if let Err(e) = stdin.write_all(&data).await {
        // The contents may be secret: only the error is logged.
        tracing::debug!(error = %e, "stdin not fully written");
    }
    drop(stdin);
}
