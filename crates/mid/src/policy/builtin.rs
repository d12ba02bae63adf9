//! The addresses every network probe refuses unless the policy names them: the MID
//! host's own loopback and unspecified addresses (a job could reach services bound to
//! the MID's localhost, such as its own admin endpoints), link-local addresses, and the
//! cloud metadata services (which hand out the host's cloud credentials to anyone who
//! asks). A compromised instance must not be able to point a probe at them.
//!
//! An `allow_cidrs` entry lifts a built-in refusal only when it lies entirely inside
//! the refused range (`127.0.0.1/32` or `127.0.0.0/8` lifts loopback; a broad
//! `0.0.0.0/0` written to mean "the internet" does not). The metadata addresses are a
//! range of their own inside link-local, so allowing `169.254.0.0/16` for a device
//! still refuses `169.254.169.254` unless `169.254.169.254/32` is listed too.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A kind of address refused by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// Cloud metadata services: 169.254.169.254 (AWS, GCP, Azure, OpenStack),
    /// fd00:ec2::254 (AWS over IPv6), 100.100.100.200 (Alibaba Cloud).
    Metadata,
    /// The MID host itself: 127.0.0.0/8, ::1.
    Loopback,
    /// "Any address", which the kernel connects to the MID host: 0.0.0.0, ::.
    Unspecified,
    /// Link-local: 169.254.0.0/16, fe80::/10.
    LinkLocal,
}

impl Builtin {
    /// What the refused addresses are, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Metadata => "cloud metadata addresses",
            Self::Loopback => "loopback addresses",
            Self::Unspecified => "unspecified addresses (0.0.0.0, ::)",
            Self::LinkLocal => "link-local addresses",
        }
    }

    /// An allow entry that lifts the refusal, for messages.
    pub fn example(self) -> &'static str {
        match self {
            Self::Metadata => "169.254.169.254/32",
            Self::Loopback => "127.0.0.1/32",
            Self::Unspecified => "0.0.0.0/32",
            Self::LinkLocal => "169.254.0.0/16",
        }
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len))
}

const fn v6(segments: [u16; 8], len: u8) -> IpNet {
    let [a, b, c, d, e, f, g, h] = segments;
    IpNet::V6(Ipv6Net::new_assert(
        Ipv6Addr::new(a, b, c, d, e, f, g, h),
        len,
    ))
}

/// The refused ranges, most specific first so a metadata address is reported as one
/// rather than as link-local.
pub const RANGES: [(IpNet, Builtin); 9] = [
    (v4(169, 254, 169, 254, 32), Builtin::Metadata),
    (
        v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
        Builtin::Metadata,
    ),
    (v4(100, 100, 100, 200, 32), Builtin::Metadata),
    (v4(127, 0, 0, 0, 8), Builtin::Loopback),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), Builtin::Loopback),
    (v4(0, 0, 0, 0, 32), Builtin::Unspecified),
    (v6([0; 8], 128), Builtin::Unspecified),
    (v4(169, 254, 0, 0, 16), Builtin::LinkLocal),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), Builtin::LinkLocal),
];

/// The built-in ranges holding `ip` (already in canonical form), most specific first.
pub fn containing(ip: IpAddr) -> impl Iterator<Item = (IpNet, Builtin)> {
    RANGES.into_iter().filter(move |(net, _)| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(ip: &str) -> Vec<Builtin> {
        let ip: IpAddr = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
        containing(ip).map(|(_, b)| b).collect()
    }

    #[test]
    fn each_documented_address_is_in_its_range() {
        use Builtin::*;
        assert_eq!(kinds("169.254.169.254"), [Metadata, LinkLocal]);
        assert_eq!(kinds("fd00:ec2::254"), [Metadata]);
        assert_eq!(kinds("100.100.100.200"), [Metadata]);
        assert_eq!(kinds("127.0.0.1"), [Loopback]);
        assert_eq!(kinds("127.255.0.9"), [Loopback]);
        assert_eq!(kinds("::1"), [Loopback]);
        assert_eq!(kinds("0.0.0.0"), [Unspecified]);
        assert_eq!(kinds("::"), [Unspecified]);
        assert_eq!(kinds("169.254.1.1"), [LinkLocal]);
        assert_eq!(kinds("fe80::1"), [LinkLocal]);
        assert_eq!(kinds("febf::1"), [LinkLocal]);
        assert!(kinds("10.0.0.1").is_empty());
        assert!(kinds("100.100.100.201").is_empty());
        assert!(kinds("fec0::1").is_empty());
        assert!(kinds("2001:db8::1").is_empty());
    }

    #[test]
    fn every_range_has_words_and_an_example_inside_it() {
        for (net, builtin) in RANGES {
            assert!(!builtin.describe().is_empty());
            let example: IpNet = builtin.example().parse().unwrap_or_else(|e| panic!("{e}"));
            // The example lifts its own kind: it lies inside one range of that kind.
            assert!(
                RANGES
                    .iter()
                    .any(|(n, b)| *b == builtin && n.contains(&example)),
                "{net}: {example}"
            );
        }
    }
}
