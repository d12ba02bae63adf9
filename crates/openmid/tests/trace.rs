//! W3C trace context end to end: a caller's `traceparent` travels API → ECC record →
//! MID → the target service's request, with the instance's and the MID's own span ids;
//! a malformed one is replaced by a new trace that travels the same way.

use crate::support::{MID, Stack, get};
use openmid_proto::api::{NewOutput, RestActionResult};
use openmid_proto::ecc::{EccRecord, Topic};
use openmid_proto::trace::TraceParent;
use std::time::Duration;

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

/// What the target service saw as `traceparent`, and the answer's own header.
struct Traced {
    answer: TraceParent,
    at_target: TraceParent,
    output_id: String,
}

async fn rest_with(stack: &Stack, traceparent: Option<&str>) -> Traced {
    let api = &stack.instance.api;
    let mut action = get(stack.target.url("/echo"));
    // A traceparent among the request's own headers is replaced by the job's.
    action.headers.insert(
        "TraceParent".into(),
        "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01".into(),
    );
    let mut req = http()
        .post(format!("{}api/v1/actions/rest?wait=20", api.base_url()))
        .bearer_auth(stack.instance.token.expose())
        .json(&action);
    if let Some(t) = traceparent {
        req = req.header("traceparent", t);
    }
    let resp = req.send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let answer = resp
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(|v| TraceParent::parse(v).expect("the answer's traceparent parses"))
        .expect("the answer carries traceparent");
    let result: RestActionResult = resp.json().await.expect("result");
    let body = result.response.and_then(|r| r.body).unwrap_or_default();
    let echoed: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
    let sent = echoed["headers"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("the target got no traceparent: {echoed}"));
    assert!(
        !sent.contains(','),
        "one traceparent reached the target: {sent}"
    );
    Traced {
        answer,
        at_target: TraceParent::parse(sent).expect("the target's traceparent parses"),
        output_id: result.output_id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_reaches_the_target_through_the_mid() {
    let stack = Stack::start().await;
    let api = &stack.instance.api;
    let caller = TraceParent::parse(CALLER).expect("caller");

    let traced = rest_with(&stack, Some(CALLER)).await;
    // One trace all the way; each hop its own span.
    assert_eq!(traced.answer.trace_id, caller.trace_id);
    assert_eq!(traced.at_target.trace_id, caller.trace_id);
    assert_ne!(
        traced.answer.parent_id, caller.parent_id,
        "the instance's own span"
    );
    assert_ne!(traced.at_target.parent_id, caller.parent_id);
    assert_ne!(
        traced.at_target.parent_id, traced.answer.parent_id,
        "the MID's own span"
    );
    assert!(traced.at_target.sampled());
    let record = api.get_record(&traced.output_id).await.expect("record");
    assert_eq!(
        record.trace_id.as_deref(),
        Some(caller.trace_id_hex().as_str())
    );

    // A malformed header is ignored: a new trace, carried the same way.
    for bad in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "garbage",
        "01-x",
    ] {
        let fresh = rest_with(&stack, Some(bad)).await;
        assert_ne!(fresh.answer.trace_id, caller.trace_id, "{bad}");
        assert_eq!(fresh.at_target.trace_id, fresh.answer.trace_id, "{bad}");
        let record = api.get_record(&fresh.output_id).await.expect("record");
        assert_eq!(record.trace_id, Some(fresh.answer.trace_id_hex()));
    }
    // None at all: a trace is made there too.
    let made = rest_with(&stack, None).await;
    assert_eq!(made.at_target.trace_id, made.answer.trace_id);
    assert_ne!(made.answer.trace_id, caller.trace_id);

    // POST /api/v1/ecc takes the caller's trace too, and shows it.
    let new = NewOutput {
        durability: Default::default(),
        agent: format!("mid.server.{MID}"),
        topic: Topic::RESTProbe,
        name: None,
        source: None,
        payload: serde_json::json!({"url": stack.target.url("/hello"), "timeout_ms": 10_000})
            .into(),
        priority: None,
        correlator: None,
        max_attempts: None,
        at_most_once: false,
        application: None,
    };
    let resp = http()
        .post(format!("{}api/v1/ecc", api.base_url()))
        .bearer_auth(stack.instance.token.expose())
        .header("traceparent", CALLER)
        .json(&new)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 201);
    let header = resp
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .expect("traceparent");
    let record: EccRecord = resp.json().await.expect("record");
    assert_eq!(
        record.trace_id.as_deref(),
        Some(caller.trace_id_hex().as_str())
    );
    assert_eq!(
        TraceParent::parse(&header).map(|t| t.trace_id),
        Ok(caller.trace_id)
    );
    assert!(
        crate::support::processed_within(api, &record.id, Duration::from_secs(20)).await,
        "the output runs"
    );
    stack.stop().await;
}

