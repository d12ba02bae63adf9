//! Cuts one output stream into bounded chunks and enforces its cap, without any I/O,
//! so the rules (chunk size, UTF-8 boundaries, the cap and its marker) can be
//! property-tested on arbitrary splits of the input. The [`pump`](super::pump) feeds
//! it what the pipes deliver and stamps the chunks with their sequence numbers.
//!
//! Nothing is dropped silently: bytes past the cap are counted, and the stream's last
//! chunk is a [`ChunkBody::Truncated`] marker saying how many.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which output stream a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// Both streams, stdout first.
    pub const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        })
    }
}

/// One piece of a run's output, as the sink receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// The stream it came from.
    pub stream: Stream,
    /// Position among all chunks of the run, both streams together, from 0 with no
    /// gaps: a follower restores the interleaving of stdout and stderr by it.
    pub seq: u64,
    /// Where `body` starts in the stream's kept output (for a marker: the kept length).
    pub offset: u64,
    /// The bytes, or the end-of-output marker of a capped stream.
    pub body: ChunkBody,
}

/// What a chunk carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkBody {
    /// Output bytes, never empty, at most the configured chunk size.
    Data(Bytes),
    /// The stream reached its cap: this many further bytes were read and discarded.
    /// Always the stream's last chunk.
    Truncated {
        /// Bytes past the cap, counted to the end of the stream.
        dropped_bytes: u64,
    },
}

/// What the chunker hands out before the pump numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    pub offset: u64,
    pub body: ChunkBody,
}

/// Byte counts of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamTotals {
    /// Everything the process wrote that was read.
    pub seen_bytes: u64,
    /// What was passed to the sink (at most the cap).
    pub kept_bytes: u64,
    /// What was read past the cap and discarded.
    pub dropped_bytes: u64,
    /// Whether the stream was read to its end. False when the run was over but a
    /// process outside the group (one that called `setsid`) still held the pipe open.
    pub complete: bool,
}

/// The chunking state of one stream.
#[derive(Debug)]
pub(crate) struct Chunker {
    max_chunk: usize,
    cap: u64,
    pending: BytesMut,
    /// Offset of `pending[0]` in the kept output.
    offset: u64,
    seen: u64,
    kept: u64,
    finished: bool,
}

/// The longest UTF-8 sequence; a chunk must hold at least one whole character.
const MIN_CHUNK: usize = 4;

impl Chunker {
    /// A chunker emitting chunks of at most `max_chunk` bytes (raised to 4, so a
    /// character always fits) and keeping at most `cap` bytes.
    pub fn new(max_chunk: usize, cap: u64) -> Self {
        let max_chunk = max_chunk.max(MIN_CHUNK);
        Self {
            max_chunk,
            cap,
            pending: BytesMut::with_capacity(max_chunk),
            offset: 0,
            seen: 0,
            kept: 0,
            finished: false,
        }
    }

    /// Takes bytes just read; appends the chunks that became full to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Piece>) {
        self.seen += data.len() as u64;
        let room = self.cap.saturating_sub(self.kept);
        let take = usize::try_from(room).map_or(data.len(), |room| room.min(data.len()));
        self.pending.extend_from_slice(&data[..take]);
        self.kept += take as u64;
        while self.pending.len() >= self.max_chunk {
            let cut = match utf8_cut(&self.pending[..self.max_chunk]) {
                0 => self.max_chunk,
                cut => cut,
            };
            self.emit(cut, out);
        }
    }

    /// Whether bytes wait for a chunk.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Emits what waits (for a live follower), except the start of a character whose
    /// remaining bytes have not arrived yet.
    pub fn flush(&mut self, out: &mut Vec<Piece>) {
        let cut = utf8_cut(&self.pending);
        if cut > 0 {
            self.emit(cut, out);
        }
    }

    /// Ends the stream: emits everything that waits, then the marker if bytes were
    /// dropped. Later calls do nothing.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.has_pending() {
            self.emit(self.pending.len(), out);
        }
        let dropped = self.seen - self.kept;
        if dropped > 0 {
            out.push(Piece {
                offset: self.kept,
                body: ChunkBody::Truncated {
                    dropped_bytes: dropped,
                },
            });
        }
    }

    /// The counts so far; `complete` is left for the pump to say.
    pub fn totals(&self) -> StreamTotals {
        StreamTotals {
            seen_bytes: self.seen,
            kept_bytes: self.kept,
            dropped_bytes: self.seen - self.kept,
            complete: false,
        }
    }

    fn emit(&mut self, len: usize, out: &mut Vec<Piece>) {
        let data = self.pending.split_to(len).freeze();
        out.push(Piece {
            offset: self.offset,
            body: ChunkBody::Data(data),
        });
        self.offset += len as u64;
    }
}

