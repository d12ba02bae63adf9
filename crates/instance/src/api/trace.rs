//! W3C `traceparent` at the API's door: the header of a call that creates work is
//! continued (or, absent or malformed, a new trace started) as the instance's span of
//! the job, stored on its output, and given back on the answer so the caller can find
//! the job in its own traces. With `[tracing] otlp_endpoint` set, the span is exported
//! when the call has been answered.

use super::AppState;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use openmid_proto::otlp::{FinishedSpan, Kind, now_unix_nanos};
use openmid_proto::trace::{HEADER, TraceParent};

/// The instance's span of one API call that creates a job.
pub(super) struct ApiSpan {
    /// Its context: the trace, and this span's id as the parent of the MID's.
    pub(super) trace: TraceParent,
    caller: Option<[u8; 8]>,
    start: u64,
    name: String,
}

/// The instance's span of a job asked for with `headers` by the call `name`
/// (`POST /api/v1/actions/rest`): the caller's trace when its `traceparent` is valid,
/// else a new one (a malformed header is ignored, as the W3C recommendation says, and
/// never fails the call).
pub(super) fn span_for(headers: &HeaderMap, name: String) -> ApiSpan {
    let values: Vec<&str> = headers
        .get_all(HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    // Several `traceparent` headers make the context ambiguous: start afresh.
    let header = match values.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    let (trace, caller) = TraceParent::continue_or_start(header);
    if header.is_some() && caller.is_none() {
        tracing::debug!(trace_id = %trace.trace_id_hex(), "ignored a malformed traceparent header: started a new trace");
    }
    ApiSpan {
        trace,
        caller,
        start: now_unix_nanos(),
        name,
    }
}

impl ApiSpan {
    /// Ends the span of the call that queued `output_id` (exported when export is on
    /// and the caller's trace is sampled).
    pub(super) fn finish(self, state: &AppState, output_id: &str, error: Option<&str>) {
        let Some(spans) = &state.spans else { return };
        if !self.trace.sampled() {
            return;
        }
        spans.record(FinishedSpan {
            trace_id: self.trace.trace_id,
            span_id: self.trace.parent_id,
            parent_span_id: self.caller,
            name: self.name,
            kind: Kind::Server,
            start_unix_nanos: self.start,
            end_unix_nanos: now_unix_nanos(),
            attributes: vec![("openmid.output_id".into(), output_id.to_string())],
            error: error.map(str::to_string),
        });
    }
}

/// Puts an output's `traceparent` ([`crate::ecc::Record::traceparent`]) on its answer.
pub(super) fn answer_with(mut response: Response, traceparent: Option<&str>) -> Response {
    if let Some(value) = traceparent.and_then(|t| HeaderValue::from_str(t).ok()) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
