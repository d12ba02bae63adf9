//! `SSHCommand`: a command line, or a script for an interpreter, run on a remote host
//! over SSH as the credential's user (optionally under sudo). The registry has checked
//! the host and port against the egress policy; the connection checks every address
//! the name resolves to ([`connect`]), verifies the host key by the job's policy
//! ([`host_keys`]) and logs in ([`auth`]). Connections are kept for later jobs of the
//! same login ([`pool`]). The run ([`session`]) streams its output like `Command`'s
//! and stops the remote process group on timeout and cancellation.
//!
//! Parts: `known_hosts` reads OpenSSH's file format, `remote` builds the command line
//! and its markers, `demux` splits the channel's messages.

mod auth;
mod connect;
mod demux;
mod host_keys;
pub mod known_hosts;
mod pool;
mod remote;
mod session;

pub use pool::SshPool;

use super::output_stream::CommandSink;
use super::registry::{Call, Probe, Ran};
use super::{ProbeContext, ProbeError};
use crate::policy::Protocol;
use auth::Login;
use connect::{Connection, shown_target};
use demux::{RemoteExit, signal_of};
use host_keys::{HostKeyCheck, HostKeyFiles};
use openmid_proto::command::{CommandExit, DEFAULT_MAX_OUTPUT_BYTES};
use openmid_proto::command_output::MAX_STREAMED_BYTES;
use openmid_proto::ssh::{SshCommand, SshRequest, SshResponse};
use pool::PoolKey;
use remote::Markers;
use tokio::time::Instant;

/// How long a kept connection may take to open a channel before it counts as dead.
const KEPT_OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long past the deadline the answer to the exec request is awaited.
const EXEC_REPLY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The `SSHCommand` entry of the [registry](super::registry). It watches cancellation
/// and the deadline itself: the remote command must be stopped, not just abandoned.
pub struct SshProbe;

impl Probe for SshProbe {
    type Contract = SshCommand;
    const PROTOCOL: Option<Protocol> = Some(Protocol::Ssh);
    const WATCHES_CANCEL: bool = true;

    fn run<'a>(
        &'a self,
        req: SshRequest,
        call: Call<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Ran<SshResponse>, ProbeError>> {
        Box::pin(async move { run(req, call).await.map(Ran::response) })
    }
}

/// A connection ready for one job, and whether it was kept from an earlier one.
struct Ready {
    conn: Connection,
    channel: russh::Channel<russh::client::Msg>,
    reused: bool,
}

