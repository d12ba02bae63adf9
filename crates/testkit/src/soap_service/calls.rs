//! The calls: the envelope read by version, the operations run, Faults built.

use super::*;

/// The SOAP version of a request, from its Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Version {
    V11,
    V12,
}

impl Version {
    pub(super) fn envelope_ns(self) -> &'static str {
        match self {
            Version::V11 => SOAP11_ENV_NS,
            Version::V12 => SOAP12_ENV_NS,
        }
    }

    /// The envelope prefix spyne uses.
    pub(super) fn prefix(self) -> &'static str {
        match self {
            Version::V11 => "soap11env",
            Version::V12 => "soap12env",
        }
    }

    pub(super) fn content_type(self) -> &'static str {
        match self {
            Version::V11 => "text/xml; charset=utf-8",
            Version::V12 => "application/soap+xml; charset=utf-8",
        }
    }
}

/// Why a request failed, answered as a SOAP Fault.
#[derive(Debug)]
pub(super) struct Fault {
    code: FaultCode,
    /// A refinement of the code: `Client.{it}` in 1.1, a `tns:{it}` Subcode in 1.2.
    refinement: Option<&'static str>,
    reason: String,
    /// Raw XML put inside `detail`/`Detail`.
    detail: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum FaultCode {
    /// The request was wrong: `soap11env:Client` (1.1) / `soap12env:Sender` (1.2).
    Client,
    /// The envelope is not of the version the Content-Type says.
    VersionMismatch,
    /// The service failed: `soap11env:Server` / `soap12env:Receiver`.
    Server,
}

impl Fault {
    pub(super) fn client(reason: impl Into<String>) -> Self {
        Self {
            code: FaultCode::Client,
            refinement: None,
            reason: reason.into(),
            detail: None,
        }
    }

    /// A client fault refined by `refinement`.
    pub(super) fn refined(refinement: &'static str, reason: impl Into<String>) -> Self {
        Self {
            refinement: Some(refinement),
            ..Self::client(reason)
        }
    }

    pub(super) fn render(&self, version: Version) -> String {
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
pub(super) fn envelope(version: Version, body: &str) -> String {
    format!(
        "<?xml version='1.0' encoding='UTF-8'?>\n\
         <{p}:Envelope xmlns:{p}=\"{ns}\" xmlns:tns=\"{CALC_NS}\"><{p}:Body>{body}</{p}:Body></{p}:Envelope>",
        p = version.prefix(),
        ns = version.envelope_ns()
    )
}

pub(super) fn soap_response(version: Version, status: StatusCode, xml: String) -> Response {
    (status, [(CONTENT_TYPE, version.content_type())], xml).into_response()
}

/// `POST /calc`.
pub(super) async fn call(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
pub(super) fn handle(version: Version, action: Option<&str>, body: &[u8]) -> Result<String, Fault> {
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
