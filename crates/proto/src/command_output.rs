//! A running job's streamed output (a `Command`'s stdout and stderr, a SQL result's
//! pages in `rows`): the chunks a MID posts to the instance as they come
//! (`POST /mid/v1/results/{output}/{attempt}/output`), and the lines an API client
//! reads when it follows them (`GET /api/v1/actions/{id}/output`, NDJSON).
//!
//! Chunks are numbered by `seq` across both streams from 0 without gaps, per attempt,
//! so a follower restores the interleaving of stdout and stderr, a retried post is
//! recognised (same `(output, attempt, seq)`), and a gap is visible.

use crate::command::{CommandEnd, CommandExit};
use crate::ecc::State;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Most chunks in one post.
pub const MAX_CHUNKS_PER_POST: usize = 4096;
/// Largest data of one chunk, decoded (the MID cuts 64 KiB chunks).
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;
/// Bytes of each stream a MID streams to the instance during one run; past it the
/// stream ends with a truncation marker. Larger than the result's cap
/// ([`MAX_OUTPUT_BYTES`](crate::command::MAX_OUTPUT_BYTES)): the stream is for
/// following and for long outputs, the result for the outcome and its first bytes.
pub const MAX_STREAMED_BYTES: u64 = 1024 * 1024 * 1024;

/// Which output stream a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Pages of a SQL result: each chunk one [`SqlPage`](crate::sql::SqlPage) as a
    /// JSON line.
    Rows,
}

impl OutputStream {
    /// The name used on the wire and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Rows => "rows",
        }
    }

    /// Parses [`OutputStream::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stdout" => Some(Self::Stdout),
            "stderr" => Some(Self::Stderr),
            "rows" => Some(Self::Rows),
            _ => None,
        }
    }
}

/// The end-of-stream marker of a stream that reached [`MAX_STREAMED_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Truncated {
    /// Bytes read past the cap and discarded.
    pub dropped_bytes: u64,
}

/// One chunk as the MID posts it: `data` (base64) or `truncated`, exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireChunk {
    /// The stream.
    pub stream: OutputStream,
    /// Position among the run's chunks, both streams together.
    pub seq: u64,
    /// Where the data starts in its stream.
    pub offset: u64,
    /// The bytes, base64 (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The stream's end marker instead of data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
}

/// What a decoded chunk carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkContent {
    /// Output bytes.
    Data(Vec<u8>),
    /// The stream's truncation marker.
    Truncated(Truncated),
}

/// A chunk after its post was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedChunk {
    /// The stream.
    pub stream: OutputStream,
    /// Position among the run's chunks.
    pub seq: u64,
    /// Where it starts in its stream.
    pub offset: u64,
    /// Data or marker.
    pub content: ChunkContent,
}

/// Why a post of chunks is refused: which chunk, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chunks[{index}]: {message}")]
pub struct ChunkInvalid {
    /// Index of the chunk in the post.
    pub index: usize,
    /// What is wrong.
    pub message: String,
}

impl WireChunk {
    /// A data chunk.
    pub fn data(stream: OutputStream, seq: u64, offset: u64, bytes: &[u8]) -> Self {
        Self {
            stream,
            seq,
            offset,
            data: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            truncated: None,
        }
    }

    /// A truncation marker.
    pub fn truncated(stream: OutputStream, seq: u64, offset: u64, dropped_bytes: u64) -> Self {
        Self {
            stream,
            seq,
            offset,
            data: None,
            truncated: Some(Truncated { dropped_bytes }),
        }
    }

    /// Checks and decodes the chunk (`index` names it in the error).
    pub fn decode(&self, index: usize) -> Result<DecodedChunk, ChunkInvalid> {
        let invalid = |message: &str| ChunkInvalid {
            index,
            message: message.to_string(),
        };
        let content = match (&self.data, &self.truncated) {
            (Some(data), None) => {
                if data.len() > MAX_CHUNK_BYTES / 3 * 4 + 4 {
                    return Err(invalid(&format!(
                        "data is larger than {MAX_CHUNK_BYTES} bytes"
                    )));
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| invalid(&format!("data is not base64: {e}")))?;
                if bytes.is_empty() {
                    return Err(invalid("data is empty"));
                }
                ChunkContent::Data(bytes)
            }
            (None, Some(t)) => ChunkContent::Truncated(*t),
            _ => return Err(invalid("give `data` or `truncated`, exactly one")),
        };
        Ok(DecodedChunk {
            stream: self.stream,
            seq: self.seq,
            offset: self.offset,
            content,
        })
    }
}

/// Chunks of a running job's output as an `Output` frame on the session stream carries
/// them: the job they belong to (the long-poll route has it in its path) and the post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputFrame {
    /// The output.
    pub output_id: String,
    /// Its attempt.
    pub attempt: u32,
    /// The chunks.
    pub post: OutputPost,
}

