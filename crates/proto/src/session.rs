//! The MID session stream (protocol 2): one long-lived HTTP/2 request,
//! `POST /mid/v1/session`, whose request body carries the MID's frames up and whose
//! response body carries the instance's frames down, on the TLS connection the MID
//! opened (through its proxy, when it has one).
//!
//! Why frames on one stream rather than a request per batch: each long-poll answer,
//! results post and heartbeat used to be an HTTP exchange of its own — headers, a
//! credential check against the store, a JSON envelope — and at a few thousand jobs
//! a second those exchanges were most of a call's cost. On the stream the MID is
//! authenticated once, and a frame is a 13-byte header and its body.
//!
//! A frame: `len: u32` (big-endian, the bytes after it), `kind: u8`, `id: u64`
//! (big-endian), then the body. A request (`Poll`, `Results`, `Heartbeat`, `Output`:
//! a running command's streamed output) is answered
//! by one `Reply` or `Refusal` with the same id; an `Express` job (instance → MID) by
//! one `ExpressDone` with its id. Bodies are JSON except a refusal's first two bytes
//! (the HTTP status the same refusal has on the long-poll protocol). The semantics of
//! every request are those of its long-poll route: same leases, attempts, outbox and
//! exactly-once rules.

/// Bytes of a frame's header after its length: kind and id.
pub const HEADER_LEN: usize = 9;

/// The session's route, relative to the instance URL.
pub const SESSION_PATH: &str = "mid/v1/session";

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// MID → instance: a [`crate::mid::PollRequest`].
    Poll,
    /// MID → instance: a [`crate::mid::ResultsRequest`].
    Results,
    /// MID → instance: a [`crate::mid::HeartbeatRequest`].
    Heartbeat,
    /// MID → instance: the [`crate::mid::WorkResult`] of an express job.
    ExpressDone,
    /// MID → instance: chunks of a running job's streamed output
    /// ([`crate::command_output::OutputFrame`]), answered by an `OutputAck`.
    Output,
    /// MID → instance: the request with the same id is no longer wanted (the MID
    /// gave up waiting, or asks again with other capacity): stop serving it, as a
    /// dropped HTTP request would be. Empty body.
    Cancel,
    /// Instance → MID: the answer to the request with the same id.
    Reply,
    /// Instance → MID: the request with the same id was refused (status, then an
    /// [`crate::api::ErrorBody`]).
    Refusal,
    /// Instance → MID: an express job ([`crate::mid::WorkItem`]) to run now and answer
    /// with `ExpressDone`, without the outbox: it has no durable record yet.
    Express,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Poll => 1,
            Kind::Results => 2,
            Kind::Heartbeat => 3,
            Kind::ExpressDone => 4,
            Kind::Cancel => 5,
            Kind::Output => 6,
            Kind::Reply => 0x81,
            Kind::Refusal => 0x82,
            Kind::Express => 0x83,
        }
    }

    fn of(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Poll,
            2 => Kind::Results,
            3 => Kind::Heartbeat,
            4 => Kind::ExpressDone,
            5 => Kind::Cancel,
            6 => Kind::Output,
            0x81 => Kind::Reply,
            0x82 => Kind::Refusal,
            0x83 => Kind::Express,
            _ => return None,
        })
    }

    /// Whether the MID sends this kind (the instance sends the others).
    pub fn from_mid(self) -> bool {
        matches!(
            self,
            Kind::Poll
                | Kind::Results
                | Kind::Heartbeat
                | Kind::ExpressDone
                | Kind::Cancel
                | Kind::Output
        )
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it is.
    pub kind: Kind,
    /// The request (or express job) it belongs to.
    pub id: u64,
    /// Its body.
    pub body: Vec<u8>,
}

