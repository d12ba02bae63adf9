//! Why a run could not start or could not be seen through. Messages name the program,
//! the directory or the stream and the OS error — never environment values or
//! standard input, which may carry secrets the job was given.

use super::chunker::Stream;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// A run that failed (as opposed to a program that failed, which is an
/// [`Outcome`](super::Outcome) with its exit code).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No file at the program's path (or, for a script, at its `#!` interpreter).
    #[error("program {program} not found: install it or fix the path in the job and policy")]
    ProgramNotFound {
        /// The path that was run.
        program: PathBuf,
    },
    /// The file exists but may not be executed (no execute bit, a directory, or the
    /// MID's user lacks permission).
    #[error("program {program} is not executable by the MID's user")]
    NotExecutable {
        /// The path that was run.
        program: PathBuf,
    },
    /// The working directory does not exist (any more: it was there when the policy
    /// resolved it).
    #[error("working directory {cwd} does not exist")]
    CwdMissing {
        /// The resolved directory.
        cwd: PathBuf,
    },
    /// The working directory is not a directory.
    #[error("working directory {cwd} is not a directory")]
    CwdNotDirectory {
        /// The resolved directory.
        cwd: PathBuf,
    },
    /// The OS refused to start the process.
    #[error("could not start {program}: {source}")]
    Spawn {
        /// The path that was run.
        program: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Reading an output pipe failed.
    #[error("reading {stream} of the process: {source}")]
    Read {
        /// The stream.
        stream: Stream,
        /// The OS error.
        source: io::Error,
    },
    /// Waiting for the process or signalling its group failed.
    #[error("controlling the process group: {source}")]
    Control {
        /// The OS error.
        source: io::Error,
    },
    /// The output sink went away (its receiver was dropped); the process was stopped,
    /// since nobody could see what it does.
    #[error("the output sink was closed; the process was stopped")]
    SinkClosed,
    /// The process was over but the sink took no output for this long; the run gave up
    /// rather than hang the job.
    #[error("the output sink accepted nothing for {waited:?} after the process ended")]
    SinkStalled {
        /// How long it waited.
        waited: Duration,
    },
}
