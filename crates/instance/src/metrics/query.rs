//! Range queries over stored samples, answered as Prometheus answers
//! `/api/v1/query_range` for a plain series selector: at every step from `start` to
//! `end`, each matching series' latest sample no older than the lookback (five
//! minutes, Prometheus' default).

use super::Metrics;
use crate::dispatch::{DispatchError, invalid};
use openmid_proto::metrics::selector::{self, Selector};
use openmid_proto::metrics::{
    MID_LABEL, MatrixData, MatrixSeries, QueryRangeResponse, SeriesResponse, format_value,
};
use std::collections::BTreeMap;

/// How far back a step looks for a sample (Prometheus' `--query.lookback-delta`).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;
/// Most points per series (Prometheus' own limit).
pub const MAX_POINTS: i64 = 11_000;
/// Most series one query reads.
pub const MAX_SERIES: u32 = 10_000;
/// Most samples read for one series.
const MAX_SAMPLES_PER_SERIES: u32 = 500_000;

/// A time as Prometheus takes it: RFC 3339, or unix seconds (fractions allowed).
/// Returns epoch milliseconds.
pub fn parse_time(field: &str, s: &str) -> Result<i64, DispatchError> {
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        let ms = (secs * 1000.0).round();
        if ms.abs() < 9.0e15 {
            return Ok(ms as i64);
        }
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| invalid(field, format!("`{s}` is neither RFC 3339 nor unix seconds")))
}

/// A step: a duration (`15s`, `1m30s`, `500ms`, `1h`) or seconds. Returns ms.
pub fn parse_step(s: &str) -> Result<i64, DispatchError> {
    let bad = || {
        invalid(
            "step",
            format!("`{s}` is not a duration (`15s`, `1m`, `500ms`) or a number of seconds"),
        )
    };
    let ms = if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs.abs() > 1.0e12 {
            return Err(bad());
        }
        (secs * 1000.0).round() as i64
    } else {
        parse_duration(s).ok_or_else(bad)?
    };
    if ms <= 0 {
        return Err(invalid("step", "must be greater than zero"));
    }
    Ok(ms)
}

/// Prometheus' duration syntax: number-unit pairs, units `ms s m h d w y`.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            let unit = match rest.chars().next()? {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 604_800_000,
                'y' => 31_536_000_000,
                _ => return None,
            };
            (unit, 1)
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

fn parse_selector(field: &str, query: &str) -> Result<Selector, DispatchError> {
    selector::parse(query).map_err(|e| invalid(field, e.0))
}

/// A series' labels as the API shows them: the stored ones and `mid`.
fn labels_of(row: &crate::ecc::MetricSeriesRow) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> =
        serde_json::from_str(&row.labels).unwrap_or_default();
    labels.insert(MID_LABEL.into(), row.mid.clone());
    labels
}

