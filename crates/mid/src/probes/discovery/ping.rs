//! `Ping`: which hosts answer. ICMP echo where the MID may send it — a raw socket
//! (root or `CAP_NET_RAW`), else an unprivileged ICMP datagram socket (allowed when
//! the process's group is in `net.ipv4.ping_group_range`) — otherwise, or when asked,
//! TCP connects to the fallback ports, where an accepted and a refused connection
//! both prove the host is up.
//!
//! One job opens one ICMP socket per address family and one task reading it. Each
//! echo request carries the job's identifier, its probe's sequence number and a
//! payload holding the job's token; a reply is matched by its source, sequence
//! number and token (and identifier on a raw socket, which sees every job's
//! replies — on a datagram socket the kernel rewrites the identifier and delivers
//! only this socket's). So jobs at once never take each other's replies.

use super::AbortOnDrop;
use super::icmp::{echo_request, parse_reply};
use super::targets;
use crate::probes::ProbeError;
use crate::probes::registry::Call;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use openmid_proto::discovery::{PingHost, PingMethod, PingMode, PingRequest, PingResponse};
use socket2::{Domain, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Which ICMP socket the MID could open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpKind {
    /// `SOCK_RAW`: root or `CAP_NET_RAW`.
    Raw,
    /// `SOCK_DGRAM, IPPROTO_ICMP`: a group in `net.ipv4.ping_group_range`.
    Datagram,
}

impl IcmpKind {
    fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Datagram => "datagram",
        }
    }
}

/// Replies awaited, by source address and sequence number.
type Waiters = Arc<Mutex<HashMap<(IpAddr, u16), oneshot::Sender<Instant>>>>;

/// One family's ICMP socket of one job, and the task matching its replies.
struct Channel {
    socket: Arc<UdpSocket>,
    v6: bool,
    waiters: Waiters,
    _reader: AbortOnDrop,
}

/// The job's identity on the wire.
#[derive(Debug, Clone, Copy)]
struct Tag {
    id: u16,
    token: [u8; 8],
}

impl Tag {
    fn new() -> Self {
        static JOBS: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = JOBS.fetch_add(1, Ordering::Relaxed);
        let token = (nanos ^ (u64::from(std::process::id()) << 32))
            .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Self {
            id: (token >> 16) as u16 ^ token as u16,
            token: token.to_be_bytes(),
        }
    }

    fn payload(&self) -> Vec<u8> {
        let mut p = self.token.to_vec();
        p.extend_from_slice(b"openmid!");
        p
    }
}

fn open_socket(v6: bool) -> io::Result<(Socket, IcmpKind)> {
    let (domain, protocol) = if v6 {
        (Domain::IPV6, socket2::Protocol::ICMPV6)
    } else {
        (Domain::IPV4, socket2::Protocol::ICMPV4)
    };
    match Socket::new(domain, Type::RAW, Some(protocol)) {
        Ok(s) => Ok((s, IcmpKind::Raw)),
        Err(raw) => Socket::new(domain, Type::DGRAM, Some(protocol))
            .map(|s| (s, IcmpKind::Datagram))
            .map_err(|dgram| {
                io::Error::new(
                    dgram.kind(),
                    format!("a raw ICMP socket: {raw}; an ICMP datagram socket: {dgram}"),
                )
            }),
    }
}

impl Channel {
    fn open(v6: bool, tag: Tag) -> io::Result<(Self, IcmpKind)> {
        let (socket, kind) = open_socket(v6)?;
        socket.set_nonblocking(true)?;
        // An ICMP socket is a datagram socket to tokio: `sendto`/`recvfrom` are all
        // it uses.
        let socket = Arc::new(UdpSocket::from_std(std::net::UdpSocket::from(socket))?);
        let waiters: Waiters = Arc::default();
        let reader = tokio::spawn(read_replies(socket.clone(), v6, kind, tag, waiters.clone()));
        Ok((
            Self {
                socket,
                v6,
                waiters,
                _reader: AbortOnDrop(reader),
            },
            kind,
        ))
    }
}

