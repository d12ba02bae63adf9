//! Starts a policy-approved program exactly as approved: the absolute path that was
//! checked (never looked up in `PATH`), its arguments passed as they are (no shell ever
//! parses them), only the environment the job gave (the MID's own variables — tokens,
//! proxies, its `PATH` — are not inherited), in the directory the policy resolved, as
//! the leader of a new process group so the whole group can be stopped
//! ([`group`](super::group)).

use super::error::ExecError;
use super::group::ProcessGroup;
use crate::policy::Allowed;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout, Command};

/// The `PATH` given on request to programs that run others by name.
pub const MINIMAL_PATH: &str = "/usr/bin:/bin";

/// Whether the run gets a `PATH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathEnv {
    /// Only what [`CommandSpec::env`] holds (a program that runs others by name
    /// then finds none).
    #[default]
    None,
    /// [`MINIMAL_PATH`], unless [`CommandSpec::env`] sets `PATH` itself.
    Minimal,
}

/// A run the policy allowed. Build it with [`CommandSpec::approved`], which takes the
/// timeout and working directory from the policy's [`Allowed`], so the run cannot
/// drift from what was checked.
#[derive(Clone)]
pub struct CommandSpec {
    /// Absolute path of the program, as checked.
    pub program: PathBuf,
    /// Its arguments, as checked (for a script: plus the script's file, if any).
    pub args: Vec<String>,
    /// The whole environment of the process; names as checked. Values may be secrets:
    /// never printed.
    pub env: BTreeMap<String, String>,
    /// Whether to add a minimal `PATH`.
    pub path_env: PathEnv,
    /// Bytes written to standard input, which is then closed; `None` gives the
    /// process `/dev/null`. May hold a script body or secrets: never printed.
    pub stdin: Option<Vec<u8>>,
    /// The resolved working directory; `None` runs in the MID's own.
    pub cwd: Option<PathBuf>,
    /// How long it may run before it is stopped.
    pub timeout: Duration,
}

impl CommandSpec {
    /// A run of `program` with `args`, with the timeout and directory `allowed` says.
    pub fn approved(program: impl Into<PathBuf>, args: Vec<String>, allowed: &Allowed) -> Self {
        Self {
            program: program.into(),
            args,
            env: BTreeMap::new(),
            path_env: PathEnv::None,
            stdin: None,
            cwd: allowed.cwd.clone(),
            timeout: allowed.timeout,
        }
    }

    /// Sets the environment (the names the policy checked).
    pub fn with_env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env = env;
        self
    }

    /// Adds [`MINIMAL_PATH`] unless the environment sets `PATH`.
    pub fn with_minimal_path(mut self) -> Self {
        self.path_env = PathEnv::Minimal;
        self
    }

    /// Gives the process these bytes on standard input.
    pub fn with_stdin(mut self, stdin: Vec<u8>) -> Self {
        self.stdin = Some(stdin);
        self
    }
}

impl fmt::Debug for CommandSpec {
    /// Names of variables and the size of stdin only: their contents may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("path_env", &self.path_env)
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .field("cwd", &self.cwd)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A started process: its group and its pipes.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub group: ProcessGroup,
    pub stdin: Option<ChildStdin>,
    pub stdout: ChildStdout,
    pub stderr: ChildStderr,
}

/// Starts `spec` in its own process group; `grace` applies if it is dropped unfinished.
pub(crate) async fn spawn(spec: &CommandSpec, grace: Duration) -> Result<Spawned, ExecError> {
    check_program(&spec.program).await?;
    if let Some(cwd) = &spec.cwd {
        check_cwd(&spec.program, cwd).await?;
    }
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(&spec.env)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so stopping it reaches everything it starts.
        .process_group(0)
        // A backstop for the leader; the group is stopped by `ProcessGroup`'s `Drop`.
        .kill_on_drop(true);
    if spec.path_env == PathEnv::Minimal && !spec.env.contains_key("PATH") {
        command.env("PATH", MINIMAL_PATH);
    }
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(|e| spawn_error(&spec.program, e))?;
    let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let group = ProcessGroup::new(child, grace).map_err(|source| ExecError::Spawn {
        program: spec.program.clone(),
        source,
    })?;
    let (stdin, Some(stdout), Some(stderr)) = pipes else {
        // Both were asked for as pipes; dropping `group` stops the process.
        return Err(ExecError::Spawn {
            program: spec.program.clone(),
            source: io::Error::other("the output pipes were not created"),
        });
    };
    Ok(Spawned {
        group,
        stdin,
        stdout,
        stderr,
    })
}

/// Says clearly what is wrong with the program's file before the OS gives its terser
/// answer.
async fn check_program(program: &Path) -> Result<(), ExecError> {
    use std::os::unix::fs::PermissionsExt;
    match tokio::fs::metadata(program).await {
        Ok(meta) if meta.is_dir() || meta.permissions().mode() & 0o111 == 0 => {
            Err(ExecError::NotExecutable {
                program: program.to_path_buf(),
            })
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ExecError::ProgramNotFound {
            program: program.to_path_buf(),
        }),
        Err(e) => Err(spawn_error(program, e)),
    }
}

async fn check_cwd(program: &Path, cwd: &Path) -> Result<(), ExecError> {
    match tokio::fs::metadata(cwd).await {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(ExecError::CwdNotDirectory {
            cwd: cwd.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ExecError::CwdMissing {
            cwd: cwd.to_path_buf(),
        }),
        Err(e) => Err(spawn_error(program, e)),
    }
}

/// Maps what `exec` said; the checks above have already ruled out the common cases,
/// so a not-found here is a script's missing `#!` interpreter.
fn spawn_error(program: &Path, error: io::Error) -> ExecError {
    let program = program.to_path_buf();
    match error.kind() {
        io::ErrorKind::NotFound => ExecError::ProgramNotFound { program },
        io::ErrorKind::PermissionDenied => ExecError::NotExecutable { program },
        _ => ExecError::Spawn {
            program,
            source: error,
        },
    }
}
