//! The baseline `bench rest --tunnel-bin` measures against: a plain TCP reverse
//! tunnel (rathole), its server on the "cloud" side and its client beside the target
//! dialling out to it, as a team would set one up instead of a MID. Both ends run on
//! loopback with their own configs in the bench's temporary directory.

use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running tunnel: connections to `addr` reach the target.
pub(super) struct Tunnel {
    /// Where callers connect (the tunnel server's service port).
    pub(super) addr: SocketAddr,
    server: Child,
    client: Child,
}

/// A loopback port free right now.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Tunnel {
    /// Starts rathole's server and client (`bin`) forwarding to `target`, and waits
    /// until a connection through it reaches the target.
    pub(super) async fn start(bin: &Path, dir: &Path, target: SocketAddr) -> Result<Self> {
        let (control, service) = (free_port()?, free_port()?);
        let token = format!(
            "bench-{}-{}",
            std::process::id(),
            openmid_proto::time::now_ms()
        );
        let server_toml = dir.join("tunnel-server.toml");
        let client_toml = dir.join("tunnel-client.toml");
        std::fs::write(
            &server_toml,
            format!(
                "[server]\nbind_addr = \"127.0.0.1:{control}\"\n[server.transport]\ntype = \"tcp\"\n[server.transport.tcp]\nnodelay = true\n[server.services.bench]\ntoken = \"{token}\"\nbind_addr = \"127.0.0.1:{service}\"\nnodelay = true\n"
            ),
        )?;
        std::fs::write(
            &client_toml,
            format!(
                "[client]\nremote_addr = \"127.0.0.1:{control}\"\n[client.transport]\ntype = \"tcp\"\n[client.transport.tcp]\nnodelay = true\n[client.services.bench]\ntoken = \"{token}\"\nlocal_addr = \"{target}\"\nnodelay = true\n"
            ),
        )?;
        let spawn = |config: &Path| {
            Command::new(bin)
                .arg(config)
                .env("RUST_LOG", "error")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))
        };
        let server = spawn(&server_toml)?;
        let client = spawn(&client_toml)?;
        let tunnel = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], service)),
            server,
            client,
        };
        let http = reqwest::Client::builder().no_proxy().build()?;
        let url = format!("http://{}/hello", tunnel.addr);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(tunnel);
            }
            if Instant::now() > deadline {
                bail!(
                    "no answer through the tunnel at {} within 20 s (is {} rathole?)",
                    tunnel.addr,
                    bin.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        for child in [&mut self.server, &mut self.client] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
