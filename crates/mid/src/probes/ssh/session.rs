//! One command on one channel: environment requests, the exec request, standard input
//! (after sudo, if any, let the command start), both output streams read while it
//! runs — through the same pump and sink as a local command, so followers see it live
//! and the result keeps its first `max_output_bytes` — and its end: exit status, exit
//! signal, or a stop on timeout or cancellation.
//!
//! A stop sends the SSH `signal` request (TERM), which OpenSSH since 7.9 delivers to
//! the session's whole process group. A server that ignores it (older OpenSSH, other
//! servers) gets, after a grace period, `kill -s KILL -- -PGID` over a second channel
//! on the same connection, with the group id the command line announced, and then the
//! channel is closed. Under sudo the group's processes are root's and out of the
//! user's (and sshd's) reach, so the second channel always runs, through sudo.

use super::demux::{Event, Preamble, RemoteExit, demux};
use super::remote::{self, Markers};
use crate::exec::{OutputSink, Pump, StreamTotals};
use openmid_proto::command::CommandEnd;
use openmid_proto::secret::Secret;
use russh::ChannelMsg;
use russh::client::Msg;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connect::SshHandle;
use crate::probes::ProbeError;

/// Between the TERM signal and the KILL fallback, and for the channel to close after.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the command ended, how long the output may take to reach the sink.
const DRAIN: Duration = Duration::from_secs(2);
/// The in-memory pipe between the channel and the pump, per stream.
const PIPE_BYTES: usize = 64 * 1024;

/// What to run and how.
pub struct Plan<'a> {
    /// Its markers.
    pub markers: Markers,
    /// Whether it runs under sudo.
    pub sudo: bool,
    /// The password fed to sudo, when the login has one.
    pub sudo_password: Option<&'a Secret>,
    /// Standard input (or the script), sent once the command may read it.
    pub input: Option<Vec<u8>>,
    /// `host:port`, for messages.
    pub target: &'a str,
    /// The remote user, for messages.
    pub user: &'a str,
}

/// Output settings.
pub struct Output {
    /// Largest chunk.
    pub chunk_bytes: usize,
    /// Pending output is sent once this old.
    pub flush_interval: Duration,
    /// Bytes of each stream passed to the sink.
    pub cap: u64,
}

/// How the run went.
pub struct Finished {
    /// Exit status or signal, as the server reported it (none when it did not).
    pub exit: Option<RemoteExit>,
    /// What ended it.
    pub ended_by: CommandEnd,
    /// The signal the MID sent last when it stopped the command.
    pub stopped_with: Option<&'static str>,
    /// When it started, ms since the epoch.
    pub started_at_ms: i64,
    /// How long it ran.
    pub duration_ms: u64,
    /// Byte counts, stdout first.
    pub totals: [StreamTotals; 2],
    /// The channel closed in order: the connection may serve another job.
    pub reusable: bool,
}

/// Sends the environment requests, pipelined; returns the variables the server
/// refused (to be exported by the command line instead) and anything that arrived
/// before the replies.
pub async fn request_env(
    channel: &mut russh::Channel<Msg>,
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, ProbeError> {
    for (name, value) in env {
        channel
            .set_env(true, name.as_str(), value.as_str())
            .await
            .map_err(|e| ProbeError::Target(format!("sending env request: {e}")))?;
    }
    let mut refused = Vec::new();
    for name in env.keys() {
        match channel.wait().await {
            Some(ChannelMsg::Success) => {}
            Some(ChannelMsg::Failure) => refused.push(name.clone()),
            other => {
                return Err(ProbeError::Target(format!(
                    "the server answered an env request with {other:?}"
                )));
            }
        }
    }
    Ok(refused)
}

/// Sends the exec request and waits for the server to accept it; messages that came
/// before the answer are handed back for the demultiplexer.
pub async fn exec(
    channel: &mut russh::Channel<Msg>,
    line: &str,
    target: &str,
) -> Result<Vec<ChannelMsg>, ProbeError> {
    channel
        .exec(true, line.as_bytes())
        .await
        .map_err(|e| ProbeError::Target(format!("sending the command to {target}: {e}")))?;
    let mut early = Vec::new();
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) => return Ok(early),
            Some(ChannelMsg::Failure) => {
                return Err(ProbeError::Target(format!(
                    "{target} refused to run the command (exec request denied)"
                )));
            }
            None | Some(ChannelMsg::Close) => {
                return Err(ProbeError::Target(format!(
                    "{target} closed the channel instead of running the command"
                )));
            }
            Some(other) => early.push(other),
        }
    }
}