/// How much of `buf` can go out without splitting a character: all of it, unless it
/// ends with the first 1–3 bytes of a multi-byte UTF-8 sequence, which are held back.
/// Binary data is cut anywhere (at worst three bytes wait for the next chunk).
pub(crate) fn utf8_cut(buf: &[u8]) -> usize {
    let len = buf.len();
    // Look back over at most three continuation bytes for the lead byte.
    for back in 1..=len.min(MIN_CHUNK - 1) {
        let byte = buf[len - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: keep looking for its lead
        }
        let need = match byte {
            b if b & 0b1110_0000 == 0b1100_0000 => 2,
            b if b & 0b1111_0000 == 0b1110_0000 => 3,
            b if b & 0b1111_1000 == 0b1111_0000 => 4,
            _ => return len, // ASCII or not UTF-8: nothing to hold back
        };
        return if need > back { len - back } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(max_chunk: usize, cap: u64, reads: &[Vec<u8>], flush_after: &[bool]) -> Vec<Piece> {
        let mut chunker = Chunker::new(max_chunk, cap);
        let mut out = Vec::new();
        for (i, read) in reads.iter().enumerate() {
            chunker.push(read, &mut out);
            if flush_after.get(i).copied().unwrap_or(false) {
                chunker.flush(&mut out);
            }
        }
        chunker.finish(&mut out);
        out
    }

    #[test]
    fn a_character_is_not_split_when_the_chunk_fills() {
        // "aé€" = 61 c3a9 e282ac; chunks of 4 would cut the euro sign after one byte.
        let text = "aé€x".as_bytes();
        let out = run(4, u64::MAX, &[text.to_vec()], &[]);
        let datas: Vec<&[u8]> = out
            .iter()
            .filter_map(|p| match &p.body {
                ChunkBody::Data(d) => Some(&d[..]),
                ChunkBody::Truncated { .. } => None,
            })
            .collect();
        assert_eq!(datas, vec![&b"a\xc3\xa9"[..], &b"\xe2\x82\xacx"[..]]);
        for d in datas {
            assert!(std::str::from_utf8(d).is_ok());
        }
    }

    #[test]
    fn a_flush_holds_back_a_started_character() {
        let mut chunker = Chunker::new(64, u64::MAX);
        let mut out = Vec::new();
        chunker.push(b"ok \xe2\x82", &mut out);
        chunker.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].body, ChunkBody::Data(Bytes::from_static(b"ok ")));
        chunker.push(b"\xac", &mut out);
        chunker.flush(&mut out);
        assert_eq!(
            out[1].body,
            ChunkBody::Data(Bytes::from_static("€".as_bytes()))
        );
        assert_eq!(out[1].offset, 3);
    }

    #[test]
    fn binary_data_is_cut_at_the_chunk_size() {
        let out = run(4, u64::MAX, &[vec![0xff; 9]], &[]);
        let lens: Vec<usize> = out
            .iter()
            .map(|p| match &p.body {
                ChunkBody::Data(d) => d.len(),
                ChunkBody::Truncated { .. } => 0,
            })
            .collect();
        assert_eq!(lens, vec![4, 4, 1]);
    }

    #[test]
    fn the_cap_ends_with_a_marker_counting_the_rest() {
        let out = run(8, 10, &[vec![b'a'; 7], vec![b'b'; 7], vec![b'c'; 100]], &[]);
        let last = out.last().map(|p| p.body.clone());
        assert_eq!(last, Some(ChunkBody::Truncated { dropped_bytes: 104 }));
        assert_eq!(out.last().map(|p| p.offset), Some(10));
    }

    fn chunked_input() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<bool>, usize, u64)> {
        // Mix text (with multi-byte characters) and raw bytes.
        let read = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "[a-zé€😀\n]{0,120}".prop_map(String::into_bytes),
        ];
        (
            proptest::collection::vec(read, 0..20),
            proptest::collection::vec(any::<bool>(), 0..20),
            1usize..200,
            0u64..3000,
        )
    }

    proptest! {
        #[test]
        fn chunks_rebuild_the_input_up_to_the_cap(
            (reads, flushes, max_chunk, cap) in chunked_input()
        ) {
            let input: Vec<u8> = reads.concat();
            let out = run(max_chunk, cap, &reads, &flushes);
            let limit = max_chunk.max(MIN_CHUNK);
            let mut rebuilt = Vec::new();
            let mut markers = Vec::new();
            for (i, piece) in out.iter().enumerate() {
                match &piece.body {
                    ChunkBody::Data(d) => {
                        prop_assert!(!d.is_empty());
                        prop_assert!(d.len() <= limit);
                        prop_assert_eq!(piece.offset, rebuilt.len() as u64);
                        rebuilt.extend_from_slice(d);
                    }
                    ChunkBody::Truncated { dropped_bytes } => {
                        prop_assert_eq!(i, out.len() - 1, "the marker comes last");
                        prop_assert_eq!(piece.offset, rebuilt.len() as u64);
                        markers.push(*dropped_bytes);
                    }
                }
            }
            let kept = input.len().min(usize::try_from(cap).unwrap_or(usize::MAX));
            prop_assert_eq!(&rebuilt[..], &input[..kept]);
            if input.len() as u64 > cap {
                prop_assert_eq!(markers, vec![input.len() as u64 - cap]);
            } else {
                prop_assert!(markers.is_empty());
            }
        }

        #[test]
        fn text_chunks_are_whole_characters(
            text in "[a-zé€😀]{0,200}",
            splits in proptest::collection::vec(1usize..9, 1..40),
            max_chunk in 4usize..40,
        ) {
            let bytes = text.as_bytes();
            let mut reads = Vec::new();
            let mut at = 0;
            for s in splits.iter().cycle() {
                if at >= bytes.len() {
                    break;
                }
                let end = (at + s).min(bytes.len());
                reads.push(bytes[at..end].to_vec());
                at = end;
            }
            let flushes = vec![true; reads.len()];
            for piece in run(max_chunk, u64::MAX, &reads, &flushes) {
                if let ChunkBody::Data(d) = piece.body {
                    prop_assert!(std::str::from_utf8(&d).is_ok(), "{:?}", d);
                }
            }
        }
    }
}
