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

/// The SOAP version of a request, from its Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V11,
    V12,
}

impl Version {
    fn envelope_ns(self) -> &'static str {
        match self {
            Version::V11 => SOAP11_ENV_NS,
            Version::V12 => SOAP12_ENV_NS,
        }
    }

    /// The envelope prefix spyne uses.
    fn prefix(self) -> &'static str {
        match self {
            Version::V11 => "soap11env",
            Version::V12 => "soap12env",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Version::V11 => "text/xml; charset=utf-8",
            Version::V12 => "application/soap+xml; charset=utf-8",
        }
    }
}

/// Why a request failed, answered as a SOAP Fault.
#[derive(Debug)]
struct Fault {
    code: FaultCode,
    /// A refinement of the code: `Client.{it}` in 1.1, a `tns:{it}` Subcode in 1.2.
    refinement: Option<&'static str>,
    reason: String,
    /// Raw XML put inside `detail`/`Detail`.
    detail: Option<String>,
}

#[derive(Clone, Copy, Debug)]
enum FaultCode {
    /// The request was wrong: `soap11env:Client` (1.1) / `soap12env:Sender` (1.2).
    Client,
    /// The envelope is not of the version the Content-Type says.
    VersionMismatch,
    /// The service failed: `soap11env:Server` / `soap12env:Receiver`.
    Server,
}

impl Fault {
    fn client(reason: impl Into<String>) -> Self {
        Self {
            code: FaultCode::Client,
            refinement: None,
            reason: reason.into(),
            detail: None,
        }
    }

    /// A client fault refined by `refinement`.
    fn refined(refinement: &'static str, reason: impl Into<String>) -> Self {
        Self {
            refinement: Some(refinement),
            ..Self::client(reason)
        }
    }

    fn render(&self, version: Version) -> String {
        let reason = escape(self.reason.as_str());
        let detail = self.detail.as_deref();
        let p = version.prefix();
        let fault = match version {
            Version::V11 => {
                let code = match self.code {
                    FaultCode::Client => "Client",
                    FaultCode::VersionMismatch => "VersionMismatch",
                    FaultCode::Server => "Server",
                };
                let refinement = self.refinement.map(|r| format!(".{r}")).unwrap_or_default();
                let detail = detail
                    .map(|d| format!("<detail>{d}</detail>"))
                    .unwrap_or_default();
                format!(
                    "<{p}:Fault><faultcode>{p}:{code}{refinement}</faultcode>\
                     <faultstring>{reason}</faultstring>{detail}</{p}:Fault>"
                )
            }
            Version::V12 => {
                let code = match self.code {
                    FaultCode::Client => "Sender",
                    FaultCode::VersionMismatch => "VersionMismatch",
                    FaultCode::Server => "Receiver",
                };
                let subcode = self
                    .refinement
                    .map(|r| format!("<{p}:Subcode><{p}:Value>tns:{r}</{p}:Value></{p}:Subcode>"))
                    .unwrap_or_default();
                let detail = detail
                    .map(|d| format!("<{p}:Detail>{d}</{p}:Detail>"))
                    .unwrap_or_default();
                format!(
                    "<{p}:Fault><{p}:Code><{p}:Value>{p}:{code}</{p}:Value>{subcode}</{p}:Code>\
                     <{p}:Reason><{p}:Text xml:lang=\"en\">{reason}</{p}:Text></{p}:Reason>\
                     {detail}</{p}:Fault>"
                )
            }
        };
        envelope(version, &fault)
    }
}

/// The response envelope, spyne-style: single-quoted XML declaration, every namespace
/// declared once here, the Body's content relying on it.
fn envelope(version: Version, body: &str) -> String {
    format!(
        "<?xml version='1.0' encoding='UTF-8'?>\n\
         <{p}:Envelope xmlns:{p}=\"{ns}\" xmlns:tns=\"{CALC_NS}\"><{p}:Body>{body}</{p}:Body></{p}:Envelope>",
        p = version.prefix(),
        ns = version.envelope_ns()
    )
}

fn soap_response(version: Version, status: StatusCode, xml: String) -> Response {
    (status, [(CONTENT_TYPE, version.content_type())], xml).into_response()
}

