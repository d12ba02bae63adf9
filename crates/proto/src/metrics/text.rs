//! The Prometheus text exposition format (version 0.0.4), read line by line: a bad
//! line is reported with its number and skipped, the rest of the scrape is kept (one
//! exporter's malformed line must not hide the other thousand samples).

use std::collections::BTreeMap;

/// A sample as written in the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSample {
    /// The metric name.
    pub name: String,
    /// Its labels, in written order (names unique).
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// The exposition's own timestamp (epoch ms), if it wrote one.
    pub timestamp_ms: Option<i64>,
}

impl TextSample {
    /// Labels as a map with `__name__`.
    pub fn label_map(&self) -> BTreeMap<String, String> {
        let mut map: BTreeMap<String, String> = self.labels.iter().cloned().collect();
        map.insert(super::NAME_LABEL.to_string(), self.name.clone());
        map
    }
}

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// What a scrape's body held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// The samples read.
    pub samples: Vec<TextSample>,
    /// `# TYPE` per metric family.
    pub types: BTreeMap<String, MetricType>,
    /// Lines that were skipped, and why.
    pub errors: Vec<LineError>,
}

/// A metric family's `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram (`_bucket{le}`, `_sum`, `_count`).
    Histogram,
    /// A summary (`{quantile}`, `_sum`, `_count`).
    Summary,
    /// Untyped.
    Untyped,
}

/// Whether `s` is a metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Whether `s` is a label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A sample value: a float as Go's `ParseFloat` reads it, `NaN`, `+Inf`, `-Inf`.
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => {
            // Rust also reads `inf`, `infinity` and `nan` in any case; the format
            // spells them one way only.
            let digits = s.trim_start_matches(['+', '-']);
            if digits.is_empty() || digits.starts_with(|c: char| c.is_ascii_alphabetic()) {
                return None;
            }
            s.parse().ok()
        }
    }
}

/// Reads a whole exposition.
pub fn parse(body: &str) -> Exposition {
    let mut out = Exposition::default();
    for (i, raw) in body.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let number = i + 1;
        let trimmed = line.trim_matches([' ', '\t']);
        if trimmed.is_empty() {
            continue;
        }
        let result = if let Some(comment) = trimmed.strip_prefix('#') {
            parse_comment(comment, &mut out.types)
        } else {
            parse_sample(trimmed).map(|s| out.samples.push(s))
        };
        if let Err(message) = result {
            out.errors.push(LineError {
                line: number,
                message,
            });
        }
    }
    out
}

fn parse_comment(comment: &str, types: &mut BTreeMap<String, MetricType>) -> Result<(), String> {
    let mut words = comment
        .trim_start_matches([' ', '\t'])
        .splitn(3, [' ', '\t']);
    match words.next() {
        Some("TYPE") => {
            let name = words.next().unwrap_or_default();
            if !is_metric_name(name) {
                return Err(format!("TYPE: `{name}` is not a metric name"));
            }
            let kind = match words.next().map(|w| w.trim_matches([' ', '\t'])) {
                Some("counter") => MetricType::Counter,
                Some("gauge") => MetricType::Gauge,
                Some("histogram") => MetricType::Histogram,
                Some("summary") => MetricType::Summary,
                Some("untyped") => MetricType::Untyped,
                other => {
                    return Err(format!(
                        "TYPE {name}: `{}` is not counter, gauge, histogram, summary or untyped",
                        other.unwrap_or_default()
                    ));
                }
            };
            if types.insert(name.to_string(), kind).is_some() {
                return Err(format!("TYPE {name}: given twice"));
            }
            Ok(())
        }
        Some("HELP") => {
            let name = words.next().unwrap_or_default();
            if is_metric_name(name) {
                Ok(())
            } else {
                Err(format!("HELP: `{name}` is not a metric name"))
            }
        }
        // Any other comment is free text.
        _ => Ok(()),
    }
}

fn parse_sample(line: &str) -> Result<TextSample, String> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("`{name}` is not a metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split([' ', '\t']).filter(|w| !w.is_empty());
    let value = fields.next().ok_or_else(|| format!("{name}: no value"))?;
    let value = parse_value(value).ok_or_else(|| format!("{name}: `{value}` is not a value"))?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(ts) => Some(
            ts.parse::<i64>()
                .map_err(|_| format!("{name}: `{ts}` is not a timestamp in milliseconds"))?,
        ),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("{name}: unexpected `{extra}` after the timestamp"));
    }
    for (label, value) in &labels {
        if (label == "le" || label == "quantile") && parse_value(value).is_none() {
            return Err(format!("{name}: label {label}=`{value}` is not a number"));
        }
    }
    Ok(TextSample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Reads `name="value",…}` and returns what follows the `}`.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or("labels: no closing `}`")?;
        let label = &s[..end];
        if !is_label_name(label) {
            return Err(format!("labels: `{label}` is not a label name"));
        }
        s = s[end..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("labels: `=` expected after `{label}`"))?;
        s = s.trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("labels: `\"` expected for the value of `{label}`"))?;
        let (value, rest) = read_quoted(s)
            .ok_or_else(|| format!("labels: the value of `{label}` is not closed"))?;
        if labels.iter().any(|(l, _)| l == label) {
            return Err(format!("labels: `{label}` given twice"));
        }
        labels.push((label.to_string(), value));
        s = rest.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("labels: `,` or `}` expected".into());
        }
    }
}

