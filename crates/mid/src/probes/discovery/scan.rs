//! `Shazzam`: a TCP connect scan. Each (address, port) pair is one connection
//! attempt, made in address order, paced by the job's token bucket
//! ([`RateLimiter`]), at most `concurrency` open at once (a semaphore whose permit a
//! connection holds until it is closed), each bounded by `timeout_ms`. An accepted
//! connection is an open port: with `banner`, what the service sends first (up to
//! [`BANNER_BYTES`] within [`BANNER_WAIT_MS`]) is kept; then it is reset rather than
//! closed (no TIME_WAIT left behind by thousands of probes). A refused connection
//! proves the host is up; a timeout or an unreachable host says nothing.
//!
//! One task makes the attempts; the job's loop takes their outcomes, finishes hosts
//! in address order and pages them ([`Pager`]). Everything belongs to the job's
//! future: dropping it (a cancelled job) aborts the attempts at once.

use super::AbortOnDrop;
use super::pages::Pager;
use super::rate::RateLimiter;
use super::targets::{self, Host};
use crate::probes::ProbeError;
use crate::probes::output_stream::PageSink;
use crate::probes::registry::Call;
use openmid_proto::discovery::{
    BANNER_BYTES, BANNER_WAIT_MS, OpenPort, PAGE_INTERVAL_MS, ScanHost, ScanRequest, ScanResponse,
    chunk_range, escape_banner, expand_ports, expand_targets,
};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What one connection attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PortState {
    /// Accepted, with what the service said first.
    Open(Option<String>),
    /// Refused: the host is up, the port closed.
    Closed,
    /// No answer in time, or the host unreachable.
    Silent,
}

/// One attempt's outcome, for the job's loop.
struct Outcome {
    host: usize,
    port: u16,
    state: PortState,
}

/// How each attempt is made.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    timeout: Duration,
    banner: bool,
}

/// Runs one scan job.
pub(super) async fn run(req: ScanRequest, call: Call<'_>) -> Result<ScanResponse, ProbeError> {
    let started = Instant::now();
    let invalid = |e: openmid_proto::probe::FieldError| ProbeError::InvalidInput(e.to_string());
    let all = expand_targets("targets", &req.targets).map_err(invalid)?;
    let range = match req.chunk {
        Some(c) => chunk_range(all.len(), c.index, c.of),
        None => 0..all.len(),
    };
    let ports = expand_ports("ports", &req.ports).map_err(invalid)?;
    let checked = targets::check_hosts(&call.ctx.policy, &all[range])?;
    let (ports, refused_ports) = targets::check_ports(&call.ctx.policy, &ports)?;
    let resume = req.resume;
    let skip = resume
        .map_or(0, |r| r.hosts_done)
        .min(checked.hosts.len() as u64) as usize;
    let hosts: Vec<Host> = checked.hosts[skip..].to_vec();
    let sink = PageSink::new(call.ctx.instance.clone(), &call.job.id, &call.job.cancel)
        .starting_at(resume.map_or(0, |r| r.next_page));
    let mut pager = Pager::new(sink, resume);
    tracing::info!(
        hosts = hosts.len(),
        skipped = skip,
        ports = ports.len(),
        rate = req.rate_per_sec,
        "scan starting"
    );

    let (tx, mut rx) = mpsc::unbounded_channel();
    let limiter = Arc::new(RateLimiter::new(
        req.rate_per_sec,
        (req.rate_per_sec / 20).clamp(1, req.concurrency.max(1)),
    ));
    let attempt = Attempt {
        timeout: Duration::from_millis(req.timeout_ms),
        banner: req.banner,
    };
    let _attempts = AbortOnDrop(tokio::spawn(attempt_all(
        hosts.clone(),
        ports.clone(),
        limiter,
        Arc::new(Semaphore::new(req.concurrency.max(1) as usize)),
        attempt,
        tx,
    )));

    let mut remaining: Vec<usize> = hosts
        .iter()
        .map(|h| if h.allowed { ports.len() } else { 0 })
        .collect();
    let mut open: Vec<Vec<OpenPort>> = vec![Vec::new(); hosts.len()];
    let mut up = vec![false; hosts.len()];
    let mut attempts: u64 = 0;
    let mut next = 0usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(PAGE_INTERVAL_MS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while next < hosts.len() && remaining[next] == 0 {
            let mut ports_open = std::mem::take(&mut open[next]);
            ports_open.sort_by_key(|p| p.port);
            let found = ScanHost {
                address: hosts[next].ip.to_string(),
                open: ports_open,
            };
            pager.host_done(Some(found), up[next]).await;
            next += 1;
        }
        if next == hosts.len() {
            break;
        }
        tokio::select! {
            outcome = rx.recv() => {
                let Some(Outcome { host, port, state }) = outcome else {
                    return Err(ProbeError::Target("the scan's connection task ended early".into()));
                };
                attempts += 1;
                if let Some(left) = remaining.get_mut(host) {
                    *left = left.saturating_sub(1);
                }
                match state {
                    PortState::Open(banner) => {
                        up[host] = true;
                        open[host].push(OpenPort { port, banner });
                    }
                    PortState::Closed => up[host] = true,
                    PortState::Silent => {}
                }
            }
            _ = ticker.tick() => pager.flush().await,
        }
    }
    let scanned_for = started.elapsed();
    let done = pager.finish().await;
    let rate = if scanned_for.as_secs_f64() > 0.0 {
        attempts as f64 / scanned_for.as_secs_f64()
    } else {
        0.0
    };
    tracing::info!(
        attempts,
        ?scanned_for,
        rate,
        open = done.open_ports,
        "scan done"
    );
    Ok(ScanResponse {
        hosts_scanned: done.hosts_done,
        hosts_up: done.hosts_up,
        open_ports: done.open_ports,
        pages: done.pages,
        refused: checked.refused,
        refused_count: checked.refused_count,
        refused_ports,
        duration_ms: started.elapsed().as_millis() as u64,
        rate_per_sec_achieved: (rate * 10.0).round() / 10.0,
    })
}

