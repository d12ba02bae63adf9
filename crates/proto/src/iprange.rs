//! IP ranges a MID serves: `10.0.0.0/8`, `10.0.0.5`, `10.0.0.1-10.0.0.50`, and the same
//! with a leading `!` to exclude. A MID with no include ranges serves every address.

use ipnet::IpNet;
use std::net::IpAddr;
use std::str::FromStr;

/// One range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpRange {
    /// A network in CIDR notation (a single address is a /32 or /128).
    Net(IpNet),
    /// First to last address, inclusive.
    Span(IpAddr, IpAddr),
}

impl IpRange {
    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match self {
            IpRange::Net(net) => net.contains(&ip),
            IpRange::Span(a, b) => match (a, b, ip) {
                (IpAddr::V4(a), IpAddr::V4(b), IpAddr::V4(ip)) => *a <= ip && ip <= *b,
                (IpAddr::V6(a), IpAddr::V6(b), IpAddr::V6(ip)) => *a <= ip && ip <= *b,
                _ => false,
            },
        }
    }
}

/// Error for a range that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an IP range: use CIDR (10.0.0.0/8), an address, or first-last, with an optional leading !"
)]
pub struct BadRange(pub String);

impl FromStr for IpRange {
    type Err = BadRange;
    fn from_str(s: &str) -> Result<Self, BadRange> {
        let bad = || BadRange(s.to_string());
        let t = s.trim();
        if let Some((a, b)) = t.split_once('-') {
            let a: IpAddr = a.trim().parse().map_err(|_| bad())?;
            let b: IpAddr = b.trim().parse().map_err(|_| bad())?;
            if a.is_ipv4() != b.is_ipv4() || a > b {
                return Err(bad());
            }
            return Ok(IpRange::Span(a, b));
        }
        if let Ok(net) = t.parse::<IpNet>() {
            return Ok(IpRange::Net(net.trunc()));
        }
        t.parse::<IpAddr>()
            .map(|ip| IpRange::Net(IpNet::from(ip)))
            .map_err(|_| bad())
    }
}

/// A MID's ranges: includes and excludes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRanges {
    include: Vec<IpRange>,
    exclude: Vec<IpRange>,
}

impl IpRanges {
    /// Parses a list like `["10.0.0.0/8", "!10.9.0.0/16"]`.
    pub fn parse(items: &[String]) -> Result<Self, BadRange> {
        let mut ranges = IpRanges::default();
        for item in items {
            match item.trim().strip_prefix('!') {
                Some(rest) => ranges
                    .exclude
                    .push(rest.parse().map_err(|_| BadRange(item.clone()))?),
                None => ranges.include.push(item.parse()?),
            }
        }
        Ok(ranges)
    }

    /// Whether `ip` is served: inside an include range (or there are none) and inside no
    /// exclude range.
    pub fn serves(&self, ip: IpAddr) -> bool {
        (self.include.is_empty() || self.include.iter().any(|r| r.contains(ip)))
            && !self.exclude.iter().any(|r| r.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn includes_and_excludes() {
        let r = IpRanges::parse(&[
            "10.0.0.0/8".into(),
            "192.168.1.10-192.168.1.20".into(),
            "!10.9.0.0/16".into(),
        ])
        .expect("parses");
        assert!(r.serves(ip("10.1.2.3")));
        assert!(!r.serves(ip("10.9.1.1")));
        assert!(r.serves(ip("192.168.1.15")));
        assert!(!r.serves(ip("192.168.1.21")));
        assert!(!r.serves(ip("172.16.0.1")));
        assert!(IpRanges::default().serves(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "x", "10.0.0.9-10.0.0.1", "10.0.0.1-::1", "!"] {
            assert!(IpRanges::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,40}") {
            let _ = IpRanges::parse(&[s]);
        }

        #[test]
        fn a_cidr_contains_its_own_addresses(a in any::<u32>(), prefix in 0u8..=32) {
            let net = IpNet::from(ipnet::Ipv4Net::new(a.into(), prefix).expect("valid").trunc());
            let range = IpRange::Net(net);
            prop_assert!(range.contains(IpAddr::V4(a.into())));
        }
    }
}
