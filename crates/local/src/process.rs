//! An instance or a MID Server as a separate `openmid` process, for tests and benchmarks
//! that must kill one for real (`kill -9`) or measure its memory and CPU.

use openmid_mid::config::MidConfig;
use openmid_proto::secret::Secret;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `openmid mid` process; killed when dropped.
pub struct MidProcess {
    child: Child,
    /// The MID's name.
    pub name: String,
    /// Its config file.
    pub config_path: PathBuf,
}

impl MidProcess {
    /// Writes `config` next to its state dir and starts `bin mid --config …` (`bin
    /// --config …` when `bin` is the MID-only `openmid-mid`). Logs go to
    /// `state_dir/mid.log`.
    pub fn spawn(bin: &Path, config: &MidConfig) -> std::io::Result<Self> {
        let level = std::env::var("OPENMID_LOG").unwrap_or_else(|_| "info".into());
        Self::spawn_logging(bin, config, &level)
    }

    /// [`MidProcess::spawn`] with the log filter `level` (e.g. `debug`).
    pub fn spawn_logging(bin: &Path, config: &MidConfig, level: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.state_dir)?;
        let config_path = config.state_dir.join("mid.toml");
        let text = toml::to_string(config).map_err(std::io::Error::other)?;
        std::fs::write(&config_path, text)?;
        let log = std::fs::File::create(config.state_dir.join("mid.log"))?;
        let mut command = Command::new(bin);
        if !is_mid_only(bin) {
            command.arg("mid");
        }
        let child = command
            .arg("--config")
            .arg(&config_path)
            .env("OPENMID_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Self {
            child,
            name: config.name.clone(),
            config_path,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: the MID dies without a word, as in a crash or a lost host.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident memory in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes(self.pid())
    }
}

/// The file name of the MID-only binary, built beside `openmid`.
const MID_ONLY: &str = "openmid-mid";

fn is_mid_only(bin: &Path) -> bool {
    bin.file_stem().is_some_and(|n| n == MID_ONLY)
}

/// The MID-only binary (`openmid-mid`) beside `openmid` at `main`, when it was built
/// there (cargo builds both), else `main` itself, whose `mid` command runs the same
/// MID. Benchmarks measure the MID as it is deployed: on its own binary.
pub fn mid_binary(main: &Path) -> PathBuf {
    let beside = main
        .with_file_name(MID_ONLY)
        .with_extension(std::env::consts::EXE_EXTENSION);
    if beside.is_file() {
        beside
    } else {
        main.to_path_buf()
    }
}

/// Resident memory of a process in bytes, from `/proc` (Linux).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_bytes(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Anonymous resident memory of a process in bytes (heap, stacks: what it allocated,
/// not the pages of its binary, which processes running the same file share).
pub fn rss_anon_bytes(pid: u32) -> Option<u64> {
    status_bytes(&format!("/proc/{pid}/status"), "RssAnon:")
}

/// A `kB` field of a `/proc/…/status` file, in bytes.
pub(crate) fn status_bytes(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// CPU time a process has used (user + system), from `/proc` (Linux).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Linux reports in clock ticks, 100 per second on every mainstream configuration.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// What the nodes of one instance share, for [`InstanceProcess::spawn_node`].
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// The store's URL (`postgres://…`); SQLite in the data directory when unset.
    pub database: Option<Secret>,
    /// The blob directory every node reads and writes.
    pub blob_dir: Option<PathBuf>,
    /// The certificate and key every node serves.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The credential vault's master key (`OPENMID_MASTER_KEY`).
    pub master_key: Option<Secret>,
    /// The admin token, when another node made it (only that node prints it).
    pub token: Option<Secret>,
    /// A fixed listen address instead of a free port.
    pub listen: Option<std::net::SocketAddr>,
    /// More settings, as `OPENMID_INSTANCE_*` environment variables.
    pub env: Vec<(String, String)>,
}