/// `POST /calc`.
async fn call(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    *lock(&s.last_body) = Some(body.clone());
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut params = content_type.split(';');
    let media_type = params
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (version, action) = match media_type.as_str() {
        "text/xml" => (
            Version::V11,
            headers
                .get("soapaction")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        ),
        "application/soap+xml" => (
            Version::V12,
            params.find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("action")
                    .then(|| v.to_string())
            }),
        ),
        _ => {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "SOAP 1.1 needs Content-Type text/xml, SOAP 1.2 application/soap+xml\n",
            )
                .into_response();
        }
    };
    match handle(version, action.as_deref(), &body) {
        Ok(xml) => soap_response(version, StatusCode::OK, envelope(version, &xml)),
        Err(fault) => soap_response(
            version,
            StatusCode::INTERNAL_SERVER_ERROR,
            fault.render(version),
        ),
    }
}

/// Runs the operation in `body`; returns the Body's content.
fn handle(version: Version, action: Option<&str>, body: &[u8]) -> Result<String, Fault> {
    let text = std::str::from_utf8(body).map_err(|_| Fault::client("request is not UTF-8"))?;
    let root = parse(text).map_err(|e| Fault::client(format!("malformed XML: {e}")))?;
    if root.name != "Envelope" {
        return Err(Fault::client("the root element is not Envelope"));
    }
    if root.ns.as_deref() != Some(version.envelope_ns()) {
        return Err(Fault {
            code: FaultCode::VersionMismatch,
            refinement: None,
            reason: format!(
                "the Envelope namespace does not match the Content-Type (expected {})",
                version.envelope_ns()
            ),
            detail: None,
        });
    }
    let in_envelope = |e: &&Element| e.ns.as_deref() == Some(version.envelope_ns());
    let soap_body = root
        .children
        .iter()
        .filter(in_envelope)
        .find(|e| e.name == "Body")
        .ok_or_else(|| Fault::client("the Envelope has no Body"))?;
    let op = soap_body
        .children
        .first()
        .ok_or_else(|| Fault::client("the Body is empty"))?;
    if op.ns.as_deref() != Some(CALC_NS) || !OPERATIONS.contains(&op.name.as_str()) {
        return Err(Fault::refined(
            "UnknownOperation",
            format!("unknown operation {}", op.name),
        ));
    }
    if let Some(action) = action {
        // One pair of quotes around the action, as SOAP 1.1 writes the header; a value
        // quoted twice is the client's bug.
        let trimmed = action.trim();
        let action = trimmed
            .strip_prefix('"')
            .and_then(|a| a.strip_suffix('"'))
            .unwrap_or(trimmed);
        if action.contains('"') {
            return Err(Fault::refined(
                "ActionMismatch",
                format!("SOAP action {trimmed} is quoted twice"),
            ));
        }
        let expected = soap_action_of(&op.name);
        if action != expected {
            return Err(Fault::refined(
                "ActionMismatch",
                format!(
                    "SOAP action \"{action}\" does not match operation {} (expected \"{expected}\")",
                    op.name
                ),
            ));
        }
    }
    let response = |name: &str, inner: String| format!("<tns:{name}>{inner}</tns:{name}>");
    match op.name.as_str() {
        "Add" => {
            let (a, b) = (op.integer("a")?, op.integer("b")?);
            let sum = a
                .checked_add(b)
                .ok_or_else(|| Fault::client("integer overflow"))?;
            Ok(response(
                "AddResponse",
                format!("<tns:result>{sum}</tns:result>"),
            ))
        }
        "Echo" => {
            let text = op.param("text")?;
            Ok(response(
                "EchoResponse",
                format!("<tns:text>{}</tns:text>", escape(text)),
            ))
        }
        "Divide" => {
            let (a, b) = (op.integer("a")?, op.integer("b")?);
            if b == 0 {
                return Err(Fault {
                    code: FaultCode::Client,
                    refinement: None,
                    reason: "division by zero".into(),
                    detail: Some(format!(
                        "<tns:DivideFault><tns:dividend>{a}</tns:dividend></tns:DivideFault>"
                    )),
                });
            }
            let quotient = a
                .checked_div(b)
                .ok_or_else(|| Fault::client("integer overflow"))?;
            Ok(response(
                "DivideResponse",
                format!("<tns:result>{quotient}</tns:result>"),
            ))
        }
        "Big" => {
            let n = op
                .param("bytes")?
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= MAX_BIG)
                .ok_or_else(|| {
                    Fault::client(format!("bytes must be an integer from 0 to {MAX_BIG}"))
                })?;
            Ok(response(
                "BigResponse",
                format!("<tns:data>{}</tns:data>", "x".repeat(n)),
            ))
        }
        "Concat" => {
            // Its schema says `elementFormDefault="unqualified"`, and the service holds
            // clients to it.
            let (a, b) = (op.unqualified_param("a")?, op.unqualified_param("b")?);
            Ok(response(
                "ConcatResponse",
                format!("<tns:result>{}</tns:result>", escape(format!("{a}{b}"))),
            ))
        }
        other => Err(Fault {
            code: FaultCode::Server,
            refinement: None,
            reason: format!("operation {other} is not implemented"),
            detail: None,
        }),
    }
}

