//! Argument patterns: what a `policy.command.programs` entry lets each argument be.
//! Deliberately not regular expressions — an operator must be able to read at a glance
//! what an entry allows.
//!
//! One pattern per argument position:
//! - `*` — any one argument;
//! - `**` — any number of remaining arguments, none included (last position only);
//! - anything else is matched against the whole argument, where `*` stands for any run
//!   of characters except `/` (so `/var/log/*.log` stays in `/var/log`), `**` for any
//!   run including `/`, and `\` takes the next character literally (`\*`, `\\`).
//!
//! Matching is textual: `/var/log/*` also matches `/var/log/..`. Name exact paths for
//! arguments where that matters.

/// One argument position's pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArgPattern {
    /// `*`: any one argument.
    Any,
    /// `**`: all remaining arguments.
    Rest,
    /// A glob over the whole argument.
    Glob(Vec<Piece>),
}

/// A part of a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(String),
    /// `*`: any run without `/`.
    Star,
    /// `**` inside a pattern: any run.
    DoubleStar,
}

impl ArgPattern {
    /// Parses one pattern.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "*" => return Ok(Self::Any),
            "**" => return Ok(Self::Rest),
            _ => {}
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(escaped) => literal.push(escaped),
                    None => return Err(format!("`{text}` ends in a lone `\\`")),
                },
                '*' => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    if chars.peek() == Some(&'*') {
                        chars.next();
                        pieces.push(Piece::DoubleStar);
                    } else {
                        pieces.push(Piece::Star);
                    }
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self::Glob(pieces))
    }

    /// Whether one argument fits (`Rest` fits anything).
    pub fn matches(&self, arg: &str) -> bool {
        match self {
            Self::Any | Self::Rest => true,
            Self::Glob(pieces) => glob_matches(pieces, arg),
        }
    }
}

/// Runs the glob as a set of reachable positions in `text`, piece by piece: linear in
/// the text per piece, so no pattern can make matching slow.
fn glob_matches(pieces: &[Piece], text: &str) -> bool {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for piece in pieces {
        let mut next = vec![false; n + 1];
        match piece {
            Piece::Literal(lit) => {
                let lit = lit.as_bytes();
                for (i, _) in reach.iter().enumerate().filter(|(_, r)| **r) {
                    if bytes[i..].starts_with(lit) {
                        next[i + lit.len()] = true;
                    }
                }
            }
            Piece::Star => {
                let mut open = false;
                for i in 0..=n {
                    open |= reach[i];
                    next[i] = open;
                    if i < n && bytes[i] == b'/' {
                        open = false;
                    }
                }
            }
            Piece::DoubleStar => {
                if let Some(first) = reach.iter().position(|r| *r) {
                    next[first..].fill(true);
                }
            }
        }
        reach = next;
    }
    reach[n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pat(text: &str) -> ArgPattern {
        ArgPattern::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn stars_stay_within_a_path_segment_and_double_stars_do_not() {
        assert!(pat("*").matches("anything/at all"));
        assert!(pat("*").matches(""));
        assert!(pat("-h").matches("-h"));
        assert!(!pat("-h").matches("-hx"));
        assert!(pat("/var/log/*.log").matches("/var/log/syslog.log"));
        assert!(!pat("/var/log/*.log").matches("/var/log/a/b.log"));
        assert!(!pat("/var/log/*.log").matches("/etc/passwd"));
        assert!(pat("/var/log/**.log").matches("/var/log/a/b.log"));
        assert!(pat("--user=*").matches("--user=alice"));
        assert!(!pat("--user=*").matches("--user"));
        assert!(pat("a*b*c").matches("aXbYc"));
        assert!(pat("a*b*c").matches("abc"));
        assert!(!pat("a*b*c").matches("acb"));
        assert!(pat("ü*ß").matches("üxyß"));
    }

    #[test]
    fn backslash_takes_the_next_character_literally() {
        assert!(pat(r"\*").matches("*"));
        assert!(!pat(r"\*").matches("x"));
        assert!(pat(r"a\\b").matches(r"a\b"));
        assert!(pat(r"\*\*").matches("**"));
        assert!(ArgPattern::parse(r"abc\").is_err());
        assert_eq!(pat("**"), ArgPattern::Rest);
    }

    /// A plain backtracking matcher: slow, obviously right.
    fn reference(pieces: &[Piece], text: &str) -> bool {
        match pieces.split_first() {
            None => text.is_empty(),
            Some((Piece::Literal(l), rest)) => text
                .strip_prefix(l.as_str())
                .is_some_and(|t| reference(rest, t)),
            Some((star, rest)) => {
                let crosses = *star == Piece::DoubleStar;
                let mut ends = text.char_indices().map(|(i, _)| i).collect::<Vec<_>>();
                ends.push(text.len());
                ends.into_iter()
                    .take_while(|&i| crosses || !text[..i].contains('/'))
                    .any(|i| reference(rest, &text[i..]))
            }
        }
    }

    fn piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            "[ab/]{1,3}".prop_map(Piece::Literal),
            Just(Piece::Star),
            Just(Piece::DoubleStar),
        ]
    }

    proptest! {
        #[test]
        fn the_glob_matcher_agrees_with_backtracking(
            pieces in proptest::collection::vec(piece(), 0..6),
            text in "[ab/é]{0,10}",
        ) {
            prop_assert_eq!(glob_matches(&pieces, &text), reference(&pieces, &text));
        }

        #[test]
        fn a_pattern_without_stars_matches_only_itself(lit in "[a-z/=.-]{1,12}", other in "[a-z/=.-]{0,12}") {
            let p = pat(&lit);
            prop_assert!(p.matches(&lit));
            prop_assert_eq!(p.matches(&other), other == lit);
        }

        #[test]
        fn an_escaped_pattern_matches_its_text_literally(text in "[a*\\\\/]{0,8}") {
            let escaped: String = text.chars().flat_map(|c| match c {
                '*' | '\\' => vec!['\\', c],
                c => vec![c],
            }).collect();
            let p = pat(&escaped);
            // `*` and `**` alone are the only unescaped forms; escaping makes them literal.
            prop_assert!(p.matches(&text));
            let longer = format!("{text}x");
            prop_assert!(!p.matches(&longer));
        }
    }
}
