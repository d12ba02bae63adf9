//! A started program and the process group it leads, stopped as one: a shell script's
//! background jobs, a pipeline's members and anything else they fork stay in the
//! group, so signalling the group reaches all of them, where killing the program alone
//! would leave them running (and holding the output pipes open) after the job ended.
//!
//! Stopping is SIGTERM to the group, a grace period for clean exits, then SIGKILL to
//! whatever is left. It happens on timeout, on cancellation, when the program exits but
//! leaves members of its group behind, and — when the run is dropped before it ended —
//! from [`Drop`], finishing on a spawned task.
//!
//! Group ids are process ids, so a group id could in principle name a new, unrelated
//! group once every member is gone. Linux does not reuse a pid while any process still
//! has it as its group id (a zombie included), and the leader is signalled only before
//! it is reaped or while members remain; the window left (all members gone between the
//! check and the signal, and the id reused in that instant) needs a full pid wrap.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Child;
use tokio::time::Instant;

/// How often stopping checks whether the group is empty yet.
const POLL: Duration = Duration::from_millis(20);

/// What [`ProcessGroup::stop`] found and did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopped {
    /// The leader's status.
    pub status: ExitStatus,
    /// Something of the group was still running when stopping began.
    pub found_running: bool,
    /// Members still running after SIGKILL and the grace: processes the MID may not
    /// signal (another user's, such as the root child of `sudo`).
    pub survivors: u32,
}

/// The leader of a process group, and the group.
#[derive(Debug)]
pub(crate) struct ProcessGroup {
    /// `None` only after `Drop` handed it to the cleanup task.
    child: Option<Child>,
    pgid: libc::pid_t,
    status: Option<ExitStatus>,
    /// Set once the whole group is known to be gone: `Drop` has nothing to do.
    settled: bool,
    grace: Duration,
}

impl ProcessGroup {
    /// Takes a child started with `process_group(0)` (it leads its own group), which
    /// `grace` will apply to when it is dropped unfinished.
    pub fn new(child: Child, grace: Duration) -> io::Result<Self> {
        let pgid = child
            .id()
            .and_then(|id| libc::pid_t::try_from(id).ok())
            .ok_or_else(|| io::Error::other("the started process has no pid"))?;
        Ok(Self {
            child: Some(child),
            pgid,
            status: None,
            settled: false,
            grace,
        })
    }

    /// Waits for the leader to exit (cancel-safe) and reaps it.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let child = self.child.as_mut().ok_or_else(gone)?;
        let status = child.wait().await?;
        self.status = Some(status);
        Ok(status)
    }

    /// Stops every member of the group: SIGTERM, up to `grace` for them to exit, then
    /// SIGKILL; returns once the leader is reaped and no member is running, or after
    /// another `grace` with the members the MID may not signal counted as survivors.
    pub async fn stop(&mut self, grace: Duration) -> io::Result<Stopped> {
        let found_running = self.status.is_none() || self.running().await;
        if found_running {
            signal_group(self.pgid, libc::SIGTERM)?;
            let deadline = Instant::now() + grace;
            while self.status.is_none() || self.running().await {
                if Instant::now() >= deadline {
                    signal_group(self.pgid, libc::SIGKILL)?;
                    break;
                }
                self.wait_a_little().await?;
            }
            // After SIGKILL the members die at once, but show as running until the
            // kernel has torn them down. One the MID may not signal never goes: give
            // up after the grace and report it rather than hang the job.
            tokio::time::timeout(grace, self.wait())
                .await
                .map_err(|_| {
                    io::Error::other("the program survived SIGKILL (another user's?)")
                })??;
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && self.running().await {
                tokio::time::sleep(POLL).await;
            }
        }
        let survivors = if found_running {
            self.survivors().await
        } else {
            0
        };
        // Survivors cannot be signalled, so `Drop` could do no more.
        self.settled = true;
        let status = self.wait().await?;
        Ok(Stopped {
            status,
            found_running,
            survivors,
        })
    }

    /// Waits up to [`POLL`] for the leader, reaping it if it exits.
    async fn wait_a_little(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            tokio::time::sleep(POLL).await;
            return Ok(());
        }
        match tokio::time::timeout(POLL, self.wait()).await {
            Ok(status) => status.map(drop),
            Err(_elapsed) => Ok(()),
        }
    }

    /// How many members other than zombies are left (0 when that cannot be read).
    async fn survivors(&self) -> u32 {
        let pgid = self.pgid;
        tokio::task::spawn_blocking(move || live_members(pgid).map(|m| m.len()))
            .await
            .ok()
            .and_then(Result::ok)
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Whether a member of the group other than a zombie is left.
    async fn running(&self) -> bool {
        let pgid = self.pgid;
        if !group_exists(pgid) {
            return false;
        }
        // The group exists, perhaps only as zombies (orphans wait for init to reap
        // them, and some container inits never do): look closer.
        tokio::task::spawn_blocking(move || live_members(pgid).map(|m| !m.is_empty()))
            .await
            .ok()
            .and_then(Result::ok)
            // No /proc to read: trust the signal check.
            .unwrap_or(true)
    }
}