/// A stream that is not a frame stream, or breaks its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length is less than a header.
    #[error("frame length {0} is shorter than a frame header")]
    Short(u32),
    /// The frame is over the limit. Unlike the other errors the stream goes on:
    /// the decoder drops the frame's body as it arrives, so the request can be
    /// refused and the next frames read.
    #[error("a frame of {len} bytes is over the limit of {max}")]
    TooLong {
        /// Its kind.
        kind: Kind,
        /// Its id.
        id: u64,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// An unknown kind byte.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
}

impl Frame {
    /// A frame.
    pub fn new(kind: Kind, id: u64, body: Vec<u8>) -> Self {
        Self { kind, id, body }
    }

    /// A refusal of request `id`: `status` and the API's JSON error.
    pub fn refusal(id: u64, status: u16, code: &str, message: &str) -> Self {
        let mut body = status.to_be_bytes().to_vec();
        let error = crate::api::ErrorBody {
            error: crate::api::ErrorDetail {
                code: code.to_string(),
                message: message.to_string(),
            },
        };
        // An ErrorBody of two strings always serializes.
        body.extend(serde_json::to_vec(&error).unwrap_or_default());
        Self::new(Kind::Refusal, id, body)
    }

    /// A refusal's status and error, when this is one and it reads.
    pub fn refused(&self) -> Option<(u16, crate::api::ErrorBody)> {
        if self.kind != Kind::Refusal || self.body.len() < 2 {
            return None;
        }
        let status = u16::from_be_bytes([self.body[0], self.body[1]]);
        let error = serde_json::from_slice(&self.body[2..]).ok()?;
        Some((status, error))
    }

    /// The frame on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + HEADER_LEN + self.body.len());
        self.encode_into(&mut out);
        out
    }

    /// A frame whose body is `body` as JSON, written straight after its header: the
    /// body is not built on its own first and copied in after (a frame per call on
    /// the express lane, both ways). `size_hint`: about how long the body will be, so
    /// the one buffer rarely grows.
    pub fn encode_json<T: serde::Serialize + ?Sized>(
        kind: Kind,
        id: u64,
        body: &T,
        size_hint: usize,
    ) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(4 + HEADER_LEN + size_hint);
        put_header(&mut out, 0, kind, id);
        serde_json::to_writer(&mut out, body)?;
        // The length is known once the body is written: filled in now.
        let len = frame_len(out.len() - 4 - HEADER_LEN);
        out[..4].copy_from_slice(&len.to_be_bytes());
        Ok(out)
    }

    /// Appends the frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, frame_len(self.body.len()), self.kind, self.id);
        out.extend_from_slice(&self.body);
    }
}

/// The length field of a frame whose body is `body_len` bytes. A body over 4 GiB
/// cannot be framed; the sender's limit (far lower) stops it before, and a saturated
/// length would be refused by the reader as too long.
fn frame_len(body_len: usize) -> u32 {
    u32::try_from(HEADER_LEN + body_len).unwrap_or(u32::MAX)
}

/// Appends a frame's length field and header.
fn put_header(out: &mut Vec<u8>, len: u32, kind: Kind, id: u64) {
    out.extend_from_slice(&len.to_be_bytes());
    out.push(kind.byte());
    out.extend_from_slice(&id.to_be_bytes());
}

/// Bytes of encoded frames a sender joins into one write.
pub const JOINED_BYTES: usize = 64 * 1024;

/// `first` and the frames queued behind it (`next`, until it has none or about
/// `limit` bytes are together), as one piece to write.
///
/// Why: a stream's body sends each piece as an HTTP/2 DATA frame (and, on its own, a
/// TLS record and a write), so under load, when many frames wait at once, a piece
/// each costs more than the frames themselves. Alone, a frame goes as it is.
pub fn joined<B>(first: B, mut next: impl FnMut() -> Option<B>, limit: usize) -> B
where
    B: AsRef<[u8]> + From<Vec<u8>>,
{
    if first.as_ref().len() >= limit {
        return first;
    }
    let Some(second) = next() else {
        return first;
    };
    let mut out = Vec::with_capacity((first.as_ref().len() + second.as_ref().len()).max(4096));
    out.extend_from_slice(first.as_ref());
    out.extend_from_slice(second.as_ref());
    while out.len() < limit {
        match next() {
            Some(more) => out.extend_from_slice(more.as_ref()),
            None => break,
        }
    }
    B::from(out)
}

