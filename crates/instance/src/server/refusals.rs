//! hyper's own refusals in the API's error format. When hyper cannot parse an HTTP/1.1
//! request head (bad bytes in a header, more headers than it parses, a line too long,
//! a head that never arrives) it answers by itself — `400`, `431`, `414`, `408` with
//! an empty body — before any of our code sees a request, and offers no hook to shape
//! that answer. This wrapper of the connection's byte stream recognises such an answer
//! as it is written and writes the same status with a JSON error body instead.
//!
//! It can tell hyper's answer from ours because ours are only ever written while a
//! request is in progress on the connection (counted from the moment hyper hands a
//! request to the router until its response body is done), while hyper's refusals are
//! written when none is; and a refusal's shape is fixed: a status line, a few headers,
//! `content-length: 0`, nothing after the head. HTTP/2 connections are not wrapped:
//! their refusals are frames, not text.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest head hyper writes for a refusal (status line, date, content-length, …).
const MAX_REFUSAL_HEAD: usize = 512;

/// A connection's byte stream whose hyper-written refusals come out as JSON errors.
pub struct JsonRefusals<T> {
    inner: T,
    /// Requests in progress; `None` on an HTTP/2 connection (nothing is rewritten).
    in_flight: Option<Arc<AtomicUsize>>,
    /// A replacement being written: the bytes and how far.
    replacing: Option<(Vec<u8>, usize)>,
}

impl<T> JsonRefusals<T> {
    /// Wraps `inner`; `in_flight` counts the requests in progress on it (`None`: an
    /// HTTP/2 connection, passed through as it is).
    pub fn new(inner: T, in_flight: Option<Arc<AtomicUsize>>) -> Self {
        Self {
            inner,
            in_flight,
            replacing: None,
        }
    }
}

/// The JSON answer for a refusal hyper wrote as `head`, if `head` is one.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() > MAX_REFUSAL_HEAD || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let status: u16 = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    if !(400..600).contains(&status) {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    if !lower.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let (code, message) = match status {
        400 => (
            "bad_request",
            "the request could not be parsed: a malformed request line or header",
        ),
        408 => (
            "request_timeout",
            "the request's headers did not arrive within header_read_timeout_ms",
        ),
        414 => ("uri_too_long", "the request's URI is too long"),
        431 => (
            "headers_too_large",
            "the request's headers are too many or too large",
        ),
        505 => (
            "http_version_not_supported",
            "only HTTP/1.1 and HTTP/2 are served",
        ),
        _ => ("bad_request", "the request could not be served"),
    };
    let reason = text
        .lines()
        .next()
        .and_then(|l| l.get(13..))
        .unwrap_or("Error")
        .to_string();
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: AsyncWrite + Unpin> JsonRefusals<T> {
    /// Writes what is left of the replacement. Ready once it is all out.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacing {
            if *written >= bytes.len() {
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Whether `buf`, written now, is a refusal of hyper's: then the replacement is
    /// taken on instead.
    fn intercept(&mut self, buf: &[u8]) -> bool {
        if self.replacing.is_some() {
            return true;
        }
        match &self.in_flight {
            Some(n) if n.load(Ordering::SeqCst) == 0 => {}
            _ => return false,
        }
        match replacement(buf) {
            Some(json) => {
                self.replacing = Some((json, 0));
                true
            }
            None => false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonRefusals<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.intercept(buf) {
            // hyper's bytes are taken as written; ours go out in their place.
            return self.drive(cx).map_ok(|()| buf.len());
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty()).map(|b| &b[..]);
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        // A refusal is a head alone: one slice, nothing after it.
        let lone = bufs.iter().filter(|b| !b.is_empty()).count() <= 1;
        if self.replacing.is_some() || (lone && first.is_some_and(|f| self.intercept(f))) {
            return self.drive(cx).map_ok(|()| total);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.drive(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.drive(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_refusals_become_json_and_nothing_else_does() {
        let json = replacement(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 09:00:00 GMT\r\n\r\n")
            .expect("a refusal");
        let text = String::from_utf8(json).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        let body: serde_json::Value =
            serde_json::from_str(text.split("\r\n\r\n").nth(1).expect("body")).expect("json");
        assert_eq!(body["error"]["code"], "headers_too_large");
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n").is_none());
        assert!(
            replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nbody").is_none()
        );
        assert!(replacement(b"0\r\n\r\n").is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_judged_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..700)) {
            let _ = replacement(&bytes);
        }
    }
}
