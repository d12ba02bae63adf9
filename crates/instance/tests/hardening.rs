//! What the instance does with clients that are slow, silent, numerous, oversized or
//! not authenticated: every connection has deadlines, the connection count is capped
//! with a clear answer, nothing large is read before authentication, and failed
//! authentication is counted and logged with the peer (never the token).

use crate::support::{Raw, instance_with};
use futures::StreamExt;
use openmid_proto::PROTOCOL_HEADER;
use openmid_proto::api::NewEnrollmentToken;
use openmid_proto::mid::{Capacity, MidStatus, PollRequest};
use openmid_proto::trust::client_config;
use openmid_testkit::TestInstance;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough that only a hang (the bug) reaches it.
const GUARD: Duration = Duration::from_secs(30);

fn tls_connector(instance: &TestInstance) -> tokio_rustls::TlsConnector {
    let mut config = client_config(&instance.trust().expect("trust"))
        .expect("tls")
        .expect("custom trust");
    // Plain HTTP/1.1, so the test can write a request by hand.
    config.alpn_protocols.clear();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(instance: &TestInstance) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(instance.running.addr)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    tls_connector(instance)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// Reads until the server closes the connection; false if it never does.
async fn closed_by_server(mut stream: impl tokio::io::AsyncRead + Unpin) -> bool {
    let mut buf = [0u8; 4096];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(GUARD, read_to_end).await.is_ok()
}

#[tokio::test]
async fn silent_and_slow_connections_are_closed_but_long_polls_are_not() {
    let (instance, _dir) = instance_with(|c| {
        c.tls_handshake_timeout_ms = 300;
        c.header_read_timeout_ms = 300;
        c.idle_timeout_ms = 300;
        c.max_poll_wait_ms = 2_000;
    })
    .await;
    // Connects and never starts TLS.
    let silent = TcpStream::connect(instance.running.addr)
        .await
        .expect("connect");
    assert!(closed_by_server(silent).await, "no TLS handshake deadline");
    // Finishes TLS and sends nothing.
    let idle = tls_connect(&instance).await;
    assert!(closed_by_server(idle).await, "no idle deadline");
    // Sends half a request head and stops.
    let mut slow = tls_connect(&instance).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    assert!(closed_by_server(slow).await, "no header deadline");
    // A keep-alive connection after its answer is idle too.
    let mut kept = tls_connect(&instance).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    assert!(closed_by_server(kept).await, "idle keep-alive kept open");

    // A long-poll waiting longer than the idle deadline is a request in progress.
    let client = crate::support::enrolled_client(&instance, "patient", true).await;
    let answer = client
        .poll(&PollRequest {
            capacity: Capacity {
                interactive: 1,
                expedited: 1,
                standard: 1,
            },
            wait_ms: 1_500,
            known_status: Some(MidStatus::Up),
        })
        .await
        .expect("a long-poll outlives the idle deadline");
    assert!(answer.work.is_empty());
    assert_eq!(
        Raw::new(&instance)
            .send("GET", "/healthz", None, None, "")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn an_enrollment_body_that_never_finishes_gets_a_json_408() {
    let (instance, _dir) = instance_with(|c| c.header_read_timeout_ms = 300).await;
    let mut slow = tls_connect(&instance).await;
    slow.write_all(
        b"POST /mid/v1/enroll HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
    )
    .await
    .expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(GUARD, slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the instance waited for the body for ever");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"body_timeout""#), "{answer}");
}

#[tokio::test]
async fn connections_past_the_cap_get_a_json_503_and_healthz_comes_back() {
    let (instance, _dir) = instance_with(|c| c.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tls_connect(&instance).await);
    }
    let refused = Raw::new(&instance)
        .send("GET", "/healthz", None, None, "")
        .await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    let (code, message) = refused.error();
    assert_eq!(code, "too_many_connections");
    assert!(message.contains("max_connections"), "{message}");
    drop(held);
    let back = openmid_testkit::wait_until(GUARD, || async {
        Raw::new(&instance)
            .send("GET", "/healthz", None, None, "")
            .await
            .status
            == 200
    })
    .await;
    assert!(back, "slots are given back when connections close");
}

#[tokio::test]
async fn an_oversized_enrollment_is_refused_in_json() {
    let (instance, _dir) = instance_with(|_| {}).await;
    let raw = Raw::new(&instance);
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(1024 * 1024));
    // Declared length: refused before the body is read.
    let a = raw
        .send(
            "POST",
            "/mid/v1/enroll",
            None,
            Some("application/json"),
            big.clone(),
        )
        .await;
    assert_eq!(a.status, 413, "{:?}", a.body);
    let (code, message) = a.error();
    assert_eq!(code, "body_too_large");
    assert!(message.contains("65536"), "{message}");
    // No declared length (chunked): cut off at the same cap.
    let chunks = futures::stream::iter(
        big.into_bytes()
            .chunks(16 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let a = raw
        .send(
            "POST",
            "/mid/v1/enroll",
            None,
            Some("application/json"),
            reqwest::Body::wrap_stream(chunks),
        )
        .await;
    assert_eq!(a.status, 413, "{:?}", a.body);
    assert_eq!(a.error().0, "body_too_large");
    // A real enrollment still fits.
    let token = instance
        .api
        .create_enrollment_token(&NewEnrollmentToken::default())
        .await
        .expect("token");
    let a = raw
        .send(
            "POST",
            "/mid/v1/enroll",
            None,
            Some("application/json"),
            enroll_body(&token.token, "fits").to_string(),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
}

fn enroll_body(token: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "token": token,
        "name": name,
        "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "secret": format!("{name}-secret-{}", "x".repeat(40)),
        "protocol_version": openmid_proto::PROTOCOL_VERSION,
        "version": "test",
        "hostname": "test-host",
    })
}

/// A body whose first chunk arrives and whose rest never does: a server that reads
/// it before checking the token never answers.
fn endless_body(pulled: Arc<Mutex<usize>>) -> reqwest::Body {
    let first = futures::stream::iter([Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024])]);
    let stream = first.chain(futures::stream::pending()).inspect(move |_| {
        if let Ok(mut n) = pulled.lock() {
            *n += 1;
        }
    });
    reqwest::Body::wrap_stream(stream)
}

#[tokio::test]
async fn large_bodies_with_a_bad_token_are_refused_unread() {
    let (instance, _dir) = instance_with(|_| {}).await;
    let tls = client_config(&instance.trust().expect("trust"))
        .expect("tls")
        .expect("custom trust");
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("client");
    let routes = [
        ("POST", "/api/v1/blobs", "application/octet-stream"),
        ("POST", "/api/v1/ecc", "application/json"),
        ("POST", "/mid/v1/results", "application/json"),
        (
            "PUT",
            "/mid/v1/results/some-output/1/body",
            "application/octet-stream",
        ),
        ("POST", "/mid/v1/poll", "application/json"),
    ];
    for (method, path, content_type) in routes {
        let pulled = Arc::new(Mutex::new(0));
        let req = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                format!("{}{path}", instance.running.url),
            )
            .bearer_auth("omadm_not-the-token")
            .header(PROTOCOL_HEADER, openmid_proto::PROTOCOL_VERSION.to_string())
            .header("content-type", content_type)
            .body(endless_body(pulled.clone()));
        let resp = tokio::time::timeout(GUARD, req.send())
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: the body was read before the token"))
            .expect("answered");
        assert_eq!(resp.status(), 401, "{method} {path}");
        let body: serde_json::Value = resp.json().await.expect("json error");
        assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
    }
    assert_eq!(instance.running.auth_failures(), routes.len() as u64);
}

