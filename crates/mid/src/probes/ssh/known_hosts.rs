//! OpenSSH's known_hosts format, read without I/O so the rules can be property-tested:
//! `[@marker] hosts algorithm base64-key [comment]`, where hosts is a comma-separated
//! list of patterns (`*` and `?` wildcards, `!` negation, `[host]:port` for a port
//! other than 22) or one hashed name (`|1|salt|HMAC-SHA1(salt, name)`, what
//! `HashKnownHosts yes` writes). A line that cannot be read is skipped, as OpenSSH
//! does, so one damaged line does not lock the MID out of every host in the file.
//!
//! `@cert-authority` lines are kept but never match a plain key (host certificates are
//! not verified by the MID); `@revoked` lines refuse their key wherever it is shown.

use base64::Engine as _;

/// What a line's marker says about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A host key.
    None,
    /// `@revoked`: this key must never be accepted.
    Revoked,
    /// `@cert-authority`: a CA for host certificates (not used by the MID).
    CertAuthority,
}

/// The host names of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    /// Patterns, lowercase, each `(negated, pattern)`.
    Patterns(Vec<(bool, String)>),
    /// `|1|salt|hash`.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// One usable line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its line number, from 1 (for messages).
    pub line: usize,
    /// Its marker.
    pub marker: Marker,
    hosts: Hosts,
    /// The key's algorithm as written (`ssh-ed25519`).
    pub algorithm: String,
    /// The key blob.
    pub blob: Vec<u8>,
}

/// How a target is named in known_hosts: `host` on port 22, `[host]:port` otherwise.
pub fn host_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// A plain line for `host`:`port` with this key, as trust on first use writes it.
pub fn line(host: &str, port: u16, algorithm: &str, blob: &[u8]) -> String {
    format!(
        "{} {algorithm} {}",
        host_name(host, port),
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// The lines of `text` that can be used (the others are skipped).
pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| parse_line(i + 1, l))
        .collect()
}

fn parse_line(line: usize, text: &str) -> Option<Entry> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return None;
    }
    let mut words = text.split_ascii_whitespace();
    let mut first = words.next()?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return None,
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = words.next()?;
    }
    let hosts = parse_hosts(first)?;
    let algorithm = words.next()?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(words.next()?)
        .ok()?;
    // A key whose blob names another algorithm is damaged: skip it rather than
    // compare against it.
    if openmid_proto::ssh::blob_algorithm(&blob) != Some(algorithm) {
        return None;
    }
    Some(Entry {
        line,
        marker,
        hosts,
        algorithm: algorithm.to_string(),
        blob,
    })
}

fn parse_hosts(field: &str) -> Option<Hosts> {
    if let Some(rest) = field.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode(salt).ok()?;
        let hash = b64.decode(hash).ok()?;
        return (hash.len() == 20).then_some(Hosts::Hashed { salt, hash });
    }
    let patterns: Vec<(bool, String)> = field
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.strip_prefix('!') {
            Some(p) => (true, p.to_ascii_lowercase()),
            None => (false, p.to_ascii_lowercase()),
        })
        .collect();
    (!patterns.is_empty()).then_some(Hosts::Patterns(patterns))
}

impl Entry {
    /// Whether this line is about `host`:`port`.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let name = host_name(host, port);
        match &self.hosts {
            Hosts::Hashed { salt, hash } => hashed(salt, &name) == *hash,
            // OpenSSH: any negated pattern that matches rules the line out; otherwise
            // one positive match is enough.
            Hosts::Patterns(patterns) => {
                let mut found = false;
                for (negated, pattern) in patterns {
                    if glob(pattern.as_bytes(), name.as_bytes()) {
                        if *negated {
                            return false;
                        }
                        found = true;
                    }
                }
                found
            }
        }
    }
}

/// HMAC-SHA1 of `name` keyed by `salt`, as `HashKnownHosts` stores it. SHA-1 is what
/// the format fixes; it hides names, it does not authenticate anything.
fn hashed(salt: &[u8], name: &str) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
    aws_lc_rs::hmac::sign(&key, name.as_bytes())
        .as_ref()
        .to_vec()
}

/// A hashed line for `host`:`port` (what `ssh-keygen -H` writes), for tests and tools.
pub fn hashed_line(host: &str, port: u16, salt: &[u8], algorithm: &str, blob: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "|1|{}|{} {algorithm} {}",
        b64.encode(salt),
        b64.encode(hashed(salt, &host_name(host, port))),
        b64.encode(blob)
    )
}