impl Drop for ProcessGroup {
    /// The run was dropped before it ended (its job future was cancelled): stop the
    /// group anyway. SIGTERM now; SIGKILL after the grace on a task, or at once when
    /// there is no runtime to run one.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let pgid = self.pgid;
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Errors are ignored: nobody is left to tell, and the group may be gone.
        let _ = signal_group(pgid, libc::SIGTERM);
        let grace = self.grace;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = tokio::time::timeout(grace, child.wait()).await;
                    let _ = signal_group(pgid, libc::SIGKILL);
                    let _ = child.wait().await;
                });
            }
            Err(_) => {
                let _ = signal_group(pgid, libc::SIGKILL);
                // `kill_on_drop` and tokio's orphan reaper take care of the leader.
            }
        }
    }
}

fn gone() -> io::Error {
    io::Error::other("the process was already handed to cleanup")
}

/// Sends `signal` to every process in group `pgid` it may signal. A group already
/// gone is not an error, nor one whose remaining members belong to another user
/// (EPERM: `killpg` fails only when it could signal none): stopping reports those
/// as survivors.
pub(crate) fn signal_group(pgid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    match killpg(pgid, signal) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH | libc::EPERM)) => Ok(()),
        other => other,
    }
}

/// Whether any process (zombies included) has group id `pgid`.
fn group_exists(pgid: libc::pid_t) -> bool {
    // Signal 0 checks without sending. EPERM means a member exists that may not be
    // signalled (it changed user): it counts as one.
    match killpg(pgid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() != Some(libc::ESRCH),
    }
}

/// `killpg(2)`, the crate's one call into libc that needs `unsafe`.
fn killpg(pgid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // `killpg(0)` would signal the MID's own group and `killpg(1)` init's (and
    // negative ids are invalid): only ever signal a group this module created.
    if pgid <= 1 {
        return Err(io::Error::other(format!("refusing to signal group {pgid}")));
    }
    // SAFETY: `killpg` takes two integers and reads or writes no memory of ours; it
    // has no preconditions, and a bad group or signal is reported through its return
    // value and errno, read right after.
    let result = unsafe { libc::killpg(pgid, signal) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The pids of the processes in group `pgid` that are not zombies, read from
/// `/proc/<pid>/stat` (the fields after the `(comm)` are: state, ppid, pgrp).
pub(crate) fn live_members(pgid: libc::pid_t) -> io::Result<Vec<libc::pid_t>> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // A process may exit between listing and reading: skip it.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `comm` may hold spaces and parentheses: the fields start after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<libc::pid_t>().ok());
        if group == Some(pgid) && !matches!(state, Some("Z" | "X")) {
            members.push(pid);
        }
    }
    Ok(members)
}
