//! Wire types shared by the openmid instance and the MID Server.
//!
//! Both ends compile against this one crate, so the protocol cannot drift between them
//! (the shape rathole uses). It holds data and pure functions only: no sockets, no files.

pub mod alias;
pub mod api;
pub mod audit;
pub mod blob;
pub mod command;
pub mod command_output;
pub mod credential;
pub mod devices;
pub mod discovery;
pub mod ecc;
pub mod file_import;
pub mod import;
pub mod iprange;
pub mod ldap;
pub mod metrics;
pub mod mid;
pub mod otlp;
pub mod payload;
pub mod probe;
pub mod rest;
pub mod seal;
pub mod secret;
pub mod session;
pub mod snmp;
pub mod soap;
pub mod sql;
pub mod ssh;
pub mod time;
pub mod trace;
pub mod trust;

/// Version of the MID ↔ instance protocol. Sent at enrollment and on every session
/// request in the [`PROTOCOL_HEADER`] header. Version 2 carries polls, results and
/// heartbeats as frames on one stream ([`session`]); version 1 as one HTTPS request
/// each (the long-poll protocol).
pub const PROTOCOL_VERSION: u32 = 2;

/// The oldest protocol the instance still speaks: MIDs of the release before the
/// session stream keep working on the long-poll protocol for one release.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// HTTP header carrying [`PROTOCOL_VERSION`] on every `/mid/v1` request.
pub const PROTOCOL_HEADER: &str = "openmid-protocol";

/// Version of this build, reported by MIDs and shown in the registry.
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");

/// True when `name` is acceptable as a MID or cluster name: 1–64 characters from
/// `A-Z a-z 0-9 . _ -`, starting with a letter or digit. Names end up in agent strings
/// (`mid.server.NAME`), URLs and file names, so the alphabet is kept narrow.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Percent-encodes one URL path segment (names and ids that may hold any character),
/// for the clients of both ends.
pub fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("mid-1.dc_east"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("-mid"));
        assert!(!is_valid_name("mid one"));
        assert!(!is_valid_name("mid/../x"));
        assert!(!is_valid_name(&"a".repeat(65)));
    }
}
