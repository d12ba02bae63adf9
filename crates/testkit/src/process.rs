//! A MID Server as a separate `openmid mid` process, for tests and benchmarks that must
//! kill one for real (`kill -9`) or measure its memory.

use openmid_mid::config::MidConfig;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running `openmid mid` process; killed when dropped.
pub struct MidProcess {
    child: Child,
    /// The MID's name.
    pub name: String,
    /// Its config file.
    pub config_path: PathBuf,
}

impl MidProcess {
    /// Writes `config` next to its state dir and starts `bin mid --config …`. Logs go
    /// to `state_dir/mid.log`.
    pub fn spawn(bin: &Path, config: &MidConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.state_dir)?;
        let config_path = config.state_dir.join("mid.toml");
        let text = toml::to_string(config).map_err(std::io::Error::other)?;
        std::fs::write(&config_path, text)?;
        let log = std::fs::File::create(config.state_dir.join("mid.log"))?;
        let child = Command::new(bin)
            .args(["mid", "--config"])
            .arg(&config_path)
            .env(
                "OPENMID_LOG",
                std::env::var("OPENMID_LOG").unwrap_or_else(|_| "info".into()),
            )
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

    /// Resident memory in bytes, from `/proc` (Linux).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    }
}

impl Drop for MidProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
