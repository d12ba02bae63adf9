//! What a finished run reports to the instance: how the process ended (an exit code or
//! the signal that killed it), why the run ended (on its own, by timeout, by
//! cancellation), when, and how much output each stream produced, kept and dropped.
//! It is serialized as JSON into the job's result, so its fields are stable names.

use super::chunker::StreamTotals;
use serde::{Deserialize, Serialize};
use std::process::ExitStatus;

/// The result of a run that started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// How the process ended.
    pub exit: Exit,
    /// Why the run ended.
    pub ended_by: EndedBy,
    /// When the process was started, Unix milliseconds.
    pub started_at_ms: i64,
    /// When it had been reaped and its output read, Unix milliseconds.
    pub ended_at_ms: i64,
    /// From start to end, measured on the monotonic clock.
    pub duration_ms: u64,
    /// Standard output's counts.
    pub stdout: StreamTotals,
    /// Standard error's counts.
    pub stderr: StreamTotals,
    /// The program exited but left processes of its group running (a background job
    /// it forgot); they were stopped so nothing outlives the run.
    pub strays_stopped: bool,
    /// Processes of the group still running after SIGKILL: ones the MID may not
    /// signal (another user's, e.g. the root child of `sudo`). Nonzero means the run
    /// left something behind that an operator must look at.
    pub survivors: u32,
}

impl Outcome {
    /// Whether the program ran to its end and exited with 0.
    pub fn succeeded(&self) -> bool {
        self.ended_by == EndedBy::Exit && self.exit == Exit::Code { code: 0 }
    }
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Exit {
    /// It exited with this code.
    Code {
        /// The exit code (0–255).
        code: i32,
    },
    /// A signal ended it.
    Signal {
        /// The signal number, e.g. 9.
        number: i32,
        /// Its name, e.g. `SIGKILL` (`SIG<number>` when not a standard one).
        name: String,
    },
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Code { code },
            (None, Some(number)) => Self::Signal {
                number,
                name: signal_name(number),
            },
            // `wait` reports neither only for a stopped or continued child, which a
            // reaped one is not; keep the raw status rather than inventing a code.
            (None, None) => Self::Code {
                code: status.into_raw(),
            },
        }
    }
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    /// The program ended by itself (whatever its exit code or signal).
    Exit,
    /// It ran past its timeout and was stopped.
    Timeout,
    /// The job was cancelled (or its lease lost) and the program was stopped.
    Cancelled,
}

/// The conventional name of a signal number on this platform.
pub fn signal_name(number: i32) -> String {
    let name = match number {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("SIG{number}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_have_their_names() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(200), "SIG200");
    }

    #[test]
    fn an_outcome_serializes_with_stable_names() {
        let outcome = Outcome {
            exit: Exit::Signal {
                number: 9,
                name: "SIGKILL".into(),
            },
            ended_by: EndedBy::Timeout,
            started_at_ms: 1,
            ended_at_ms: 2,
            duration_ms: 1,
            stdout: StreamTotals::default(),
            stderr: StreamTotals::default(),
            strays_stopped: false,
            survivors: 0,
        };
        let json = serde_json::to_value(&outcome).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["exit"]["kind"], "signal");
        assert_eq!(json["exit"]["name"], "SIGKILL");
        assert_eq!(json["ended_by"], "timeout");
        assert_eq!(json["stdout"]["dropped_bytes"], 0);
        let back: Outcome = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, outcome);
    }
}
