//! The outbox log's on-disk encoding: a segment header, then frames.
//!
//! ```text
//! segment := SEGMENT_MAGIC (8 bytes; the last one is the format version) frame*
//! frame   := kind (1 byte: b'R' result, b'A' ack)
//!            length of body (u32, little-endian)
//!            CRC-32 (IEEE) of kind, length and body (u32, little-endian)
//!            body (JSON: a WorkResult for a result, a JobRef for an ack)
//! ```
//!
//! Everything here reads bytes from disk, which a crash may have cut short and a disk
//! may have damaged, so decoding never trusts a length or panics: it stops at the first
//! frame that is incomplete ([`Stop::Torn`]) or wrong ([`Stop::Corrupt`]) and says
//! where. The checksum covers the header too, so a damaged length is caught rather than
//! followed. Both kind bytes are non-zero: the zero-filled tail a power loss can leave
//! behind reads as torn, never as a frame.

use openmid_proto::mid::{JobRef, WorkResult};

/// First bytes of every segment file; the last byte is the format version.
pub(super) const SEGMENT_MAGIC: [u8; 8] = *b"omidlog\x01";
/// Bytes before a frame's body: kind, length, checksum.
pub(super) const FRAME_HEADER: usize = 9;
const KIND_RESULT: u8 = b'R';
const KIND_ACK: u8 = b'A';

/// One decoded frame.
#[derive(Debug, PartialEq)]
pub(super) enum Frame {
    /// A result was stored (a later one for the same job replaces it).
    Result {
        /// The result.
        result: WorkResult,
        /// Bytes of its JSON (what counts against the outbox limit).
        json_len: u64,
    },
    /// The instance acknowledged this job's result.
    Ack(JobRef),
}

/// Why decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Every byte was a whole, valid frame.
    End,
    /// The bytes end inside a frame, or only zeros follow: an append a crash cut short.
    /// (A length damaged to point past the end reads the same way; nothing tells the
    /// two apart without the bytes that are not there.)
    Torn,
    /// A whole frame is there but wrong (checksum, kind, body): damage, not a crash.
    Corrupt(&'static str),
}

/// What a run of frame bytes holds.
#[derive(Debug)]
pub(super) struct Decoded {
    /// The frames before the first bad one, each with its length on disk.
    pub frames: Vec<(Frame, u64)>,
    /// Bytes those frames take: where the first bad frame starts.
    pub good_len: u64,
    /// Why decoding stopped.
    pub stop: Stop,
}

/// The frame that stores `result`, and the length of its JSON.
pub(super) fn result_frame(result: &WorkResult) -> Result<(Vec<u8>, u64), FrameError> {
    let json = serde_json::to_vec(result)?;
    let json_len = json.len() as u64;
    Ok((frame(KIND_RESULT, &json)?, json_len))
}

/// The frame that records `job`'s acknowledgement.
pub(super) fn ack_frame(job: &JobRef) -> Result<Vec<u8>, FrameError> {
    frame(KIND_ACK, &serde_json::to_vec(job)?)
}

/// A frame could not be made.
#[derive(Debug, thiserror::Error)]
pub(super) enum FrameError {
    /// Serializing failed.
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
    /// The length field cannot say this many bytes.
    #[error("{0} bytes is more than one outbox frame can hold")]
    TooLarge(usize),
}

