//! Running programs on the MID host for the `Command` probe: start an approved
//! command without a shell, stream its output to the job as it comes, and make sure it
//! ends — with its whole process group — when it times out, when the job is cancelled
//! or its lease is lost, or when the job's future is dropped.
//!
//! This module does not decide *whether* a command may run: the probe asks
//! [`EgressPolicy::check_command`](crate::policy::EgressPolicy::check_command) (or
//! `check_script`) first and builds the [`CommandSpec`] from the [`Allowed`] it gets:
//!
//! ```no_run
//! # async fn probe(
//! #     policy: &openmid_mid::policy::EgressPolicy,
//! #     env: std::collections::BTreeMap<String, String>,
//! #     cancel: tokio_util::sync::CancellationToken,
//! #     mut sink: tokio::sync::mpsc::Sender<openmid_mid::exec::OutputChunk>,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use openmid_mid::exec::{self, CommandSpec, ExecOptions};
//! use std::path::Path;
//!
//! let program = Path::new("/usr/bin/df");
//! let args = vec!["-h".to_string()];
//! let names: Vec<&str> = env.keys().map(String::as_str).collect();
//! let allowed = policy.check_command(program, &args, None, &names, None)?;
//! let spec = CommandSpec::approved(program, args, &allowed).with_env(env);
//! let outcome = exec::run(spec, &ExecOptions::default(), &mut sink, &cancel).await?;
//! # let _ = outcome; Ok(()) }
//! ```
//!
//! Parts: `spawn` starts the process, `group` stops its group, `chunker` cuts and caps
//! a stream, `pump` reads both streams into the [`OutputSink`], `run` ties them to the
//! timeout and cancellation, `outcome` is what the instance gets back.
//! Linux-oriented (process groups, `/proc`); other Unixes work without the zombie check.
//!
//! [`Allowed`]: crate::policy::Allowed

mod chunker;
mod error;
mod group;
mod outcome;
mod pump;
mod run;
mod sink;
mod spawn;
#[cfg(test)]
mod tests;

pub use chunker::{ChunkBody, OutputChunk, Stream, StreamTotals};
pub use error::ExecError;
pub use outcome::{EndedBy, Exit, Outcome, signal_name};
/// The two-stream reader, for probes whose output does not come from local pipes (SSH).
pub(crate) use pump::Pump;
pub use run::{ExecOptions, run};
pub use sink::{OutputSink, SinkClosed};
pub use spawn::{CommandSpec, MINIMAL_PATH, PathEnv};
