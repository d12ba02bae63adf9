//! The network rules of one protocol, compiled from its `[policy.<protocol>]` section
//! and the shared `[policy.default]` section, and the three checks a connection goes
//! through: its port, its host name (before resolution), each address (after
//! resolution, or the literal address of an IP target).
//!
//! Each check goes the same way: an explicit deny entry refuses; then (addresses only)
//! the built-in ranges refuse unless an allow entry inside them admits the address;
//! then, when an allow list is set, something on it must match. Deny lists of the
//! protocol and the default section add up; a protocol's non-empty allow list replaces
//! the default section's. Addresses are put in canonical form first, so an
//! IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) decides exactly like its IPv4 form.

use super::Protocol;
use super::builtin;
use super::denial::{Aspect, Denial};
use super::explain::Trace;
use ipnet::{IpNet, Ipv4Net};
use std::fmt;
use std::net::IpAddr;

/// One list entry: its compiled value, its config key and how it was written.
#[derive(Debug, Clone)]
pub(crate) struct Entry<T> {
    pub value: T,
    /// e.g. `policy.http.deny_cidrs[2]`.
    pub rule: String,
    /// e.g. `169.254.0.0/16`.
    pub written: String,
}

/// An allow list and the key to name when nothing on it matches.
#[derive(Debug, Clone)]
pub(crate) struct Allow<T> {
    pub entries: Vec<Entry<T>>,
    /// The list in force (`policy.http.allow_cidrs`, or `policy.default.…` when the
    /// protocol's own list is empty and the default's is not).
    pub key: String,
}

/// A host-name pattern: exact, or `*.suffix` for any name under the suffix (not the
/// suffix itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    Exact(String),
    /// Held with its leading dot: `.corp.example.com`.
    Suffix(String),
}

impl HostPattern {
    /// Parses an entry; names are compared lowercase without a trailing dot.
    pub fn parse(text: &str) -> Result<Self, String> {
        let name = text.trim_end_matches('.').to_ascii_lowercase();
        let (pattern, labels) = match name.strip_prefix("*.") {
            Some(rest) => (Self::Suffix(format!(".{rest}")), rest),
            None => (Self::Exact(name.clone()), name.as_str()),
        };
        if labels.parse::<IpAddr>().is_ok() {
            return Err(format!(
                "`{text}` is an address: list addresses in the *_cidrs keys"
            ));
        }
        if !is_host_name(labels) {
            return Err(format!(
                "`{text}` is not a host name or `*.suffix` pattern (labels of a-z 0-9 - _)"
            ));
        }
        Ok(pattern)
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => name == exact,
            Self::Suffix(suffix) => name.len() > suffix.len() && name.ends_with(suffix.as_str()),
        }
    }
}