/// Runs one job.
async fn run(req: SshRequest, call: Call<'_>) -> Result<SshResponse, ProbeError> {
    let ctx = call.ctx;
    let job = call.job;
    let deadline = call
        .deadline
        .unwrap_or_else(|| Instant::now() + req.timeout());
    let login = Login::of(call.credential, req.username.as_deref())?;
    let host = req.host.to_ascii_lowercase();
    let port = req.port();
    let target = shown_target(&host, port);
    let key = PoolKey {
        host: host.clone(),
        port,
        user: login.username.clone(),
        digest: login.pool_digest(&req.host_key),
    };
    let check = HostKeyCheck {
        policy: req.host_key.clone(),
        files: HostKeyFiles::in_dir(&ctx.ssh_dir()),
        host,
        port,
    };
    let timeout_ms = req.timeout().as_millis() as u64;
    let cap = req.pool_size() as usize;
    // Everything before the command starts is bounded by the job's deadline and ends
    // at once on cancellation: nothing runs remotely yet.
    let prepared = async {
        let mut permit = ctx.ssh.acquire(&key, cap).await;
        let ready = open(ctx, &mut permit, &check, &login, &target).await?;
        Ok::<_, ProbeError>((permit, ready))
    };
    let (permit, ready) = tokio::select! {
        r = prepared => r?,
        () = job.cancel.cancelled() => return Err(ProbeError::Cancelled),
        () = tokio::time::sleep_until(deadline) => return Err(ProbeError::Timeout(timeout_ms)),
    };
    let Ready {
        conn,
        mut channel,
        reused,
    } = ready;
    let started = async {
        let mut exported: Vec<String> = Vec::new();
        if req.sudo {
            exported.extend(req.env.keys().cloned());
        } else if !req.env.is_empty() {
            exported = session::request_env(&mut channel, &req.env).await?;
            if !exported.is_empty() {
                tracing::debug!(%target, refused = ?exported, "the server refused env requests; exporting those variables in the command line");
            }
        }
        let exported: Vec<(&str, &str)> = exported
            .iter()
            .filter_map(|name| req.env.get_key_value(name))
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let markers = Markers::new();
        let line = remote::command_line(&req, &markers, &exported);
        Ok::<_, ProbeError>((markers, line))
    };
    let (markers, line) = tokio::select! {
        r = started => r?,
        () = job.cancel.cancelled() => return Err(ProbeError::Cancelled),
        () = tokio::time::sleep_until(deadline) => return Err(ProbeError::Timeout(timeout_ms)),
    };
    // Once the exec request is out the command may run: from here a cancellation or
    // the deadline is handled by `session::run`, which stops it. Only a server that
    // never answers the request is given up on (a little past the deadline).
    let early = tokio::time::timeout_at(
        deadline + EXEC_REPLY_GRACE,
        session::exec(&mut channel, &line, &target),
    )
    .await
    .map_err(|_| ProbeError::Timeout(timeout_ms))??;
    let max_kept = req.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES);
    let defaults = crate::exec::ExecOptions::default();
    let mut sink = CommandSink::new(
        max_kept,
        ctx.instance.clone(),
        &job.id,
        defaults.chunk_bytes,
        &job.cancel,
    );
    // Streamed, the output is capped far above the result's share of it.
    let cap = match sink.streams() {
        true => MAX_STREAMED_BYTES.max(max_kept),
        false => max_kept,
    };
    let plan = session::Plan {
        markers,
        sudo: req.sudo,
        sudo_password: login.password(),
        input: req
            .script
            .clone()
            .or_else(|| req.stdin.clone())
            .map(String::into_bytes),
        target: &target,
        user: &login.username,
    };
    let output = session::Output {
        chunk_bytes: defaults.chunk_bytes,
        flush_interval: defaults.flush_interval,
        cap,
    };
    let ran = session::run(
        &conn.handle,
        channel,
        early,
        plan,
        &output,
        &mut sink,
        &job.cancel,
        deadline,
    )
    .await;
    let [stdout, stderr] = sink.finish().await;
    let host_key = conn.host_key.clone();
    let pinned = conn.pinned && !reused;
    let finished = match ran {
        Ok(finished) => finished,
        Err(e) => return Err(e),
    };
    if finished.reusable && !conn.handle.is_closed() {
        ctx.ssh.keep(permit, conn);
    }
    let exit = match (&finished.exit, finished.stopped_with) {
        (Some(RemoteExit::Code(code)), _) => CommandExit::Code {
            code: i32::try_from(*code).unwrap_or(i32::MAX),
        },
        (Some(RemoteExit::Signal(name)), _) => {
            let (number, name) = signal_of(name);
            CommandExit::Signal { number, name }
        }
        // Stopped and the server did not say how it ended: what the MID sent last.
        (None, sent) => {
            let (number, name) = signal_of(sent.unwrap_or("KILL"));
            CommandExit::Signal { number, name }
        }
    };
    tracing::debug!(%target, user = %login.username, ?exit, reused, "SSH command finished");
    Ok(SshResponse {
        exit,
        ended_by: finished.ended_by,
        stdout: super::command::kept(stdout, finished.totals[0].seen_bytes),
        stderr: super::command::kept(stderr, finished.totals[1].seen_bytes),
        started_at: openmid_proto::time::rfc3339(finished.started_at_ms),
        duration_ms: finished.duration_ms,
        host_key,
        host_key_pinned: pinned,
        reused_connection: reused,
    })
}

/// A session channel for the job: on the kept connection the permit came with, or —
/// when it has none, or it died meanwhile (the server restarted, or killed it) — on a
/// new one. A dead kept connection costs the job nothing but the dial.
async fn open(
    ctx: &ProbeContext,
    permit: &mut pool::Permit,
    check: &HostKeyCheck,
    login: &Login,
    target: &str,
) -> Result<Ready, ProbeError> {
    if let Some(conn) = permit.take_kept() {
        let opened =
            tokio::time::timeout(KEPT_OPEN_TIMEOUT, conn.handle.channel_open_session()).await;
        match opened
            .map_err(|_| "no answer".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            Ok(channel) => {
                return Ok(Ready {
                    conn,
                    channel,
                    reused: true,
                });
            }
            Err(e) => {
                tracing::debug!(%target, error = %e, "a kept SSH connection is dead; opening a new one");
            }
        }
    }
    let conn = connect::dial(ctx, check.clone(), login).await?;
    let channel = conn
        .handle
        .channel_open_session()
        .await
        .map_err(|e| ProbeError::Target(format!("{target}: opening a session channel: {e}")))?;
    Ok(Ready {
        conn,
        channel,
        reused: false,
    })
}
