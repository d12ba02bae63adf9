//! A throw-away test network of Linux network namespaces, for the discovery probes'
//! tests: a bridge in the root namespace at `198.18.0.1/24` and, per host `n`, a
//! namespace `<prefix>-<pid>-<n>` joined to the bridge by a veth pair, its end
//! inside the namespace named `eth0` at `198.18.0.(10+n)/24`, loopback up.
//! Processes started in a host ([`TestNet::spawn_in`]) are its services.
//!
//! Only addresses of 198.18.0.0/15 (reserved for benchmarking, RFC 2544) are used,
//! and only on interfaces this net made; everything is deleted on drop (but an
//! `unreachable 198.18.0.0/15` route in the root namespace, which keeps traffic to
//! the range from leaving the machine once no net is there), and
//! [`cleanup_stale`] removes what a killed run of the same prefix left. One test net
//! exists at a time on a host (they share the subnet): [`TestNet::create`] holds an
//! exclusive lock on a file under the temporary directory until the net is dropped,
//! so tests of several processes, or threads, take turns.
//!
//! Needs root (or `CAP_NET_ADMIN` and `CAP_SYS_ADMIN`) and iproute2: without them
//! [`NetnsError::Unavailable`], which tests report loudly and skip. Std, thiserror
//! and tempfile only, so a test can include this file by path.

use std::fs::File;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;

/// The bridge's address, the hosts' gateway (the MID, in the root namespace).
pub const BRIDGE_ADDR: &str = "198.18.0.1";
/// The first host's last octet: host `n` is `198.18.0.(HOST_BASE + n)`.
pub const HOST_BASE: u8 = 10;
/// Most hosts a net may have (addresses up to 198.18.0.254).
pub const MAX_HOSTS: u8 = 245;

/// Why a test net could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// No root, no iproute2, or no namespace support.
    #[error("network namespaces are unavailable here (needs root and iproute2): {0}")]
    Unavailable(String),
    /// A command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// Starting a process or taking the lock failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A test network; deleted on drop.
pub struct TestNet {
    prefix: String,
    pid: u32,
    hosts: u8,
    children: Mutex<Vec<Child>>,
    _lock: File,
}

fn run_ip(args: &[&str]) -> Result<Output, NetnsError> {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetnsError::Unavailable(format!("running ip: {e}")))
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let out = run_ip(args)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Command {
            command: format!("ip {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn check_prefix(prefix: &str) -> Result<(), NetnsError> {
    if prefix.is_empty()
        || prefix.len() > 4
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(NetnsError::Invalid(format!(
            "the prefix `{prefix}` must be 1–4 lowercase letters or digits (interface names are at most 15 bytes)"
        )));
    }
    Ok(())
}

/// The benchmarking range (RFC 2544) the test nets use, kept unreachable outside them.
const GUARD_RANGE: &str = "198.18.0.0/15";

impl TestNet {
    /// Makes a net of `hosts` hosts (1–245), waiting for any other test net on this
    /// host to be dropped first.
    pub fn create(prefix: &str, hosts: u8) -> Result<Self, NetnsError> {
        check_prefix(prefix)?;
        if hosts == 0 || hosts > MAX_HOSTS {
            return Err(NetnsError::Invalid(format!(
                "a test net has 1–{MAX_HOSTS} hosts, not {hosts}"
            )));
        }
        let lock = File::create(std::env::temp_dir().join("openmid-testnet.lock"))?;
        lock.lock()?;
        cleanup_stale(prefix);
        let pid = std::process::id();
        let net = Self {
            prefix: prefix.to_string(),
            pid,
            hosts,
            children: Mutex::new(Vec::new()),
            _lock: lock,
        };
        // The first namespace tells whether this can work at all.
        if let Err(e) = ip(&["netns", "add", &net.namespace(0)]) {
            return Err(NetnsError::Unavailable(e.to_string()));
        }
        net.build()?;
        Ok(net)
    }

