//! Target and port lists of discovery requests, expanded. Pure functions: the
//! instance checks a request with them at the door and the MID expands it with the
//! same code, so both agree on how many addresses a range holds.
//!
//! A target is an address (`198.18.0.5`, `fd00::5`), a CIDR network
//! (`198.18.0.0/27`) or a first–last range (`198.18.0.10-198.18.0.20`). An IPv4
//! network of /30 or wider leaves out its network and broadcast addresses (nothing
//! answers there, and a scan of a /24 is 254 hosts, as an operator expects); /31,
//! /32 and every IPv6 network hold all their addresses.

use crate::probe::{FieldError, field_error};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Most addresses one request may expand to.
pub const MAX_ADDRESSES: u64 = 65_536;

/// A port (`22`) or an inclusive range (`"1-1024"`, or `"443"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PortSpec {
    /// One port, as a number.
    Number(u32),
    /// A port or `lo-hi` range, as a string.
    Text(String),
}

/// One target as written, parsed: first and last address, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    first: u128,
    last: u128,
    v6: bool,
}

impl Span {
    fn len(&self) -> u128 {
        self.last - self.first + 1
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn addr(value: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(value))
    } else {
        // Spans of IPv4 targets never leave the 32-bit range.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(u32::MAX)))
    }
}

fn parse_span(text: &str) -> Result<Span, String> {
    let t = text.trim();
    if let Some((a, b)) = t.split_once('-') {
        let bad =
            || format!("`{t}` is not a range: write first-last, e.g. 198.18.0.10-198.18.0.20");
        let a: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let b: IpAddr = b.trim().parse().map_err(|_| bad())?;
        if a.is_ipv4() != b.is_ipv4() {
            return Err(format!("`{t}` mixes IPv4 and IPv6"));
        }
        if bits(a) > bits(b) {
            return Err(format!("`{t}` ends before it starts"));
        }
        return Ok(Span {
            first: bits(a),
            last: bits(b),
            v6: a.is_ipv6(),
        });
    }
    if let Some((ip, len)) = t.split_once('/') {
        let bad = || format!("`{t}` is not a CIDR network, e.g. 198.18.0.0/24");
        let ip: IpAddr = ip.trim().parse().map_err(|_| bad())?;
        let len: u32 = len.trim().parse().map_err(|_| bad())?;
        let width = if ip.is_ipv4() { 32 } else { 128 };
        if len > width {
            return Err(format!("`{t}`: a prefix is at most /{width}"));
        }
        let host_bits = width - len;
        let mask = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let first = bits(ip) & !mask;
        let mut span = Span {
            first,
            last: first | mask,
            v6: ip.is_ipv6(),
        };
        if ip.is_ipv4() && host_bits >= 2 {
            span.first += 1;
            span.last -= 1;
        }
        return Ok(span);
    }
    let ip: IpAddr = t.parse().map_err(|_| {
        format!("`{t}` is not an address, a CIDR network (198.18.0.0/24) or a range (first-last)")
    })?;
    Ok(Span {
        first: bits(ip),
        last: bits(ip),
        v6: ip.is_ipv6(),
    })
}

/// How many addresses `targets` hold (before duplicates are removed), each checked;
/// errors name `field[i]`.
pub fn count_targets(field: &str, targets: &[String]) -> Result<u64, FieldError> {
    if targets.is_empty() {
        return Err(field_error(
            field,
            "needs at least one address, network or range",
        ));
    }
    let mut total: u128 = 0;
    for (i, t) in targets.iter().enumerate() {
        let span = parse_span(t).map_err(|m| field_error(&format!("{field}[{i}]"), m))?;
        total = total.saturating_add(span.len());
        if total > u128::from(MAX_ADDRESSES) {
            return Err(field_error(
                field,
                format!(
                    "expands to more than {MAX_ADDRESSES} addresses (at `{t}`): split it into several jobs"
                ),
            ));
        }
    }
    Ok(total as u64)
}

/// The addresses `targets` hold, in address order (IPv4 before IPv6), each once.
/// At most [`MAX_ADDRESSES`]; errors name the field (`targets`, `targets[2]`).
pub fn expand_targets(field: &str, targets: &[String]) -> Result<Vec<IpAddr>, FieldError> {
    count_targets(field, targets)?;
    let mut spans: Vec<Span> = targets.iter().filter_map(|t| parse_span(t).ok()).collect();
    spans.sort_by_key(|s| (s.v6, s.first));
    let mut out: Vec<IpAddr> = Vec::new();
    let mut next: Option<(bool, u128)> = None;
    for span in spans {
        let start = match next {
            Some((v6, n)) if v6 == span.v6 => span.first.max(n),
            _ => span.first,
        };
        if start <= span.last {
            let mut value = start;
            loop {
                out.push(addr(value, span.v6));
                if value == span.last {
                    break;
                }
                value += 1;
            }
            next = span.last.checked_add(1).map(|n| (span.v6, n));
        }
    }
    Ok(out)
}

/// The ports `specs` hold, ascending, each once; errors name `field[i]`.
pub fn expand_ports(field: &str, specs: &[PortSpec]) -> Result<Vec<u16>, FieldError> {
    if specs.is_empty() {
        return Err(field_error(field, "needs at least one port or range"));
    }
    let mut wanted = vec![false; 65_536];
    for (i, spec) in specs.iter().enumerate() {
        let (lo, hi) =
            parse_port_spec(spec).map_err(|m| field_error(&format!("{field}[{i}]"), m))?;
        for p in lo..=hi {
            wanted[usize::from(p)] = true;
        }
    }
    Ok((1..=u16::MAX).filter(|p| wanted[usize::from(*p)]).collect())
}

fn parse_port_spec(spec: &PortSpec) -> Result<(u16, u16), String> {
    let port = |text: &str| -> Result<u16, String> {
        match text.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("`{}` is not a port (1–65535)", text.trim())),
        }
    };
    match spec {
        PortSpec::Number(n) => match u16::try_from(*n) {
            Ok(p) if p > 0 => Ok((p, p)),
            _ => Err(format!("{n} is not a port (1–65535)")),
        },
        PortSpec::Text(t) => match t.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    return Err(format!("`{t}` ends before it starts"));
                }
                Ok((a, b))
            }
            None => port(t).map(|p| (p, p)),
        },
    }
}

/// The part of `hosts` that chunk `index` of `of` holds: contiguous, in order, the
/// chunks together holding each host once (sizes differ by at most one).
pub fn chunk_range(hosts: usize, index: u32, of: u32) -> std::ops::Range<usize> {
    let of = u128::from(of.max(1));
    let index = u128::from(index).min(of);
    let n = hosts as u128;
    let start = (n * index / of) as usize;
    let end = (n * (index + 1).min(of) / of) as usize;
    start..end
}

/// What a service said first, as text: lossy UTF-8 with every control character
/// escaped (`\r`, `\n`, `\t`, `\u{1b}` …), so a banner is one safe line wherever it
/// is shown.
pub fn escape_banner(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}
