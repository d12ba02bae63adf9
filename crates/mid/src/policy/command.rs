//! Which commands the MID may run: none unless `policy.command.programs` names the
//! program by absolute path, with patterns for its arguments (see
//! [`pattern`](super::pattern)), the working directories and environment variable names
//! it may be given, and its longest run time. A script body (text the instance sends
//! to be run) is accepted only by a program also listed in
//! `policy.command.interpreters`: listing `/bin/sh` as a program with fixed arguments
//! does not let the instance send it arbitrary scripts.
//!
//! Programs are compared as written (absolute, no `..`): the probe must run exactly
//! the checked path, never look it up in `PATH`. Working directories are compared
//! after resolving symbolic links, so a link inside an allowed directory pointing
//! elsewhere does not escape it.

use super::denial::{CommandRefusal, Denial, EntryRefusal, Mismatch};
use super::explain::Trace;
use super::pattern::ArgPattern;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// One compiled `policy.command.programs` entry.
#[derive(Debug, Clone)]
pub(crate) struct ProgramRule {
    /// `policy.command.programs[i]`.
    pub rule: String,
    pub path: PathBuf,
    /// Patterns as written (for messages) and compiled.
    pub args: Vec<(String, ArgPattern)>,
    pub cwd: Vec<PathBuf>,
    pub env: Vec<EnvPattern>,
    pub max_runtime: Duration,
}

/// An environment variable name pattern: exact, or `PREFIX_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvPattern {
    Exact(String),
    Prefix(String),
}

impl EnvPattern {
    /// Parses `NAME` or `PREFIX_*`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, prefix) = match text.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (text, false),
        };
        let good = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !good || name.is_empty() {
            return Err(format!(
                "`{text}` is not a variable name (A-Z a-z 0-9 _) or a `PREFIX_*` pattern"
            ));
        }
        Ok(if prefix {
            Self::Prefix(name.to_string())
        } else {
            Self::Exact(name.to_string())
        })
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => name == exact,
            Self::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }
}

/// Whether `path` is absolute and free of `..`, the form programs, interpreters and
/// directories must take.
pub(crate) fn is_plain_absolute(path: &Path) -> bool {
    path.is_absolute() && !path.components().any(|c| c == Component::ParentDir)
}

/// What a run may do, once allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The run time to enforce: the one asked for, or the entry's longest.
    pub timeout: Duration,
    /// The entry that allowed it, e.g. `policy.command.programs[0]`.
    pub rule: String,
    /// The working directory with symbolic links resolved, as checked: run the
    /// program there (not in the path asked for), so a link changed after the check
    /// cannot move the run elsewhere.
    pub cwd: Option<PathBuf>,
}

/// The compiled `[policy.command]` section.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommandRules {
    pub interpreters: Vec<PathBuf>,
    pub programs: Vec<ProgramRule>,
}

/// A run to check.
pub(crate) struct Run<'a, A, E> {
    pub program: &'a Path,
    pub args: &'a [A],
    pub cwd: Option<&'a Path>,
    pub env_names: &'a [E],
    pub timeout: Option<Duration>,
    /// Whether the program is given a script body to run.
    pub script: bool,
}

impl CommandRules {
    /// Finds the first entry that allows the run, or says why none does.
    pub fn check<A: AsRef<str>, E: AsRef<str>>(
        &self,
        run: &Run<'_, A, E>,
        trace: &mut Trace,
    ) -> Result<Allowed, Denial> {
        let refuse = |reason| Denial::Command {
            program: run.program.to_path_buf(),
            reason,
        };
        if !is_plain_absolute(run.program) {
            trace.note(|| "program: not an absolute path: refused".into());
            return Err(refuse(CommandRefusal::NotAbsolute));
        }
        if run.script {
            if self.interpreters.iter().any(|i| i == run.program) {
                trace.note(|| "script: the program is in policy.command.interpreters".into());
            } else {
                trace.note(|| {
                    "script: the program is not in policy.command.interpreters: refused".into()
                });
                return Err(refuse(CommandRefusal::NotInterpreter));
            }
        }
        let mut refusals = Vec::new();
        for entry in self.programs.iter().filter(|p| p.path == run.program) {
            match entry.fits(run) {
                Ok((timeout, cwd)) => {
                    trace.note(|| format!("{}: allows this run", entry.rule));
                    return Ok(Allowed {
                        timeout,
                        rule: entry.rule.clone(),
                        cwd,
                    });
                }
                Err(mismatch) => {
                    let refusal = EntryRefusal {
                        rule: entry.rule.clone(),
                        mismatch,
                    };
                    trace.note(|| refusal.to_string());
                    refusals.push(refusal);
                }
            }
        }
        if refusals.is_empty() {
            trace
                .note(|| "program: no policy.command.programs entry has this path: refused".into());
            return Err(refuse(CommandRefusal::NotListed));
        }
        Err(refuse(CommandRefusal::NoEntryAllows(refusals)))
    }
}

