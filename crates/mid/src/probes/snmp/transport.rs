//! One UDP socket to one checked address of the agent: requests go out, answers are
//! taken only from that address (the socket is connected) and only when they match
//! the request (the caller decides), each attempt waits `timeout`, and after
//! `retries` more attempts the job ends with an error naming the agent, the timeout
//! and the attempts — an agent that never answers (v2c agents stay silent on a wrong
//! community) cannot hang a job.

use crate::probes::ProbeError;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// Largest datagram read.
const MAX_DATAGRAM: usize = 65_535;

/// A socket to the agent.
pub struct Transport {
    socket: UdpSocket,
    /// `host:port` for messages.
    pub shown: String,
    timeout: Duration,
    retries: u32,
}

impl Transport {
    /// A socket connected to `addr` (a checked address).
    pub async fn open(
        addr: SocketAddr,
        shown: String,
        timeout: Duration,
        retries: u32,
    ) -> Result<Self, ProbeError> {
        let local: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| ProbeError::Target(format!("opening a UDP socket for {shown}: {e}")))?;
        socket
            .connect(addr)
            .await
            .map_err(|e| ProbeError::Target(format!("UDP to {shown}: {e}")))?;
        Ok(Self {
            socket,
            shown,
            timeout,
            retries,
        })
    }

    /// Sends `request` and returns the first answer `accept` takes, resending it
    /// after each `timeout` up to `retries` times.
    pub async fn exchange<T>(
        &self,
        request: &[u8],
        mut accept: impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<T, ProbeError> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tracing::debug!(agent = %self.shown, attempt, "no SNMP answer yet: sending again");
            }
            self.socket
                .send(request)
                .await
                .map_err(|e| self.io_error(&e))?;
            let until = Instant::now() + self.timeout;
            loop {
                match tokio::time::timeout_at(until, self.socket.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(Err(e)) => return Err(self.io_error(&e)),
                    Ok(Ok(n)) => {
                        if let Some(got) = accept(buf.get(..n).unwrap_or_default()) {
                            return Ok(got);
                        }
                        tracing::debug!(agent = %self.shown, bytes = n, "an SNMP datagram that does not answer the request was ignored");
                    }
                }
            }
        }
        Err(ProbeError::Target(format!(
            "no SNMP answer from {} within {} ms, after {} attempts ({} retries): the agent is down or filtered, or refuses this community or user (v1/v2c agents stay silent on a wrong community)",
            self.shown,
            self.timeout.as_millis(),
            self.retries + 1,
            self.retries
        )))
    }

    fn io_error(&self, e: &std::io::Error) -> ProbeError {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            ProbeError::Target(format!(
                "nothing listens for SNMP at {} (ICMP port unreachable)",
                self.shown
            ))
        } else {
            ProbeError::Target(format!("UDP to {}: {e}", self.shown))
        }
    }
}
