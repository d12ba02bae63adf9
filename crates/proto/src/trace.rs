//! W3C Trace Context (`traceparent`): the one trace a job belongs to, from the API call
//! that asked for it, through its ECC output record and the MID, into the REST and SOAP
//! requests the MID makes. Both ends compile against this one parser, so what the
//! instance stores is what the MID reads.
//!
//! Only version `00` is understood. A header that does not parse is ignored and a new
//! trace started, as the W3C recommendation says a receiver must do: a bad header from
//! a caller never fails the call.

use std::fmt;

/// The HTTP header name (lower case, as the recommendation writes it).
pub const HEADER: &str = "traceparent";

/// One `traceparent`: a trace, the span that is the parent of whatever receives it,
/// and the trace flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// 8 bytes, never all zero: the sender's span.
    pub parent_id: [u8; 8],
    /// Bit 0 is `sampled`; the others are kept as received.
    pub flags: u8,
}

/// Why a `traceparent` value was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTraceParent {
    /// Not `version-traceid-parentid-flags` with the right lengths.
    #[error("traceparent: not `00-<32 hex>-<16 hex>-<2 hex>`")]
    Shape,
    /// A version this build does not read (or the forbidden `ff`).
    #[error("traceparent: version `{0}` is not supported (only `00`)")]
    Version(String),
    /// Upper-case or non-hex digits.
    #[error("traceparent: `{0}` is not lower-case hex")]
    NotHex(&'static str),
    /// The trace id or parent id is all zeros, which the recommendation forbids.
    #[error("traceparent: the {0} is all zeros")]
    Zero(&'static str),
}

fn lower_hex(s: &str, out: &mut [u8], what: &'static str) -> Result<(), InvalidTraceParent> {
    if s.len() != out.len() * 2 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(InvalidTraceParent::NotHex(what));
    }
    hex::decode_to_slice(s, out).map_err(|_| InvalidTraceParent::NotHex(what))
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    loop {
        // aws-lc's generator fails only when the system's entropy source is gone; a
        // time-derived id then still keeps traces apart well enough to be useful.
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(1);
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (nanos >> ((i % 16) * 8)) as u8 ^ (i as u8);
            }
        }
        if bytes.iter().any(|&b| b != 0) {
            return bytes;
        }
    }
}

impl TraceParent {
    /// Parses a header value (surrounding spaces are allowed, as for any header).
    pub fn parse(value: &str) -> Result<Self, InvalidTraceParent> {
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        let mut parts = value.split('-');
        let (Some(version), Some(trace), Some(parent), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(InvalidTraceParent::Shape);
        };
        if version != "00" {
            return Err(InvalidTraceParent::Version(
                version.chars().take(8).collect(),
            ));
        }
        let mut trace_id = [0u8; 16];
        lower_hex(trace, &mut trace_id, "trace id")?;
        let mut parent_id = [0u8; 8];
        lower_hex(parent, &mut parent_id, "parent id")?;
        let mut flag = [0u8; 1];
        lower_hex(flags, &mut flag, "flags")?;
        if trace_id == [0; 16] {
            return Err(InvalidTraceParent::Zero("trace id"));
        }
        if parent_id == [0; 8] {
            return Err(InvalidTraceParent::Zero("parent id"));
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags: flag[0],
        })
    }

    /// A new trace (random ids), sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: random(),
            parent_id: random(),
            flags: 0x01,
        }
    }

    /// The context a receiver passes on: the same trace and flags, its own new span id
    /// as the parent of what it calls.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            parent_id: random(),
            flags: self.flags,
        }
    }

    /// The span an incoming header asks to continue, or a new trace when it is absent
    /// or malformed; either way the receiver's own span (see [`TraceParent::child`]).
    /// The second value is the caller's span, when there was a valid one.
    pub fn continue_or_start(header: Option<&str>) -> (Self, Option<[u8; 8]>) {
        match header.map(Self::parse) {
            Some(Ok(incoming)) => (incoming.child(), Some(incoming.parent_id)),
            _ => (Self::new_root(), None),
        }
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The parent (span) id as 16 lower-case hex digits.
    pub fn parent_id_hex(&self) -> String {
        hex::encode(self.parent_id)
    }

    /// Whether the caller asked for this trace to be recorded.
    pub fn sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.parent_id),
            self.flags
        )
    }
}

impl std::str::FromStr for TraceParent {
    type Err = InvalidTraceParent;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_recommendations_example_round_trips() {
        let t = TraceParent::parse(GOOD).unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id_hex(), "00f067aa0ba902b7");
        assert!(t.sampled());
        assert_eq!(t.to_string(), GOOD);
        assert_eq!(TraceParent::parse(&format!(" {GOOD}\t")).unwrap(), t);
    }

    #[test]
    fn malformed_values_are_refused_with_the_reason() {
        let cases = [
            ("", InvalidTraceParent::Shape),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                InvalidTraceParent::Shape,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                InvalidTraceParent::Version("01".into()),
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                InvalidTraceParent::Version("ff".into()),
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                InvalidTraceParent::NotHex("trace id"),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
                InvalidTraceParent::NotHex("trace id"),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
                InvalidTraceParent::NotHex("parent id"),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                InvalidTraceParent::NotHex("flags"),
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                InvalidTraceParent::Zero("trace id"),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                InvalidTraceParent::Zero("parent id"),
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                InvalidTraceParent::Shape,
            ),
        ];
        for (value, want) in cases {
            assert_eq!(TraceParent::parse(value), Err(want), "{value:?}");
        }
    }

    #[test]
    fn a_receiver_keeps_the_trace_and_makes_its_own_span() {
        let (own, caller) = TraceParent::continue_or_start(Some(GOOD));
        let incoming = TraceParent::parse(GOOD).unwrap();
        assert_eq!(own.trace_id, incoming.trace_id);
        assert_ne!(own.parent_id, incoming.parent_id);
        assert_eq!(caller, Some(incoming.parent_id));
        let (fresh, none) = TraceParent::continue_or_start(Some("00-garbage"));
        assert_ne!(fresh.trace_id, incoming.trace_id);
        assert!(fresh.sampled());
        assert_eq!(none, None);
        assert_ne!(TraceParent::new_root().trace_id, fresh.trace_id);
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_what_parses_prints_back(s in "\\PC{0,80}") {
            if let Ok(t) = TraceParent::parse(&s) {
                prop_assert_eq!(TraceParent::parse(&t.to_string()), Ok(t));
            }
        }

        #[test]
        fn every_valid_header_round_trips(
            trace in proptest::array::uniform16(any::<u8>()),
            parent in proptest::array::uniform8(any::<u8>()),
            flags in any::<u8>(),
        ) {
            prop_assume!(trace != [0; 16] && parent != [0; 8]);
            let t = TraceParent { trace_id: trace, parent_id: parent, flags };
            prop_assert_eq!(TraceParent::parse(&t.to_string()), Ok(t));
        }
    }
}
