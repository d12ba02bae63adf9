//! ICMP and ICMPv6 echo messages: built, and parsed from whatever a socket hands back.
//! Parsing reads bytes from the network, so it never panics and never trusts a
//! length (a property test feeds it arbitrary bytes).
//!
//! A raw IPv4 socket delivers the IP header in front of the message; an ICMP
//! datagram socket and any ICMPv6 socket deliver the message alone. The ICMPv6
//! checksum covers a pseudo-header the kernel knows and fills in itself, so only the
//! IPv4 checksum is computed and verified here.

/// Echo request, ICMP.
pub const ECHO_REQUEST_V4: u8 = 8;
/// Echo reply, ICMP.
pub const ECHO_REPLY_V4: u8 = 0;
/// Echo request, ICMPv6.
pub const ECHO_REQUEST_V6: u8 = 128;
/// Echo reply, ICMPv6.
pub const ECHO_REPLY_V6: u8 = 129;
/// Bytes of an echo message before its payload.
pub const HEADER_BYTES: usize = 8;

/// A parsed echo reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoReply {
    /// Its identifier (on a datagram socket, the kernel's: the socket's port).
    pub id: u16,
    /// Its sequence number.
    pub seq: u16,
    /// The payload echoed back.
    pub payload: Vec<u8>,
}

/// The Internet checksum (RFC 1071) of `bytes`: the ones' complement of the ones'
/// complement sum of its 16-bit words. A message holding its own checksum sums to 0.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request: ICMPv6 when `v6` (checksum left to the kernel), else ICMP with
/// its checksum.
pub fn echo_request(v6: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let kind = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    let mut msg = Vec::with_capacity(HEADER_BYTES + payload.len());
    msg.extend_from_slice(&[kind, 0, 0, 0]);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(payload);
    if !v6 {
        let sum = checksum(&msg);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    msg
}

/// The echo reply in `packet`, if it is one: `with_ip_header` for a raw IPv4
/// socket's packets. `None` for anything else (other ICMP messages, a bad checksum,
/// a truncated packet).
pub fn parse_reply(v6: bool, with_ip_header: bool, packet: &[u8]) -> Option<EchoReply> {
    let msg = if with_ip_header && !v6 {
        let first = *packet.first()?;
        if first >> 4 != 4 {
            return None;
        }
        let header = usize::from(first & 0x0f) * 4;
        if header < 20 {
            return None;
        }
        packet.get(header..)?
    } else {
        packet
    };
    if msg.len() < HEADER_BYTES {
        return None;
    }
    let want = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    if msg[0] != want || msg[1] != 0 {
        return None;
    }
    if !v6 && checksum(msg) != 0 {
        return None;
    }
    Some(EchoReply {
        id: u16::from_be_bytes([msg[4], msg[5]]),
        seq: u16::from_be_bytes([msg[6], msg[7]]),
        payload: msg[HEADER_BYTES..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a host answers to `request`: the same message as a reply.
    fn reply_to(request: &[u8], v6: bool) -> Vec<u8> {
        let mut r = request.to_vec();
        r[0] = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
        r[2] = 0;
        r[3] = 0;
        if !v6 {
            let sum = checksum(&r);
            r[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        r
    }

    #[test]
    fn a_known_checksum() {
        // RFC 1071's example words.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&bytes), !0xddf2);
        let req = echo_request(false, 0x1234, 7, b"abc");
        assert_eq!(checksum(&req), 0, "a message with its checksum sums to 0");
    }

    #[test]
    fn a_reply_behind_an_ip_header() {
        let reply = reply_to(&echo_request(false, 9, 3, b"payload"), false);
        let mut packet = vec![0x45u8];
        packet.extend_from_slice(&[0; 19]);
        packet.extend_from_slice(&reply);
        let parsed = parse_reply(false, true, &packet);
        assert_eq!(
            parsed,
            Some(EchoReply {
                id: 9,
                seq: 3,
                payload: b"payload".to_vec()
            })
        );
        let mut corrupt = reply.clone();
        corrupt[9] ^= 1;
        assert_eq!(parse_reply(false, false, &corrupt), None, "bad checksum");
        let request = echo_request(false, 9, 3, b"x");
        assert_eq!(
            parse_reply(false, false, &request),
            None,
            "a request is no reply"
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), v6: bool, ip: bool) {
            let _ = parse_reply(v6, ip, &bytes);
        }

        #[test]
        fn replies_round_trip(v6: bool, id: u16, seq: u16, payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let reply = reply_to(&echo_request(v6, id, seq, &payload), v6);
            prop_assert_eq!(parse_reply(v6, false, &reply), Some(EchoReply { id, seq, payload }));
        }
    }
}
