//! A real OpenSSH server for `openmid bench ssh` and the end-to-end tests: its own host
//! key, a fresh user key for the current user, config, pid file and log in a directory
//! of its own, on a free loopback port ([`LocalSshd::start`]) or on port 22 of a test
//! net's host inside its network namespace ([`LocalSshd::start_in_namespace`]). Key
//! logins only; the server stops when this is dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `openssh-server` puts the daemon.
pub const SSHD: &str = "/usr/sbin/sshd";

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SshdError {
    /// `sshd` is not installed.
    #[error("{SSHD} is not installed (Debian: apt-get install openssh-server)")]
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

/// A running server.
pub struct LocalSshd {
    /// The address it listens on (`127.0.0.1`, or a test net host's).
    pub host: String,
    /// Its port on [`LocalSshd::host`].
    pub port: u16,
    /// The user to log in as (whoever runs this).
    pub user: String,
    /// The user's private key, OpenSSH format, no passphrase.
    pub private_key: String,
    /// The user's private key file (for OpenSSH's client).
    pub private_key_file: PathBuf,
    /// The server's host key, as a public key line.
    pub host_key: String,
    /// A known_hosts file listing the server (for OpenSSH's client).
    pub known_hosts_file: PathBuf,
    dir: PathBuf,
    child: Child,
}

fn step(step: &str) -> impl FnOnce(std::io::Error) -> SshdError + '_ {
    move |e| SshdError::Step {
        step: step.to_string(),
        detail: e.to_string(),
    }
}

fn run(program: &str, args: &[&str]) -> Result<String, SshdError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(step(program))?;
    if !out.status.success() {
        return Err(SshdError::Step {
            step: format!("{program} {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl LocalSshd {
    /// Starts a server in `dir` (which must exist and stay until it is dropped) on a
    /// free port of 127.0.0.1.
    pub fn start(dir: &Path) -> Result<Self, SshdError> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(step("finding a free port"))?;
        Self::start_on(dir, "127.0.0.1", port, None)
    }

    /// Starts a server in `dir` listening on `host:port` inside the network namespace
    /// `namespace` (`ip netns exec`; a test net's host, see `netns::TestNet`). The
    /// caller reaches it from the root namespace through the net's bridge.
    pub fn start_in_namespace(
        dir: &Path,
        namespace: &str,
        host: &str,
        port: u16,
    ) -> Result<Self, SshdError> {
        Self::start_on(dir, host, port, Some(namespace))
    }

    fn start_on(
        dir: &Path,
        host: &str,
        port: u16,
        namespace: Option<&str>,
    ) -> Result<Self, SshdError> {
        if !Path::new(SSHD).exists() {
            return Err(SshdError::Missing);
        }
        let d = dir.display().to_string();
        for (name, kind) in [("host_ed25519", "ed25519"), ("user_ed25519", "ed25519")] {
            run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    kind,
                    "-N",
                    "",
                    "-C",
                    name,
                    "-f",
                    &format!("{d}/{name}"),
                ],
            )?;
        }
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(step("reading a generated key"))
        };
        let host_key = read("host_ed25519.pub")?.trim().to_string();
        std::fs::write(dir.join("authorized_keys"), read("user_ed25519.pub")?)
            .map_err(step("writing authorized_keys"))?;
        let known_hosts_file = dir.join("known_hosts");
        // OpenSSH names a host on port 22 bare, any other port as `[host]:port`.
        let known_as = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        std::fs::write(&known_hosts_file, format!("{known_as} {host_key}\n"))
            .map_err(step("writing known_hosts"))?;
        let config = format!(
            "Port {port}\nListenAddress {host}\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nStrictModes no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nMaxStartups 200\nMaxSessions 100\nLogLevel ERROR\n"
        );
        std::fs::write(dir.join("sshd_config"), config).map_err(step("writing sshd_config"))?;
        // The privilege-separation directory Debian's sshd insists on.
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = std::fs::File::create(dir.join("sshd.log")).map_err(step("creating the log"))?;
        let mut command = match namespace {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, SSHD]);
                c
            }
            None => Command::new(SSHD),
        };
        // `ip netns exec` runs sshd in its place, so killing the child stops sshd.
        let child = command
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(step("starting sshd"))?;
        let user = run("id", &["-un"])?.trim().to_string();
        let server = Self {
            host: host.to_string(),
            port,
            user,
            private_key: read("user_ed25519")?,
            private_key_file: dir.join("user_ed25519"),
            host_key,
            known_hosts_file,
            dir: dir.to_path_buf(),
            child,
        };
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((host, port)).is_err() {
            if Instant::now() > until {
                return Err(SshdError::Step {
                    step: "waiting for sshd to listen".into(),
                    detail: server.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for LocalSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