/// An inclusive port range (a single port is `lo == hi`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    /// Parses `443` or `8000-8999`; ports are 1–65535.
    pub fn parse(text: &str) -> Result<Self, String> {
        let port = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{text}`: ports are 1–65535"))
        };
        let (lo, hi) = match text.split_once('-') {
            Some((lo, hi)) => (port(lo)?, port(hi)?),
            None => (port(text)?, port(text)?),
        };
        if lo > hi {
            return Err(format!("`{text}`: the range ends before it starts"));
        }
        Ok(Self { lo, hi })
    }

    fn contains(self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

/// Parses a CIDR (`10.0.0.0/8`) or a single address (`10.1.2.3`, taken as /32 or
/// /128). Host bits set after the prefix are refused: `10.1.2.3/8` is almost always a
/// typo for something narrower or wider. IPv4-mapped IPv6 ranges are turned into their
/// IPv4 form, as addresses are before matching.
pub(crate) fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("`{text}` is not a CIDR (10.0.0.0/8, fd00::/8) or address"))?,
    };
    if net.network() != net.addr() {
        return Err(format!(
            "`{text}` has bits set after the prefix; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(canonical_net(net))
}

fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// A connection target's host as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    /// A name, lowercase, without a trailing dot.
    Name(String),
    /// An address, in canonical form.
    Ip(IpAddr),
}

/// Whether `name` (lowercase, no trailing dot) is a plausible host name: labels of
/// a-z 0-9 - _, 1–63 long, 253 in all.
fn is_host_name(name: &str) -> bool {
    let good_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    !name.is_empty() && name.len() <= 253 && name.split('.').all(good_label)
}

/// Whether the system resolver would read `name` as an address in one of the old
/// numeric forms (`127.1`, `2130706433`, `0x7f000001`). Such names are refused rather
/// than judged by name rules: no real host name ends in a numeric label.
fn is_numeric_form(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last
        .strip_prefix("0x")
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || last.bytes().all(|b| b.is_ascii_digit())
}

impl Host {
    /// Reads a host as written in a URL or a job (`db.corp.`, `[::1]`, `10.0.0.1`), or
    /// says why it cannot be checked.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let bare = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Self::Ip(ip.to_canonical()));
        }
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return Err("the target has no host");
        }
        if !is_host_name(&name) {
            return Err("the host is neither a host name nor an IP address");
        }
        if is_numeric_form(&name) {
            return Err(
                "the host looks like an IP address in a shortened or numeric form (such as 127.1 or 0x7f000001); write the address in full",
            );
        }
        Ok(Self::Name(name))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => f.write_str(name),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The effective network rules of one protocol.
#[derive(Debug, Clone)]
pub(crate) struct NetworkRules {
    pub protocol: Protocol,
    pub deny_cidrs: Vec<Entry<IpNet>>,
    pub deny_hosts: Vec<Entry<HostPattern>>,
    pub deny_ports: Vec<Entry<PortRange>>,
    pub allow_cidrs: Allow<IpNet>,
    pub allow_hosts: Allow<HostPattern>,
    pub allow_ports: Allow<PortRange>,
}

impl NetworkRules {
    /// No entries: only the built-in refusals apply.
    pub fn empty(protocol: Protocol) -> Self {
        fn allow<T>(protocol: Protocol, list: &str) -> Allow<T> {
            Allow {
                entries: Vec::new(),
                key: format!("policy.{protocol}.{list}"),
            }
        }
        Self {
            protocol,
            deny_cidrs: Vec::new(),
            deny_hosts: Vec::new(),
            deny_ports: Vec::new(),
            allow_cidrs: allow(protocol, "allow_cidrs"),
            allow_hosts: allow(protocol, "allow_hosts"),
            allow_ports: allow(protocol, "allow_ports"),
        }
    }

    /// Refuses a port on a deny list, or missing from a set allow list.
    pub fn check_port(&self, port: u16, target: &str, trace: &mut Trace) -> Result<(), Denial> {
        self.deny(
            &self.deny_ports,
            |r| r.contains(port),
            "port",
            target,
            trace,
        )?;
        self.allow(
            &self.allow_ports,
            |r| r.contains(port),
            Aspect::Port,
            target,
            trace,
        )
    }

    /// Refuses a host name on a deny list, or missing from a set allow list.
    pub fn check_name(&self, name: &str, target: &str, trace: &mut Trace) -> Result<(), Denial> {
        self.deny(
            &self.deny_hosts,
            |p| p.matches(name),
            "host name",
            target,
            trace,
        )?;
        self.allow(
            &self.allow_hosts,
            |p| p.matches(name),
            Aspect::HostName,
            target,
            trace,
        )
    }

    /// Refuses an address on a deny list, in a built-in range no allow entry inside it
    /// admits, or missing from a set allow list. `literal` says the target was written
    /// as this address: it has no name, so when `allow_hosts` is set an `allow_cidrs`
    /// entry is what admits it (else listing hosts would let any IP literal through).
    pub fn check_ip(
        &self,
        ip: IpAddr,
        literal: bool,
        target: &str,
        trace: &mut Trace,
    ) -> Result<(), Denial> {
        let ip = ip.to_canonical();
        self.deny(
            &self.deny_cidrs,
            |net| net.contains(&ip),
            "address",
            target,
            trace,
        )?;
        let allow = &self.allow_cidrs;
        for (range, builtin) in builtin::containing(ip) {
            let lifted = allow
                .entries
                .iter()
                .find(|e| e.value.contains(&ip) && range.contains(&e.value));
            match lifted {
                Some(e) => trace.note(|| {
                    format!(
                        "address {ip}: default refuses {} ({range}), lifted by {} ({})",
                        builtin.describe(),
                        e.rule,
                        e.written
                    )
                }),
                None => {
                    trace.note(|| {
                        format!(
                            "address {ip}: default refuses {} ({range}); no allow_cidrs entry inside {range} holds it",
                            builtin.describe()
                        )
                    });
                    return Err(Denial::Default {
                        protocol: self.protocol,
                        target: target.to_string(),
                        builtin,
                        allow_key: format!("policy.{}.allow_cidrs", self.protocol),
                    });
                }
            }
        }
        if literal && allow.entries.is_empty() && !self.allow_hosts.entries.is_empty() {
            trace.note(|| {
                format!(
                    "address {ip}: an IP target while {} is set needs an allow_cidrs entry",
                    self.allow_hosts.key
                )
            });
            return Err(self.not_allowed(Aspect::AddressWithoutName, &allow.key, target));
        }
        self.allow(
            allow,
            |net| net.contains(&ip),
            Aspect::Address,
            target,
            trace,
        )
    }

    fn deny<T>(
        &self,
        list: &[Entry<T>],
        hit: impl Fn(&T) -> bool,
        what: &str,
        target: &str,
        trace: &mut Trace,
    ) -> Result<(), Denial> {
        match list.iter().find(|e| hit(&e.value)) {
            Some(e) => {
                trace.note(|| format!("{what}: {} ({}) matches: refused", e.rule, e.written));
                Err(Denial::Denied {
                    protocol: self.protocol,
                    target: target.to_string(),
                    rule: e.rule.clone(),
                    entry: e.written.clone(),
                })
            }
            None => {
                trace.note(|| match list.len() {
                    0 => format!("{what}: no deny entries"),
                    n => format!("{what}: none of {n} deny entries matches"),
                });
                Ok(())
            }
        }
    }

    fn allow<T>(
        &self,
        allow: &Allow<T>,
        hit: impl Fn(&T) -> bool,
        aspect: Aspect,
        target: &str,
        trace: &mut Trace,
    ) -> Result<(), Denial> {
        if allow.entries.is_empty() {
            trace.note(|| format!("{aspect}: {} is empty: any is allowed", allow.key));
            return Ok(());
        }
        match allow.entries.iter().find(|e| hit(&e.value)) {
            Some(e) => {
                trace.note(|| format!("{aspect}: allowed by {} ({})", e.rule, e.written));
                Ok(())
            }
            None => {
                trace.note(|| format!("{aspect}: no entry of {} matches: refused", allow.key));
                Err(self.not_allowed(aspect, &allow.key, target))
            }
        }
    }

    fn not_allowed(&self, aspect: Aspect, key: &str, target: &str) -> Denial {
        Denial::NotAllowed {
            protocol: self.protocol,
            target: target.to_string(),
            aspect,
            rule: key.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_exactly_or_below_the_suffix() {
        let exact = HostPattern::parse("API.Example.com.").unwrap_or_else(|e| panic!("{e}"));
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("x.api.example.com"));
        let wild = HostPattern::parse("*.corp.example.com").unwrap_or_else(|e| panic!("{e}"));
        assert!(wild.matches("db.corp.example.com"));
        assert!(wild.matches("a.b.corp.example.com"));
        assert!(!wild.matches("corp.example.com"));
        assert!(!wild.matches("evilcorp.example.com"));
        for bad in [
            "",
            "*",
            "a.*.com",
            "a..b",
            "10.0.0.1",
            "*.10.0.0.1",
            "a b",
            "::1",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_and_ranges_parse_and_bad_ones_say_why() {
        assert_eq!(PortRange::parse("443"), Ok(PortRange { lo: 443, hi: 443 }));
        assert_eq!(
            PortRange::parse("8000-8999"),
            Ok(PortRange { lo: 8000, hi: 8999 })
        );
        assert!(
            PortRange::parse("8000-8999")
                .is_ok_and(|r| r.contains(8000) && r.contains(8999) && !r.contains(9000))
        );
        for bad in ["0", "65536", "9-1", "a", "1-", "-5", ""] {
            assert!(PortRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidrs_parse_canonically_and_refuse_host_bits() {
        let net = |s: &str| parse_cidr(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(net("10.1.2.3"), net("10.1.2.3/32"));
        assert_eq!(net("::ffff:127.0.0.0/104"), net("127.0.0.0/8"));
        assert_eq!(net("fd00::/8").prefix_len(), 8);
        let err = parse_cidr("10.1.2.3/8").err().unwrap_or_default();
        assert!(err.contains("10.0.0.0/8"), "{err}");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("db.corp").is_err());
    }

    #[test]
    fn hosts_are_read_like_urls_write_them() {
        let parsed = |s: &str| Host::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let ip = |s: &str| Host::Ip(s.parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(parsed("[::1]"), ip("::1"));
        assert_eq!(parsed("::ffff:127.0.0.1"), ip("127.0.0.1"));
        assert_eq!(parsed("DB.Corp."), Host::Name("db.corp".into()));
        assert_eq!(
            parsed("a-1.b_2.example"),
            Host::Name("a-1.b_2.example".into())
        );
        assert_eq!(parsed("fe80::1").to_string(), "[fe80::1]");
        assert_eq!(Host::parse(""), Err("the target has no host"));
        assert_eq!(Host::parse("."), Err("the target has no host"));
        for odd in ["fe80::1%eth0", "host:80", "a b", "a..b", "ex\u{e4}mple.com"] {
            let err = Host::parse(odd).err().unwrap_or_default();
            assert!(err.contains("neither"), "{odd}: {err}");
        }
        for numeric in [
            "127.1",
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "10.0.1",
            "1.2.3.4.5",
        ] {
            let err = Host::parse(numeric).err().unwrap_or_default();
            assert!(err.contains("numeric form"), "{numeric}: {err}");
        }
        assert!(Host::parse("0xdb.corp").is_ok());
        assert!(Host::parse("1password.com").is_ok());
    }
}
