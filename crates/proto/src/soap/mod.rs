//! Payloads of the `SOAPProbe` topic: one SOAP 1.1 or 1.2 call made by a MID.
//!
//! The caller gives either the Body's XML as is, or an operation with parameters from
//! which the MID builds the Body; the MID wraps it in the envelope of the version asked
//! and answers with the response Body, or with the Fault taken apart.

pub mod xml;

use crate::credential::CredentialRef;
use crate::rest::{RestTimings, RetryPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The SOAP version of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SoapVersion {
    /// SOAP 1.1: `text/xml` and a `SOAPAction` header.
    #[default]
    #[serde(rename = "1.1")]
    V1_1,
    /// SOAP 1.2: `application/soap+xml` with an `action` parameter.
    #[serde(rename = "1.2")]
    V1_2,
}

impl SoapVersion {
    /// The envelope's namespace.
    pub fn envelope_namespace(self) -> &'static str {
        match self {
            SoapVersion::V1_1 => "http://schemas.xmlsoap.org/soap/envelope/",
            SoapVersion::V1_2 => "http://www.w3.org/2003/05/soap-envelope",
        }
    }
}

impl std::fmt::Display for SoapVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SoapVersion::V1_1 => "1.1",
            SoapVersion::V1_2 => "1.2",
        })
    }
}

/// How the child elements of an operation built from parameters are named: what the
/// service's schema says in `elementFormDefault` (or `form`) for the operation's
/// element. Services differ, and a wrong guess is a Fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ElementForm {
    /// `<Op xmlns="ns"><a>1</a></Op>`: the parameters in the operation's namespace too
    /// (`elementFormDefault="qualified"`, the common case and the default).
    #[default]
    Qualified,
    /// `<tns:Op xmlns:tns="ns"><a>1</a></tns:Op>`: only the operation in the namespace,
    /// the parameters in none (`elementFormDefault="unqualified"`, XML Schema's own
    /// default, common with RPC-style and spyne services).
    Unqualified,
}

/// Input of a `SOAPProbe` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoapRequest {
    /// The endpoint: absolute `http://` or `https://` URL.
    pub url: String,
    /// SOAP version (default 1.1).
    #[serde(default)]
    pub version: SoapVersion,
    /// The action (`SOAPAction` header in 1.1, `action` parameter in 1.2), quoted once
    /// on the wire whether or not it is given quoted. Without it, an operation call
    /// takes the `soapAction` of `wsdl_url`'s binding for the operation, else
    /// `{namespace}#{operation}` (`{namespace}{operation}` when the namespace ends in
    /// `/` or `#`), else sends an empty action.
    #[serde(default)]
    pub soap_action: Option<String>,
    /// The service's WSDL, to read the operation's `soapAction` from when none is given
    /// (set from the alias's `wsdl`; on the alias's origin, fetched with its credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wsdl_url: Option<String>,
    /// The Body's content as XML, sent as is. Give this or `operation`.
    #[serde(default)]
    pub body: Option<String>,
    /// Operation name: the MID builds `<operation xmlns="namespace">` with one child
    /// element per parameter.
    #[serde(default)]
    pub operation: Option<String>,
    /// Namespace of the operation element.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Operation parameters: strings, numbers and booleans become text, objects nested
    /// elements, arrays repeated elements, null an empty element.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// How the parameter elements are named (default: qualified, in `namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub element_form: Option<ElementForm>,
    /// Extra HTTP headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one attempt in milliseconds (default 30 000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The credential to authenticate with (sealed to the MID at claim time).
    #[serde(default)]
    pub credential: Option<CredentialRef>,
    /// When and how to try again.
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// PEM CA certificates the target's TLS certificate must chain to, for internal
    /// CAs (default: the system's roots).
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// The alias the call came through, for display.
    #[serde(default)]
    pub alias: Option<String>,
    /// Capabilities a MID must offer besides the probe's own (from the alias's
    /// execution settings; used when the instance picks the MID).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mid_capabilities: Vec<String>,
}

/// Output of a `SOAPProbe`: the response, with a Fault taken apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SoapResponse {
    /// HTTP status code (a Fault usually comes with 500).
    pub status: u16,
    /// Response headers.
    pub headers: BTreeMap<String, String>,
    /// The version of the response envelope.
    pub version: SoapVersion,
    /// The inner XML of the response's Body (absent when it holds a Fault), each
    /// top-level element declaring the namespace bindings in scope on the Envelope and
    /// Body, so it parses on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The Body's first element turned into JSON: element name → text, or an object of
    /// its children (repeated children become arrays). Absent for a Fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The Fault, when the service answered with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<SoapFault>,
    /// Set when the answer was not a SOAP envelope (an HTML error page, an empty body,
    /// another content type): the call is reported as an error all the same, and this
    /// keeps the start of what came back. `version` is then the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_soap: Option<NotSoap>,
    /// Where the time went, measured on the MID.
    pub timings: RestTimings,
}

