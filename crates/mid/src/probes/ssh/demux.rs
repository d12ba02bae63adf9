//! The channel's incoming messages split into what the pump reads — stdout, stderr —
//! and what the run decides on: the exit status or signal, and the wrapper's markers
//! at the start of stderr (the process group id, sudo's prompt, `ready`), which are
//! taken out of the output. Everything else the preamble holds (a login script's
//! chatter, sudo's "Sorry, try again.") is passed on as stderr.

use super::remote::Markers;
use russh::ChannelMsg;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::UnboundedSender;

/// Most stderr held while looking for the markers; past it the preamble is given up
/// and passed on as output (the wrapper's own lines are far shorter).
const PREAMBLE_LIMIT: usize = 64 * 1024;

/// How the remote command ended, as the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteExit {
    /// `exit-status`.
    Code(u32),
    /// `exit-signal`, by its SSH name (`TERM`).
    Signal(String),
}

/// What the markers told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The remote process group.
    Pid(u32),
    /// sudo asks for the password.
    Prompt,
    /// The command runs: its input may be sent.
    Ready,
}

/// How the demultiplexer ended.
#[derive(Debug)]
pub struct DemuxEnd {
    /// The exit, when the server reported one.
    pub exit: Option<RemoteExit>,
    /// The channel closed in order (not the connection lost).
    pub closed: bool,
}

/// The start of stderr, until the markers are through.
pub struct Preamble {
    markers: Markers,
    sudo: bool,
    held: Vec<u8>,
    pid_seen: bool,
    done: bool,
}

impl Preamble {
    /// Expects the pid marker, then (under sudo) prompts and `ready`.
    pub fn new(markers: Markers, sudo: bool) -> Self {
        Self {
            markers,
            sudo,
            held: Vec::new(),
            pid_seen: false,
            done: false,
        }
    }

    /// Takes stderr bytes; returns those that are output, and reports markers.
    pub fn feed(&mut self, data: &[u8], events: &mut Vec<Event>) -> Vec<u8> {
        if self.done {
            return data.to_vec();
        }
        self.held.extend_from_slice(data);
        loop {
            if !self.pid_seen {
                let prefix = self.markers.pid_prefix();
                let Some(start) = find(&self.held, prefix.as_bytes()) else {
                    break;
                };
                let digits = start + prefix.len();
                let Some(len) = find(&self.held[digits..], b">>\n") else {
                    break;
                };
                let pid = std::str::from_utf8(&self.held[digits..digits + len])
                    .ok()
                    .and_then(|p| p.parse().ok());
                self.held.drain(start..digits + len + 3);
                self.pid_seen = true;
                if let Some(pid) = pid {
                    events.push(Event::Pid(pid));
                }
                if !self.sudo {
                    self.done = true;
                    events.push(Event::Ready);
                }
                continue;
            }
            if self.done {
                break;
            }
            let prompt = self.markers.prompt();
            if let Some(at) = find(&self.held, prompt.as_bytes()) {
                self.held.drain(at..at + prompt.len());
                events.push(Event::Prompt);
                continue;
            }
            let ready = self.markers.ready();
            if let Some(at) = find(&self.held, ready.as_bytes()) {
                self.held.drain(at..at + ready.len());
                self.done = true;
                events.push(Event::Ready);
            }
            break;
        }
        if self.done || self.held.len() > PREAMBLE_LIMIT {
            self.done = true;
            return std::mem::take(&mut self.held);
        }
        Vec::new()
    }

