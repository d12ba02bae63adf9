//! A small HTTP `CONNECT` proxy on loopback, standing in for a corporate egress proxy:
//! the MID must reach the instance through it when configured to. It counts the
//! tunnels it opened and refuses any target outside the loopback range.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A running proxy.
pub struct ConnectProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    tunnels: Arc<AtomicU64>,
    shutdown: CancellationToken,
}

impl ConnectProxy {
    /// Starts on 127.0.0.1 and a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (to bring a stopped proxy back on the same port).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(addr, None).await
    }

    /// Starts on a free port, opening tunnels only for requests carrying
    /// `Proxy-Authorization: Basic` with `user` and `password` (else `407`).
    pub async fn start_requiring(user: &str, password: &str) -> std::io::Result<Self> {
        use base64::Engine as _;
        let expected =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), Some(expected)).await
    }

    async fn start_with(addr: SocketAddr, basic: Option<String>) -> std::io::Result<Self> {
        let basic = Arc::new(basic);
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let tunnels = Arc::new(AtomicU64::new(0));
        let shutdown = CancellationToken::new();
        let (count, stop) = (tunnels.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.cancelled() => return,
                };
                let Ok((client, _)) = accepted else { continue };
                let (count, stop, basic) = (count.clone(), stop.clone(), basic.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tunnel(client, count, basic.as_deref()) => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            tunnels,
            shutdown,
        })
    }

    /// `http://127.0.0.1:PORT`, for a MID's `proxy` setting.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Tunnels opened so far.
    pub fn tunnels(&self) -> u64 {
        self.tunnels.load(Ordering::SeqCst)
    }

    /// Stops listening and cuts every open tunnel.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn tunnel(
    mut client: TcpStream,
    count: Arc<AtomicU64>,
    basic: Option<&str>,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    if let Some(expected) = basic {
        let given = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("proxy-authorization")
                .then(|| value.trim().strip_prefix("Basic ").map(str::to_string))
                .flatten()
        });
        if given.as_deref() != Some(expected) {
            client
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic realm=\"test\"\r\ncontent-length: 0\r\n\r\n")
                .await?;
            return Ok(());
        }
    }
    let target = head
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("CONNECT "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|t| t.parse::<SocketAddr>().ok());
    let Some(target) = target.filter(|t| t.ip().is_loopback()) else {
        client
            .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    count.fetch_add(1, Ordering::SeqCst);
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
