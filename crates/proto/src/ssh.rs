//! Payloads of the `SSHCommand` topic: a command line (or a script handed to an
//! interpreter) run on a remote host over SSH, by the MID, as the credential's user —
//! optionally under `sudo`. The host key is verified as [`HostKeyPolicy`] says before
//! anything is sent; output streams back while the command runs, like `Command`'s.

use crate::command::{CommandEnd, CommandExit, StreamOutput};
use crate::credential::CredentialRef;
use crate::probe::{FieldError, Target, field_error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

mod host_key;

pub use host_key::{HostKeyPolicy, PinnedKey, blob_algorithm, fingerprint, show_fingerprint};

/// The SSH port when the request names none.
pub const DEFAULT_PORT: u16 = 22;
/// Longest run when the request gives no `timeout_ms`: SSH has no policy entry to
/// bound it, so every job gets a deadline.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Connections kept per (host, port, user, credential) when the request gives no
/// `pool_size`.
pub const DEFAULT_POOL_SIZE: u32 = 4;
/// Largest `pool_size` a request may ask for (OpenSSH's `MaxStartups` begins refusing
/// at 10 unauthenticated connections; a pool far larger would trip it).
pub const MAX_POOL_SIZE: u32 = 32;
/// Largest command line. Linux caps one argument at 128 KiB and the server hands the
/// whole line to the login shell as one; the MID's wrapper needs some of that.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// The default script runner.
pub const DEFAULT_INTERPRETER: &str = "/bin/sh";
/// Input of an `SSHCommand` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshRequest {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (default 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// User to log in as, overriding the credential's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// An `ssh_password` or `ssh_key` credential.
    pub credential: CredentialRef,
    /// How the host key is verified (default: the MID's known_hosts file).
    #[serde(default)]
    pub host_key: HostKeyPolicy,
    /// A command line, run by the user's login shell (which must be POSIX-like: sh,
    /// bash, dash, ksh, zsh) as `ssh host 'command'` would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// A script body, sent to `interpreter` on its standard input (so it needs no
    /// file on the target and no length limit of a command line applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// The script's runner, a command line reading its program from standard input
    /// (default `/bin/sh`; `/usr/bin/python3`, `bash` …). Only with `script`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// Run as root through `sudo`; the password of an `ssh_password` credential is fed
    /// to it on standard input, never shown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sudo: bool,
    /// Environment variables (names of letters, digits and `_`). Sent as SSH `env`
    /// requests; those the server does not accept (`AcceptEnv`), and all of them under
    /// `sudo`, are exported by the command line instead.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Text written to the command's standard input, then closed. Not with `script`
    /// (the script travels on standard input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Longest the whole job may take, connecting included, in milliseconds (default
    /// 60 000); the command is then signalled and its channel closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Bytes of each stream kept in the result (default 1 MiB, at most 16 MiB); past it
    /// the output ends with a marker saying how much was dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Most connections the MID keeps open to this host for this user and credential
    /// (default 4, at most 32); more jobs at once wait for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
}

impl SshRequest {
    /// Runs `command` on `host` with `credential`, everything else default.
    pub fn new(host: impl Into<String>, credential: CredentialRef, command: &str) -> Self {
        Self {
            host: host.into(),
            port: None,
            username: None,
            credential,
            host_key: HostKeyPolicy::default(),
            command: Some(command.to_string()),
            script: None,
            interpreter: None,
            sudo: false,
            env: BTreeMap::new(),
            stdin: None,
            timeout_ms: None,
            max_output_bytes: None,
            pool_size: None,
        }
    }