/// Runs an accepted exec on `channel` to its end, streaming into `sink`.
#[allow(clippy::too_many_arguments)]
pub async fn run<S: OutputSink>(
    handle: &SshHandle,
    channel: russh::Channel<Msg>,
    early: Vec<ChannelMsg>,
    mut plan: Plan<'_>,
    output: &Output,
    sink: &mut S,
    cancel: &CancellationToken,
    deadline: Instant,
) -> Result<Finished, ProbeError> {
    let started_at_ms = openmid_proto::time::now_ms();
    let started = Instant::now();
    let (read, write) = channel.split();
    let (stdout_r, stdout_w) = tokio::io::duplex(PIPE_BYTES);
    let (stderr_r, stderr_w) = tokio::io::duplex(PIPE_BYTES);
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let preamble = Preamble::new(plan.markers.clone(), plan.sudo);
    let mut demuxed = tokio::spawn(demux(read, early, stdout_w, stderr_w, preamble, events_tx));
    let mut pump = Pump::new(
        stdout_r,
        stderr_r,
        output.chunk_bytes,
        output.cap,
        output.flush_interval,
    );
    let stop_pump = CancellationToken::new();
    let pump_done = tokio::sync::Notify::new();

    let drive = async {
        let mut pid = None;
        let mut prompts = 0u32;
        let mut events_open = true;
        let mut input: Option<futures::future::BoxFuture<'_, ()>> = None;
        let mut stop: Option<CommandEnd> = None;
        let mut failure: Option<ProbeError> = None;
        let timeout = tokio::time::sleep_until(deadline);
        tokio::pin!(timeout);
        // `Some(ended)` once the demultiplexer finished (`None` inside: it failed).
        let finished = loop {
            tokio::select! {
                biased;
                ended = &mut demuxed => break Some(ended.ok()),
                () = cancel.cancelled() => { stop = Some(CommandEnd::Cancelled); break None; }
                () = &mut timeout => { stop = Some(CommandEnd::Timeout); break None; }
                event = events.recv(), if events_open => match event {
                    Some(Event::Pid(p)) => pid = Some(p),
                    Some(Event::Prompt) => {
                        prompts += 1;
                        match (prompts, plan.sudo_password) {
                            (1, Some(password)) => {
                                let line = zeroize::Zeroizing::new(format!("{}\n", password.expose()));
                                let _ = write.data(line.as_bytes()).await;
                            }
                            (1, None) => {
                                failure = Some(ProbeError::Credential(format!("sudo on {} asked for a password, and an ssh_key credential has none: allow the user `{}` sudo without a password (NOPASSWD) or use an ssh_password credential", plan.target, plan.user)));
                                break None;
                            }
                            _ => {
                                failure = Some(ProbeError::Credential(format!("sudo on {} refused the password of user `{}`", plan.target, plan.user)));
                                break None;
                            }
                        }
                    }
                    Some(Event::Ready) => {
                        let data = plan.input.take();
                        let write = &write;
                        input = Some(Box::pin(async move {
                            if let Some(data) = data {
                                let _ = write.data(&data[..]).await;
                            }
                            let _ = write.eof().await;
                        }));
                    }
                    None => events_open = false,
                },
                () = wait_input(&mut input), if input.is_some() => input = None,
            }
        };
        drop(input);
        let mut stopped_with = None;
        let stopping = finished.is_none();
        let mut running = stopping;
        let mut ended = finished.flatten();
        if stopping {
            tracing::debug!(target = %plan.target, ?stop, "stopping the remote command");
            let _ = write.signal(russh::Sig::TERM).await;
            stopped_with = Some("TERM");
            if let Ok(r) = tokio::time::timeout(KILL_GRACE, &mut demuxed).await {
                (running, ended) = (false, r.ok());
            }
        }
        // Under sudo the command's processes are root's: the signal may have ended
        // sudo and its shell but not what they started, so the group is killed as
        // root whatever the channel did.
        // The group id may have come in after the loop stopped reading events.
        while let Ok(event) = events.try_recv() {
            if let Event::Pid(p) = event {
                pid = Some(p);
            }
        }
        if let (true, Some(pid)) = ((stopping && plan.sudo) || running, pid) {
            kill_group(handle, pid, plan.sudo, plan.sudo_password).await;
        }
        if running {
            let _ = write.signal(russh::Sig::KILL).await;
            stopped_with = Some("KILL");
            let _ = write.close().await;
            match tokio::time::timeout(KILL_GRACE, &mut demuxed).await {
                Ok(r) => ended = r.ok(),
                Err(_) => {
                    tracing::warn!(target = %plan.target, "the remote command's channel did not close after KILL; dropping the connection");
                    demuxed.abort();
                }
            }
        }
        // Once the demultiplexer is gone both pipes are closed: the pump ends with
        // what is left, unless the sink holds it up past the drain time.
        tokio::select! {
            () = pump_done.notified() => {}
            () = tokio::time::sleep(DRAIN) => stop_pump.cancel(),
        }
        (ended, stop, stopped_with, failure)
    };
    let pumped = async {
        let r = pump.run(sink, &stop_pump).await;
        pump_done.notify_one();
        r
    };
    let ((ended, stop, stopped_with, failure), pumped) = tokio::join!(drive, pumped);
    if let Some(failure) = failure {
        return Err(failure);
    }
    pumped.map_err(|e| ProbeError::Target(format!("reading the command's output: {e}")))?;
    let reusable = ended.as_ref().is_some_and(|e| e.closed);
    let exit = ended.and_then(|e| e.exit);
    if exit.is_none() && stop.is_none() {
        return Err(ProbeError::Target(format!(
            "the connection to {} ended before the command reported how it exited",
            plan.target
        )));
    }
    Ok(Finished {
        exit,
        ended_by: stop.unwrap_or(CommandEnd::Exit),
        stopped_with,
        started_at_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        totals: pump.totals(),
        reusable,
    })
}

async fn wait_input(input: &mut Option<futures::future::BoxFuture<'_, ()>>) {
    match input.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Kills the remote process group `pgid` with a second channel (best effort), as
/// root through sudo when the command ran under it.
async fn kill_group(handle: &SshHandle, pgid: u32, sudo: bool, password: Option<&Secret>) {
    let attempt = async {
        let mut channel = handle.channel_open_session().await.ok()?;
        let line = remote::kill_line(pgid, sudo, password.is_some());
        channel.exec(false, line.as_bytes()).await.ok()?;
        if let (true, Some(password)) = (sudo, password) {
            let line = zeroize::Zeroizing::new(format!("{}\n", password.expose()));
            let _ = channel.data(line.as_bytes()).await;
        }
        let _ = channel.eof().await;
        while let Some(msg) = channel.wait().await {
            if matches!(msg, ChannelMsg::Close) {
                break;
            }
        }
        Some(())
    };
    if tokio::time::timeout(KILL_GRACE * 2, attempt).await.is_err() {
        tracing::warn!(pgid, "killing the remote process group took too long");
    }
}
