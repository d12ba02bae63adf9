//! A scan's finished hosts into pages. Hosts finish out of order (a slow connect
//! holds its host back) but are taken here strictly in address order, so a page's
//! `hosts_done` says every host before it is done: a re-run starts there and reports
//! each host once. A page goes to the [`PageSink`] once it holds [`PAGE_HOSTS`]
//! hosts or about half a megabyte, and on the scan's timer every
//! [`PAGE_INTERVAL_MS`](openmid_proto::discovery::PAGE_INTERVAL_MS) when anything moved — a page with no hosts still carries the
//! progress.

use crate::probes::output_stream::PageSink;
use openmid_proto::command_output::MAX_CHUNK_BYTES;
use openmid_proto::discovery::{PAGE_HOSTS, ScanHost, ScanPage, ScanResume};

/// A page is cut once its hosts' JSON passes this.
const SOFT_PAGE_BYTES: usize = 512 * 1024;
/// Bytes of a page line besides its hosts, rounded up.
const LINE_OVERHEAD: usize = 160;

/// Pages of one attempt.
pub(super) struct Pager {
    sink: PageSink,
    next_page: u64,
    hosts_done: u64,
    hosts_up: u64,
    open_ports: u64,
    pending: Vec<ScanHost>,
    pending_bytes: usize,
    sent_done: u64,
}

/// What the pages came to, over all attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Finished {
    pub pages: u64,
    pub hosts_done: u64,
    pub hosts_up: u64,
    pub open_ports: u64,
}

impl Pager {
    /// Pages to `sink`, continuing a re-run's counts.
    pub fn new(sink: PageSink, resume: Option<ScanResume>) -> Self {
        let r = resume.unwrap_or_default();
        Self {
            sink,
            next_page: r.next_page,
            hosts_done: r.hosts_done,
            hosts_up: r.hosts_up,
            open_ports: r.open_ports,
            pending: Vec::new(),
            pending_bytes: 0,
            sent_done: r.hosts_done,
        }
    }

    /// Takes the next host in address order: its open ports (none for a host with
    /// none, or refused), and whether it answered at all. Sends the page when full.
    pub async fn host_done(&mut self, host: Option<ScanHost>, up: bool) {
        self.hosts_done += 1;
        if up {
            self.hosts_up += 1;
        }
        if let Some(mut host) = host.filter(|h| !h.open.is_empty()) {
            self.open_ports += host.open.len() as u64;
            let mut bytes = json_len(&host);
            if bytes + LINE_OVERHEAD > SOFT_PAGE_BYTES {
                tracing::warn!(address = %host.address, ports = host.open.len(), "a host's open ports are too many to report with their banners: reporting the ports alone");
                host.open.iter_mut().for_each(|p| p.banner = None);
                bytes = json_len(&host);
                if bytes + LINE_OVERHEAD > MAX_CHUNK_BYTES {
                    let keep = host.open.len() * (MAX_CHUNK_BYTES / 2) / bytes.max(1);
                    tracing::warn!(address = %host.address, kept = keep, "a host answers on too many ports to report in one page: reporting the first");
                    host.open.truncate(keep);
                    bytes = json_len(&host);
                }
            }
            if !self.pending.is_empty()
                && self.pending_bytes + bytes + LINE_OVERHEAD > SOFT_PAGE_BYTES
            {
                self.flush().await;
            }
            self.pending_bytes += bytes + 1;
            self.pending.push(host);
        }
        if self.pending.len() >= PAGE_HOSTS || self.hosts_done - self.sent_done >= PAGE_HOSTS as u64
        {
            self.flush().await;
        }
    }

    /// Sends a page when anything moved since the last one.
    pub async fn flush(&mut self) {
        if self.pending.is_empty() && self.hosts_done == self.sent_done {
            return;
        }
        let page = ScanPage {
            page: self.next_page,
            hosts: std::mem::take(&mut self.pending),
            hosts_done: self.hosts_done,
            hosts_up: self.hosts_up,
            open_ports: self.open_ports,
        };
        let mut line = serde_json::to_vec(&page).unwrap_or_default();
        line.push(b'\n');
        self.sink.page(&line).await;
        self.next_page += 1;
        self.pending_bytes = 0;
        self.sent_done = self.hosts_done;
    }

    /// Sends the last page and waits for the sink to deliver.
    pub async fn finish(mut self) -> Finished {
        self.flush().await;
        let finished = Finished {
            pages: self.next_page,
            hosts_done: self.hosts_done,
            hosts_up: self.hosts_up,
            open_ports: self.open_ports,
        };
        if !self.sink.finish().await {
            tracing::warn!("the last pages of a scan did not reach the instance in time");
        }
        finished
    }
}

fn json_len(host: &ScanHost) -> usize {
    serde_json::to_vec(host).map_or(0, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmid_proto::discovery::OpenPort;
    use openmid_proto::mid::JobRef;

    fn pager(resume: Option<ScanResume>) -> Pager {
        let job = JobRef {
            output_id: "o".into(),
            attempt: 1,
        };
        let sink = PageSink::new(None, &job, &tokio_util::sync::CancellationToken::new());
        Pager::new(sink, resume)
    }

    fn host(i: u32, ports: u16) -> ScanHost {
        ScanHost {
            address: format!("198.18.0.{i}"),
            open: (1..=ports)
                .map(|port| OpenPort {
                    port,
                    banner: Some("x".repeat(200)),
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn pages_count_on_from_a_resume_and_cut_at_256_hosts() {
        let resume = ScanResume {
            next_page: 3,
            hosts_done: 10,
            hosts_up: 2,
            open_ports: 5,
        };
        let mut p = pager(Some(resume));
        for i in 0..300 {
            p.host_done(Some(host(i % 250, 1)), true).await;
        }
        assert_eq!(p.next_page, 4, "one page sent at 256 hosts");
        let done = p.finish().await;
        assert_eq!(
            done,
            Finished {
                pages: 5,
                hosts_done: 310,
                hosts_up: 302,
                open_ports: 305
            }
        );
    }

    #[tokio::test]
    async fn a_host_with_every_port_open_still_fits_a_page() {
        let mut p = pager(None);
        p.host_done(Some(host(1, 60_000)), true).await;
        assert!(p.pending_bytes < MAX_CHUNK_BYTES, "{}", p.pending_bytes);
        assert!(p.pending[0].open.iter().all(|o| o.banner.is_none()));
    }
}