/// A running `openmid instance` process; killed when dropped.
pub struct InstanceProcess {
    child: Child,
    /// Base URL.
    pub url: String,
    /// Admin token.
    pub token: Secret,
    /// Certificate file (the clients' CA).
    pub cert_path: PathBuf,
}

impl InstanceProcess {
    /// Starts `bin instance` with a fresh `data_dir` on a free loopback port and reads
    /// the URL, certificate and admin token it prints.
    pub fn spawn(bin: &Path, data_dir: &Path) -> std::io::Result<Self> {
        let level = std::env::var("OPENMID_LOG").unwrap_or_else(|_| "warn".into());
        Self::spawn_logging(bin, data_dir, &level)
    }

    /// [`InstanceProcess::spawn`] with the log filter `level` (e.g. `debug`); the log
    /// goes to `data_dir` + `.log`.
    pub fn spawn_logging(bin: &Path, data_dir: &Path, level: &str) -> std::io::Result<Self> {
        Self::spawn_node(bin, data_dir, &NodeOptions::default(), level)
    }

    /// One node of an instance whose nodes share a store: `options` says which store,
    /// blob directory, certificate and master key they share.
    pub fn spawn_node(
        bin: &Path,
        data_dir: &Path,
        options: &NodeOptions,
        level: &str,
    ) -> std::io::Result<Self> {
        let log = std::fs::File::create(data_dir.with_extension("log"))?;
        let listen = options
            .listen
            .map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
        let mut command = Command::new(bin);
        command
            .args(["instance", "--listen", &listen, "--data-dir"])
            .arg(data_dir)
            .env("OPENMID_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(url) = &options.database {
            // In the environment, as an operator should: flags show in `ps`.
            command.env("OPENMID_INSTANCE_DATABASE", url.expose());
        }
        if let Some(key) = &options.master_key {
            command.env("OPENMID_MASTER_KEY", key.expose());
        }
        command.envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(dir) = &options.blob_dir {
            command.arg("--blob-dir").arg(dir);
        }
        if let Some((cert, key)) = &options.tls {
            command
                .arg("--tls-cert")
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
        }
        let mut child = command.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut url, mut token, mut cert) = (None, options.token.clone(), None);
        let mut token_line = false;
        while url.is_none() || !token_line || cert.is_none() {
            let Some(line) = lines.next().transpose()? else {
                let _ = child.kill();
                return Err(std::io::Error::other(
                    "the instance exited before printing its URL and token",
                ));
            };
            if let Some((key, value)) = line.trim().split_once(':') {
                let value = value.trim().to_string();
                match key.trim() {
                    "URL" => url = Some(value),
                    "admin token" => {
                        token_line = true;
                        // Printed only by the node that made it.
                        if value.starts_with("omadm_") {
                            token = Some(Secret::new(value));
                        }
                    }
                    "certificate" => cert = Some(PathBuf::from(value)),
                    _ => {}
                }
            }
        }
        // Keep draining stdout so the instance never writes into a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self {
            child,
            url: url.unwrap_or_default(),
            token: token.unwrap_or_else(|| Secret::new("")),
            cert_path: cert.unwrap_or_default(),
        })
    }

    /// Stops the process as an operator's `systemctl stop` does (SIGTERM) and waits
    /// for it, up to 20 s, then kills it.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// Kills the process at once (SIGKILL): a node that dies without a word.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A MID config for this instance (state in `state_dir`, trusting its certificate).
    pub fn mid_config(&self, name: &str, state_dir: &Path, token: Option<String>) -> MidConfig {
        crate::mid_config(&self.url, &self.cert_path, name, state_dir, token)
    }

    /// An admin API client trusting this instance's certificate.
    pub fn api(&self) -> Result<openmid_client::ApiClient, crate::KitError> {
        let pem = std::fs::read(&self.cert_path)?;
        Ok(openmid_client::ApiClient::new(
            &self.url,
            self.token.clone(),
            &openmid_proto::trust::Trust::CaPem(pem),
        )?)
    }
}

impl Drop for InstanceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MidProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
