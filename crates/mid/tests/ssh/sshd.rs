//! A real OpenSSH server for one test: its own host key, config, authorized keys, pid
//! file and log in a temporary directory, listening on a free loopback port. Tests
//! needing root (a local user with a password, sudo) ask [`root_or_skip`] first.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";
/// The local user made for password and sudo tests.
pub const TEST_USER: &str = "openmid-ssh-t";
pub const TEST_PASSWORD: &str = "Pw-for-openmid-ssh-tests-4711";
/// Accepted by the server as an SSH `env` request (others are refused).
pub const ACCEPTED_ENV: &str = "OPENMID_ACCEPTED";

pub struct Sshd {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

pub fn is_root() -> bool {
    // From /proc: the tests need no unsafe call to geteuid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Whether the test can run; prints a loud line when it cannot.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    println!("SKIPPED: {test}: needs root (a local user with a password, or sudo)");
    false
}

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs a program, panicking with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes a key pair in `dir`: returns (private key text, public key line).
pub fn keygen(dir: &Path, name: &str, args: &[&str], passphrase: &str) -> (String, String) {
    let path = dir.join(name);
    let path_s = path.display().to_string();
    let mut all = vec!["-q", "-f", &path_s, "-N", passphrase, "-C", name];
    all.extend_from_slice(args);
    run("ssh-keygen", &all);
    let private = std::fs::read_to_string(&path).expect("private key");
    let public = std::fs::read_to_string(path.with_extension("pub"))
        .or_else(|_| std::fs::read_to_string(format!("{path_s}.pub")))
        .expect("public key");
    (private, public.trim().to_string())
}

static USER_SETUP: Mutex<()> = Mutex::new(());

/// The test user exists with [`TEST_PASSWORD`] and may use sudo with it (root only).
pub fn ensure_test_user() {
    let _once = USER_SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let exists = Command::new("id")
        .arg(TEST_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !exists {
        run("useradd", &["-m", "-s", "/bin/sh", TEST_USER]);
    }
    let mut chpasswd = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .spawn()
        .expect("chpasswd");
    chpasswd
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{TEST_USER}:{TEST_PASSWORD}\n").as_bytes())
        .expect("write");
    assert!(chpasswd.wait().expect("chpasswd").success());
    if Path::new("/etc/sudoers.d").is_dir() {
        let file = format!("/etc/sudoers.d/{TEST_USER}");
        std::fs::write(&file, format!("{TEST_USER} ALL=(ALL:ALL) ALL\n")).expect("sudoers");
        run("chmod", &["0440", &file]);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Sshd {
    /// Starts a server whose authorized keys are `authorized` (public key lines).
    pub fn start(authorized: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("authorized_keys"),
            authorized.join("\n") + "\n",
        )
        .expect("authorized_keys");
        // The server reads authorized keys as the user logging in, who may not be the
        // one running the tests (the password and sudo tests' user).
        run("chmod", &["0755", &dir.path().display().to_string()]);
        run(
            "chmod",
            &[
                "0644",
                &dir.path().join("authorized_keys").display().to_string(),
            ],
        );
        let mut sshd = Self {
            port: free_port(),
            dir,
            child: None,
        };
        sshd.new_host_key();
        sshd.launch();
        sshd
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The server's host key as a public key line.
    pub fn host_key(&self) -> String {
        std::fs::read_to_string(self.path("host_ed25519.pub"))
            .expect("host key")
            .trim()
            .to_string()
    }

    /// Its SHA-256 fingerprint.
    pub fn fingerprint(&self) -> String {
        let line = run(
            "ssh-keygen",
            &[
                "-l",
                "-E",
                "sha256",
                "-f",
                &self.path("host_ed25519.pub").display().to_string(),
            ],
        );
        line.split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_string()
    }

    fn new_host_key(&self) {
        let key = self.path("host_ed25519");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(self.path("host_ed25519.pub"));
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                &key.display().to_string(),
            ],
        );
    }

    fn launch(&mut self) {
        let _ = std::fs::create_dir_all("/run/sshd");
        let d = self.dir.path().display();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nStrictModes no\n\
             PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin yes\nAcceptEnv {ACCEPTED_ENV}\nMaxStartups 100\nLogLevel VERBOSE\n",
            port = self.port
        );
        std::fs::write(self.path("sshd_config"), config).expect("config");
        let log = std::fs::File::create(self.path("sshd.log")).expect("log");
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.path("sshd_config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "sshd did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }

    /// Stops the listener (connections it forked go on) and starts it again with a
    /// new host key.
    pub fn restart_with_new_host_key(&mut self) {
        self.stop_listener();
        self.new_host_key();
        self.launch();
    }

    fn stop_listener(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills, server side, every connection the listener forked (and theirs).
    pub fn kill_connections(&self) -> usize {
        let Some(listener) = self.child.as_ref().map(|c| c.id()) else {
            return 0;
        };
        let mut killed = 0;
        for pid in descendants(listener) {
            if Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
            {
                killed += 1;
            }
        }
        killed
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.kill_connections();
        self.stop_listener();
    }
}

/// The parent of `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow the last `)`.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Every process below `root`.
pub fn descendants(root: u32) -> Vec<u32> {
    let pids = all_pids();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        for &pid in &pids {
            if parent_of(pid) == Some(parent) && !found.contains(&pid) {
                found.push(pid);
            }
        }
        i += 1;
    }
    found.remove(0);
    found
}

/// The processes whose command line holds all of `words` as arguments.
pub fn processes_with(words: &[&str]) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| {
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            words.iter().all(|w| args.contains(&w.as_bytes()))
        })
        .collect()
}