/// Log lines written while it is the thread's subscriber (a current-thread test
/// runtime runs the instance's tasks on this thread).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn failed_authentication_is_logged_with_the_peer_once_per_window() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests of this binary run on other threads without a subscriber: a callsite
    // one of them registered while this subscriber was being set could keep the
    // "nobody listens" interest it computed then, and this test would see nothing
    // of it. Computing every callsite's interest again, with this subscriber in
    // place, closes that window.
    tracing::callsite::rebuild_interest_cache();
    let (instance, _dir) = instance_with(|_| {}).await;
    let raw = Raw::new(&instance);
    let wrong = "omadm_this-token-is-wrong-and-secret";
    for _ in 0..10 {
        let a = raw.send("GET", "/api/v1/mids", Some(wrong), None, "").await;
        assert_eq!(a.status, 401);
    }
    let a = raw
        .send("POST", "/mid/v1/enroll", None, Some("application/json"), {
            enroll_body("omenr_not-a-real-enrollment-token", "intruder").to_string()
        })
        .await;
    assert_eq!(a.status, 403, "{:?}", a.body);
    assert_eq!(instance.running.auth_failures(), 11);
    let logs = captured.text();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .collect();
    assert!(!lines.is_empty(), "nothing logged:\n{logs}");
    // Rate-limited per peer: eleven failures within seconds are one or two lines.
    assert!(lines.len() <= 2, "{lines:#?}");
    assert!(lines[0].contains("WARN"), "{}", lines[0]);
    assert!(lines[0].contains("peer=127.0.0.1:"), "{}", lines[0]);
    assert!(lines[0].contains("route=\"/api/v1/mids\""), "{}", lines[0]);
    assert!(!logs.contains(wrong), "the presented token was logged");
    assert!(
        !logs.contains("omenr_not-a-real"),
        "the enrollment token was logged"
    );
}

/// Sends `request` on a fresh connection and reads the whole answer.
async fn raw_exchange(instance: &TestInstance, request: &[u8]) -> String {
    let mut stream = tls_connect(instance).await;
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(GUARD, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status and JSON error code of an HTTP/1.1 answer.
fn status_and_code(answer: &str) -> (u16, String) {
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{answer}"
    );
    let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or("<none>")
            .to_string(),
    )
}

#[tokio::test]
async fn requests_hyper_cannot_parse_are_refused_in_json() {
    let (instance, _dir) = instance_with(|_| {}).await;
    let many: String = (0..300).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            b"GET /healthz HTTP/1.1\r\nhost: x\r\nbad header: y\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400, "bad_request"),
        (
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many}\r\n").into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\n"
                .to_vec(),
            400,
            "bad_request",
        ),
    ];
    for (request, status, code) in cases {
        let answer = raw_exchange(&instance, &request).await;
        assert_eq!(
            status_and_code(&answer),
            (status, code.to_string()),
            "{}",
            String::from_utf8_lossy(&request[..request.len().min(60)])
        );
    }
    // After a good exchange on the same connection too, and the good one untouched.
    let answer = raw_exchange(
        &instance,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nbad header: y\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let second = answer
        .match_indices("HTTP/1.1 ")
        .nth(1)
        .map(|(i, _)| &answer[i..])
        .unwrap_or_default();
    assert_eq!(status_and_code(second), (400, "bad_request".to_string()));
}