/// `*` (any run) and `?` (one byte) wildcard matching, iterative with one backtrack
/// point, so no input makes it slow.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A key blob of `algorithm`: its name as an SSH string, then some key bytes.
    fn blob(algorithm: &str, key: &[u8]) -> Vec<u8> {
        let mut b = (algorithm.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(algorithm.as_bytes());
        b.extend_from_slice(key);
        b
    }

    #[test]
    fn the_formats_openssh_writes() {
        let key = blob("ssh-ed25519", &[7; 36]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
        let text = format!(
            "# comment\n\n\
             db1.corp,10.0.0.5 ssh-ed25519 {b64} root@db1\n\
             [db2.corp]:2222 ssh-ed25519 {b64}\n\
             *.web.corp,!bad.web.corp ssh-ed25519 {b64}\n\
             @revoked old.corp ssh-ed25519 {b64}\n\
             @cert-authority *.ca.corp ssh-ed25519 {b64}\n\
             {}\n\
             broken line\n\
             x.corp ssh-rsa {b64}\n",
            hashed_line(
                "secret.corp",
                22,
                b"0123456789abcdefghij",
                "ssh-ed25519",
                &key
            ),
        );
        let entries = parse(&text);
        assert_eq!(
            entries.len(),
            6,
            "the damaged and mistyped lines are skipped"
        );
        let hits = |host: &str, port: u16| -> Vec<usize> {
            entries
                .iter()
                .filter(|e| e.matches(host, port))
                .map(|e| e.line)
                .collect()
        };
        assert_eq!(hits("db1.corp", 22), vec![3]);
        assert_eq!(hits("DB1.corp", 22), vec![3]);
        assert_eq!(hits("10.0.0.5", 22), vec![3]);
        assert_eq!(hits("db1.corp", 2222), Vec::<usize>::new());
        assert_eq!(hits("db2.corp", 2222), vec![4]);
        assert_eq!(hits("db2.corp", 22), Vec::<usize>::new());
        assert_eq!(hits("a.web.corp", 22), vec![5]);
        assert_eq!(hits("x.ca.corp", 22), vec![7]);
        assert_eq!(hits("bad.web.corp", 22), Vec::<usize>::new());
        assert_eq!(hits("secret.corp", 22), vec![8]);
        assert_eq!(entries[3].marker, Marker::Revoked);
        assert_eq!(entries[4].marker, Marker::CertAuthority);
    }

    #[test]
    fn wildcards() {
        assert!(glob(b"*", b""));
        assert!(glob(b"a*c", b"abbbc"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"[10.0.0.*]:22*", b"[10.0.0.7]:2222"));
        assert!(!glob(b"*.corp", b"corp"));
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]{1,10}(\\.[a-z0-9-]{1,10}){0,3}",
            any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
            any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
        ]
    }

    proptest! {
        #[test]
        fn written_lines_read_back(h in host(), port in 1u16.., key in proptest::collection::vec(any::<u8>(), 1..80), other in host(), other_port in 1u16..) {
            let key = blob("ssh-ed25519", &key);
            let entries = parse(&line(&h, port, "ssh-ed25519", &key));
            prop_assert_eq!(entries.len(), 1);
            prop_assert!(entries[0].matches(&h, port));
            prop_assert_eq!(&entries[0].blob, &key);
            if (other.as_str(), other_port) != (h.as_str(), port) {
                prop_assert!(!entries[0].matches(&other, other_port));
            }
        }

        #[test]
        fn hashed_lines_match_only_their_host(h in host(), port in 1u16.., salt in proptest::collection::vec(any::<u8>(), 20), other in host()) {
            let key = blob("ssh-ed25519", &[1; 32]);
            let entries = parse(&hashed_line(&h, port, &salt, "ssh-ed25519", &key));
            prop_assert_eq!(entries.len(), 1);
            prop_assert!(entries[0].matches(&h, port));
            prop_assert!(entries[0].matches(&h.to_ascii_uppercase(), port));
            if other != h {
                prop_assert!(!entries[0].matches(&other, port));
            }
        }

        #[test]
        fn any_text_parses_without_panicking(text in "\\PC{0,300}") {
            for e in parse(&text) {
                let _ = e.matches("host", 22);
            }
        }

        #[test]
        fn a_pattern_matches_itself_and_star_matches_all(text in "[ -~]{0,40}") {
            let literal = text.replace(['*', '?'], "x");
            prop_assert!(glob(literal.as_bytes(), literal.as_bytes()));
            prop_assert!(glob(b"*", text.as_bytes()));
            let wild = format!("*{}", &literal[literal.len() / 2..]);
            prop_assert!(glob(wild.as_bytes(), literal.as_bytes()));
        }
    }
}