/// Reads frames out of a byte stream that arrives in pieces of any size.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the unread bytes of `buf` start.
    start: usize,
    max_frame: u64,
    /// Bytes still to drop of a frame over the limit.
    skipping: u64,
}

impl Decoder {
    /// A decoder refusing frames longer than `max_frame` bytes.
    pub fn new(max_frame: u64) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_frame,
            skipping: 0,
        }
    }

    /// Adds bytes read from the stream.
    pub fn extend(&mut self, mut bytes: &[u8]) {
        if self.skipping > 0 {
            let dropped = (bytes.len() as u64).min(self.skipping);
            self.skipping -= dropped;
            bytes = &bytes[dropped as usize..];
        }
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived. After an error the stream is not a
    /// frame stream any more: the caller ends it.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.skipping > 0 {
            return Ok(None);
        }
        let rest = &self.buf[self.start..];
        if rest.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if (len as usize) < HEADER_LEN {
            return Err(FrameError::Short(len));
        }
        if rest.len() < 4 + HEADER_LEN {
            return Ok(None);
        }
        let kind = Kind::of(rest[4]).ok_or(FrameError::UnknownKind(rest[4]))?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&rest[5..13]);
        let id = u64::from_be_bytes(id);
        if u64::from(len) > self.max_frame {
            // Drop the body: what has arrived now, the rest as it comes.
            let body = u64::from(len) - HEADER_LEN as u64;
            let here = ((rest.len() - 4 - HEADER_LEN) as u64).min(body);
            self.start += 4 + HEADER_LEN + here as usize;
            self.skipping = body - here;
            self.compact();
            return Err(FrameError::TooLong {
                kind,
                id,
                len: u64::from(len),
                max: self.max_frame,
            });
        }
        let total = 4 + len as usize;
        if rest.len() < total {
            return Ok(None);
        }
        let body = rest[13..total].to_vec();
        self.start += total;
        self.compact();
        Ok(Some(Frame { kind, id, body }))
    }

    /// Frees the bytes already read.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Bytes received that are not a whole frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Poll),
            Just(Kind::Results),
            Just(Kind::Heartbeat),
            Just(Kind::ExpressDone),
            Just(Kind::Cancel),
            Just(Kind::Output),
            Just(Kind::Reply),
            Just(Kind::Refusal),
            Just(Kind::Express),
        ]
    }

    fn frame() -> impl Strategy<Value = Frame> {
        (
            kind(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(kind, id, body)| Frame { kind, id, body })
    }

    proptest! {
        /// A frame encoded from a value as JSON is the frame of that value's JSON
        /// text, byte for byte, whatever the hint.
        #[test]
        fn a_json_frame_is_the_frame_of_its_text(kind in kind(), id in any::<u64>(), text in ".{0,200}", n in any::<i64>(), hint in 0usize..4096) {
            let body = serde_json::json!({"text": text, "n": n});
            let framed = Frame::encode_json(kind, id, &body, hint).unwrap();
            let plain = Frame::new(kind, id, serde_json::to_vec(&body).unwrap()).encode();
            prop_assert_eq!(framed, plain);
        }

        /// Frames cut into pieces of any size come out whole and in order.
        #[test]
        fn frames_survive_any_split(frames in prop::collection::vec(frame(), 0..12), cuts in prop::collection::vec(1usize..40, 1..30)) {
            let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
            let mut decoder = Decoder::new(1 << 20);
            let mut out = Vec::new();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            while at < wire.len() {
                let n = (*cut.next().unwrap()).min(wire.len() - at);
                decoder.extend(&wire[at..at + n]);
                at += n;
                while let Some(f) = decoder.next_frame().unwrap() {
                    out.push(f);
                }
            }
            prop_assert_eq!(out, frames);
            prop_assert_eq!(decoder.pending(), 0);
        }

        /// Frames joined for one write read back as the same frames, in order, and
        /// a write holds more than `limit` bytes only when its first frame does or its
        /// last one crosses the limit.
        #[test]
        fn joined_frames_read_back_whole(frames in prop::collection::vec(frame(), 1..20), limit in 1usize..2000) {
            let mut queued: std::collections::VecDeque<Vec<u8>> = frames.iter().map(Frame::encode).collect();
            let mut decoder = Decoder::new(1 << 20);
            let mut out = Vec::new();
            while let Some(first) = queued.pop_front() {
                let first_len = first.len();
                let mut last_len = first_len;
                let piece = joined(first, || {
                    let next = queued.pop_front()?;
                    last_len = next.len();
                    Some(next)
                }, limit);
                prop_assert!(piece.len() < limit + last_len || piece.len() == first_len);
                decoder.extend(&piece);
                while let Some(f) = decoder.next_frame().unwrap() {
                    out.push(f);
                }
            }
            prop_assert_eq!(out, frames);
        }

        /// Any bytes at all: a frame, nothing yet, or an error; never a panic.
        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut decoder = Decoder::new(64);
            decoder.extend(&bytes);
            for _ in 0..bytes.len() + 1 {
                match decoder.next_frame() {
                    Ok(Some(f)) => prop_assert!(f.body.len() <= 64),
                    Err(FrameError::TooLong { .. }) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }

        /// A frame over the limit is refused by kind and id, its body dropped
        /// however it arrives, and the frames after it read as usual.
        #[test]
        fn a_frame_over_the_limit_is_skipped(before in frame(), after in frame(), big in 301usize..2000, cut in 1usize..64) {
            let over = Frame::new(Kind::Results, 99, vec![7; big]);
            let wire: Vec<u8> = [before.clone(), over, after.clone()].iter().flat_map(Frame::encode).collect();
            let mut decoder = Decoder::new(300 + HEADER_LEN as u64);
            let (mut frames, mut refused) = (Vec::new(), Vec::new());
            for piece in wire.chunks(cut) {
                decoder.extend(piece);
                loop {
                    match decoder.next_frame() {
                        Ok(Some(f)) => frames.push(f),
                        Ok(None) => break,
                        Err(FrameError::TooLong { kind, id, .. }) => refused.push((kind, id)),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            prop_assert_eq!(frames, vec![before, after]);
            prop_assert_eq!(refused, vec![(Kind::Results, 99)]);
        }
    }

    #[test]
    fn limits_are_refused() {
        let mut d = Decoder::new(100);
        d.extend(&[0, 0, 0, 3, 1]);
        assert_eq!(d.next_frame(), Err(FrameError::Short(3)));
        let mut d = Decoder::new(100);
        d.extend(&[0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5]);
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::TooLong {
                kind: Kind::Poll,
                id: 5,
                ..
            })
        ));
        let mut d = Decoder::new(100);
        d.extend(&[0, 0, 0, 9, 0x42, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::UnknownKind(0x42)));
    }

    #[test]
    fn refusals_carry_status_and_error() {
        let f = Frame::refusal(7, 403, "invalidated", "no");
        let back = Decoder::decode_one(&f.encode());
        let (status, error) = back.refused().unwrap();
        assert_eq!((status, error.error.code.as_str()), (403, "invalidated"));
    }

    impl Decoder {
        fn decode_one(bytes: &[u8]) -> Frame {
            let mut d = Decoder::new(1 << 20);
            d.extend(bytes);
            d.next_frame().unwrap().unwrap()
        }
    }
}