impl ProgramRule {
    /// The timeout to enforce and the resolved working directory, when this entry
    /// allows the run.
    fn fits<A: AsRef<str>, E: AsRef<str>>(
        &self,
        run: &Run<'_, A, E>,
    ) -> Result<(Duration, Option<PathBuf>), Mismatch> {
        self.fits_args(run.args)?;
        let cwd = self.fits_cwd(run.cwd)?;
        if let Some(name) = run
            .env_names
            .iter()
            .map(AsRef::as_ref)
            .find(|n| !self.env.iter().any(|p| p.matches(n)))
        {
            return Err(Mismatch::Env {
                name: name.to_string(),
            });
        }
        match run.timeout {
            Some(asked) if asked > self.max_runtime => Err(Mismatch::Runtime {
                requested_secs: asked.as_secs_f64().ceil() as u64,
                max_secs: self.max_runtime.as_secs(),
            }),
            Some(asked) => Ok((asked, cwd)),
            None => Ok((self.max_runtime, cwd)),
        }
    }

    fn fits_args<A: AsRef<str>>(&self, args: &[A]) -> Result<(), Mismatch> {
        let rest = matches!(self.args.last(), Some((_, ArgPattern::Rest)));
        let fixed = self.args.len() - usize::from(rest);
        if args.len() < fixed {
            return Err(Mismatch::TooFewArgs {
                given: args.len(),
                need: fixed,
            });
        }
        if !rest && args.len() > fixed {
            return Err(Mismatch::TooManyArgs {
                given: args.len(),
                allowed: fixed,
            });
        }
        for (index, ((written, pattern), arg)) in self.args.iter().zip(args).enumerate() {
            if !pattern.matches(arg.as_ref()) {
                return Err(Mismatch::Arg {
                    index,
                    pattern: written.clone(),
                });
            }
        }
        Ok(())
    }

    fn fits_cwd(&self, cwd: Option<&Path>) -> Result<Option<PathBuf>, Mismatch> {
        let Some(cwd) = cwd else {
            return Ok(None);
        };
        if self.cwd.is_empty() {
            return Err(Mismatch::CwdNotAllowed);
        }
        // A relative directory would be read against the MID's own working directory:
        // refuse it rather than guess.
        let resolved = is_plain_absolute(cwd)
            .then(|| std::fs::canonicalize(cwd).ok())
            .flatten();
        let Some(resolved) = resolved else {
            return Err(Mismatch::Cwd {
                cwd: cwd.to_path_buf(),
                missing: true,
            });
        };
        // Allowed prefixes are resolved at each check, so a directory created (or a
        // link changed) after the MID started is judged as it is now.
        let inside = self
            .cwd
            .iter()
            .filter_map(|prefix| std::fs::canonicalize(prefix).ok())
            .any(|prefix| resolved.starts_with(prefix));
        if inside {
            Ok(Some(resolved))
        } else {
            Err(Mismatch::Cwd {
                cwd: cwd.to_path_buf(),
                missing: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_patterns_are_exact_or_prefixes() {
        let exact = EnvPattern::parse("LANG").unwrap_or_else(|e| panic!("{e}"));
        assert!(exact.matches("LANG") && !exact.matches("LANGUAGE"));
        let prefix = EnvPattern::parse("LC_*").unwrap_or_else(|e| panic!("{e}"));
        assert!(prefix.matches("LC_ALL") && prefix.matches("LC_") && !prefix.matches("LANG"));
        for bad in ["", "*", "A=B", "A*B", "A-B", "PATH **"] {
            assert!(EnvPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_absolute_paths_without_parent_steps_are_plain() {
        assert!(is_plain_absolute(Path::new("/usr/bin/df")));
        assert!(!is_plain_absolute(Path::new("df")));
        assert!(!is_plain_absolute(Path::new("./df")));
        assert!(!is_plain_absolute(Path::new("/usr/bin/../../tmp/df")));
    }
}