fn frame(kind: u8, body: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
    let mut out = Vec::with_capacity(FRAME_HEADER + body.len());
    out.push(kind);
    out.extend_from_slice(&len.to_le_bytes());
    let crc = crc32(&[&out[..5], body]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Decodes the frames of `bytes` (a segment without its header), stopping at the first
/// one that is torn or corrupt.
pub(super) fn decode_frames(bytes: &[u8]) -> Decoded {
    let mut frames = Vec::new();
    let mut at = 0usize;
    let stop = loop {
        let rest = bytes.get(at..).unwrap_or_default();
        if rest.is_empty() {
            break Stop::End;
        }
        let Some(header) = rest.get(..FRAME_HEADER) else {
            break Stop::Torn;
        };
        let kind = header[0];
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let stored_crc = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
        if kind != KIND_RESULT && kind != KIND_ACK {
            break torn_or(rest, "unknown frame kind");
        }
        let Some(body) = FRAME_HEADER
            .checked_add(len)
            .and_then(|end| rest.get(FRAME_HEADER..end))
        else {
            break Stop::Torn;
        };
        if crc32(&[&header[..5], body]) != stored_crc {
            break torn_or(rest, "checksum mismatch");
        }
        let frame = if kind == KIND_RESULT {
            serde_json::from_slice(body).map(|result| Frame::Result {
                result,
                json_len: body.len() as u64,
            })
        } else {
            serde_json::from_slice(body).map(Frame::Ack)
        };
        let Ok(frame) = frame else {
            // The checksum matched, so these are the bytes that were written: a format
            // this build does not read (a newer MID's), not a torn write.
            break Stop::Corrupt("frame body is not a result or acknowledgement");
        };
        let frame_len = FRAME_HEADER + len;
        frames.push((frame, frame_len as u64));
        at += frame_len;
    };
    Decoded {
        frames,
        good_len: at as u64,
        stop,
    }
}

/// A power loss can leave an appended region of a file zero-filled; that is a torn
/// append, not damage.
fn torn_or(rest: &[u8], reason: &'static str) -> Stop {
    if rest.iter().all(|&b| b == 0) {
        Stop::Torn
    } else {
        Stop::Corrupt(reason)
    }
}

/// CRC-32 (IEEE 802.3, the one of zip and PNG) over `parts` in order. A table-driven
/// byte loop is plenty for results of a few kilobytes and needs no dependency.
pub(super) fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &byte in *part {
            crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    !crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn result(id: &str, attempt: u32) -> WorkResult {
        WorkResult {
            output_id: id.to_string(),
            attempt,
            payload: serde_json::json!({"status": 200, "body": "x".repeat(attempt as usize % 40)})
                .into(),
            error: None,
            started_at_ms: 1,
            duration_ms: 2,
        }
    }

    fn log_of(results: &[WorkResult], acks: &[JobRef]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for r in results {
            bytes.extend(result_frame(r).expect("frame").0);
        }
        for a in acks {
            bytes.extend(ack_frame(a).expect("frame"));
        }
        bytes
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[]), 0);
    }

    #[test]
    fn frames_round_trip() {
        let job = JobRef {
            output_id: "a".into(),
            attempt: 1,
        };
        let bytes = log_of(
            &[result("a", 1), result("b", 2)],
            std::slice::from_ref(&job),
        );
        let decoded = decode_frames(&bytes);
        assert_eq!(decoded.stop, Stop::End);
        assert_eq!(decoded.good_len, bytes.len() as u64);
        assert_eq!(decoded.frames.len(), 3);
        assert!(
            matches!(&decoded.frames[0].0, Frame::Result { result: r, .. } if *r == result("a", 1))
        );
        assert_eq!(decoded.frames[2].0, Frame::Ack(job));
        let lens: u64 = decoded.frames.iter().map(|(_, len)| len).sum();
        assert_eq!(lens, bytes.len() as u64);
    }

    #[test]
    fn a_cut_frame_is_torn_and_a_changed_byte_is_corrupt() {
        let bytes = log_of(&[result("a", 1), result("b", 1)], &[]);
        let first = decode_frames(&bytes).frames[0].1;

        let cut = decode_frames(&bytes[..bytes.len() - 3]);
        assert_eq!(
            (cut.stop, cut.frames.len(), cut.good_len),
            (Stop::Torn, 1, first)
        );

        let mut zeroed = bytes.clone();
        zeroed[first as usize..].fill(0);
        assert_eq!(decode_frames(&zeroed).stop, Stop::Torn);

        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x01;
        let decoded = decode_frames(&flipped);
        assert_eq!(decoded.stop, Stop::Corrupt("checksum mismatch"));
        assert_eq!((decoded.frames.len(), decoded.good_len), (1, first));

        // The second frame's length: shorter fails the checksum; longer points past the
        // end, which is what a cut-short append looks like too.
        let mut shorter = bytes.clone();
        shorter[first as usize + 1] -= 1;
        assert_eq!(
            decode_frames(&shorter).stop,
            Stop::Corrupt("checksum mismatch")
        );
        let mut longer = bytes;
        longer[first as usize + 1] += 1;
        assert_eq!(decode_frames(&longer).stop, Stop::Torn);
    }

    #[test]
    fn a_checksummed_frame_this_build_cannot_read_is_corrupt() {
        let bytes = frame(KIND_RESULT, br#"{"from":"a newer MID"}"#).expect("frame");
        let decoded = decode_frames(&bytes);
        assert!(matches!(decoded.stop, Stop::Corrupt(_)));
        assert!(decoded.frames.is_empty());
    }

    fn written() -> Vec<WorkResult> {
        (0..4).map(|i| result(&format!("job-{i}"), i + 1)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Bytes from disk are outside data: whatever they are, decoding ends without a
        /// panic and only ever yields a frame that was written.
        #[test]
        fn arbitrary_bytes_never_panic_or_invent_results(
            bytes in proptest::collection::vec(any::<u8>(), 0..600)
        ) {
            let decoded = decode_frames(&bytes);
            prop_assert!(decoded.frames.is_empty());
            prop_assert!(decoded.good_len <= bytes.len() as u64);
        }

        #[test]
        fn damaged_logs_yield_only_written_frames(
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
            tail in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let results = written();
            let acks = vec![JobRef { output_id: "job-0".into(), attempt: 1 }];
            let mut bytes = log_of(&results, &acks);
            bytes.truncate(cut.index(bytes.len() + 1));
            for (at, mask) in &flips {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] ^= mask;
                }
            }
            bytes.extend(&tail);
            let decoded = decode_frames(&bytes);
            prop_assert!(decoded.good_len <= bytes.len() as u64);
            for (frame, _) in &decoded.frames {
                match frame {
                    Frame::Result { result, .. } => prop_assert!(results.contains(result)),
                    Frame::Ack(job) => prop_assert!(acks.contains(job)),
                }
            }
            if flips.is_empty() && tail.is_empty() {
                // Only cut short: that is a torn append, never damage.
                prop_assert!(matches!(decoded.stop, Stop::End | Stop::Torn));
            }
        }
    }
}
