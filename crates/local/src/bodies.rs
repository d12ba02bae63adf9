//! Large bodies for tests without holding them: a deterministic byte pattern made
//! chunk by chunk, its SHA-256 computed the same way, and the peak memory of a process.

use bytes::Bytes;
use futures::Stream;

/// Bytes per chunk of [`pattern`].
const CHUNK: usize = 64 * 1024;
/// The pattern repeats every 251 bytes (a prime, so it never lines up with chunks).
const PERIOD: u64 = 251;

fn chunk_at(offset: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| ((offset + i) % PERIOD) as u8)
        .collect()
}

/// `n` bytes of a fixed pattern (byte `i` is `i % 251`), 64 KiB at a time.
pub fn pattern(n: u64) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(0u64, move |offset| async move {
        if offset >= n {
            return None;
        }
        let len = (n - offset).min(CHUNK as u64) as usize;
        Some((Ok(Bytes::from(chunk_at(offset, len))), offset + len as u64))
    })
}

/// SHA-256 (hex) of the first `n` bytes of [`pattern`].
pub fn pattern_sha256(n: u64) -> String {
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut offset = 0;
    while offset < n {
        let len = (n - offset).min(CHUNK as u64) as usize;
        digest.update(&chunk_at(offset, len));
        offset += len as u64;
    }
    hex::encode(digest.finish().as_ref())
}

/// Peak resident memory of a process in bytes (`VmHWM` in `/proc/PID/status`, Linux);
/// `None` for "self" when `pid` is None and the file is unreadable.
pub fn peak_rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    crate::process::status_bytes(&path, "VmHWM:")
}
