//! `openmid ctl run command`: runs a program (or a script through an interpreter) on a
//! MID and prints its stdout and stderr to ours as they arrive — following the
//! action's output route — then exits as the command did, so a shell script can use
//! it like the program itself.

use super::rows_output::RowsPrinter;
use anyhow::{Context, Result, anyhow};
use openmid_client::{ActionOutcome, ApiClient, ClientError};
use openmid_proto::api::CommandAction;
use openmid_proto::command::{CommandEnd, CommandExit};
use openmid_proto::command_output::{OutputEnd, OutputLine, OutputStream};
use openmid_proto::ecc::State;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Exit code when the command ran past its time (as `timeout(1)` uses).
const EXIT_TIMEOUT: u8 = 124;
/// Times a broken follow is resumed (from the last line seen) before giving up.
const RESUMES: u32 = 5;

/// Arguments of `ctl run command`.
#[derive(clap::Args)]
pub struct CommandRun {
    /// MID name (or give --agent).
    #[arg(long, conflicts_with = "agent", required_unless_present = "agent")]
    mid: Option<String>,
    /// mid.server.NAME, mid.cluster.NAME or mid.auto.
    #[arg(long)]
    agent: Option<String>,
    /// Longest run on the MID, in milliseconds (the MID's policy caps it).
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Environment variable `NAME=value` for the program (repeatable).
    #[arg(long = "env", short = 'e')]
    env: Vec<String>,
    /// Working directory on the MID.
    #[arg(long)]
    cwd: Option<String>,
    /// A script file sent to PROGRAM, an interpreter the MID's policy lists.
    #[arg(long)]
    script: Option<PathBuf>,
    /// Absolute path of the program on the MID host, then its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

/// Runs it; the exit code is the command's (128+signal when a signal ended it, 124 on
/// timeout, 1 when it could not run).
pub async fn run_command(api: &ApiClient, run: CommandRun) -> Result<ExitCode> {
    let (program, args) = run
        .command
        .split_first()
        .ok_or_else(|| anyhow!("give the program after `--`"))?;
    let mut env = BTreeMap::new();
    for e in &run.env {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| anyhow!("--env `{e}`: expected `NAME=value`"))?;
        env.insert(k.to_string(), v.to_string());
    }
    let script = match &run.script {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the script {}", path.display()))?,
        ),
        None => None,
    };
    let action = CommandAction {
        mid: run.mid,
        agent: run.agent,
        program: program.clone(),
        args: args.to_vec(),
        env,
        cwd: run.cwd,
        timeout_ms: run.timeout_ms,
        script,
        ..CommandAction::default()
    };
    let output_id = match api.command_action(&action, Duration::ZERO).await? {
        ActionOutcome::Pending(p) => p.output_id,
        ActionOutcome::Done(r) => r.output_id,
    };
    let end = follow(api, &output_id, &mut RowsPrinter::default()).await?;
    Ok(ExitCode::from(exit_code(&end)))
}

/// Copies an action's streamed output to stdout and stderr until it ends (for any
/// action that streams; `ctl run NAME --follow`), pages of rows through `rows`.
pub(super) async fn copy_output(
    api: &ApiClient,
    output_id: &str,
    rows: &mut RowsPrinter,
) -> Result<()> {
    follow(api, output_id, rows).await.map(|_| ())
}

/// Copies the output to stdout and stderr until the end line; resumes after the last
/// chunk seen when the connection breaks.
async fn follow(api: &ApiClient, output_id: &str, rows: &mut RowsPrinter) -> Result<OutputEnd> {
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut after = None;
    let mut failures = 0;
    loop {
        let broken = match api.follow_output(output_id, after, true).await {
            Ok(mut lines) => loop {
                let line = match lines.next().await {
                    Ok(Some(line)) => line,
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                };
                match &line {
                    OutputLine::End { end } => return Ok(end.clone()),
                    OutputLine::Restart { attempt } => {
                        eprintln!(
                            "[openmid: the command was started again (attempt {attempt}); its output so far is repeated]"
                        );
                        after = None;
                    }
                    OutputLine::Truncated {
                        stream, truncated, ..
                    } => eprintln!(
                        "[openmid: {} bytes more of {} were not streamed]",
                        truncated.dropped_bytes,
                        stream.as_str()
                    ),
                    OutputLine::Chunk { stream, seq, .. } => {
                        let bytes = line
                            .bytes()
                            .ok_or_else(|| anyhow!("chunk {seq} is not valid base64"))?;
                        match stream {
                            OutputStream::Stdout => {
                                stdout.write_all(&bytes).await?;
                                stdout.flush().await?;
                            }
                            OutputStream::Stderr => {
                                stderr.write_all(&bytes).await?;
                                stderr.flush().await?;
                            }
                            OutputStream::Rows => rows.page(&bytes)?,
                        }
                        after = Some(*seq);
                        failures = 0;
                    }
                }
            },
            Err(e @ ClientError::Api { .. }) => return Err(e.into()),
            Err(e) => Some(e),
        };
        failures += 1;
        if failures > RESUMES {
            return Err(match broken {
                Some(e) => anyhow::Error::new(e).context("following the output"),
                None => anyhow!("the output route kept ending without an end line"),
            });
        }
        tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
    }
}

/// The exit code a shell expects of the command.
fn exit_code(end: &OutputEnd) -> u8 {
    if end.ended_by == Some(CommandEnd::Timeout) {
        eprintln!("[openmid: the command timed out]");
        return EXIT_TIMEOUT;
    }
    match &end.exit {
        Some(CommandExit::Code { code }) => u8::try_from(*code & 0xff).unwrap_or(1),
        Some(CommandExit::Signal { number, name }) => {
            eprintln!("[openmid: the command was ended by {name}]");
            u8::try_from(128 + (*number & 0x7f)).unwrap_or(1)
        }
        None => {
            let state = match end.state {
                State::Cancelled => "was cancelled",
                _ => "failed",
            };
            eprintln!(
                "[openmid: the command {state}: {}]",
                end.error.as_deref().unwrap_or("no reason given")
            );
            1
        }
    }
}