/// Most bytes of a non-SOAP answer kept in [`NotSoap::body`]: enough for an error page's
/// title and message, small enough for an ECC record.
pub const NOT_SOAP_BODY_LIMIT: usize = 4096;

/// What a service answered instead of a SOAP envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotSoap {
    /// Why it is not SOAP (the parser's finding, e.g. "found an HTML page").
    pub problem: String,
    /// The response's `Content-Type`, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The start of the body as text (invalid UTF-8 replaced), at most
    /// [`NOT_SOAP_BODY_LIMIT`] bytes.
    pub body: String,
    /// The body was longer than what `body` holds.
    pub truncated: bool,
    /// The body's whole length in bytes.
    pub body_bytes: u64,
}

/// A SOAP Fault, the same shape for both versions.
///
/// A code is a qualified name whose prefix only means something inside the response
/// (`soap11env:Client.Refused`, `SOAP-ENV:Client`, `s:Client` are the same code), so
/// besides the raw text it comes resolved: match on `code_namespace` and `code_local`
/// (SOAP 1.1 refines codes with dots: `Client.Refused` is a `Client` fault; SOAP 1.2
/// refines with the `subcodes` chain instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SoapFault {
    /// `faultcode` (1.1) or `Code/Value` (1.2), as written (e.g. `soap:Client`).
    pub code: String,
    /// The namespace URI the prefix of `code` is bound to in the response (the default
    /// namespace when it has no prefix); absent when the prefix is not declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_namespace: Option<String>,
    /// The local name of `code` (`Client.Refused` of `soap11env:Client.Refused`).
    #[serde(default)]
    pub code_local: String,
    /// `Code/Subcode/Value` (1.2 only), as written: the first of `subcodes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subcode: Option<String>,
    /// The whole `Code/Subcode` chain (1.2 only), outermost first, each resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subcodes: Vec<FaultCode>,
    /// `faultstring` (1.1) or the first `Reason/Text` (1.2).
    pub reason: String,
    /// `faultactor` (1.1) or `Role` (1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The inner XML of `detail` (1.1) or `Detail` (1.2), each top-level element
    /// declaring the namespace bindings in scope around it so it parses on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A fault code or subcode: a qualified name as written and resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FaultCode {
    /// The text as written (`m:MessageTimeout`).
    pub value: String,
    /// The namespace URI its prefix is bound to; absent when not declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The local name (`MessageTimeout`).
    pub local: String,
}

/// The `SOAPProbe` topic.
pub struct Soap;

impl crate::probe::Contract for Soap {
    const TOPIC: crate::ecc::Topic = crate::ecc::Topic::SOAPProbe;
    type Request = SoapRequest;
    type Response = SoapResponse;

    /// Endpoint, headers, timeout; `body` well-formed XML content (the check the MID
    /// makes before sending, made at the door so a broken Body is refused with the
    /// problem named) or `operation`; a `soap_action` fit for a header; a WSDL on the
    /// endpoint's origin (it is fetched with the call's credential).
    fn validate(req: &SoapRequest) -> Result<(), crate::probe::FieldError> {
        use crate::probe::field_error;
        crate::rest::check_http_call(&req.url, &req.headers, req.timeout_ms, req.retry.as_ref())?;
        // It travels in a header (1.1) or a Content-Type parameter (1.2), quoted.
        if let Some(action) = &req.soap_action
            && (!crate::probe::is_header_value(action)
                || action.trim().trim_matches('"').contains('"'))
        {
            return Err(field_error(
                "soap_action",
                "must be a URI usable in an HTTP header: no control characters, no `\"` inside",
            ));
        }
        if let Some(wsdl) = &req.wsdl_url {
            let wsdl = url::Url::parse(wsdl).map_err(|e| {
                field_error("wsdl_url", format!("`{wsdl}` is not an absolute URL: {e}"))
            })?;
            let endpoint =
                url::Url::parse(&req.url).map_err(|e| field_error("url", e.to_string()))?;
            if wsdl.origin() != endpoint.origin() {
                return Err(field_error("wsdl_url", "must be on the origin of `url`"));
            }
        }
        match (&req.body, &req.operation) {
            (Some(_), Some(_)) => Err(field_error("body", "give `body` or `operation`, not both")),
            (None, None) => Err(field_error("operation", "give `operation` or `body`")),
            (None, Some(op)) if op.is_empty() => Err(field_error("operation", "must not be empty")),
            (Some(_), None) if req.element_form.is_some() => Err(field_error(
                "element_form",
                "`element_form` goes with `operation`",
            )),
            (Some(body), None) => xml::check_body(body)
                .map_err(|e| field_error("body", format!("not well-formed XML: {e}"))),
            _ => Ok(()),
        }
    }

    fn target(req: &SoapRequest) -> Option<crate::probe::Target> {
        crate::probe::Target::of_url(&req.url)
    }

    fn credential(req: &SoapRequest) -> Option<&CredentialRef> {
        req.credential.as_ref()
    }
}