/// Hands each reply of this job to its waiter, until aborted.
async fn read_replies(
    socket: Arc<UdpSocket>,
    v6: bool,
    kind: IcmpKind,
    tag: Tag,
    waiters: Waiters,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!(error = %e, "reading an ICMP socket failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let at = Instant::now();
        let Some(reply) = parse_reply(v6, kind == IcmpKind::Raw && !v6, &buf[..n.min(buf.len())])
        else {
            continue;
        };
        if (kind == IcmpKind::Raw && reply.id != tag.id) || !reply.payload.starts_with(&tag.token) {
            continue;
        }
        let key = (from.ip().to_canonical(), reply.seq);
        let waiter = waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        if let Some(waiter) = waiter {
            let _ = waiter.send(at);
        }
    }
}

/// How one job's probes are timed.
#[derive(Debug, Clone, Copy)]
struct Timing {
    count: u32,
    interval: Duration,
    timeout: Duration,
}

/// Runs one ping job.
pub(super) async fn run(req: PingRequest, call: Call<'_>) -> Result<PingResponse, ProbeError> {
    let started = Instant::now();
    let ips = openmid_proto::discovery::expand_targets("targets", &req.targets)
        .map_err(|e| ProbeError::InvalidInput(e.to_string()))?;
    let checked = targets::check_hosts(&call.ctx.policy, &ips)?;
    let allowed: Vec<IpAddr> = checked
        .hosts
        .iter()
        .filter(|h| h.allowed)
        .map(|h| h.ip)
        .collect();
    let timing = Timing {
        count: req.count,
        interval: Duration::from_millis(req.interval_ms),
        timeout: Duration::from_millis(req.timeout_ms),
    };
    let concurrency = req.concurrency.max(1) as usize;
    let tag = Tag::new();
    let channels = match req.mode {
        PingMode::Tcp => None,
        PingMode::Icmp | PingMode::Auto => match open_channels(&allowed, tag) {
            Ok(opened) => Some(opened),
            Err(e) if req.mode == PingMode::Auto => {
                tracing::info!(error = %e, "no ICMP socket for this MID: pinging by TCP connects");
                None
            }
            Err(e) => {
                return Err(ProbeError::Target(format!(
                    "ICMP echo needs a raw socket (root or CAP_NET_RAW) or an ICMP datagram socket (a group in net.ipv4.ping_group_range), and neither opened ({e}); ask for mode `tcp` or `auto`"
                )));
            }
        },
    };
    let (hosts, method_used, icmp_socket) = match &channels {
        Some((v4, v6, kind)) => {
            let payload = tag.payload();
            let hosts: Vec<PingHost> = futures::stream::iter(allowed.iter().copied())
                .map(|ip| {
                    let channel = if ip.is_ipv6() {
                        v6.as_ref()
                    } else {
                        v4.as_ref()
                    };
                    icmp_host(channel, ip, tag, &payload, timing)
                })
                .buffered(concurrency)
                .collect()
                .await;
            (hosts, PingMethod::Icmp, Some(kind.name().to_string()))
        }
        None => {
            let (ports, refused_ports) = targets::check_ports(&call.ctx.policy, &req.tcp_ports)?;
            if !refused_ports.is_empty() {
                tracing::info!(
                    ?refused_ports,
                    "policy.scan refuses some TCP fallback ports"
                );
            }
            let hosts: Vec<PingHost> = futures::stream::iter(allowed.iter().copied())
                .map(|ip| tcp_ping(ip, &ports, timing.count, timing.interval, timing.timeout))
                .buffered(concurrency)
                .collect()
                .await;
            (hosts, PingMethod::Tcp, None)
        }
    };
    let alive = hosts.iter().filter(|h| h.alive).count() as u64;
    Ok(PingResponse {
        alive,
        hosts,
        method_used,
        icmp_socket,
        refused: checked.refused,
        refused_count: checked.refused_count,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The job's ICMP sockets: one per family its addresses need.
fn open_channels(
    ips: &[IpAddr],
    tag: Tag,
) -> io::Result<(Option<Channel>, Option<Channel>, IcmpKind)> {
    let mut kind = IcmpKind::Raw;
    let mut open = |v6: bool| -> io::Result<Option<Channel>> {
        if !ips.iter().any(|ip| ip.is_ipv6() == v6) {
            return Ok(None);
        }
        let (channel, k) = Channel::open(v6, tag)?;
        if k == IcmpKind::Datagram {
            kind = k;
        }
        Ok(Some(channel))
    };
    let v4 = open(false)?;
    let v6 = open(true)?;
    Ok((v4, v6, kind))
}

/// Pings one host `count` times, `interval` apart, each reply awaited `timeout`.
async fn icmp_host(
    channel: Option<&Channel>,
    ip: IpAddr,
    tag: Tag,
    payload: &[u8],
    timing: Timing,
) -> PingHost {
    let Some(channel) = channel else {
        return summarize(ip, PingMethod::Icmp, &[]);
    };
    let start = Instant::now();
    let probes = (0..timing.count).map(|i| async move {
        tokio::time::sleep_until(start + timing.interval * i).await;
        let seq = i as u16;
        let (tx, rx) = oneshot::channel();
        let key = (ip, seq);
        let lock = || channel.waiters.lock().unwrap_or_else(|e| e.into_inner());
        lock().insert(key, tx);
        let message = echo_request(channel.v6, tag.id, seq, payload);
        let sent_at = Instant::now();
        let answered = match channel
            .socket
            .send_to(&message, SocketAddr::new(ip, 0))
            .await
        {
            Ok(_) => tokio::time::timeout(timing.timeout, rx)
                .await
                .ok()
                .and_then(Result::ok),
            Err(e) => {
                tracing::debug!(%ip, error = %e, "sending an echo request failed");
                None
            }
        };
        lock().remove(&key);
        answered.map(|at| at.saturating_duration_since(sent_at))
    });
    let rtts: Vec<Option<Duration>> = futures::future::join_all(probes).await;
    summarize(ip, PingMethod::Icmp, &rtts)
}

/// Pings one host by TCP: `count` rounds `interval` apart, each connecting to all
/// `ports` at once; a round is answered by the first connection accepted or refused
/// within `timeout` (a refusal comes from the host itself).
pub async fn tcp_ping(
    ip: IpAddr,
    ports: &[u16],
    count: u32,
    interval: Duration,
    timeout: Duration,
) -> PingHost {
    let start = Instant::now();
    let rounds = (0..count).map(|i| async move {
        tokio::time::sleep_until(start + interval * i).await;
        let sent_at = Instant::now();
        let mut connects: FuturesUnordered<_> = ports
            .iter()
            .map(|port| tokio::net::TcpStream::connect(SocketAddr::new(ip, *port)))
            .collect();
        let first = async {
            while let Some(result) = connects.next().await {
                match result {
                    Ok(_) => return Some(sent_at.elapsed()),
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        return Some(sent_at.elapsed());
                    }
                    Err(_) => {}
                }
            }
            None
        };
        tokio::time::timeout(timeout, first).await.ok().flatten()
    });
    let rtts: Vec<Option<Duration>> = futures::future::join_all(rounds).await;
    summarize(ip, PingMethod::Tcp, &rtts)
}

fn summarize(ip: IpAddr, method: PingMethod, rtts: &[Option<Duration>]) -> PingHost {
    let got: Vec<f64> = rtts
        .iter()
        .flatten()
        .map(|d| (d.as_secs_f64() * 1e6).round() / 1e3)
        .collect();
    let sent = rtts.len() as u32;
    let received = got.len() as u32;
    let (min, avg, max) = if got.is_empty() {
        (None, None, None)
    } else {
        let min = got.iter().copied().fold(f64::INFINITY, f64::min);
        let max = got.iter().copied().fold(0.0, f64::max);
        let avg = (got.iter().sum::<f64>() / f64::from(received) * 1e3).round() / 1e3;
        (Some(min), Some(avg), Some(max))
    };
    PingHost {
        address: ip.to_string(),
        method,
        alive: received > 0,
        sent,
        received,
        loss: if sent == 0 {
            1.0
        } else {
            f64::from(sent - received) / f64::from(sent)
        },
        rtt_min_ms: min,
        rtt_avg_ms: avg,
        rtt_max_ms: max,
    }
}
