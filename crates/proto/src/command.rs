//! Payloads of the `Command` topic: a program (or a script handed to an allowed
//! interpreter) run on the MID's own host, under the MID's egress policy — no shell
//! unless the policy allows one as an interpreter.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Default longest run of a command when the request gives none (the policy's
/// `max_runtime_secs` may allow less or more).
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Longest run a request may ask for.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// Output of each stream kept in the result unless the request says otherwise.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1024 * 1024;
/// Most output of each stream a request may ask to keep in the result.
pub const MAX_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;
/// Largest stdin or script body.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Input of a `Command` output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// Absolute path of the program (with `script`: of the interpreter).
    pub program: String,
    /// Arguments, passed as they are (no shell splits or expands them).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment of the process: only these variables (the MID's own are not
    /// passed on), each allowed by the policy.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Text written to the program's standard input, then closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Working directory (allowed by the policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Longest run in milliseconds (default 60 000); the policy caps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A script body for `program`, an interpreter the policy lists: written to a
    /// private file on the MID that is passed as the last argument.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// Bytes of each stream kept in the result (default 1 MiB, at most 16 MiB); past it
    /// the output ends with a marker saying how much was dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
}

/// Why a command request cannot be run: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CommandInvalid {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> CommandInvalid {
    CommandInvalid {
        field,
        message: message.into(),
    }
}

impl CommandRequest {
    /// Runs `program` with `args`, everything else default.
    pub fn new(program: impl Into<String>, args: &[&str]) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Self::default()
        }
    }

    /// Checks what can be checked without the MID's policy: an absolute program path,
    /// sane environment names, sizes and limits.
    pub fn validate(&self) -> Result<(), CommandInvalid> {
        if !self.program.starts_with('/') {
            return Err(invalid(
                "program",
                format!(
                    "`{}` is not an absolute path (no PATH lookup is made)",
                    self.program
                ),
            ));
        }
        if self.program.contains('\0') || self.args.iter().any(|a| a.contains('\0')) {
            return Err(invalid("args", "must not contain NUL characters"));
        }
        for (name, value) in &self.env {
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                return Err(invalid(
                    "env",
                    format!("`{name}` is not a usable variable name (or its value holds NUL)"),
                ));
            }
        }
        if let Some(cwd) = &self.cwd
            && !cwd.starts_with('/')
        {
            return Err(invalid("cwd", "must be an absolute path"));
        }
        if let Some(t) = self.timeout_ms
            && !(1..=MAX_TIMEOUT_MS).contains(&t)
        {
            return Err(invalid(
                "timeout_ms",
                format!("must be 1–{MAX_TIMEOUT_MS}, got {t}"),
            ));
        }
        if let Some(m) = self.max_output_bytes
            && m > MAX_OUTPUT_BYTES
        {
            return Err(invalid(
                "max_output_bytes",
                format!("at most {MAX_OUTPUT_BYTES}, got {m}"),
            ));
        }
        for (field, text) in [("stdin", &self.stdin), ("script", &self.script)] {
            if text.as_ref().is_some_and(|t| t.len() > MAX_INPUT_BYTES) {
                return Err(invalid(
                    field,
                    format!("larger than {MAX_INPUT_BYTES} bytes"),
                ));
            }
        }
        Ok(())
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommandExit {
    /// It exited with this code.
    Code {
        /// The exit code.
        code: i32,
    },
    /// A signal ended it.
    Signal {
        /// The signal number.
        number: i32,
        /// Its name (`SIGKILL`).
        name: String,
    },
}

/// What ended the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandEnd {
    /// The program ended by itself.
    Exit,
    /// It ran past its time and was stopped (its whole process group).
    Timeout,
    /// The job was cancelled, or its lease was lost, and it was stopped.
    Cancelled,
}

/// One output stream as kept in the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamOutput {
    /// The bytes kept, as text (invalid UTF-8 replaced) — or base64 when `base64`.
    pub text: String,
    /// `text` is base64: the output was not UTF-8, or held NUL bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub base64: bool,
    /// Bytes the program wrote.
    pub bytes: u64,
    /// Bytes dropped past `max_output_bytes` (never silently: nonzero here means the
    /// kept text ends where the cap was reached).
    pub dropped_bytes: u64,
}

/// Result of a `Command` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandResponse {
    /// Exit code or signal.
    pub exit: CommandExit,
    /// What ended it.
    pub ended_by: CommandEnd,
    /// Standard output.
    pub stdout: StreamOutput,
    /// Standard error.
    pub stderr: StreamOutput,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// How long it ran.
    pub duration_ms: u64,
    /// The policy entry that allowed it.
    pub allowed_by: String,
}

impl CommandResponse {
    /// Whether the program ran to its end and exited 0.
    pub fn succeeded(&self) -> bool {
        self.ended_by == CommandEnd::Exit && self.exit == CommandExit::Code { code: 0 }
    }
}

/// The `Command` topic.
pub struct Command;

impl crate::probe::Contract for Command {
    const TOPIC: crate::ecc::Topic = crate::ecc::Topic::Command;
    type Request = CommandRequest;
    type Response = CommandResponse;

    fn validate(req: &CommandRequest) -> Result<(), crate::probe::FieldError> {
        req.validate()
            .map_err(|e| crate::probe::field_error(e.field, e.message))
    }

    /// Runs on the MID's own host: no network target.
    fn target(_: &CommandRequest) -> Option<crate::probe::Target> {
        None
    }

    fn credential(_: &CommandRequest) -> Option<&crate::credential::CredentialRef> {
        None
    }

    fn timeout(req: &CommandRequest) -> Option<std::time::Duration> {
        req.timeout_ms.map(std::time::Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_field_by_field() {
        assert!(CommandRequest::new("/bin/echo", &["hi"]).validate().is_ok());
        let field = |r: CommandRequest| r.validate().err().map(|e| e.field);
        assert_eq!(field(CommandRequest::new("echo", &[])), Some("program"));
        assert_eq!(
            field(CommandRequest::new("/bin/echo", &["a\0b"])),
            Some("args")
        );
        let mut r = CommandRequest::new("/bin/echo", &[]);
        r.env.insert("A=B".into(), "x".into());
        assert_eq!(field(r), Some("env"));
        let mut r = CommandRequest::new("/bin/echo", &[]);
        r.cwd = Some("tmp".into());
        assert_eq!(field(r), Some("cwd"));
        let mut r = CommandRequest::new("/bin/echo", &[]);
        r.timeout_ms = Some(0);
        assert_eq!(field(r), Some("timeout_ms"));
        let mut r = CommandRequest::new("/bin/echo", &[]);
        r.max_output_bytes = Some(MAX_OUTPUT_BYTES + 1);
        assert_eq!(field(r), Some("max_output_bytes"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let parsed: Result<CommandRequest, _> =
            serde_json::from_value(serde_json::json!({"program": "/bin/true", "shell": true}));
        assert!(parsed.is_err());
    }
}