/// A collector on loopback: takes `POST /v1/traces` as OTLP/HTTP protobuf and keeps
/// the spans it decoded.
struct Collector {
    url: String,
    spans: std::sync::Arc<std::sync::Mutex<Vec<Span>>>,
    stop: tokio_util::sync::CancellationToken,
}

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;

impl Collector {
    async fn start() -> Self {
        use prost::Message;
        let spans: std::sync::Arc<std::sync::Mutex<Vec<Span>>> = Default::default();
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let kept = kept.clone();
                    async move {
                        let protobuf = headers
                            .get("content-type")
                            .is_some_and(|v| v == "application/x-protobuf");
                        let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                            return axum::http::StatusCode::BAD_REQUEST;
                        };
                        if !protobuf {
                            return axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
                        }
                        let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                        for rs in req.resource_spans {
                            for ss in rs.scope_spans {
                                kept.extend(ss.spans);
                            }
                        }
                        axum::http::StatusCode::OK
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(until.cancelled_owned())
                .await;
        });
        Self { url, spans, stop }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_the_instance_and_the_mid_reach_an_otlp_collector() {
    use openmid_proto::otlp::TracingSettings;
    let collector = Collector::start().await;
    let tracing = TracingSettings {
        otlp_endpoint: Some(collector.url.clone()),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = openmid_testkit::TestInstance::start_with(
        openmid_instance::config::InstanceConfig {
            data_dir: dir.path().join("instance"),
            listen: openmid_testkit::loopback_any_port(),
            tracing: tracing.clone(),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("instance");
    let target = openmid_testkit::TargetService::start()
        .await
        .expect("target");
    let token = instance.auto_validating_token().await.expect("token");
    let mut config = instance.mid_config(MID, &dir.path().join("mid"), Some(token));
    config.tracing = tracing;
    let mut mid = openmid_mid::start(config).await.expect("MID starts");
    assert!(
        mid.wait_for_status(openmid_proto::mid::MidStatus::Up, Duration::from_secs(20))
            .await,
        "MID is up"
    );
    let caller = TraceParent::parse(CALLER).expect("caller");
    let resp = http()
        .post(format!(
            "{}api/v1/actions/rest?wait=20",
            instance.api.base_url()
        ))
        .bearer_auth(instance.token.expose())
        .header("traceparent", CALLER)
        .json(&get(target.url("/echo")))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let result: RestActionResult = resp.json().await.expect("result");
    let body = result.response.and_then(|r| r.body).unwrap_or_default();
    let echoed: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
    let at_target = TraceParent::parse(echoed["headers"]["traceparent"].as_str().unwrap_or(""))
        .expect("the target got a traceparent");

    assert!(
        openmid_testkit::wait_until(Duration::from_secs(20), || async {
            collector.spans().len() >= 2
        })
        .await,
        "both spans arrive: {:?}",
        collector.spans()
    );
    let spans = collector.spans();
    let ours: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == caller.trace_id.to_vec())
        .collect();
    let server = ours
        .iter()
        .find(|s| s.name == "POST /api/v1/actions/rest")
        .unwrap_or_else(|| panic!("the instance's span: {spans:?}"));
    let job = ours
        .iter()
        .find(|s| s.name == "RESTProbe")
        .unwrap_or_else(|| panic!("the MID's span: {spans:?}"));
    // caller → instance → MID → target: each span the parent of the next.
    assert_eq!(server.parent_span_id, caller.parent_id.to_vec());
    assert_eq!(job.parent_span_id, server.span_id);
    assert_eq!(job.span_id, at_target.parent_id.to_vec());
    assert!(job.end_time_unix_nano >= job.start_time_unix_nano);
    assert!(
        job.attributes
            .iter()
            .any(|kv| kv.key == "openmid.output_id"),
        "{:?}",
        job.attributes
    );
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
    collector.stop.cancel();
}
