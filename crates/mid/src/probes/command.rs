//! `Command`: runs a program — or a script body handed to an interpreter — on the MID's
//! own host, after the egress policy allowed exactly this program, these arguments,
//! this working directory and these environment names. No shell is involved unless the
//! policy lists one as an interpreter. The run stops with its whole process group on
//! timeout, on cancellation and when the job's lease is lost; the output kept is
//! capped per stream, never silently (the result says how much was dropped). While it
//! runs, its output streams to the instance ([`super::output_stream`]), far past the
//! result's cap, for clients following it.

use super::output_stream::CommandSink;
use super::{JobContext, ProbeContext, ProbeError};
use crate::exec::{self, CommandSpec, ExecOptions};
use base64::Engine as _;
use openmid_proto::command::{
    CommandEnd, CommandExit, CommandRequest, CommandResponse, DEFAULT_MAX_OUTPUT_BYTES,
    StreamOutput,
};
use openmid_proto::command_output::MAX_STREAMED_BYTES;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `Command` entry of the [registry](super::registry). It watches the job's
/// cancellation itself: the process group must be stopped and the output so far kept.
pub struct CommandProbe;

impl super::registry::Probe for CommandProbe {
    type Contract = openmid_proto::command::Command;
    const WATCHES_CANCEL: bool = true;

    fn run<'a>(
        &'a self,
        req: CommandRequest,
        call: super::registry::Call<'a>,
    ) -> futures::future::BoxFuture<'a, Result<super::registry::Ran<CommandResponse>, ProbeError>>
    {
        Box::pin(async move {
            Ok(super::registry::Ran::response(
                run(req, call.job, call.ctx).await?,
            ))
        })
    }
}

/// Runs one command job.
pub async fn run(
    req: CommandRequest,
    job: &JobContext,
    ctx: &ProbeContext,
) -> Result<CommandResponse, ProbeError> {
    req.validate()
        .map_err(|e| ProbeError::InvalidInput(e.to_string()))?;
    let program = Path::new(&req.program);
    let names: Vec<&str> = req.env.keys().map(String::as_str).collect();
    let cwd = req.cwd.as_deref().map(Path::new);
    let timeout = req.timeout_ms.map(Duration::from_millis);
    let allowed = match &req.script {
        Some(_) => ctx
            .policy
            .check_script(program, &req.args, cwd, &names, timeout)?,
        None => ctx
            .policy
            .check_command(program, &req.args, cwd, &names, timeout)?,
    };
    let mut args = req.args.clone();
    // The script lives in a private file for the run's length, named by the job.
    let script = match &req.script {
        Some(body) => {
            let file = ScriptFile::write(ctx, job, body).await?;
            args.push(file.path.display().to_string());
            Some(file)
        }
        None => None,
    };
    let mut spec = CommandSpec::approved(program, args, &allowed).with_env(req.env.clone());
    if let Some(stdin) = &req.stdin {
        spec = spec.with_stdin(stdin.clone().into_bytes());
    }
    let max_kept = req.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES);
    let mut options = ExecOptions {
        max_output_bytes: max_kept,
        ..ExecOptions::default()
    };
    let mut sink = CommandSink::new(
        max_kept,
        ctx.instance.clone(),
        &job.id,
        options.chunk_bytes,
        &job.cancel,
    );
    // Streamed, the output is capped far above the result's share of it.
    if sink.streams() {
        options.max_output_bytes = MAX_STREAMED_BYTES.max(max_kept);
    }
    let outcome = exec::run(spec, &options, &mut sink, &job.cancel).await;
    drop(script);
    // Every chunk reaches the instance before the result does, so a follower that
    // sees the output finished has seen all of it.
    let [stdout, stderr] = sink.finish().await;
    let outcome = outcome.map_err(|e| ProbeError::Target(e.to_string()))?;
    if outcome.survivors > 0 {
        tracing::warn!(output = %job.id.output_id, survivors = outcome.survivors, "processes of a command's group could not be stopped");
    }
    Ok(CommandResponse {
        exit: match outcome.exit {
            exec::Exit::Code { code } => CommandExit::Code { code },
            exec::Exit::Signal { number, name } => CommandExit::Signal { number, name },
        },
        ended_by: match outcome.ended_by {
            exec::EndedBy::Exit => CommandEnd::Exit,
            exec::EndedBy::Timeout => CommandEnd::Timeout,
            exec::EndedBy::Cancelled => CommandEnd::Cancelled,
        },
        stdout: kept(stdout, outcome.stdout.seen_bytes),
        stderr: kept(stderr, outcome.stderr.seen_bytes),
        started_at: openmid_proto::time::rfc3339(outcome.started_at_ms),
        duration_ms: outcome.duration_ms,
        allowed_by: allowed.rule,
    })
}

/// One stream's kept bytes — as text when they are UTF-8 without NUL bytes, else
/// base64 — and the rest of what the program wrote counted as dropped (it was
/// streamed, or read and discarded).
pub(crate) fn kept(bytes: Vec<u8>, seen: u64) -> StreamOutput {
    let dropped = seen.saturating_sub(bytes.len() as u64);
    // NUL bytes are valid UTF-8 but binary in practice, and each costs six bytes as a
    // JSON escape: such output travels as base64 (a third more, not six times).
    let base64 = |raw: &[u8]| StreamOutput {
        text: base64::engine::general_purpose::STANDARD.encode(raw),
        base64: true,
        bytes: seen,
        dropped_bytes: dropped,
    };
    match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => StreamOutput {
            text,
            base64: false,
            bytes: seen,
            dropped_bytes: dropped,
        },
        Ok(text) => base64(text.as_bytes()),
        Err(e) => base64(e.as_bytes()),
    }
}

/// A script body in a file only the MID can read, removed when dropped.
struct ScriptFile {
    path: PathBuf,
}

impl ScriptFile {
    async fn write(ctx: &ProbeContext, job: &JobContext, body: &str) -> Result<Self, ProbeError> {
        let dir = ctx.scripts_dir();
        // The id comes from the instance: hex-encoded it cannot name another path.
        let path = dir.join(format!(
            "{}.{}",
            hex::encode(job.id.output_id.as_bytes()),
            job.id.attempt
        ));
        let body = body.to_string();
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write as _;
            use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&target)?;
            file.write_all(body.as_bytes())?;
            file.sync_all()
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(Self { path }),
            Ok(Err(e)) => Err(ProbeError::Target(format!(
                "writing the script to {}: {e}",
                path.display()
            ))),
            Err(e) => Err(ProbeError::Target(format!("writing the script: {e}"))),
        }
    }
}

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