    /// The port connected to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    /// The longest the job may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS))
    }

    /// Connections kept at most for this job's pool.
    pub fn pool_size(&self) -> u32 {
        self.pool_size.unwrap_or(DEFAULT_POOL_SIZE)
    }

    /// Checks what can be checked without the MID: the host's syntax, exactly one of
    /// `command` and `script`, names, sizes and limits. Each error names its field.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_host(&self.host)?;
        if self.port == Some(0) {
            return Err(field_error("port", "must be 1–65535"));
        }
        if let Some(user) = &self.username
            && (user.is_empty() || user.len() > 256 || user.chars().any(char::is_control))
        {
            return Err(field_error(
                "username",
                "must be 1–256 characters without control characters",
            ));
        }
        match (&self.command, &self.script) {
            (Some(_), Some(_)) => {
                return Err(field_error(
                    "script",
                    "give either command or script, not both",
                ));
            }
            (None, None) => return Err(field_error("command", "give command or script")),
            (Some(command), None) => {
                if command.trim().is_empty() {
                    return Err(field_error("command", "must not be empty"));
                }
                if command.contains('\0') {
                    return Err(field_error("command", "must not contain NUL characters"));
                }
                if command.len() > MAX_COMMAND_BYTES {
                    return Err(field_error(
                        "command",
                        format!(
                            "longer than {MAX_COMMAND_BYTES} bytes: send it as a script instead"
                        ),
                    ));
                }
                if self.interpreter.is_some() {
                    return Err(field_error("interpreter", "is only used with script"));
                }
            }
            (None, Some(script)) => {
                if script.len() > crate::command::MAX_INPUT_BYTES {
                    return Err(field_error(
                        "script",
                        format!("larger than {} bytes", crate::command::MAX_INPUT_BYTES),
                    ));
                }
                if self.stdin.is_some() {
                    return Err(field_error(
                        "stdin",
                        "cannot be given with script: the script is sent to its interpreter on standard input",
                    ));
                }
            }
        }
        if let Some(interpreter) = &self.interpreter
            && (interpreter.trim().is_empty()
                || interpreter.len() > 1024
                || interpreter.chars().any(char::is_control))
        {
            return Err(field_error(
                "interpreter",
                "must be a command line of 1–1024 characters without control characters",
            ));
        }
        if self.env.len() > 256 {
            return Err(field_error("env", "at most 256 variables"));
        }
        for (name, value) in &self.env {
            if !is_env_name(name) || value.contains('\0') {
                return Err(field_error(
                    "env",
                    format!(
                        "`{name}` is not a usable variable name (letters, digits and _, not starting with a digit), or its value holds NUL"
                    ),
                ));
            }
        }
        if self
            .stdin
            .as_ref()
            .is_some_and(|t| t.len() > crate::command::MAX_INPUT_BYTES)
        {
            return Err(field_error(
                "stdin",
                format!("larger than {} bytes", crate::command::MAX_INPUT_BYTES),
            ));
        }
        if let Some(t) = self.timeout_ms
            && !(1..=crate::command::MAX_TIMEOUT_MS).contains(&t)
        {
            return Err(field_error(
                "timeout_ms",
                format!("must be 1–{}, got {t}", crate::command::MAX_TIMEOUT_MS),
            ));
        }
        if let Some(m) = self.max_output_bytes
            && m > crate::command::MAX_OUTPUT_BYTES
        {
            return Err(field_error(
                "max_output_bytes",
                format!("at most {}, got {m}", crate::command::MAX_OUTPUT_BYTES),
            ));
        }
        if let Some(n) = self.pool_size
            && !(1..=MAX_POOL_SIZE).contains(&n)
        {
            return Err(field_error(
                "pool_size",
                format!("must be 1–{MAX_POOL_SIZE}, got {n}"),
            ));
        }
        self.host_key.validate()
    }
}
/// Whether `name` can be exported by a POSIX shell.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
fn check_host(host: &str) -> Result<(), FieldError> {
    if host.starts_with('[') {
        return Err(field_error(
            "host",
            "write an IPv6 address without brackets (the port goes in `port`)",
        ));
    }
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let good = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if good {
        Ok(())
    } else {
        Err(field_error(
            "host",
            format!("`{host}` is neither a host name nor an IP address"),
        ))
    }
}

/// Result of an `SSHCommand` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SshResponse {
    /// Exit code, or the signal that ended the remote command.
    pub exit: CommandExit,
    /// What ended it.
    pub ended_by: CommandEnd,
    /// Standard output.
    pub stdout: StreamOutput,
    /// Standard error.
    pub stderr: StreamOutput,
    /// When the command started, RFC 3339.
    pub started_at: String,
    /// How long it ran (connecting not included).
    pub duration_ms: u64,
    /// The SHA-256 fingerprint of the host key the server presented.
    pub host_key: String,
    /// This run pinned that key (trust on first use saw the host for the first time).
    pub host_key_pinned: bool,
    /// The command ran on a connection kept from an earlier job.
    pub reused_connection: bool,
}