/// Reads an escaped value up to its closing quote (`\\`, `\"`, `\n`; any other
/// backslash is kept as written, as Prometheus does).
fn read_quoted(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                '\\' => value.push('\\'),
                '"' => value.push('"'),
                other => {
                    value.push('\\');
                    value.push(other);
                }
            },
            '\n' => return None,
            c => value.push(c),
        }
    }
    None
}

/// Writes a label value with the format's escapes.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_a_real_exposition() {
        let body = "# HELP http_requests_total The total.\n\
            # TYPE http_requests_total counter\n\
            http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
            http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
            \n\
            msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
            metric_without_timestamp_and_labels 12.47\n\
            # A normal comment.\n\
            something_weird{problem=\"division by zero\"} +Inf -3982045\n\
            # TYPE rpc_duration_seconds summary\n\
            rpc_duration_seconds{quantile=\"0.5\"} 4773\n\
            rpc_duration_seconds_sum 1.7560473e+07\n\
            # TYPE h histogram\n\
            h_bucket{le=\"0.05\"} 24054\n\
            h_bucket{le=\"+Inf\",} 144320\n\
            nan_metric NaN\r\n";
        let e = parse(body);
        assert_eq!(e.errors, vec![]);
        assert_eq!(e.samples.len(), 10);
        assert_eq!(
            e.samples[0].labels,
            vec![
                ("method".into(), "post".into()),
                ("code".into(), "200".into())
            ]
        );
        assert_eq!(e.samples[0].timestamp_ms, Some(1_395_066_363_000));
        assert_eq!(e.samples[2].labels[0].1, "C:\\DIR\\FILE.TXT");
        assert_eq!(e.samples[2].labels[1].1, "Cannot find file:\n\"FILE.TXT\"");
        assert_eq!(e.samples[4].value, f64::INFINITY);
        assert_eq!(e.samples[4].timestamp_ms, Some(-3_982_045));
        assert!(e.samples[9].value.is_nan());
        assert_eq!(e.types.get("h"), Some(&MetricType::Histogram));
    }

    #[test]
    fn a_bad_line_is_named_and_the_rest_kept() {
        let e = parse(
            "good 1\n1bad 2\nx{a=\"1\",a=\"2\"} 3\ny{le=\"x\"} 1\nz inf\nw 1 2 3\n# TYPE q meter\nalso_good 4\n",
        );
        let lines: Vec<usize> = e.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7]);
        assert_eq!(
            e.samples
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["good", "also_good"]
        );
        assert!(
            e.errors[1].to_string().contains("`a` given twice"),
            "{}",
            e.errors[1]
        );
    }

    fn label_value() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ -~\n\\\\\"é]{0,12}").expect("regex")
    }

    fn sample() -> impl Strategy<Value = TextSample> {
        (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
            proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,6}", label_value(), 0..4),
            prop_oneof![any::<f64>(), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(name, labels, value, timestamp_ms)| TextSample {
                name,
                // `le` and `quantile` must hold numbers (the parser checks): their own test.
                labels: labels
                    .into_iter()
                    .filter(|(k, _)| k != "le" && k != "quantile")
                    .collect(),
                value,
                timestamp_ms,
            })
    }

    fn render(s: &TextSample) -> String {
        let mut out = s.name.clone();
        if !s.labels.is_empty() {
            let labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
                .collect();
            out.push_str(&format!("{{{}}}", labels.join(",")));
        }
        out.push(' ');
        out.push_str(&super::super::format_value(s.value));
        if let Some(ts) = s.timestamp_ms {
            out.push_str(&format!(" {ts}"));
        }
        out
    }

    fn same(a: &TextSample, b: &TextSample) -> bool {
        a.name == b.name
            && a.labels == b.labels
            && a.timestamp_ms == b.timestamp_ms
            && (a.value == b.value || (a.value.is_nan() && b.value.is_nan()))
    }

    proptest! {
        #[test]
        fn written_samples_read_back(samples in proptest::collection::vec(sample(), 0..20)) {
            let body: Vec<String> = samples.iter().map(render).collect();
            let e = parse(&body.join("\n"));
            prop_assert_eq!(&e.errors, &vec![]);
            prop_assert_eq!(e.samples.len(), samples.len());
            for (a, b) in e.samples.iter().zip(&samples) {
                prop_assert!(same(a, b), "{:?} != {:?}", a, b);
            }
        }

        #[test]
        fn any_text_is_read_without_panic_and_every_line_accounted(body in "(?s).{0,300}") {
            let e = parse(&body);
            let lines = body.split('\n').filter(|l| !l.trim_matches([' ', '\t', '\r']).is_empty() && !l.trim_start().starts_with('#')).count();
            prop_assert!(e.samples.len() + e.errors.len() >= lines);
        }

        #[test]
        fn a_garbage_line_costs_only_itself(samples in proptest::collection::vec(sample(), 1..10), junk in "[^\n#]{1,20}", at in 0usize..10) {
            let mut body: Vec<String> = samples.iter().map(render).collect();
            let at = at.min(body.len());
            body.insert(at, junk.clone());
            let e = parse(&body.join("\n"));
            let bad = parse(&junk);
            // The junk line, if it is itself not a sample, is the only error.
            prop_assert_eq!(e.errors.len(), bad.errors.len());
            prop_assert_eq!(e.samples.len(), samples.len() + bad.samples.len());
        }
    }
}