/// An element of a parsed request: expanded name, child elements and text content.
#[derive(Debug)]
struct Element {
    ns: Option<String>,
    name: String,
    children: Vec<Element>,
    text: String,
}

impl Element {
    /// Text of the child `name`, in the calc namespace or unqualified.
    fn param(&self, name: &str) -> Result<&str, Fault> {
        self.children
            .iter()
            .find(|c| c.name == name && matches!(c.ns.as_deref(), None | Some(CALC_NS)))
            .map(|c| c.text.as_str())
            .ok_or_else(|| Fault::client(format!("{}: missing element {name}", self.name)))
    }

    /// Text of the child `name`, which must be unqualified (no namespace).
    fn unqualified_param(&self, name: &str) -> Result<&str, Fault> {
        let child = self
            .children
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Fault::client(format!("{}: missing element {name}", self.name)))?;
        match &child.ns {
            None => Ok(child.text.as_str()),
            Some(ns) => Err(Fault::refined(
                "SchemaValidationError",
                format!(
                    "{}: element {name} must be unqualified (elementFormDefault=\"unqualified\"), found it in {ns}",
                    self.name
                ),
            )),
        }
    }

    fn integer(&self, name: &str) -> Result<i64, Fault> {
        self.param(name)?
            .trim()
            .parse()
            .map_err(|_| Fault::client(format!("{}: {name} is not an integer", self.name)))
    }
}

/// Parses `xml` into a tree of elements with resolved namespaces. DTDs are refused
/// (SOAP forbids them), as are entity references other than XML's predefined ones.
fn parse(xml: &str) -> Result<Element, String> {
    let mut reader = NsReader::from_str(xml);
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(|e| e.to_string())?;
        let ns = match ns {
            ResolveResult::Bound(ns) => Some(ns.0.to_string()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(prefix) => return Err(format!("unbound prefix {prefix}")),
        };
        let text = match event {
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                return Err(format!(
                    "element {} after the root element",
                    e.local_name().into_inner()
                ));
            }
            Event::Start(e) => {
                if open.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                open.push(Element {
                    ns,
                    name: e.local_name().into_inner().to_string(),
                    children: Vec::new(),
                    text: String::new(),
                });
                continue;
            }
            Event::Empty(e) => {
                let element = Element {
                    ns,
                    name: e.local_name().into_inner().to_string(),
                    children: Vec::new(),
                    text: String::new(),
                };
                close(&mut open, &mut root, element);
                continue;
            }
            Event::End(_) => {
                let element = open.pop().ok_or("unexpected end tag")?;
                close(&mut open, &mut root, element);
                continue;
            }
            Event::Text(t) => t.xml10_content().into_owned(),
            Event::CData(c) => c.xml10_content().into_owned(),
            Event::GeneralRef(r) => match r.resolve_char_ref().map_err(|e| e.to_string())? {
                Some(c) => c.to_string(),
                None => resolve_predefined_entity(&r)
                    .ok_or_else(|| format!("unknown entity &{};", &*r))?
                    .to_string(),
            },
            Event::DocType(_) => return Err("DTDs are not allowed in SOAP messages".into()),
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => continue,
        };
        match open.last_mut() {
            Some(element) => element.text.push_str(&text),
            None if text.trim().is_empty() => {}
            None => return Err("text outside the root element".into()),
        }
    }
    if let Some(element) = open.last() {
        return Err(format!("element {} is not closed", element.name));
    }
    root.ok_or_else(|| "no root element".to_string())
}