impl SshResponse {
    /// Whether the command ran to its end and exited 0.
    pub fn succeeded(&self) -> bool {
        self.ended_by == CommandEnd::Exit && self.exit == CommandExit::Code { code: 0 }
    }
}

/// The `SSHCommand` topic.
pub struct SshCommand;

impl crate::probe::Contract for SshCommand {
    const TOPIC: crate::ecc::Topic = crate::ecc::Topic::SSHCommand;
    type Request = SshRequest;
    type Response = SshResponse;

    fn validate(req: &SshRequest) -> Result<(), FieldError> {
        req.validate()
    }

    fn target(req: &SshRequest) -> Option<Target> {
        Some(Target {
            host: req.host.clone(),
            port: Some(req.port()),
        })
    }

    fn credential(req: &SshRequest) -> Option<&CredentialRef> {
        Some(&req.credential)
    }

    /// Always a deadline: the request's, or [`DEFAULT_TIMEOUT_MS`].
    fn timeout(req: &SshRequest) -> Option<Duration> {
        Some(req.timeout())
    }
}

/// `POST /api/v1/actions/ssh`: a command or a script run over SSH on the host of an
/// alias of kind `ssh`, with the alias's credential, host-key policy and MIDs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SshAction {
    /// The alias (kind `ssh`).
    pub alias: String,
    /// The command line, run by the remote user's login shell (or give `script`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// A script body for `interpreter` (default `/bin/sh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// The script's interpreter on the remote host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// Run it with sudo, giving the credential's password (never echoed).
    #[serde(default)]
    pub sudo: bool,
    /// Environment variables (the server must accept them: `AcceptEnv`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Standard input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Longest run in milliseconds (default: the alias's `timeout_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Bytes of each stream kept in the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Never run it twice: after a lost MID it ends in `error` instead.
    #[serde(default)]
    pub at_most_once: bool,
    /// Caller's correlator for the output record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlator: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFBstXUVl6NNyt10/rWLswLrTskXrU3lhX9LVIEb187s test";

    fn request() -> SshRequest {
        SshRequest::new(
            "db1.corp",
            CredentialRef {
                id: "c1".into(),
                name: "root-key".into(),
            },
            "uptime",
        )
    }

    fn field(r: &SshRequest) -> Option<String> {
        r.validate().err().map(|e| e.field)
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        assert_eq!(field(&request()), None);
        type Change = Box<dyn Fn(&mut SshRequest)>;
        let cases: Vec<(&str, Change)> = vec![
            ("host", Box::new(|r| r.host = "a b".into())),
            ("host", Box::new(|r| r.host = "[::1]".into())),
            ("host", Box::new(|r| r.host = String::new())),
            ("port", Box::new(|r| r.port = Some(0))),
            ("username", Box::new(|r| r.username = Some(String::new()))),
            ("username", Box::new(|r| r.username = Some("a\nb".into()))),
            ("script", Box::new(|r| r.script = Some("echo".into()))),
            ("command", Box::new(|r| r.command = None)),
            ("command", Box::new(|r| r.command = Some("  ".into()))),
            ("command", Box::new(|r| r.command = Some("a\0b".into()))),
            (
                "command",
                Box::new(|r| r.command = Some("x".repeat(MAX_COMMAND_BYTES + 1))),
            ),
            (
                "interpreter",
                Box::new(|r| r.interpreter = Some("/bin/sh".into())),
            ),
            (
                "env",
                Box::new(|r| {
                    r.env.insert("1A".into(), "x".into());
                }),
            ),
            (
                "env",
                Box::new(|r| {
                    r.env.insert("A-B".into(), "x".into());
                }),
            ),
            ("timeout_ms", Box::new(|r| r.timeout_ms = Some(0))),
            (
                "max_output_bytes",
                Box::new(|r| r.max_output_bytes = Some(crate::command::MAX_OUTPUT_BYTES + 1)),
            ),
            ("pool_size", Box::new(|r| r.pool_size = Some(0))),
            (
                "pool_size",
                Box::new(|r| r.pool_size = Some(MAX_POOL_SIZE + 1)),
            ),
            (
                "host_key.path",
                Box::new(|r| {
                    r.host_key = HostKeyPolicy::KnownHosts {
                        path: Some("known_hosts".into()),
                    }
                }),
            ),
            (
                "host_key.key",
                Box::new(|r| {
                    r.host_key = HostKeyPolicy::Pinned {
                        key: "SHA256:short".into(),
                    }
                }),
            ),
            (
                "host_key.key",
                Box::new(|r| {
                    r.host_key = HostKeyPolicy::Pinned {
                        key: "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIFBstXUVl6NNyt10/rWLswLrTskXrU3lhX9LVIEb187s".into(),
                    }
                }),
            ),
        ];
        for (expected, change) in cases {
            let mut r = request();
            change(&mut r);
            assert_eq!(field(&r).as_deref(), Some(expected), "{r:?}");
        }
    }

    #[test]
    fn scripts_travel_on_stdin() {
        let mut r = request();
        r.command = None;
        r.script = Some("echo hi\n".into());
        r.interpreter = Some("/usr/bin/python3".into());
        assert_eq!(field(&r), None);
        r.stdin = Some("data".into());
        assert_eq!(field(&r).as_deref(), Some("stdin"));
    }

    #[test]
    fn ipv6_and_pins_are_accepted() {
        let mut r = request();
        r.host = "fd00::5".into();
        r.host_key = HostKeyPolicy::Pinned {
            key: ED25519.into(),
        };
        assert_eq!(field(&r), None);
        let pin = PinnedKey::parse(ED25519).expect("key");
        let shown = show_fingerprint(&pin.sha256());
        r.host_key = HostKeyPolicy::Pinned { key: shown.clone() };
        assert_eq!(field(&r), None);
        assert_eq!(
            PinnedKey::parse(&shown).expect("fingerprint").sha256(),
            pin.sha256()
        );
    }

    #[test]
    fn payloads_parse_with_defaults_and_refuse_unknown_fields() {
        let r: SshRequest = serde_json::from_value(json!({
            "host": "h", "credential": {"id": "c", "name": "n"}, "command": "id",
            "host_key": {"mode": "trust_on_first_use"}
        }))
        .expect("parse");
        assert_eq!((r.port(), r.sudo, r.pool_size()), (22, false, 4));
        assert_eq!(r.host_key, HostKeyPolicy::TrustOnFirstUse);
        let r: SshRequest = serde_json::from_value(json!({
            "host": "h", "credential": {"id": "c", "name": "n"}, "command": "id"
        }))
        .expect("parse");
        assert_eq!(r.host_key, HostKeyPolicy::KnownHosts { path: None });
        let bad: Result<SshRequest, _> = serde_json::from_value(json!({
            "host": "h", "credential": {"id": "c", "name": "n"}, "command": "id", "shell": "bash"
        }));
        assert!(bad.is_err());
        let bad: Result<SshRequest, _> = serde_json::from_value(json!({
            "host": "h", "command": "id"
        }));
        assert!(bad.is_err(), "the credential is required");
        let bad: Result<SshRequest, _> = serde_json::from_value(json!({
            "host": "h", "credential": {"id": "c", "name": "n"}, "command": "id",
            "host_key": {"mode": "pinned", "key": "SHA256:x", "extra": 1}
        }));
        assert!(bad.is_err());
    }

    #[test]
    fn the_contract_targets_host_and_port() {
        use crate::probe::Contract;
        let mut r = request();
        r.port = Some(2222);
        let t = SshCommand::target(&r).expect("target");
        assert_eq!((t.host.as_str(), t.port), ("db1.corp", Some(2222)));
        assert_eq!(
            SshCommand::credential(&r).map(|c| c.id.as_str()),
            Some("c1")
        );
        assert_eq!(
            SshCommand::timeout(&r),
            Some(Duration::from_millis(DEFAULT_TIMEOUT_MS))
        );
    }
}
