//! How the policy decides a job, step by step, for `openmid mid check-policy`. The
//! explanation is written by the same code that decides: each check notes what it
//! consulted into a [`Trace`], which the real checks run switched off. So an
//! explanation cannot drift from what the MID enforces.

use super::command::Run;
use super::denial::Denial;
use super::network::Host;
use super::resolve::ResolveError;
use super::{EgressPolicy, Protocol, url_target};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where a check writes what it consulted; off for real checks.
pub(crate) struct Trace {
    steps: Option<Vec<String>>,
}

impl Trace {
    /// Records nothing (the checks the MID enforces).
    pub fn off() -> Self {
        Self { steps: None }
    }

    /// Records every step (explanations).
    pub fn on() -> Self {
        Self {
            steps: Some(Vec::new()),
        }
    }

    /// Records a step; `step` is only called when recording.
    pub fn note(&mut self, step: impl FnOnce() -> String) {
        if let Some(steps) = &mut self.steps {
            steps.push(step());
        }
    }

    pub(crate) fn into_steps(self) -> Vec<String> {
        self.steps.unwrap_or_default()
    }
}

/// A job to explain.
#[derive(Debug, Clone)]
pub enum Job {
    /// A connection to `host:port`.
    Target {
        /// Whose rules apply.
        protocol: Protocol,
        /// A host name or IP address.
        host: String,
        /// The port.
        port: u16,
        /// Addresses to check instead of resolving the name (`None`: resolve it).
        addrs: Option<Vec<IpAddr>>,
    },
    /// A request to a URL.
    Url {
        /// Whose rules apply.
        protocol: Protocol,
        /// The URL.
        url: url::Url,
        /// Addresses to check instead of resolving the host (`None`: resolve it).
        addrs: Option<Vec<IpAddr>>,
    },
    /// A program run (or a script body handed to an interpreter).
    Command {
        /// The program (or interpreter).
        program: PathBuf,
        /// Its arguments.
        args: Vec<String>,
        /// Its working directory.
        cwd: Option<PathBuf>,
        /// Names of the environment variables set.
        env_names: Vec<String>,
        /// The run time asked for.
        timeout: Option<Duration>,
        /// Whether a script body is handed to it.
        script: bool,
    },
    /// A local file read (a file import's `source.path`).
    File {
        /// The path asked for.
        path: PathBuf,
    },
}

/// What the policy would do.
#[derive(Debug)]
pub enum Verdict {
    /// The job may go ahead; says how (addresses, the entry and timeout).
    Allowed(String),
    /// The job would be refused.
    Refused(Denial),
    /// The name rules allow it, but the name did not resolve, so the address rules
    /// could not be applied (pass the addresses to check them).
    Unresolved(String),
}

/// The steps consulted and the verdict.
#[derive(Debug)]
pub struct Explanation {
    /// One line per rule list consulted, in order.
    pub steps: Vec<String>,
    /// The outcome.
    pub verdict: Verdict,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "{:>2}. {step}", i + 1)?;
        }
        match &self.verdict {
            Verdict::Allowed(how) => write!(f, "verdict: allowed — {how}"),
            Verdict::Refused(denial) => write!(f, "verdict: refused — {denial}"),
            Verdict::Unresolved(why) => write!(f, "verdict: undecided — {why}"),
        }
    }
}

impl EgressPolicy {
    /// Explains how `job` would be decided. Resolves a target's name unless addresses
    /// are given; counts no denials.
    pub async fn explain(&self, job: &Job) -> Explanation {
        let mut trace = Trace::on();
        let verdict = match job {
            Job::Target {
                protocol,
                host,
                port,
                addrs,
            } => {
                self.explain_target(*protocol, host, *port, addrs.as_deref(), &mut trace)
                    .await
            }
            Job::Url {
                protocol,
                url,
                addrs,
            } => match url_target(*protocol, url) {
                Ok((host, port)) => {
                    trace.note(|| format!("URL: connects to {host} port {port}"));
                    self.explain_target(*protocol, &host, port, addrs.as_deref(), &mut trace)
                        .await
                }
                Err(denial) => Verdict::Refused(denial),
            },
            Job::Command {
                program,
                args,
                cwd,
                env_names,
                timeout,
                script,
            } => {
                let run = Run {
                    program,
                    args,
                    cwd: cwd.as_deref(),
                    env_names,
                    timeout: *timeout,
                    script: *script,
                };
                match self.command.check(&run, &mut trace) {
                    Ok(allowed) => Verdict::Allowed(format!(
                        "by {}, for at most {} s",
                        allowed.rule,
                        allowed.timeout.as_secs()
                    )),
                    Err(denial) => Verdict::Refused(denial),
                }
            }
            Job::File { path } => {
                trace.note(|| "rules of policy.file".to_string());
                match super::file::check(&self.config().file.allow_dirs, path, &mut trace) {
                    Ok(resolved) => Verdict::Allowed(format!("read as {}", resolved.display())),
                    Err(denial) => Verdict::Refused(denial),
                }
            }
        };
        Explanation {
            steps: trace.into_steps(),
            verdict,
        }
    }

    async fn explain_target(
        &self,
        protocol: Protocol,
        host: &str,
        port: u16,
        addrs: Option<&[IpAddr]>,
        trace: &mut Trace,
    ) -> Verdict {
        trace.note(|| format!("rules of policy.{protocol} (with policy.default)"));
        if protocol == Protocol::Sql {
            let writes = self.config().sql.writes;
            trace.note(|| {
                format!(
                    "policy.sql.writes = {writes}: {}",
                    if writes {
                        "a job may ask for a writing session"
                    } else {
                        "every session is read-only"
                    }
                )
            });
        }
        let shown = Host::parse(host).map_or_else(|_| host.to_string(), |h| h.to_string());
        let target = format!("{shown}:{port}");
        if let Err(denial) = self.rules(protocol).check_port(port, &target, trace) {
            return Verdict::Refused(denial);
        }
        match self
            .resolve_host(protocol, host, Some(port), addrs, trace)
            .await
        {
            Ok(ips) => Verdict::Allowed(format!(
                "reached at {}",
                ips.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(ResolveError::Denied(denial)) => Verdict::Refused(denial),
            Err(other) => Verdict::Unresolved(other.to_string()),
        }
    }
}