/// Attaches a finished element to its parent, or makes it the root.
fn close(open: &mut [Element], root: &mut Option<Element>, element: Element) {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// The WSDL 1.1 description (document/literal, SOAP 1.1 and 1.2 bindings).
fn wsdl_document(endpoint: &str) -> String {
    let endpoint = escape(endpoint);
    let ops = OPERATIONS;
    let mut messages = String::new();
    let mut port_ops = String::new();
    let mut bind11 = String::new();
    let mut bind12 = String::new();
    for op in ops {
        messages.push_str(&format!(
            "<wsdl:message name=\"{op}Request\"><wsdl:part name=\"parameters\" element=\"calc:{op}\"/></wsdl:message>\n\
             <wsdl:message name=\"{op}Response\"><wsdl:part name=\"parameters\" element=\"calc:{op}Response\"/></wsdl:message>\n"
        ));
        let fault_ref = if op == "Divide" {
            "<wsdl:fault name=\"DivideFault\" message=\"calc:DivideFault\"/>"
        } else {
            ""
        };
        port_ops.push_str(&format!(
            "<wsdl:operation name=\"{op}\"><wsdl:input message=\"calc:{op}Request\"/>\
             <wsdl:output message=\"calc:{op}Response\"/>{fault_ref}</wsdl:operation>\n"
        ));
        for (bindings, prefix) in [(&mut bind11, "soap"), (&mut bind12, "soap12")] {
            let fault = if op == "Divide" {
                format!(
                    "<wsdl:fault name=\"DivideFault\"><{prefix}:fault name=\"DivideFault\" use=\"literal\"/></wsdl:fault>"
                )
            } else {
                String::new()
            };
            let action = escape(soap_action_of(op));
            bindings.push_str(&format!(
                "<wsdl:operation name=\"{op}\"><{prefix}:operation soapAction=\"{action}\" style=\"document\"/>\
                 <wsdl:input><{prefix}:body use=\"literal\"/></wsdl:input>\
                 <wsdl:output><{prefix}:body use=\"literal\"/></wsdl:output>{fault}</wsdl:operation>\n"
            ));
        }
    }
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<wsdl:definitions name="Calc" targetNamespace="{CALC_NS}"
    xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:calc="{CALC_NS}">
<wsdl:types>
<xsd:schema targetNamespace="{CALC_NS}" elementFormDefault="qualified">
<xsd:complexType name="TwoIntegers"><xsd:sequence><xsd:element name="a" type="xsd:long"/><xsd:element name="b" type="xsd:long"/></xsd:sequence></xsd:complexType>
<xsd:complexType name="Result"><xsd:sequence><xsd:element name="result" type="xsd:long"/></xsd:sequence></xsd:complexType>
<xsd:complexType name="Text"><xsd:sequence><xsd:element name="text" type="xsd:string"/></xsd:sequence></xsd:complexType>
<xsd:element name="Add" type="calc:TwoIntegers"/>
<xsd:element name="AddResponse" type="calc:Result"/>
<xsd:element name="Divide" type="calc:TwoIntegers"/>
<xsd:element name="DivideResponse" type="calc:Result"/>
<xsd:element name="DivideFault"><xsd:complexType><xsd:sequence><xsd:element name="dividend" type="xsd:long"/></xsd:sequence></xsd:complexType></xsd:element>
<xsd:element name="Echo" type="calc:Text"/>
<xsd:element name="EchoResponse" type="calc:Text"/>
<xsd:element name="Big"><xsd:complexType><xsd:sequence><xsd:element name="bytes" type="xsd:unsignedInt"/></xsd:sequence></xsd:complexType></xsd:element>
<xsd:element name="BigResponse"><xsd:complexType><xsd:sequence><xsd:element name="data" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
<xsd:element name="ConcatResponse" type="calc:Result"/>
</xsd:schema>
<xsd:schema targetNamespace="{CALC_NS}" elementFormDefault="unqualified">
<xsd:element name="Concat"><xsd:complexType><xsd:sequence><xsd:element name="a" type="xsd:string"/><xsd:element name="b" type="xsd:string"/></xsd:sequence></xsd:complexType></xsd:element>
</xsd:schema>
</wsdl:types>
{messages}<wsdl:message name="DivideFault"><wsdl:part name="fault" element="calc:DivideFault"/></wsdl:message>
<wsdl:portType name="CalcPortType">
{port_ops}</wsdl:portType>
<wsdl:binding name="CalcSoap11" type="calc:CalcPortType">
<soap:binding transport="http://schemas.xmlsoap.org/soap/http" style="document"/>
{bind11}</wsdl:binding>
<wsdl:binding name="CalcSoap12" type="calc:CalcPortType">
<soap12:binding transport="http://schemas.xmlsoap.org/soap/http" style="document"/>
{bind12}</wsdl:binding>
<wsdl:service name="CalcService">
<wsdl:port name="CalcSoap11Port" binding="calc:CalcSoap11"><soap:address location="{endpoint}"/></wsdl:port>
<wsdl:port name="CalcSoap12Port" binding="calc:CalcSoap12"><soap12:address location="{endpoint}"/></wsdl:port>
</wsdl:service>
</wsdl:definitions>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const V11: &str = "text/xml; charset=utf-8";
    const V12: &str = "application/soap+xml; charset=utf-8";

    fn envelope_of(ns: &str, body: &str) -> String {
        format!(
            "<?xml version=\"1.0\"?><e:Envelope xmlns:e=\"{ns}\"><e:Header/><e:Body>{body}</e:Body></e:Envelope>"
        )
    }

    async fn post(
        svc: &SoapService,
        content_type: &str,
        action: Option<&str>,
        xml: String,
    ) -> (u16, String, Element) {
        let mut req = reqwest::Client::new()
            .post(svc.url("/calc"))
            .header(CONTENT_TYPE, content_type)
            .body(xml);
        if let Some(action) = action {
            req = req.header("SOAPAction", action);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let ct = resp.headers()[CONTENT_TYPE].to_str().unwrap().to_string();
        let text = resp.text().await.unwrap();
        (status, ct, parse(&text).expect("response parses"))
    }

    /// The first child of the response's Body.
    fn body_child(envelope: &Element) -> &Element {
        &envelope
            .children
            .iter()
            .find(|e| e.name == "Body")
            .unwrap()
            .children[0]
    }

    fn child<'e>(e: &'e Element, name: &str) -> &'e Element {
        e.children
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} in {e:?}"))
    }

    #[tokio::test]
    async fn soap11_add_and_echo() {
        let svc = SoapService::start(None).await.unwrap();
        let add = r#"<c:Add xmlns:c="urn:openmid:test:calc"><c:a>2</c:a><c:b> 40 </c:b></c:Add>"#;
        let (status, ct, env) = post(
            &svc,
            V11,
            Some("\"urn:openmid:test:calc#Add\""),
            envelope_of(SOAP11_ENV_NS, add),
        )
        .await;
        assert_eq!((status, ct.as_str()), (200, "text/xml; charset=utf-8"));
        assert_eq!(env.ns.as_deref(), Some(SOAP11_ENV_NS));
        let resp = body_child(&env);
        assert_eq!(
            (resp.name.as_str(), resp.ns.as_deref()),
            ("AddResponse", Some(CALC_NS))
        );
        assert_eq!(child(resp, "result").text, "42");

        let text = "a < b && \"c\" > 'd' — grüße 日本 ]]>";
        let echo = format!(
            "<Echo xmlns=\"urn:openmid:test:calc\"><text>{}</text></Echo>",
            escape(text)
        );
        let (status, _, env) = post(&svc, V11, None, envelope_of(SOAP11_ENV_NS, &echo)).await;
        assert_eq!(status, 200);
        assert_eq!(child(body_child(&env), "text").text, text);
        assert_eq!(svc.calls(), 2);
        let headers = svc.last_request_headers().unwrap();
        assert_eq!(headers[CONTENT_TYPE], V11);
        assert!(svc.last_request_body().unwrap().contains("grüße"));
    }

    #[tokio::test]
    async fn soap12_add_and_echo() {
        let svc = SoapService::start(None).await.unwrap();
        let add = r#"<Add xmlns="urn:openmid:test:calc"><a>-5</a><b>3</b></Add>"#;
        let (status, ct, env) = post(
            &svc,
            "application/soap+xml; charset=utf-8; action=\"urn:openmid:test:calc#Add\"",
            None,
            envelope_of(SOAP12_ENV_NS, add),
        )
        .await;
        assert_eq!((status, ct.as_str()), (200, V12));
        assert_eq!(env.ns.as_deref(), Some(SOAP12_ENV_NS));
        assert_eq!(child(body_child(&env), "result").text, "-2");

        let echo = r#"<x:Echo xmlns:x="urn:openmid:test:calc"><x:text><![CDATA[<b>&</b>]]> &#x263A;&amp;</x:text></x:Echo>"#;
        let (status, _, env) = post(&svc, V12, None, envelope_of(SOAP12_ENV_NS, echo)).await;
        assert_eq!(status, 200);
        assert_eq!(child(body_child(&env), "text").text, "<b>&</b> ☺&");
    }

    #[tokio::test]
    async fn divide_and_its_faults() {
        let svc = SoapService::start(None).await.unwrap();
        let divide = |a: i64, b: i64| {
            format!(
                r#"<c:Divide xmlns:c="urn:openmid:test:calc"><c:a>{a}</c:a><c:b>{b}</c:b></c:Divide>"#
            )
        };
        let (status, _, env) =
            post(&svc, V11, None, envelope_of(SOAP11_ENV_NS, &divide(7, 2))).await;
        assert_eq!(status, 200);
        assert_eq!(child(body_child(&env), "result").text, "3");

        let (status, _, env) =
            post(&svc, V11, None, envelope_of(SOAP11_ENV_NS, &divide(7, 0))).await;
        assert_eq!(status, 500);
        let fault = body_child(&env);
        assert_eq!(fault.name, "Fault");
        assert_eq!(child(fault, "faultcode").text, "soap11env:Client");
        assert_eq!(child(fault, "faultstring").text, "division by zero");
        let detail = child(child(fault, "detail"), "DivideFault");
        assert_eq!(detail.ns.as_deref(), Some(CALC_NS));
        assert_eq!(child(detail, "dividend").text, "7");

        let (status, _, env) =
            post(&svc, V12, None, envelope_of(SOAP12_ENV_NS, &divide(9, 0))).await;
        assert_eq!(status, 500);
        let fault = body_child(&env);
        assert_eq!(
            child(child(fault, "Code"), "Value").text,
            "soap12env:Sender"
        );
        assert_eq!(
            child(child(fault, "Reason"), "Text").text,
            "division by zero"
        );
        let detail = child(child(fault, "Detail"), "DivideFault");
        assert_eq!(child(detail, "dividend").text, "9");
    }

    #[tokio::test]
    async fn unknown_operation_bad_action_and_malformed_xml() {
        let svc = SoapService::start(None).await.unwrap();
        let op = r#"<c:Multiply xmlns:c="urn:openmid:test:calc"><c:a>1</c:a></c:Multiply>"#;
        let (status, _, env) = post(&svc, V11, None, envelope_of(SOAP11_ENV_NS, op)).await;
        assert_eq!(status, 500);
        assert_eq!(
            child(body_child(&env), "faultstring").text,
            "unknown operation Multiply"
        );
        let (status, _, env) = post(&svc, V12, None, envelope_of(SOAP12_ENV_NS, op)).await;
        assert_eq!(status, 500);
        let fault = body_child(&env);
        assert_eq!(
            child(child(fault, "Code"), "Value").text,
            "soap12env:Sender"
        );
        assert_eq!(
            child(child(fault, "Reason"), "Text").text,
            "unknown operation Multiply"
        );

        let add = r#"<c:Add xmlns:c="urn:openmid:test:calc"><c:a>1</c:a><c:b>2</c:b></c:Add>"#;
        let (status, _, env) = post(
            &svc,
            V11,
            Some("urn:openmid:test:calc#Echo"),
            envelope_of(SOAP11_ENV_NS, add),
        )
        .await;
        assert_eq!(status, 500);
        assert_eq!(
            child(body_child(&env), "faultcode").text,
            "soap11env:Client.ActionMismatch"
        );
        // Quoted once is right, quoted twice is not.
        for (action, ok) in [
            ("\"urn:openmid:test:calc#Add\"", true),
            ("urn:openmid:test:calc#Add", true),
            ("\"\"urn:openmid:test:calc#Add\"\"", false),
        ] {
            let (status, _, _) =
                post(&svc, V11, Some(action), envelope_of(SOAP11_ENV_NS, add)).await;
            assert_eq!(status == 200, ok, "{action}");
        }

        let (status, _, env) =
            post(&svc, V11, None, "<e:Envelope xmlns:e=\"x\"><oops>".into()).await;
        assert_eq!(status, 500);
        assert_eq!(
            child(body_child(&env), "faultcode").text,
            "soap11env:Client"
        );

        // A SOAP 1.1 envelope sent as SOAP 1.2.
        let (status, _, env) = post(&svc, V12, None, envelope_of(SOAP11_ENV_NS, add)).await;
        assert_eq!(status, 500);
        assert_eq!(
            child(child(body_child(&env), "Code"), "Value").text,
            "soap12env:VersionMismatch"
        );
    }

    #[tokio::test]
    async fn concat_wants_unqualified_parameters_and_the_wsdl_action() {
        let svc = SoapService::start(None).await.unwrap();
        let unqualified =
            r#"<tns:Concat xmlns:tns="urn:openmid:test:calc"><a>x</a><b>y</b></tns:Concat>"#;
        let action = format!("\"{}\"", soap_action_of("Concat"));
        let (status, _, env) = post(
            &svc,
            V11,
            Some(&action),
            envelope_of(SOAP11_ENV_NS, unqualified),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(child(body_child(&env), "result").text, "xy");
        let qualified = r#"<Concat xmlns="urn:openmid:test:calc"><a>x</a><b>y</b></Concat>"#;
        let (status, _, env) = post(
            &svc,
            V11,
            Some(&action),
            envelope_of(SOAP11_ENV_NS, qualified),
        )
        .await;
        assert_eq!(status, 500);
        assert_eq!(
            child(body_child(&env), "faultcode").text,
            "soap11env:Client.SchemaValidationError"
        );
        let guessed = format!("\"{CALC_NS}#Concat\"");
        let (status, _, _) = post(
            &svc,
            V11,
            Some(&guessed),
            envelope_of(SOAP11_ENV_NS, unqualified),
        )
        .await;
        assert_eq!(status, 500);
    }

    #[tokio::test]
    async fn big_response() {
        let svc = SoapService::start(None).await.unwrap();
        let big = r#"<c:Big xmlns:c="urn:openmid:test:calc"><c:bytes>100000</c:bytes></c:Big>"#;
        let (status, _, env) = post(&svc, V11, None, envelope_of(SOAP11_ENV_NS, big)).await;
        assert_eq!(status, 200);
        assert_eq!(child(body_child(&env), "data").text.len(), 100_000);
    }

    #[tokio::test]
    async fn basic_auth_and_wsdl() {
        let svc = SoapService::start(Some(("u".into(), "p w".into())))
            .await
            .unwrap();
        let c = reqwest::Client::new();
        let resp = c.get(svc.url("/calc?wsdl")).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().contains_key(WWW_AUTHENTICATE));
        assert!(resp.headers().contains_key(SET_COOKIE));
        assert!(
            resp.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(resp.text().await.unwrap(), UNAUTHORIZED_HTML);
        let resp = c
            .get(svc.url("/calc?wsdl"))
            .basic_auth("u", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);

        let resp = c
            .get(svc.url("/calc?wsdl"))
            .basic_auth("u", Some("p w"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let wsdl = parse(&resp.text().await.unwrap()).expect("WSDL parses");
        assert_eq!(wsdl.name, "definitions");
        assert_eq!(wsdl.ns.as_deref(), Some("http://schemas.xmlsoap.org/wsdl/"));
        let bindings = wsdl.children.iter().filter(|e| e.name == "binding").count();
        assert_eq!(bindings, 2);
        assert_eq!(svc.calls(), 3);

        let add = r#"<c:Add xmlns:c="urn:openmid:test:calc"><c:a>1</c:a><c:b>2</c:b></c:Add>"#;
        let resp = c
            .post(svc.url("/calc"))
            .header(CONTENT_TYPE, V11)
            .basic_auth("u", Some("p w"))
            .body(envelope_of(SOAP11_ENV_NS, add))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}