impl Metrics<'_> {
    /// The series `selector` matches.
    async fn matching(
        &self,
        field: &str,
        query: &str,
    ) -> Result<Vec<(crate::ecc::MetricSeriesRow, BTreeMap<String, String>)>, DispatchError> {
        let sel = parse_selector(field, query)?;
        let rows = self
            .dispatcher
            .store()
            .find_series(sel.name(), MAX_SERIES)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let labels = labels_of(&r);
                (r, labels)
            })
            .filter(|(_, labels)| sel.matches(labels))
            .collect())
    }

    /// `query_range`: `query` a selector, times in ms, `step` in ms.
    pub async fn query_range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryRangeResponse, DispatchError> {
        if end < start {
            return Err(invalid("end", "is before start"));
        }
        if (end - start) / step >= MAX_POINTS {
            return Err(invalid(
                "step",
                format!("more than {MAX_POINTS} points per series: use a larger step"),
            ));
        }
        let mut result = Vec::new();
        for (row, metric) in self.matching("query", query).await? {
            let samples = self
                .dispatcher
                .store()
                .read_samples(
                    row.id,
                    start.saturating_sub(LOOKBACK_MS),
                    end,
                    MAX_SAMPLES_PER_SERIES,
                )
                .await?;
            let values = steps(&samples, start, end, step);
            if !values.is_empty() {
                result.push(MatrixSeries { metric, values });
            }
        }
        Ok(QueryRangeResponse {
            status: "success".into(),
            data: MatrixData {
                result_type: "matrix".into(),
                result,
            },
        })
    }

    /// An instant query of a range selector (`name{…}[5m]`) at `time`: every stored
    /// sample of the matching series in `(time - range, time]`, as Prometheus answers
    /// it — the raw samples, each once, as they were stored.
    pub async fn query_samples(
        &self,
        query: &str,
        time: i64,
    ) -> Result<QueryRangeResponse, DispatchError> {
        let only = || {
            invalid(
                "query",
                "only a range selector is answered here, such as `up{job=\"node\"}[5m]`",
            )
        };
        let body = query.trim().strip_suffix(']').ok_or_else(only)?;
        let open = body.rfind('[').ok_or_else(only)?;
        let range = parse_duration(body[open + 1..].trim())
            .filter(|r| *r > 0)
            .ok_or_else(|| {
                invalid(
                    "query",
                    format!("`{}` is not a duration", &body[open + 1..]),
                )
            })?;
        let mut result = Vec::new();
        for (row, metric) in self.matching("query", &body[..open]).await? {
            let samples = self
                .dispatcher
                .store()
                .read_samples(
                    row.id,
                    time.saturating_sub(range).saturating_add(1),
                    time,
                    MAX_SAMPLES_PER_SERIES,
                )
                .await?;
            if !samples.is_empty() {
                result.push(MatrixSeries {
                    metric,
                    values: samples
                        .into_iter()
                        .map(|(t, v)| (t as f64 / 1000.0, format_value(v)))
                        .collect(),
                });
            }
        }
        Ok(QueryRangeResponse {
            status: "success".into(),
            data: MatrixData {
                result_type: "matrix".into(),
                result,
            },
        })
    }

    /// The label sets of the series `query` matches.
    pub async fn series(&self, query: &str) -> Result<SeriesResponse, DispatchError> {
        Ok(SeriesResponse {
            status: "success".into(),
            data: self
                .matching("match[]", query)
                .await?
                .into_iter()
                .map(|(_, l)| l)
                .collect(),
        })
    }
}

/// The value at each step: the latest sample at or before it, within the lookback.
/// `samples` are by time.
pub fn steps(samples: &[(i64, f64)], start: i64, end: i64, step: i64) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut t = start;
    while t <= end {
        while i < samples.len() && samples[i].0 <= t {
            i += 1;
        }
        if i > 0 {
            let (ts, v) = samples[i - 1];
            if t - ts < LOOKBACK_MS {
                out.push((t as f64 / 1000.0, format_value(v)));
            }
        }
        t += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn times_steps_and_durations() {
        assert_eq!(
            parse_time("start", "1700000000").ok(),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("start", "1700000000.5").ok(),
            Some(1_700_000_000_500)
        );
        assert_eq!(
            parse_time("start", "2023-11-14T22:13:20Z").ok(),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            parse_time("end", "yesterday")
                .err()
                .map(|e| e.to_string().contains("end")),
            Some(true)
        );
        assert_eq!(parse_step("15s").ok(), Some(15_000));
        assert_eq!(parse_step("1m30s").ok(), Some(90_000));
        assert_eq!(parse_step("250ms").ok(), Some(250));
        assert_eq!(parse_step("2").ok(), Some(2_000));
        assert!(parse_step("0").is_err() && parse_step("1x").is_err() && parse_step("").is_err());
    }

    #[test]
    fn each_step_takes_the_latest_sample_within_the_lookback() {
        let samples = [(1_000, 1.0), (3_000, 3.0), (400_000, 4.0)];
        let got = steps(&samples, 0, 4_000, 1_000);
        let want: Vec<(f64, String)> = vec![
            (1.0, "1".into()),
            (2.0, "1".into()),
            (3.0, "3".into()),
            (4.0, "3".into()),
        ];
        assert_eq!(got, want);
        // Past the lookback the series has no value until the next sample.
        let late = steps(&samples, 310_000, 400_000, 90_000);
        assert_eq!(late, vec![(400.0, "4".into())]);
    }

    proptest! {
        #[test]
        fn durations_read_back(parts in proptest::collection::vec((1i64..1000, 0usize..7), 1..4)) {
            let units = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000), ("w", 604_800_000), ("y", 31_536_000_000)];
            let text: String = parts.iter().map(|(n, u)| format!("{n}{}", units[*u].0)).collect();
            let want: i64 = parts.iter().map(|(n, u)| n * units[*u].1).sum();
            prop_assert_eq!(parse_duration(&text), Some(want));
        }

        #[test]
        fn any_step_or_time_text_is_answered_without_panic(s in "(?s).{0,30}") {
            let _ = parse_step(&s);
            let _ = parse_time("start", &s);
        }
    }
}
