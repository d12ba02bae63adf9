//! Why the egress policy refused something. A [`Denial`] ends up in the error of an
//! input record that API users read, so each one names the rule that decided (its
//! config key and entry) and says what to change — and never carries a secret: a URL
//! is reduced to host and port, a command's arguments are named by position, never
//! echoed (they often hold passwords).

use super::Protocol;
use super::builtin::Builtin;
use std::fmt;
use std::path::PathBuf;

/// A refusal by the egress policy, naming the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// An explicit deny entry matched (deny wins over any allow entry).
    #[error(
        "egress policy ({protocol}) refuses {target}: it matches {rule} ({entry}); remove or narrow that entry to allow it"
    )]
    Denied {
        /// Which protocol's rules applied.
        protocol: Protocol,
        /// The host, address and port refused.
        target: String,
        /// The config key of the entry, e.g. `policy.http.deny_cidrs[2]`.
        rule: String,
        /// The entry as written, e.g. `169.254.0.0/16`.
        entry: String,
    },
    /// A built-in default refused the address.
    #[error(
        "egress policy ({protocol}) refuses {target}: default: {builtin} are refused (allow them with {allow_key}, e.g. \"{example}\")",
        builtin = .builtin.describe(),
        example = .builtin.example()
    )]
    Default {
        /// Which protocol's rules applied.
        protocol: Protocol,
        /// The host, address and port refused.
        target: String,
        /// Which built-in range.
        builtin: Builtin,
        /// Where an allow entry lifts it, e.g. `policy.http.allow_cidrs`.
        allow_key: String,
    },
    /// An allow list is set and nothing on it matched.
    #[error(
        "egress policy ({protocol}) refuses {target}: {aspect} is not in {rule}; add it there to allow it"
    )]
    NotAllowed {
        /// Which protocol's rules applied.
        protocol: Protocol,
        /// The host, address and port refused.
        target: String,
        /// What was looked up in the list.
        aspect: Aspect,
        /// The list's config key, e.g. `policy.http.allow_ports`.
        rule: String,
    },
    /// There is nothing the policy could check (a URL without a host or port).
    #[error("egress policy ({protocol}) refuses {target}: {reason}")]
    NoTarget {
        /// Which protocol's rules applied.
        protocol: Protocol,
        /// What was given (a URL shown without user, password, path or query).
        target: String,
        /// What is missing.
        reason: &'static str,
    },
    /// A SQL job asked for a writing session and `policy.sql.writes` is off.
    #[error(
        "egress policy (sql) refuses a writing session to {target}: policy.sql.writes is false (the default); set it to true to let SQL jobs write, or send the job with write = false"
    )]
    SqlWrite {
        /// The server, `host:port`.
        target: String,
    },
    /// A local file may not be read.
    #[error("egress policy (file) refuses reading {path}: {reason}", path = .path.display())]
    File {
        /// The path asked for.
        path: PathBuf,
        /// Why.
        reason: super::file::FileRefusal,
    },
    /// A command may not run.
    #[error("egress policy refuses running {program}: {reason}", program = .program.display())]
    Command {
        /// The program asked for.
        program: PathBuf,
        /// Why.
        reason: CommandRefusal,
    },
}

/// What an allow list was asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aspect {
    /// The port.
    Port,
    /// The host name.
    HostName,
    /// A (resolved or literal) address.
    Address,
    /// An IP-literal target while `allow_hosts` is set: it has no name to match, so only
    /// an `allow_cidrs` entry admits it.
    AddressWithoutName,
}

impl fmt::Display for Aspect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Port => "the port",
            Self::HostName => "the host name",
            Self::Address => "the address",
            Self::AddressWithoutName => {
                "the address (an IP target has no host name for allow_hosts to match)"
            }
        })
    }
}

/// Why a command may not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandRefusal {
    /// Programs are named by absolute path so `PATH` cannot change what runs.
    #[error("the program must be an absolute path without `..`")]
    NotAbsolute,
    /// No entry names the program.
    #[error("it is not in policy.command.programs; add an entry with this path")]
    NotListed,
    /// A script body was given to a program that may not run scripts.
    #[error(
        "it is not in policy.command.interpreters, so it may not run a script body; add it there"
    )]
    NotInterpreter,
    /// Entries name the program, but none allows this run.
    #[error("no entry allows this run: {}", join(.0))]
    NoEntryAllows(Vec<EntryRefusal>),
}

fn join(refusals: &[EntryRefusal]) -> String {
    refusals
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why one `policy.command.programs` entry does not allow a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule}: {mismatch}")]
pub struct EntryRefusal {
    /// The entry's config key, e.g. `policy.command.programs[0]`.
    pub rule: String,
    /// The first thing that did not fit.
    pub mismatch: Mismatch,
}

/// The first part of a run that an entry does not allow. Arguments are named by their
/// position, never shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// Fewer arguments than patterns.
    #[error("{given} arguments given, its args patterns need {need}")]
    TooFewArgs {
        /// Arguments given.
        given: usize,
        /// Arguments the patterns need.
        need: usize,
    },
    /// More arguments than patterns (and no trailing `**`).
    #[error(
        "{given} arguments given, its args patterns allow {allowed} (end them with \"**\" to allow more)"
    )]
    TooManyArgs {
        /// Arguments given.
        given: usize,
        /// Arguments allowed.
        allowed: usize,
    },
    /// An argument does not match the pattern at its position.
    #[error("argument {index} does not match args[{index}] (`{pattern}`)")]
    Arg {
        /// The argument's position (0 = first after the program).
        index: usize,
        /// The pattern as written.
        pattern: String,
    },
    /// A working directory was asked for, but the entry lists none.
    #[error("a working directory was asked for and the entry has no cwd list; add one")]
    CwdNotAllowed,
    /// The working directory is outside every allowed prefix (after symbolic links are
    /// resolved), or cannot be resolved (missing, relative, or with `..`).
    #[error("working directory {} is not inside any of its cwd entries (symbolic links resolved){}", .cwd.display(), if *.missing { "; it must be an existing absolute path without `..`" } else { "" })]
    Cwd {
        /// The directory asked for.
        cwd: PathBuf,
        /// Whether it could not be resolved at all.
        missing: bool,
    },
    /// An environment variable name is not allowed.
    #[error("environment variable {name} is not in its env list")]
    Env {
        /// The variable's name (never its value).
        name: String,
    },
    /// The run asks for longer than the entry allows.
    #[error("a run time of {requested_secs} s was asked for, its max_runtime_secs is {max_secs}")]
    Runtime {
        /// Seconds asked for.
        requested_secs: u64,
        /// The entry's longest run time.
        max_secs: u64,
    },
}

/// The [`Denial`] behind an error, if there is one: reqwest wraps the denials of the
/// [resolver](super::PolicyResolver) and the [redirect
/// policy](super::EgressPolicy::redirect_policy) in its own error, so probes walk the
/// source chain to report the policy's words instead of "error sending request".
pub fn find_denial<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Denial> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(denial) = e.downcast_ref::<Denial>() {
            return Some(denial);
        }
        if let Some(super::resolve::ResolveError::Denied(denial)) =
            e.downcast_ref::<super::resolve::ResolveError>()
        {
            return Some(denial);
        }
        current = e.source();
    }
    None
}
