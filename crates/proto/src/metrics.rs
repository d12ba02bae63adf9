//! Metric collection (`MetricScrape`): the Prometheus text endpoints inside the MID's
//! network the instance asks a MID to scrape, the samples the MID forwards, and the
//! instance's Prometheus-compatible answers to range queries.
//!
//! The instance delivers a MID's whole scrape assignment as one `MetricScrape` job
//! (versioned, so a late or repeated job never replaces a newer one); the MID keeps
//! it on disk and scrapes from it whether or not the instance is reachable. Samples
//! travel in numbered batches the instance stores once per (MID, sequence).

pub mod selector;
pub mod text;

use crate::credential::CredentialRef;
use crate::ecc::Topic;
use crate::probe::{Contract, FieldError, Target, check_http_url, field_error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Scrape interval unless the target says otherwise (Prometheus' default, 15 s).
pub const DEFAULT_INTERVAL_MS: u64 = 15_000;
/// Shortest interval: a tenth of a second keeps a mistyped value from turning the
/// MID into a load generator.
pub const MIN_INTERVAL_MS: u64 = 100;
/// Longest interval (a day).
pub const MAX_INTERVAL_MS: u64 = 86_400_000;
/// Scrape timeout unless the target says otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Most targets one agent (MID or cluster) scrapes.
pub const MAX_TARGETS: usize = 1_000;
/// Most extra labels on a target.
pub const MAX_EXTRA_LABELS: usize = 32;
/// Most samples in one batch the MID forwards.
pub const MAX_BATCH_SAMPLES: usize = 10_000;
/// The label naming a sample's metric (as in Prometheus).
pub const NAME_LABEL: &str = "__name__";
/// The label the instance adds naming the MID that scraped a sample.
pub const MID_LABEL: &str = "mid";
/// The series a MID writes per target for scrapes skipped while its buffer was full.
pub const SKIPPED_SERIES: &str = "openmid_scrape_skipped_total";

/// One endpoint to scrape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScrapeTarget {
    /// The target's name, unique per agent; becomes the samples' `job` label.
    pub name: String,
    /// The `http(s)` URL serving the Prometheus text format.
    pub url: String,
    /// Milliseconds between scrapes.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Milliseconds one scrape may take (at most the interval).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Labels added to every sample of this target (a scraped label of the same name
    /// is kept as `exported_NAME`, as Prometheus does).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn default_interval() -> u64 {
    DEFAULT_INTERVAL_MS
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

impl ScrapeTarget {
    /// Checks the target; errors name the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !crate::is_valid_name(&self.name) {
            return Err(field_error(
                "name",
                "must be 1-64 letters, digits, `.`, `_` or `-`, starting with a letter or digit",
            ));
        }
        let url = check_http_url("url", &self.url)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(field_error("url", "must not carry a user name or password"));
        }
        if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&self.interval_ms) {
            return Err(field_error(
                "interval_ms",
                format!("must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}"),
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.interval_ms {
            return Err(field_error(
                "timeout_ms",
                "must be at least 1 and at most interval_ms",
            ));
        }
        if self.labels.len() > MAX_EXTRA_LABELS {
            return Err(field_error(
                "labels",
                format!("at most {MAX_EXTRA_LABELS} labels"),
            ));
        }
        for (name, value) in &self.labels {
            if !text::is_label_name(name) || name.starts_with("__") {
                return Err(field_error(
                    "labels",
                    format!(
                        "`{name}` is not a label name (letters, digits, `_`; not starting with `__`)"
                    ),
                ));
            }
            if value.len() > 1024 {
                return Err(field_error(
                    "labels",
                    format!("the value of `{name}` is longer than 1024 bytes"),
                ));
            }
        }
        Ok(())
    }
}

/// A MID's whole scrape assignment: the `MetricScrape` job's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScrapeAssignment {
    /// Grows with every change; a MID ignores an assignment older than the one it has.
    pub version: u64,
    /// Everything this MID scrapes (empty: stop scraping).
    pub targets: Vec<ScrapeTarget>,
}

/// A target the MID will not scrape, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefusedTarget {
    /// The target's name.
    pub name: String,
    /// Why (the policy rule that refused it).
    pub reason: String,
}

/// The MID's answer to an assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScrapeAccepted {
    /// The version the MID now scrapes from (its own, when the job's was older).
    pub version: u64,
    /// Targets being scraped.
    pub scraping: Vec<String>,
    /// Targets its egress policy refuses.
    #[serde(default)]
    pub refused: Vec<RefusedTarget>,
}

/// The `MetricScrape` topic.
pub struct MetricScrape;

impl Contract for MetricScrape {
    const TOPIC: Topic = Topic::MetricScrape;
    type Request = ScrapeAssignment;
    type Response = ScrapeAccepted;

