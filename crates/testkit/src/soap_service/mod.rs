//! A real SOAP 1.1 and 1.2 calculator service on loopback, for the MID's SOAP probe
//! tests: it parses envelopes namespace-aware (any prefixes), answers in the SOAP
//! version of the request, returns proper faults with detail, serves its WSDL, and
//! records what it received so tests can check the probe's headers and envelopes.
//!
//! It answers the way an independent service (Python spyne) does, because that is what
//! openmid met outside: every namespace declared once on the Envelope (`soap11env`,
//! `soap12env`, `tns`) and used unqualified-declared in the Body and the Fault detail,
//! prefixed and refined fault codes (`soap11env:Client.UnknownOperation`; in 1.2 a
//! `tns:` Subcode), an HTML page with a session cookie for a failed login, and a
//! SOAPAction that must be the WSDL's, quoted once.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use quick_xml::NsReader;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// Namespace of the calculator's elements.
mod calls;
mod wsdl;
mod xml;

use calls::*;
use wsdl::*;
use xml::*;

pub const CALC_NS: &str = "urn:openmid:test:calc";
/// SOAP 1.1 envelope namespace.
pub const SOAP11_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace.
pub const SOAP12_ENV_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
/// Deepest element nesting accepted in a request.
const MAX_DEPTH: usize = 64;
/// Largest `Big` response, in characters.
const MAX_BIG: usize = 256 * 1024 * 1024;
/// The operations, in WSDL order.
const OPERATIONS: [&str; 5] = ["Add", "Echo", "Divide", "Big", "Concat"];
/// The 401 page, HTML as application servers answer it, not a SOAP Fault.
pub const UNAUTHORIZED_HTML: &str = "<!DOCTYPE html>\n<html><head><title>401 Unauthorized</title></head>\
<body><h1>Unauthorized</h1><p>This server could not verify that you are authorized to access the \
document requested.</p></body></html>\n";

/// The SOAP action of an operation, as the WSDL declares it: `{CALC_NS}#{op}`, except
/// `Concat`, whose action follows no rule a client could guess (only the WSDL tells).
pub fn soap_action_of(operation: &str) -> String {
    match operation {
        "Concat" => "http://openmid.test/calc/actions/concat-v2".into(),
        op => format!("{CALC_NS}#{op}"),
    }
}

/// A running SOAP service.
pub struct SoapService {
    /// Bound address (127.0.0.1:port).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

struct Shared {
    basic: Option<(String, String)>,
    /// `http://127.0.0.1:PORT/calc`, the address the WSDL names.
    endpoint: String,
    calls: AtomicU64,
    last_headers: Mutex<Option<HeaderMap>>,
    last_body: Mutex<Option<Bytes>>,
}

impl SoapService {
    /// Starts the service on 127.0.0.1 and a free port: `POST /calc` (SOAP 1.1 or 1.2)
    /// and `GET /calc?wsdl`; `POST /empty` answers 503 with no body. With `basic`
    /// (user, password), every request needs that Basic authentication, else 401 with
    /// an HTML page ([`UNAUTHORIZED_HTML`]) and a `Set-Cookie`.
    pub async fn start(basic: Option<(String, String)>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            basic,
            endpoint: format!("http://{addr}/calc"),
            calls: AtomicU64::new(0),
            last_headers: Mutex::new(None),
            last_body: Mutex::new(None),
        });
        let app = Router::new()
            .route("/calc", get(wsdl).post(call))
            .route(
                "/empty",
                axum::routing::post(|| async { StatusCode::SERVICE_UNAVAILABLE }),
            )
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                record_and_authenticate,
            ))
            .with_state(shared.clone());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "SOAP service failed");
            }
        });
        Ok(Self {
            addr,
            shared,
            shutdown,
        })
    }

    /// `http://127.0.0.1:PORT` + `path` (the endpoint is `url("/calc")`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received so far (every method and path, including rejected ones).
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Headers of the last request received (also of a rejected one).
    pub fn last_request_headers(&self) -> Option<HeaderMap> {
        lock(&self.shared.last_headers).clone()
    }

    /// Body of the last authenticated `POST /calc`, as text (lossy UTF-8).
    pub fn last_request_body(&self) -> Option<String> {
        lock(&self.shared.last_body)
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// Stops the service.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for SoapService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn record_and_authenticate(
    State(s): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    *lock(&s.last_headers) = Some(req.headers().clone());
    if let Some((user, password)) = &s.basic {
        let expected = format!("{user}:{password}");
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, creds)| BASE64.decode(creds.trim()).ok());
        if given.as_deref() != Some(expected.as_bytes()) {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                [(CONTENT_TYPE, "text/html; charset=utf-8")],
                UNAUTHORIZED_HTML,
            )
                .into_response();
            let headers = response.headers_mut();
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"openmid-test-soap\""),
            );
            headers.insert(
                SET_COOKIE,
                HeaderValue::from_static("session=unauthenticated-7f3a; Path=/; HttpOnly"),
            );
            return response;
        }
    }
    next.run(req).await
}

/// `GET /calc?wsdl`.
async fn wsdl(State(s): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let wants_wsdl = query.is_some_and(|q| {
        q.split('&')
            .any(|p| p.eq_ignore_ascii_case("wsdl") || p.to_ascii_lowercase().starts_with("wsdl="))
    });
    if !wants_wsdl {
        return (StatusCode::NOT_FOUND, "GET /calc?wsdl for the WSDL\n").into_response();
    }
    (
        [(CONTENT_TYPE, "text/xml; charset=utf-8")],
        wsdl_document(&s.endpoint),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