/// Makes every attempt in order, paced and bounded, sending each outcome to `tx`.
async fn attempt_all(
    hosts: Vec<Host>,
    ports: Vec<u16>,
    limiter: Arc<RateLimiter>,
    slots: Arc<Semaphore>,
    attempt: Attempt,
    tx: mpsc::UnboundedSender<Outcome>,
) {
    let mut running = JoinSet::new();
    for (index, host) in hosts.iter().enumerate() {
        if !host.allowed {
            continue;
        }
        for port in &ports {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            limiter.acquire().await;
            let (tx, addr, port) = (tx.clone(), SocketAddr::new(host.ip, *port), *port);
            running.spawn(async move {
                let state = probe_port(addr, attempt).await;
                drop(permit);
                let _ = tx.send(Outcome {
                    host: index,
                    port,
                    state,
                });
            });
            while running.try_join_next().is_some() {}
        }
    }
    while running.join_next().await.is_some() {}
}

/// One connection attempt.
async fn probe_port(addr: SocketAddr, attempt: Attempt) -> PortState {
    match tokio::time::timeout(attempt.timeout, TcpStream::connect(addr)).await {
        Ok(Ok(mut stream)) => {
            let banner = if attempt.banner {
                read_banner(&mut stream).await
            } else {
                None
            };
            // Reset, not closed: no TIME_WAIT per probe.
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            PortState::Open(banner)
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => PortState::Closed,
        Ok(Err(e)) => {
            tracing::trace!(%addr, error = %e, "connect failed");
            PortState::Silent
        }
        Err(_) => PortState::Silent,
    }
}

/// What the service sends unasked: up to [`BANNER_BYTES`], until a line ends, the
/// connection closes or [`BANNER_WAIT_MS`] pass.
async fn read_banner(stream: &mut TcpStream) -> Option<String> {
    let deadline = Instant::now() + Duration::from_millis(BANNER_WAIT_MS);
    let mut buf = vec![0u8; BANNER_BYTES];
    let mut len = 0;
    while len < BANNER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[len..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                len += n;
                if buf[..len].contains(&b'\n') {
                    break;
                }
            }
        }
    }
    (len > 0).then(|| escape_banner(&buf[..len]))
}