    fn validate(req: &ScrapeAssignment) -> Result<(), FieldError> {
        if req.targets.len() > MAX_TARGETS {
            return Err(field_error(
                "targets",
                format!("at most {MAX_TARGETS} targets"),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, t) in req.targets.iter().enumerate() {
            t.validate().map_err(|e| FieldError {
                field: format!("targets[{i}].{}", e.field),
                message: e.message,
            })?;
            if !names.insert(t.name.as_str()) {
                return Err(field_error(
                    &format!("targets[{i}].name"),
                    format!("`{}` appears twice", t.name),
                ));
            }
        }
        Ok(())
    }

    /// Many targets: the probe checks each under the policy itself.
    fn target(_req: &ScrapeAssignment) -> Option<Target> {
        None
    }

    fn credential(_req: &ScrapeAssignment) -> Option<&CredentialRef> {
        None
    }
}

/// One sample: epoch milliseconds and a value (NaN and ±Inf included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Epoch milliseconds.
    pub t_ms: i64,
    /// The value.
    pub value: f64,
}

/// JSON numbers have no NaN or infinities, so a sample travels as `[t_ms, "value"]`,
/// the value written as Prometheus writes it.
impl Serialize for Sample {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.t_ms, format_value(self.value)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Sample {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (t_ms, value): (i64, String) = Deserialize::deserialize(d)?;
        let value = text::parse_value(&value)
            .ok_or_else(|| serde::de::Error::custom(format!("`{value}` is not a sample value")))?;
        Ok(Self { t_ms, value })
    }
}

/// A value as Prometheus writes it (`NaN`, `+Inf`, `-Inf`, else the shortest
/// round-tripping decimal).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// One series' samples in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesSamples {
    /// Its labels, `__name__` included.
    pub labels: BTreeMap<String, String>,
    /// Its samples, oldest first.
    pub samples: Vec<Sample>,
}

/// Samples a MID forwards (`POST /mid/v1/metrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleBatch {
    /// The MID's batch number; the instance stores a (MID, seq) once.
    pub seq: u64,
    /// The samples.
    pub series: Vec<SeriesSamples>,
}

impl SampleBatch {
    /// How many samples it holds.
    pub fn len(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The instance's answer to a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleBatchAck {
    /// The batch acknowledged.
    pub seq: u64,
    /// Whether it had been stored before (a re-sent batch).
    pub duplicate: bool,
}

/// Scrape targets set for one agent (`PUT`/`POST /api/v1/metrics/targets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewScrapeTarget {
    /// `mid.server.NAME` or `mid.cluster.NAME`.
    pub agent: String,
    /// The target.
    #[serde(flatten)]
    pub target: ScrapeTarget,
}

/// A scrape target as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScrapeTargetView {
    /// `mid.server.NAME` or `mid.cluster.NAME`.
    pub agent: String,
    /// The target.
    #[serde(flatten)]
    pub target: ScrapeTarget,
    /// The MID scraping it now (for a cluster, the member it was given to).
    pub assigned_to: Option<String>,
}

/// One series of a range query (Prometheus' matrix entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixSeries {
    /// Its labels.
    pub metric: BTreeMap<String, String>,
    /// `[unix seconds, "value"]` pairs.
    pub values: Vec<(f64, String)>,
}

/// The `data` of a range query's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatrixData {
    /// Always `matrix`.
    pub result_type: String,
    /// The series.
    pub result: Vec<MatrixSeries>,
}

/// `GET /api/v1/metrics/query_range`'s answer, as Prometheus writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRangeResponse {
    /// Always `success` (errors use the API's error format).
    pub status: String,
    /// The matrix.
    pub data: MatrixData,
}

/// `GET /api/v1/metrics/series`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesResponse {
    /// Always `success`.
    pub status: String,
    /// The label sets of the matching series.
    pub data: Vec<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> ScrapeTarget {
        ScrapeTarget {
            name: "node".into(),
            url: "http://198.18.0.1:9100/metrics".into(),
            interval_ms: 1000,
            timeout_ms: 500,
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn targets_are_checked_naming_the_field() {
        assert!(target().validate().is_ok());
        let bad = |f: fn(&mut ScrapeTarget), field: &str| {
            let mut t = target();
            f(&mut t);
            assert_eq!(t.validate().map_err(|e| e.field), Err(field.to_string()));
        };
        bad(|t| t.name = "a b".into(), "name");
        bad(|t| t.url = "ftp://x/".into(), "url");
        bad(|t| t.url = "http://u:p@x/".into(), "url");
        bad(|t| t.interval_ms = 1, "interval_ms");
        bad(|t| t.timeout_ms = 5000, "timeout_ms");
        bad(
            |t| {
                t.labels.insert("__x".into(), "1".into());
            },
            "labels",
        );
        let twice = ScrapeAssignment {
            version: 1,
            targets: vec![target(), target()],
        };
        assert_eq!(
            MetricScrape::validate(&twice).map_err(|e| e.field),
            Err("targets[1].name".to_string())
        );
    }

    #[test]
    fn samples_carry_nan_and_infinities() {
        let batch = SampleBatch {
            seq: 3,
            series: vec![SeriesSamples {
                labels: BTreeMap::from([(NAME_LABEL.to_string(), "x".to_string())]),
                samples: vec![
                    Sample {
                        t_ms: 1,
                        value: f64::INFINITY,
                    },
                    Sample {
                        t_ms: 2,
                        value: f64::NEG_INFINITY,
                    },
                    Sample {
                        t_ms: 3,
                        value: 0.25,
                    },
                ],
            }],
        };
        let json = serde_json::to_string(&batch).expect("encode");
        assert!(json.contains(r#"[1,"+Inf"]"#), "{json}");
        let back: SampleBatch = serde_json::from_str(&json).expect("decode");
        assert_eq!(back, batch);
        let nan: Sample = serde_json::from_str(r#"[5,"NaN"]"#).expect("nan");
        assert!(nan.value.is_nan());
        assert!(serde_json::from_str::<Sample>(r#"[5,"x"]"#).is_err());
    }
}
