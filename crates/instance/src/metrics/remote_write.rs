//! Forwarding stored samples to a time-series store with the Prometheus remote-write
//! protocol (1.0): a protobuf `WriteRequest`, snappy block-compressed, POSTed with
//! the protocol's headers. The forwarder reads samples in id order from a cursor
//! kept in the store's settings, so a restart resumes where it stopped; a batch is
//! retried with back-off on 5xx, 429 and connection errors, and given up on (logged
//! and counted) on any other 4xx, which retrying cannot fix.

use crate::config::RemoteWriteConfig;
use crate::dispatch::Dispatcher;
use crate::ecc::MetricSampleRow;
use openmid_proto::metrics::MID_LABEL;
use openmid_proto::secret::Secret;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `prometheus.WriteRequest` (remote.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries` (types.proto): labels sorted by name, samples by time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Epoch milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The settings key holding the id of the last sample sent.
pub const CURSOR_KEY: &str = "metrics.remote_write.cursor";

/// A remote-write request's failure.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// The receiver was not reached, or answered 5xx/429: worth retrying.
    #[error("{0}")]
    Retry(String),
    /// The receiver refused the batch (4xx): retrying cannot help.
    #[error("{0}")]
    Refused(String),
}

/// Groups rows into series (labels sorted, `mid` added) and encodes the request.
pub fn encode(rows: &[MetricSampleRow]) -> Vec<u8> {
    let mut by_series: BTreeMap<i64, TimeSeries> = BTreeMap::new();
    for row in rows {
        let entry = by_series.entry(row.series.id).or_insert_with(|| {
            let mut labels: BTreeMap<String, String> =
                serde_json::from_str(&row.series.labels).unwrap_or_default();
            labels.insert(MID_LABEL.into(), row.series.mid.clone());
            TimeSeries {
                labels: labels
                    .into_iter()
                    .map(|(name, value)| Label { name, value })
                    .collect(),
                samples: Vec::new(),
            }
        });
        entry.samples.push(Sample {
            value: row.value,
            timestamp: row.t_ms,
        });
    }
    let req = WriteRequest {
        timeseries: by_series
            .into_values()
            .map(|mut ts| {
                ts.samples.sort_by_key(|s| s.timestamp);
                ts
            })
            .collect(),
    };
    req.encode_to_vec()
}

/// Snappy block format (not the framed one), as remote write wants.
pub fn compress(bytes: &[u8]) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(bytes)
}

/// The forwarder.
pub struct Forwarder {
    client: reqwest::Client,
    url: String,
    auth: Auth,
    batch: u32,
    /// Batches the receiver refused (4xx), given up on.
    pub refused: AtomicU64,
    /// Samples delivered.
    pub sent: AtomicU64,
}

enum Auth {
    None,
    Bearer(Secret),
    Basic(String, Option<Secret>),
}

impl Forwarder {
    /// A forwarder for `config`.
    pub fn new(config: &RemoteWriteConfig) -> Result<Self, RemoteWriteError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| RemoteWriteError::Client(e.to_string()))?;
        let auth = match (&config.bearer_token, &config.username) {
            (Some(token), _) => Auth::Bearer(token.clone()),
            (None, Some(user)) => Auth::Basic(user.clone(), config.password.clone()),
            (None, None) => Auth::None,
        };
        Ok(Self {
            client,
            url: config.url.clone(),
            auth,
            batch: config.batch_samples,
            refused: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        })
    }

    /// Sends one request.
    pub async fn send(&self, body: Vec<u8>) -> Result<(), RemoteWriteError> {
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_ENCODING, "snappy")
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                reqwest::header::USER_AGENT,
                concat!("openmid/", env!("CARGO_PKG_VERSION")),
            )
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        req = match &self.auth {
            Auth::None => req,
            Auth::Bearer(token) => req.bearer_auth(token.expose()),
            Auth::Basic(user, password) => {
                req.basic_auth(user, password.as_ref().map(|p| p.expose()))
            }
        };
        // The error text names the URL's host, never the credentials (sent as
        // headers, not in the URL).
        let resp = req.send().await.map_err(|e| {
            RemoteWriteError::Retry(format!("remote write not reached: {}", e.without_url()))
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        let message = format!(
            "remote write answered HTTP {}: {}",
            status.as_u16(),
            text.trim()
        );
        if status.is_server_error() || status.as_u16() == 429 {
            Err(RemoteWriteError::Retry(message))
        } else {
            Err(RemoteWriteError::Refused(message))
        }
    }

    /// Forwards samples from the cursor on until `shutdown`.
    pub async fn run(self, dispatcher: Arc<Dispatcher>, shutdown: CancellationToken) {
        let store = dispatcher.store();
        let mut cursor: i64 = match store.get_setting(CURSOR_KEY).await {
            Ok(v) => v.and_then(|v| v.parse().ok()).unwrap_or(0),
            Err(e) => {
                tracing::error!(error = %e, "remote write: cursor not read; not forwarding");
                return;
            }
        };
        tracing::info!(cursor, "remote write forwarding started");
        let mut delay = Duration::from_millis(200);
        let mut leading = true;
        loop {
            // One node forwards (the one that leads), from the cursor it reads when it
            // starts to: two would send every sample twice.
            if !dispatcher.is_leader() {
                leading = false;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
            if !leading {
                leading = true;
                match store.get_setting(CURSOR_KEY).await {
                    Ok(v) => cursor = v.and_then(|v| v.parse().ok()).unwrap_or(cursor),
                    Err(e) => {
                        tracing::warn!(error = %e, "remote write: cursor not read");
                        leading = false;
                        continue;
                    }
                }
            }
            let rows = match store.samples_after(cursor, self.batch).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "remote write: reading samples failed");
                    Vec::new()
                }
            };
            let Some(last) = rows.last().map(|r| r.id) else {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            };
            let body = match compress(&encode(&rows)) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "remote write: compressing failed");
                    return;
                }
            };
            match self.send(body).await {
                Ok(()) => {
                    self.sent.fetch_add(rows.len() as u64, Ordering::Relaxed);
                    delay = Duration::from_millis(200);
                }
                Err(RemoteWriteError::Refused(message)) => {
                    let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::warn!(%message, samples = rows.len(), refused_batches = refused, "remote write refused a batch; it is skipped");
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "remote write failed; retrying the batch");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
            cursor = last;
            if let Err(e) = store.put_setting(CURSOR_KEY, &cursor.to_string()).await {
                tracing::warn!(error = %e, "remote write: cursor not saved");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecc::MetricSeriesRow;

    #[test]
    fn a_request_groups_series_sorts_labels_and_survives_snappy() {
        let series = |id: i64, labels: &str| MetricSeriesRow {
            id,
            mid: "m1".into(),
            labels: labels.into(),
        };
        let rows = vec![
            MetricSampleRow {
                id: 1,
                series: series(7, r#"{"__name__":"up","job":"a"}"#),
                t_ms: 2000,
                value: 1.0,
            },
            MetricSampleRow {
                id: 2,
                series: series(8, r#"{"__name__":"x","zone":"b"}"#),
                t_ms: 1000,
                value: f64::NAN,
            },
            MetricSampleRow {
                id: 3,
                series: series(7, r#"{"__name__":"up","job":"a"}"#),
                t_ms: 1000,
                value: 0.0,
            },
        ];
        let body = compress(&encode(&rows)).expect("snappy");
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .expect("unsnappy");
        let req = WriteRequest::decode(raw.as_slice()).expect("protobuf");
        assert_eq!(req.timeseries.len(), 2);
        let up = &req.timeseries[0];
        let names: Vec<&str> = up.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "job", "mid"]);
        assert_eq!(
            up.samples.iter().map(|s| s.timestamp).collect::<Vec<_>>(),
            [1000, 2000]
        );
        assert!(req.timeseries[1].samples[0].value.is_nan());
    }

    #[test]
    fn the_wire_bytes_are_protobufs_own() {
        // Label{name:"a", value:"b"} inside TimeSeries field 1, inside WriteRequest field 1.
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "a".into(),
                    value: "b".into(),
                }],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 5,
                }],
            }],
        };
        let bytes = req.encode_to_vec();
        let want = [
            0x0a, 0x15, // timeseries, 21 bytes
            0x0a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b', // label
            0x12, 0x0b, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x05, // sample
        ];
        assert_eq!(bytes, want);
    }
}