    /// What is still held (the stream ended).
    pub fn rest(&mut self) -> Vec<u8> {
        self.done = true;
        std::mem::take(&mut self.held)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads the channel to its close: data to `stdout`, extended data to `stderr`
/// (through the preamble), the exit kept. Writing waits for the pump, so a slow sink
/// slows the channel (and the SSH window stops the remote side).
pub async fn demux(
    mut read: russh::ChannelReadHalf,
    early: Vec<ChannelMsg>,
    stdout: tokio::io::DuplexStream,
    stderr: tokio::io::DuplexStream,
    mut preamble: Preamble,
    events: UnboundedSender<Event>,
) -> DemuxEnd {
    let mut outs = Some((stdout, stderr));
    let mut exit = None;
    let mut early = early.into_iter();
    let closed = loop {
        let msg = match early.next() {
            Some(msg) => Some(msg),
            None => read.wait().await,
        };
        let Some(msg) = msg else { break false };
        match msg {
            ChannelMsg::Data { data } => {
                if let Some((out, _)) = outs.as_mut() {
                    let _ = out.write_all(&data).await;
                }
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                let mut found = Vec::new();
                let pass = preamble.feed(&data, &mut found);
                for e in found {
                    let _ = events.send(e);
                }
                if let (Some((_, err)), false) = (outs.as_mut(), pass.is_empty()) {
                    let _ = err.write_all(&pass).await;
                }
            }
            ChannelMsg::ExitStatus { exit_status } => exit = Some(RemoteExit::Code(exit_status)),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                exit = Some(RemoteExit::Signal(sig_name(&signal_name)));
            }
            ChannelMsg::Eof => close(&mut outs, &mut preamble).await,
            ChannelMsg::Close => break true,
            _ => {}
        }
    };
    close(&mut outs, &mut preamble).await;
    DemuxEnd { exit, closed }
}

/// Ends both streams, passing on what the preamble held.
async fn close(
    outs: &mut Option<(tokio::io::DuplexStream, tokio::io::DuplexStream)>,
    preamble: &mut Preamble,
) {
    if let Some((mut out, mut err)) = outs.take() {
        let rest = preamble.rest();
        if !rest.is_empty() {
            let _ = err.write_all(&rest).await;
        }
        let _ = out.shutdown().await;
        let _ = err.shutdown().await;
    }
}

/// The SSH name of a signal (`TERM`), whatever russh made of it.
fn sig_name(sig: &russh::Sig) -> String {
    let shown = format!("{sig:?}");
    match shown
        .strip_prefix("Custom(\"")
        .and_then(|s| s.strip_suffix("\")"))
    {
        Some(name) => name.to_string(),
        None => shown,
    }
}

/// The number and `SIG…` name of an SSH signal name.
pub fn signal_of(name: &str) -> (i32, String) {
    let number = match name {
        "ABRT" => libc::SIGABRT,
        "ALRM" => libc::SIGALRM,
        "FPE" => libc::SIGFPE,
        "HUP" => libc::SIGHUP,
        "ILL" => libc::SIGILL,
        "INT" => libc::SIGINT,
        "KILL" => libc::SIGKILL,
        "PIPE" => libc::SIGPIPE,
        "QUIT" => libc::SIGQUIT,
        "SEGV" => libc::SIGSEGV,
        "TERM" => libc::SIGTERM,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "BUS" => libc::SIGBUS,
        "TRAP" => libc::SIGTRAP,
        "SYS" => libc::SIGSYS,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        _ => 0,
    };
    (number, format!("SIG{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_taken_out_in_any_split() {
        let m = Markers::new();
        let text = format!(
            "motd\n{}4242>>\nlecture\n{}Sorry, try again.\n{}{}real error\n",
            m.pid_prefix(),
            m.prompt(),
            m.prompt(),
            m.ready()
        );
        for split in 1..text.len() {
            let mut p = Preamble::new(m.clone(), true);
            let mut events = Vec::new();
            let mut out = p.feed(&text.as_bytes()[..split], &mut events);
            out.extend(p.feed(&text.as_bytes()[split..], &mut events));
            out.extend(p.rest());
            assert_eq!(
                String::from_utf8_lossy(&out),
                "motd\nlecture\nSorry, try again.\nreal error\n"
            );
            assert_eq!(
                events,
                vec![Event::Pid(4242), Event::Prompt, Event::Prompt, Event::Ready],
                "split at {split}"
            );
        }
    }

    #[test]
    fn without_sudo_the_pid_makes_it_ready() {
        let m = Markers::new();
        let mut p = Preamble::new(m.clone(), false);
        let mut events = Vec::new();
        let out = p.feed(
            format!("{}7>>\nerr", m.pid_prefix()).as_bytes(),
            &mut events,
        );
        assert_eq!(out, b"err");
        assert_eq!(events, vec![Event::Pid(7), Event::Ready]);
        assert_eq!(p.feed(b"more", &mut events), b"more");
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_of("TERM"), (15, "SIGTERM".into()));
        assert_eq!(sig_name(&russh::Sig::TERM), "TERM");
        assert_eq!(sig_name(&russh::Sig::Custom("USR2".into())), "USR2");
    }
}
