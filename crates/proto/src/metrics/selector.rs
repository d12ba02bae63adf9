//! Series selectors as PromQL writes them: `name{label="v", label!="v",
//! label=~"re", label!~"re"}`. Regular expressions are anchored at both ends, as in
//! Prometheus. Range queries select series with one; nothing else of PromQL is read.

use std::collections::BTreeMap;

/// Longest selector accepted.
pub const MAX_SELECTOR_LEN: usize = 4096;

/// How a label is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

/// One `label op "value"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label (`__name__` for the metric name).
    pub label: String,
    /// The operator.
    pub op: MatchOp,
    /// The value as written (unescaped).
    pub value: String,
    regex: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.label == other.label && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// A matcher; a regex operator compiles `value` anchored.
    pub fn new(label: &str, op: MatchOp, value: &str) -> Result<Self, SelectorError> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        SelectorError(format!("`{value}` is not a regular expression: {e}"))
                    })?,
            ),
            _ => None,
        };
        Ok(Self {
            label: label.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Whether a series with these labels passes (a missing label is `""`).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.label).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            _ => false,
        }
    }

    /// Whether it matches the empty string (a selector made only of those would
    /// select every series, which Prometheus refuses).
    fn matches_empty(&self) -> bool {
        self.matches(&BTreeMap::new())
    }
}

/// A selector that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// A parsed selector: every matcher must pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    /// The matchers, the metric name as `__name__ = …` first when written.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// The metric name, when the selector fixes one (lets the store look up by name).
    pub fn name(&self) -> Option<&str> {
        self.matchers
            .iter()
            .find(|m| m.label == super::NAME_LABEL && m.op == MatchOp::Equal)
            .map(|m| m.value.as_str())
    }

    /// Whether a series passes.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// Reads a selector.
pub fn parse(input: &str) -> Result<Selector, SelectorError> {
    if input.len() > MAX_SELECTOR_LEN {
        return Err(SelectorError(format!(
            "longer than {MAX_SELECTOR_LEN} bytes"
        )));
    }
    let s = input.trim();
    let name_end = s
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(s.len());
    let name = &s[..name_end];
    let mut matchers = Vec::new();
    if !name.is_empty() {
        if !super::text::is_metric_name(name) {
            return Err(SelectorError(format!("`{name}` is not a metric name")));
        }
        matchers.push(Matcher::new(super::NAME_LABEL, MatchOp::Equal, name)?);
    }
    let rest = s[name_end..].trim_start();
    if let Some(body) = rest.strip_prefix('{') {
        let after = parse_matchers(body, &mut matchers)?;
        if !after.trim().is_empty() {
            return Err(SelectorError(format!(
                "unexpected `{}` after `}}`",
                after.trim()
            )));
        }
    } else if !rest.is_empty() {
        return Err(SelectorError(format!("unexpected `{rest}`")));
    }
    if matchers.is_empty() || matchers.iter().all(Matcher::matches_empty) {
        return Err(SelectorError(
            "needs a metric name or a matcher that does not match the empty string".into(),
        ));
    }
    Ok(Selector { matchers })
}

fn parse_matchers<'a>(mut s: &'a str, out: &mut Vec<Matcher>) -> Result<&'a str, SelectorError> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| SelectorError("no closing `}`".into()))?;
        let label = &s[..end];
        if !super::text::is_label_name(label) {
            let shown: String = s.chars().take(end.max(1)).collect();
            return Err(SelectorError(format!("`{shown}` is not a label name")));
        }
        s = s[end..].trim_start();
        let (op, rest) = if let Some(r) = s.strip_prefix("=~") {
            (MatchOp::Regex, r)
        } else if let Some(r) = s.strip_prefix("!~") {
            (MatchOp::NotRegex, r)
        } else if let Some(r) = s.strip_prefix("!=") {
            (MatchOp::NotEqual, r)
        } else if let Some(r) = s.strip_prefix('=') {
            (MatchOp::Equal, r)
        } else {
            return Err(SelectorError(format!(
                "`{label}`: expected =, !=, =~ or !~"
            )));
        };
        let (value, rest) = read_string(rest.trim_start())
            .ok_or_else(|| SelectorError(format!("`{label}`: expected a quoted value")))?;
        out.push(Matcher::new(label, op, &value)?);
        s = rest.trim_start();
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.starts_with('}') {
            return Err(SelectorError("expected `,` or `}`".into()));
        }
    }
}

/// A `"…"` or `'…'` string with Go's common escapes.
fn read_string(s: &str) -> Option<(String, &str)> {
    let quote = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &s[1..];
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Some((value, &body[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// Writes a value as a double-quoted selector string.
pub fn quote(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_every_operator() {
        let s = parse(
            r#"http_requests_total{job="api", code!="500", path=~"/v1/.*", method!~'GET|HEAD',}"#,
        )
        .expect("selector");
        assert_eq!(s.name(), Some("http_requests_total"));
        assert_eq!(s.matchers.len(), 5);
        let hit = labels(&[
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("code", "200"),
            ("path", "/v1/x"),
            ("method", "POST"),
        ]);
        assert!(s.matches(&hit));
        let mut miss = hit.clone();
        miss.insert("path".into(), "x/v1/x".into());
        assert!(!s.matches(&miss), "regexes are anchored");
        miss = hit.clone();
        miss.insert("method".into(), "GET".into());
        assert!(!s.matches(&miss));
    }

    #[test]
    fn bad_selectors_say_why() {
        for (bad, says) in [
            ("", "needs a metric name"),
            ("{job=~\".*\"}", "needs a metric name"),
            ("1x", "not a metric name"),
            ("x{job=\"a\"", "expected `,` or `}`"),
            ("x{job~\"a\"}", "expected =, !=, =~ or !~"),
            ("x{job=a}", "quoted value"),
            ("x{job=~\"(\"}", "not a regular expression"),
            ("x y", "unexpected"),
            ("x{} z", "unexpected"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.0.contains(says), "{bad}: {e}");
        }
        assert_eq!(
            parse("{__name__=\"up\"}").expect("name matcher").name(),
            Some("up")
        );
    }

    proptest! {
        #[test]
        fn written_selectors_read_back(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,8}",
            ms in proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,5}", 0usize..2, "[ -~\n\t]{0,8}"), 0..4),
        ) {
            let ops = ["=", "!="];
            let written: Vec<String> = ms.iter().map(|(l, op, v)| format!("{l}{}{}", ops[*op], quote(v))).collect();
            let text = format!("{name}{{{}}}", written.join(", "));
            let s = parse(&text).expect("parses");
            prop_assert_eq!(s.matchers.len(), ms.len() + 1);
            for (m, (l, op, v)) in s.matchers[1..].iter().zip(&ms) {
                prop_assert_eq!(&m.label, l);
                prop_assert_eq!(m.op, if *op == 0 { MatchOp::Equal } else { MatchOp::NotEqual });
                prop_assert_eq!(&m.value, v);
            }
        }

        #[test]
        fn any_text_is_read_without_panic(s in "(?s).{0,80}") {
            let _ = parse(&s);
        }
    }
}
