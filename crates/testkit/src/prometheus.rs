//! A real Prometheus server (Debian's `prometheus`) on loopback with its
//! remote-write receiver on, in a fresh data directory, for tests of the instance's
//! remote write. Stopped (killed) when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian installs it.
pub const BINARY: &str = "/usr/bin/prometheus";

/// A running Prometheus.
pub struct Prometheus {
    /// Listening address.
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Prometheus {
    /// The binary, if installed.
    pub fn binary() -> Option<PathBuf> {
        Path::new(BINARY).is_file().then(|| PathBuf::from(BINARY))
    }

    /// Starts it on a free loopback port and waits until it is ready (up to 60 s).
    pub async fn start() -> std::io::Result<Self> {
        let binary = Self::binary().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{BINARY} is not installed"),
            )
        })?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("prometheus.yml");
        // No scrape jobs: it only receives what is written to it.
        std::fs::write(&config, "global:\n  scrape_interval: 1m\n")?;
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?
        };
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-remote-write-receiver")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        let mut this = Self {
            addr,
            child,
            _dir: dir,
            http,
        };
        let ready = format!("http://{addr}/-/ready");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = this.http.get(&ready).send().await
                && r.status().is_success()
            {
                return Ok(this);
            }
            if let Ok(Some(status)) = this.child.try_wait() {
                let log = std::fs::read_to_string(this._dir.path().join("prometheus.log"))
                    .unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "prometheus exited ({status}): {log}"
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(std::io::Error::other("prometheus not ready in 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The remote-write receiver's URL.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// An instant query (`/api/v1/query`); the answer's JSON.
    pub async fn query(&self, query: &str) -> Result<serde_json::Value, reqwest::Error> {
        self.http
            .get(format!(
                "http://{}/api/v1/query?query={}",
                self.addr,
                openmid_proto::encode_path_segment(query)
            ))
            .send()
            .await?
            .json()
            .await
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
