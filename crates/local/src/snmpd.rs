//! A real net-snmp agent (`snmpd`) for the SNMP probe's tests and benchmarks: its own
//! `snmpd.conf`, persistent directory, pid file and log in a temporary directory, on
//! a free UDP port of loopback ([`LocalSnmpd::start`]) or on a test net host's address
//! inside its network namespace ([`LocalSnmpd::start_with`]), with a v1/v2c read
//! community and three v3 users (authPriv SHA-256 + AES, authNoPriv SHA-1,
//! noAuthNoPriv) and known `system` values. The whole tree the agent implements is
//! readable (no view restricts it), as in a "view all" configuration. Stopped when
//! dropped.
//!
//! This file uses only the standard library, `tempfile` and `thiserror`, so the MID's
//! test crate (which this crate depends on) includes it by path.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's agent.
pub const SNMPD: &str = "/usr/sbin/snmpd";
/// …and the clients used as the independent implementation.
pub const SNMPGET: &str = "/usr/bin/snmpget";
/// The read community.
pub const COMMUNITY: &str = "openmid-public-ro";
/// `sysDescr.0`.
pub const SYS_DESCR: &str = "openmid test agent";
/// `sysObjectID.0`.
pub const SYS_OBJECT_ID: &str = "1.3.6.1.4.1.8072.3.2.10";
/// `sysName.0`.
pub const SYS_NAME: &str = "openmid-snmpd";
/// `sysLocation.0`.
pub const SYS_LOCATION: &str = "lab-rack-7";
/// The authPriv user (SHA-256, AES-128).
pub const PRIV_USER: &str = "privuser";
/// Its auth password.
pub const PRIV_AUTH_PASSWORD: &str = "Auth-pw-256-openmid";
/// Its privacy password.
pub const PRIV_PRIV_PASSWORD: &str = "Priv-pw-aes-openmid";
/// The authNoPriv user (SHA-1).
pub const AUTH_USER: &str = "authuser";
/// Its password.
pub const AUTH_PASSWORD: &str = "Auth-pw-sha1-openmid";
/// The noAuthNoPriv user.
pub const NOAUTH_USER: &str = "nouser";

/// Why the agent could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SnmpdError {
    /// `snmpd` or `snmpget` is not installed.
    #[error("{SNMPD} is not installed (Debian: apt-get install snmpd snmp)")]
    Missing,
    /// A step failed.
    #[error("{step}: {detail}")]
    Step {
        /// What was being done.
        step: String,
        /// What went wrong.
        detail: String,
    },
}

/// Where an agent listens and what its `system` group says.
#[derive(Debug, Clone)]
pub struct SnmpdOptions {
    /// The address it listens on.
    pub host: String,
    /// Its UDP port; `None` for a free one.
    pub port: Option<u16>,
    /// The network namespace to run it in (`ip netns exec`), if any.
    pub namespace: Option<String>,
    /// `sysDescr.0`.
    pub sys_descr: String,
    /// `sysObjectID.0`, dotted, without a leading dot.
    pub sys_object_id: String,
    /// `sysName.0`.
    pub sys_name: String,
}

impl Default for SnmpdOptions {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: None,
            namespace: None,
            sys_descr: SYS_DESCR.into(),
            sys_object_id: SYS_OBJECT_ID.into(),
            sys_name: SYS_NAME.into(),
        }
    }
}

/// A running agent.
pub struct LocalSnmpd {
    /// The address it listens on.
    pub host: String,
    /// Its UDP port on [`LocalSnmpd::host`].
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

fn step(step: &str) -> impl FnOnce(std::io::Error) -> SnmpdError + '_ {
    move |e| SnmpdError::Step {
        step: step.to_string(),
        detail: e.to_string(),
    }
}

/// A UDP port nothing listens on now.
pub fn free_udp_port() -> Result<u16, SnmpdError> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(step("finding a free UDP port"))
}

impl LocalSnmpd {
    /// Starts an agent on a free port of 127.0.0.1 and waits until it answers.
    pub fn start() -> Result<Self, SnmpdError> {
        Self::start_with(&SnmpdOptions::default())
    }

