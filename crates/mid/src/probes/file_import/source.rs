//! Where the bytes come from: a file on the MID's host, read only where
//! `policy.file` allows and opened by its resolved path; or an internal URL, fetched
//! under `policy.http` through the REST probe's client (its credentials, CA, redirect
//! checks), its body streamed. Either starts at a byte offset for a re-run: a seek, or
//! a `Range: bytes=N-` request — a server that ignores the range (200 instead of 206)
//! has its first N bytes read and dropped.
//!
//! The parsers are blocking code on their own thread; an HTTP body reaches them
//! through a small bounded channel, so a slow parser slows the download instead of
//! buffering it.

use crate::probes::ProbeContext;
use crate::probes::ProbeError;
use crate::probes::credentials::Credential;
use crate::probes::http;
use openmid_proto::file_import::FileSource;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Longest wait for a server's response headers.
const HEADERS_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the next piece of a body.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Body pieces waiting for the parser.
const BODY_SLOTS: usize = 8;

/// An opened source.
pub struct Source {
    /// The bytes, from the offset asked for (or from the top, see `discard`).
    pub reader: Box<dyn Read + Send>,
    /// Bytes to read and drop first (a server that ignored the range).
    pub discard: u64,
    /// The task moving an HTTP body, stopped when this is dropped.
    pub pump: Option<Pump>,
}

/// The task moving an HTTP body into the reader's channel; aborted when dropped.
pub struct Pump(tokio::task::JoinHandle<()>);

impl Drop for Pump {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens `source` at byte `offset`; bytes read are counted in `read`.
pub async fn open(
    source: &FileSource,
    ctx: &ProbeContext,
    credential: Option<&Credential>,
    offset: u64,
    read: Arc<AtomicU64>,
) -> Result<Source, ProbeError> {
    match source {
        FileSource::Path { path } => {
            if credential.is_some() {
                return Err(ProbeError::Credential(
                    "a local file is read without a credential".into(),
                ));
            }
            let policy = ctx.policy.clone();
            let path = path.clone();
            let file =
                tokio::task::spawn_blocking(move || open_file(&policy, Path::new(&path), offset))
                    .await
                    .map_err(|e| ProbeError::Target(format!("opening the file: {e}")))??;
            Ok(Source {
                reader: Box::new(Counting { inner: file, read }),
                discard: 0,
                pump: None,
            })
        }
        FileSource::Url {
            url,
            headers,
            ca_pem,
            ..
        } => {
            open_url(
                ctx,
                url,
                headers,
                ca_pem.as_deref(),
                credential,
                offset,
                read,
            )
            .await
        }
    }
}

fn open_file(
    policy: &crate::policy::EgressPolicy,
    path: &Path,
    offset: u64,
) -> Result<std::fs::File, ProbeError> {
    use std::os::unix::fs::OpenOptionsExt;
    let resolved = policy.check_file(path)?;
    let shown = resolved.display().to_string();
    // The resolved path has no links left: one put there since the check is refused.
    // Non-blocking, so a FIFO in an allowed directory cannot hang the open; the
    // flag does nothing to a regular file's reads.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&resolved)
        .map_err(|e| ProbeError::Target(format!("opening {shown}: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| ProbeError::Target(format!("reading {shown}: {e}")))?;
    if !meta.is_file() {
        return Err(ProbeError::InvalidInput(format!(
            "source.path: {shown} is not a regular file"
        )));
    }
    if offset > 0 {
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| ProbeError::Target(format!("seeking {shown} to byte {offset}: {e}")))?;
    }
    Ok(file)
}

async fn open_url(
    ctx: &ProbeContext,
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
    ca_pem: Option<&str>,
    credential: Option<&Credential>,
    offset: u64,
    read: Arc<AtomicU64>,
) -> Result<Source, ProbeError> {
    let parsed = http::parse_url(url)?;
    let shown = http::shown_url(&parsed);
    let mut headers = headers.clone();
    if offset > 0 {
        headers.insert("range".into(), format!("bytes={offset}-"));
    }
    let call = http::Call {
        method: reqwest::Method::GET,
        url: parsed,
        headers: &headers,
        body: None,
        timeout: HEADERS_TIMEOUT,
        retry: None,
        ca_pem,
        spill_to: None,
    };
    let resp = http::open(ctx, &call, credential).await?;
    let status = resp.status().as_u16();
    let discard = match status {
        206 if offset > 0 => {
            let range = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !range.starts_with(&format!("bytes {offset}-")) {
                return Err(ProbeError::Target(format!(
                    "GET {shown}: asked for bytes {offset}- and the server answered the range `{range}`"
                )));
            }
            0
        }
        200 => offset,
        // The stored pages ended exactly at the end of the file.
        416 if offset > 0 => {
            return Ok(Source {
                reader: Box::new(std::io::empty()),
                discard: 0,
                pump: None,
            });
        }
        _ => {
            return Err(ProbeError::Target(format!(
                "GET {shown} answered {status}, not the file"
            )));
        }
    };
    let (tx, rx) = mpsc::channel(BODY_SLOTS);
    let pump = tokio::spawn(pump(resp, tx, shown));
    Ok(Source {
        reader: Box::new(Counting {
            inner: BodyReader {
                rx,
                piece: bytes::Bytes::new(),
            },
            read,
        }),
        discard,
        pump: Some(Pump(pump)),
    })
}

/// Moves a response body into the channel until it ends, fails, stalls, or the
/// reader is gone.
async fn pump(
    mut resp: reqwest::Response,
    tx: mpsc::Sender<std::io::Result<bytes::Bytes>>,
    shown: String,
) {
    loop {
        let piece = match tokio::time::timeout(IDLE_TIMEOUT, resp.chunk()).await {
            Ok(Ok(Some(piece))) => Ok(piece),
            Ok(Ok(None)) => return,
            Ok(Err(e)) => Err(std::io::Error::other(format!(
                "GET {shown}: the body broke off: {e}"
            ))),
            Err(_) => Err(std::io::Error::other(format!(
                "GET {shown}: no data for {} s",
                IDLE_TIMEOUT.as_secs()
            ))),
        };
        let failed = piece.is_err();
        if tx.send(piece).await.is_err() || failed {
            return;
        }
    }
}

/// A response body as a blocking reader (on the parser's thread).
struct BodyReader {
    rx: mpsc::Receiver<std::io::Result<bytes::Bytes>>,
    piece: bytes::Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.piece.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(piece)) => self.piece = piece,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.piece.len());
        buf[..n].copy_from_slice(&self.piece.split_to(n));
        Ok(n)
    }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