    fn build(&self) -> Result<(), NetnsError> {
        // Without a net, 198.18.0.0/15 would follow the default route off this machine
        // (a late probe after a test dropped its net, say). This route says
        // "unreachable" instead; the bridge's own /24 is more specific, so it does not
        // get in the net's way, and it is left in place on drop on purpose.
        ip(&["route", "replace", "unreachable", GUARD_RANGE])?;
        let bridge = self.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{BRIDGE_ADDR}/24"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for n in 0..self.hosts {
            let ns = self.namespace(n);
            if n > 0 {
                ip(&["netns", "add", &ns])?;
            }
            let outside = format!("{}{}v{n}", self.prefix, self.pid);
            let inside = format!("{}{}p{n}", self.prefix, self.pid);
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ])?;
            ip(&["link", "set", &inside, "netns", &ns])?;
            ip(&["link", "set", &outside, "master", &bridge, "up"])?;
            ip(&["-n", &ns, "link", "set", &inside, "name", "eth0"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", self.addr(n)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Host `n`'s namespace.
    pub fn namespace(&self, n: u8) -> String {
        format!("{}-{}-{n}", self.prefix, self.pid)
    }

    /// The bridge's name.
    pub fn bridge(&self) -> String {
        format!("{}{}br", self.prefix, self.pid)
    }

    /// Host `n`'s address.
    pub fn addr(&self, n: u8) -> String {
        format!("198.18.0.{}", HOST_BASE + n)
    }

    /// How many hosts.
    pub fn hosts(&self) -> u8 {
        self.hosts
    }

    /// Takes host `n` off the net (its veth down), as a host that went away.
    pub fn set_down(&self, n: u8) -> Result<(), NetnsError> {
        ip(&["-n", &self.namespace(n), "link", "set", "eth0", "down"])
    }

    /// Runs `command` inside host `n` (`ip netns exec`); it is killed when the net
    /// is dropped. Its stdio is the command's own (null unless set).
    pub fn spawn_in(&self, n: u8, command: Command) -> Result<(), NetnsError> {
        if n >= self.hosts {
            return Err(NetnsError::Invalid(format!("host {n} is not in the net")));
        }
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.namespace(n)])
            .arg(command.get_program())
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(v) => wrapped.env(key, v),
                None => wrapped.env_remove(key),
            };
        }
        wrapped.stdin(Stdio::null());
        let child = wrapped.spawn()?;
        self.children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child);
        Ok(())
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let children = self.children.get_mut().unwrap_or_else(|e| e.into_inner());
        for child in children.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `ip netns exec` runs the program in its place, so the kill above reached
        // it; deleting the namespaces removes their veth ends, and their peers.
        for n in 0..self.hosts {
            let _ = run_ip(&["netns", "delete", &self.namespace(n)]);
        }
        let _ = run_ip(&["link", "delete", &self.bridge()]);
    }
}

/// Deletes the namespaces and bridges of earlier runs with `prefix` whose process is
/// gone (a killed test), leaving those of live processes alone.
pub fn cleanup_stale(prefix: &str) {
    if check_prefix(prefix).is_err() {
        return;
    }
    let alive = |pid: &str| std::path::Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(out) = run_ip(&["netns", "list"]) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let Some(rest) = name.strip_prefix(&format!("{prefix}-")) else {
                continue;
            };
            let mut parts = rest.split('-');
            if let (Some(pid), Some(n), None) = (parts.next(), parts.next(), parts.next())
                && pid.bytes().all(|b| b.is_ascii_digit())
                && n.bytes().all(|b| b.is_ascii_digit())
                && !alive(pid)
            {
                let _ = run_ip(&["netns", "delete", name]);
            }
        }
    }
    if let Ok(out) = run_ip(&["-o", "link", "show", "type", "bridge"]) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split(':').nth(1).map(str::trim).unwrap_or_default();
            if let Some(pid) = name.strip_prefix(prefix).and_then(|r| r.strip_suffix("br"))
                && !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && !alive(pid)
            {
                let _ = run_ip(&["link", "delete", name]);
            }
        }
    }
}