    /// Starts an agent as `opts` says and waits until it answers.
    pub fn start_with(opts: &SnmpdOptions) -> Result<Self, SnmpdError> {
        if !Path::new(SNMPD).exists() || !Path::new(SNMPGET).exists() {
            return Err(SnmpdError::Missing);
        }
        let dir = tempfile::Builder::new()
            .prefix("openmid-snmpd-")
            .tempdir()
            .map_err(step("making the agent's directory"))?;
        let d = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join("persist")).map_err(step("making persist"))?;
        // On loopback only loopback may read; in a namespace the only peers are the
        // test net's (the bridge, the MID's side, and the other hosts).
        let source = if opts.namespace.is_some() {
            "default"
        } else {
            "127.0.0.1"
        };
        let (descr, object_id, name) = (&opts.sys_descr, &opts.sys_object_id, &opts.sys_name);
        let config = format!(
            "rocommunity {COMMUNITY} {source}\n\
             sysDescr {descr}\nsysObjectID .{object_id}\nsysName {name}\n\
             sysLocation {SYS_LOCATION}\nsysContact ops@example.com\n\
             createUser {PRIV_USER} SHA-256 \"{PRIV_AUTH_PASSWORD}\" AES \"{PRIV_PRIV_PASSWORD}\"\n\
             createUser {AUTH_USER} SHA \"{AUTH_PASSWORD}\"\n\
             createUser {NOAUTH_USER}\n\
             rouser {PRIV_USER} priv\nrouser {AUTH_USER} auth\nrouser {NOAUTH_USER} noauth\n"
        );
        let conf = dir.path().join("snmpd.conf");
        std::fs::write(&conf, config).map_err(step("writing snmpd.conf"))?;
        let port = match opts.port {
            Some(p) => p,
            None => free_udp_port()?,
        };
        let endpoint = format!("udp:{}:{port}", opts.host);
        let mut command = match &opts.namespace {
            // `ip netns exec` runs snmpd in its place, so killing the child stops it.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, SNMPD]);
                c
            }
            None => Command::new(SNMPD),
        };
        let child = command
            .args(["-f", "-Lf", &format!("{d}/snmpd.log"), "-C", "-c"])
            .arg(&conf)
            .args(["-p", &format!("{d}/snmpd.pid"), "-M", "/nonexistent"])
            // Run as root (the tests are), it keeps its user: no setuid to `Debian-snmp`.
            .args(["-u", "root", "-g", "root", &endpoint])
            .env("SNMP_PERSISTENT_DIR", format!("{d}/persist"))
            .env("MIBS", "")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(step("starting snmpd"))?;
        let agent = Self {
            host: opts.host.clone(),
            port,
            dir,
            child,
        };
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let out = agent.client(
                SNMPGET,
                &["-v2c", "-c", COMMUNITY, "-t", "0.3", "-r", "0", "-Oqv"],
                &["1.3.6.1.2.1.1.1.0"],
            );
            if out.as_deref().is_ok_and(|o| o.contains(descr.as_str())) {
                return Ok(agent);
            }
            if Instant::now() > until {
                return Err(SnmpdError::Step {
                    step: "waiting for snmpd to answer".into(),
                    detail: agent.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `<host>:<port>`, as net-snmp's clients take it.
    pub fn peer(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Runs a net-snmp client (`snmpwalk`, `snmpbulkwalk` …) against this agent:
    /// `args`, the agent, `oids`; its standard output.
    pub fn client(
        &self,
        program: &str,
        args: &[&str],
        oids: &[&str],
    ) -> Result<String, SnmpdError> {
        let out = Command::new(program)
            .args(["-M", "/nonexistent"])
            .args(args)
            .arg(self.peer())
            .args(oids)
            .env("MIBS", "")
            .env("SNMP_PERSISTENT_DIR", self.dir.path().join("client"))
            .stdin(Stdio::null())
            .output()
            .map_err(step(program))?;
        if !out.status.success() {
            return Err(SnmpdError::Step {
                step: format!("{program} {}", args.join(" ")),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// What the agent logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("snmpd.log")).unwrap_or_default()
    }
}

impl Drop for LocalSnmpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