/// Body of `POST /mid/v1/results/{output}/{attempt}/output`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputPost {
    /// The chunks, in any order (normally ascending `seq`).
    pub chunks: Vec<WireChunk>,
}

impl OutputPost {
    /// Checks and decodes every chunk.
    pub fn decode(&self) -> Result<Vec<DecodedChunk>, ChunkInvalid> {
        if self.chunks.len() > MAX_CHUNKS_PER_POST {
            return Err(ChunkInvalid {
                index: MAX_CHUNKS_PER_POST,
                message: format!("at most {MAX_CHUNKS_PER_POST} chunks per post"),
            });
        }
        self.chunks
            .iter()
            .enumerate()
            .map(|(i, c)| c.decode(i))
            .collect()
    }
}

/// Answer to an output post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputAck {
    /// Chunks stored now.
    pub stored: u64,
    /// Chunks already stored by an earlier post (a retry), left as they were.
    pub duplicate: u64,
}

/// One line of `GET /api/v1/actions/{id}/output` (NDJSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OutputLine {
    /// Output bytes.
    Chunk {
        /// The stream.
        stream: OutputStream,
        /// Position among the run's chunks.
        seq: u64,
        /// Where `text` starts in its stream (in bytes).
        offset: u64,
        /// The bytes as text; base64 of them when `base64` (not UTF-8, or NUL bytes).
        text: String,
        /// `text` is base64.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        base64: bool,
    },
    /// A stream reached [`MAX_STREAMED_BYTES`]: this many bytes were not streamed.
    Truncated {
        /// The stream.
        stream: OutputStream,
        /// Position among the run's chunks.
        seq: u64,
        /// The streamed length.
        offset: u64,
        /// How much was dropped.
        truncated: Truncated,
    },
    /// The output was claimed again (its lease lapsed): the chunks that follow are the
    /// new attempt's, from `seq` 0; the earlier ones are void.
    Restart {
        /// The new attempt.
        attempt: u32,
    },
    /// The output finished (last line of a followed stream).
    End {
        /// How.
        end: OutputEnd,
    },
}

impl OutputLine {
    /// The line for stored bytes: text when they are UTF-8 without NUL bytes, else
    /// base64 (a NUL is six bytes as a JSON escape; base64 costs a third more).
    pub fn chunk(stream: OutputStream, seq: u64, offset: u64, bytes: Vec<u8>) -> Self {
        let encode = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
        let (text, base64) = match String::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => (text, false),
            Ok(text) => (encode(text.as_bytes()), true),
            Err(e) => (encode(e.as_bytes()), true),
        };
        Self::Chunk {
            stream,
            seq,
            offset,
            text,
            base64,
        }
    }

    /// The bytes of a chunk line (`None` for other lines or bad base64).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Self::Chunk {
                text, base64: true, ..
            } => base64::engine::general_purpose::STANDARD.decode(text).ok(),
            Self::Chunk { text, .. } => Some(text.clone().into_bytes()),
            _ => None,
        }
    }
}

/// How a followed output ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputEnd {
    /// The output's final state.
    pub state: State,
    /// Exit code or signal, when the command ran.
    #[serde(default)]
    pub exit: Option<CommandExit>,
    /// What ended the run, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<CommandEnd>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_bad_ones_are_named() {
        let post = OutputPost {
            chunks: vec![
                WireChunk::data(OutputStream::Stdout, 0, 0, b"hi\n"),
                WireChunk::truncated(OutputStream::Stderr, 1, 10, 5),
            ],
        };
        let json = serde_json::to_string(&post).unwrap_or_default();
        let back: OutputPost = serde_json::from_str(&json).expect("parses");
        let decoded = back.decode().expect("valid");
        assert_eq!(decoded[0].content, ChunkContent::Data(b"hi\n".to_vec()));
        let bad = OutputPost {
            chunks: vec![WireChunk {
                data: Some("***".into()),
                ..WireChunk::data(OutputStream::Stdout, 0, 0, b"x")
            }],
        };
        assert_eq!(bad.decode().err().map(|e| e.index), Some(0));
    }

    #[test]
    fn lines_parse_back_to_their_kind() {
        for line in [
            OutputLine::chunk(OutputStream::Stdout, 0, 0, b"ok".to_vec()),
            OutputLine::chunk(OutputStream::Stderr, 1, 0, vec![0xff, 0xfe]),
            OutputLine::Restart { attempt: 2 },
            OutputLine::End {
                end: OutputEnd {
                    state: State::Processed,
                    exit: Some(CommandExit::Code { code: 3 }),
                    ended_by: Some(CommandEnd::Exit),
                    error: None,
                },
            },
        ] {
            let json = serde_json::to_string(&line).unwrap_or_default();
            let back: OutputLine = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, line);
        }
        let binary = OutputLine::chunk(OutputStream::Stdout, 0, 0, vec![0xff]);
        assert_eq!(binary.bytes(), Some(vec![0xff]));
    }
}
