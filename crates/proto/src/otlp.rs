//! Finished spans as OTLP/HTTP protobuf (`POST {endpoint}/v1/traces`,
//! `Content-Type: application/x-protobuf`), for the optional export both ends make to
//! a collector the operator names. The message types are OpenTelemetry's own
//! (`opentelemetry-proto`); building the request is a pure function here, and each end
//! posts it with the HTTP client it already has.
//!
//! Why not the OpenTelemetry SDK's pipeline: openmid's spans are few and known (the
//! instance's span of a job, the MID's), their ids come from the job's `traceparent`
//! rather than the SDK's generator, and the SDK's batch processor runs its exporter on
//! a thread of its own, where the async reqwest client every other part uses cannot
//! run without an experimental runtime feature.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;

/// The `[tracing]` table of the MID's and the instance's config.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingSettings {
    /// An OTLP/HTTP collector (`http://collector:4318`) to send spans to: the
    /// instance's span of each job, the MID's span of running it. Unset (the
    /// default): no spans leave the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
}

impl TracingSettings {
    /// The traces URL, checked; `None` when export is off.
    pub fn traces_url(&self) -> Result<Option<String>, String> {
        self.otlp_endpoint.as_deref().map(traces_url).transpose()
    }
}

/// Spans kept waiting for the collector at most; past it new ones are dropped (and
/// the drop logged), so a collector that is down never grows a process's memory.
pub const MAX_QUEUED_SPANS: usize = 4096;

/// Spans sent in one request at most.
pub const MAX_BATCH_SPANS: usize = 512;

/// The path under the collector's base URL that takes traces.
pub const TRACES_PATH: &str = "/v1/traces";

/// The content type of an export.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// What a span stands for, as OTLP classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Handling a request (the instance's span of an API call).
    Server,
    /// Work of a process's own (the MID running a job, which calls out from it).
    Internal,
}

/// A span that has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedSpan {
    /// The trace.
    pub trace_id: [u8; 16],
    /// This span.
    pub span_id: [u8; 8],
    /// The span it is a child of, when it has one.
    pub parent_span_id: Option<[u8; 8]>,
    /// Name (`POST /api/v1/actions/rest`, `RESTProbe` …).
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// End, nanoseconds since the Unix epoch.
    pub end_unix_nanos: u64,
    /// String attributes (`openmid.output_id`, `openmid.mid` …).
    pub attributes: Vec<(String, String)>,
    /// Set when the work failed: the span's status is then an error with this message.
    pub error: Option<String>,
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The export request of `spans` from the service `service_name` (its
/// `service.name` resource attribute), encoded.
pub fn encode(service_name: &str, spans: &[FinishedSpan]) -> Vec<u8> {
    let spans = spans
        .iter()
        .map(|s| Span {
            trace_id: s.trace_id.to_vec(),
            span_id: s.span_id.to_vec(),
            parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            name: s.name.clone(),
            kind: match s.kind {
                Kind::Server => span::SpanKind::Server as i32,
                Kind::Internal => span::SpanKind::Internal as i32,
            },
            start_time_unix_nano: s.start_unix_nanos,
            end_time_unix_nano: s.end_unix_nanos.max(s.start_unix_nanos),
            attributes: s.attributes.iter().map(|(k, v)| string(k, v)).collect(),
            status: Some(match &s.error {
                Some(message) => Status {
                    message: message.clone(),
                    code: status::StatusCode::Error as i32,
                },
                None => Status {
                    message: String::new(),
                    code: status::StatusCode::Ok as i32,
                },
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    string("service.name", service_name),
                    string("service.version", crate::BUILD_VERSION),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "openmid".into(),
                    version: crate::BUILD_VERSION.into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// The collector's traces URL from the `otlp_endpoint` setting: a base URL
/// (`http://collector:4318`) gets [`TRACES_PATH`]; one that already ends in it is kept.
pub fn traces_url(endpoint: &str) -> Result<String, String> {
    let url = url::Url::parse(endpoint)
        .map_err(|e| format!("tracing.otlp_endpoint: `{endpoint}` is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "tracing.otlp_endpoint: must be http:// or https://, got `{}`",
            url.scheme()
        ));
    }
    let text = url.as_str().trim_end_matches('/');
    Ok(if text.ends_with(TRACES_PATH) {
        text.to_string()
    } else {
        format!("{text}{TRACES_PATH}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_encode_as_the_collector_decodes_them() {
        let span = FinishedSpan {
            trace_id: [7; 16],
            span_id: [8; 8],
            parent_span_id: Some([9; 8]),
            name: "RESTProbe".into(),
            kind: Kind::Internal,
            start_unix_nanos: 10,
            end_unix_nanos: 20,
            attributes: vec![("openmid.output_id".into(), "o1".into())],
            error: Some("refused".into()),
        };
        let bytes = encode("openmid-mid", &[span]);
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("decodes");
        let rs = &decoded.resource_spans[0];
        let got = &rs.scope_spans[0].spans[0];
        assert_eq!(got.trace_id, vec![7; 16]);
        assert_eq!(got.span_id, vec![8; 8]);
        assert_eq!(got.parent_span_id, vec![9; 8]);
        assert_eq!((got.start_time_unix_nano, got.end_time_unix_nano), (10, 20));
        assert_eq!(got.attributes[0].key, "openmid.output_id");
        let status = got.status.as_ref().expect("status");
        assert_eq!((status.code, status.message.as_str()), (2, "refused"));
        let service = &rs.resource.as_ref().expect("resource").attributes[0];
        assert_eq!(service.key, "service.name");
    }

    #[test]
    fn the_endpoint_setting_names_a_base_or_the_traces_url() {
        assert_eq!(
            traces_url("http://c:4318").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c/otel/v1/traces").unwrap(),
            "https://c/otel/v1/traces"
        );
        assert!(
            traces_url("grpc://c:4317")
                .unwrap_err()
                .contains("otlp_endpoint")
        );
        assert!(
            traces_url("not a url")
                .unwrap_err()
                .contains("otlp_endpoint")
        );
    }
}
