//! The XML half of the `SOAPProbe`: building a request Body from an operation and its
//! JSON parameters, wrapping it in an envelope, and taking a response envelope apart
//! into its Body, a JSON view of the Body's first element, or a Fault.
//!
//! These are pure functions so the HTTP half stays small and every XML edge case can be
//! tested without a server. Responses come from services we do not control, so parsing
//! never panics, refuses DOCTYPE declarations outright (nothing is ever expanded beyond
//! the five predefined entities and character references, which rules out XXE and
//! billion-laughs), and bounds element nesting.
//!
//! One concept per file: `build` turns an operation and JSON parameters into Body XML
//! and wraps it in an envelope; [`check_body_xml`] refuses a caller's broken Body before
//! it is sent (proto's checker, the one the instance runs too); `parse` reads a
//! response envelope (after `encoding` turns its bytes into text), `scope` makes
//! the extracted Body and detail declare the namespaces they use, and `view` makes the
//! JSON view and the Fault out of the Body; `wsdl` reads operations' `soapAction`
//! from a WSDL; `names` holds the XML 1.0 lexical rules they share.

mod build;
mod encoding;
mod names;
mod parse;
mod scope;
mod view;
mod wsdl;

pub use build::{OPERATION_PREFIX, envelope, operation_body, operation_body_in_form};
pub use parse::parse_response;
pub use wsdl::{WsdlAction, soap_action_for, wsdl_actions};

use openmid_proto::soap::{SoapFault, SoapVersion};
use serde_json::Value;

/// Deepest element nesting accepted, both when building a Body from parameters and
/// when turning a response Body into JSON. Real SOAP payloads stay far below it; the
/// bound is there so hostile input cannot exhaust the stack or memory.
pub const MAX_DEPTH: usize = 256;

// The prefix [`envelope`] binds to the envelope namespace; [`check_body_xml`] lets a
// caller's Body use it because it is declared around the Body.
use openmid_proto::soap::xml::ENVELOPE_PREFIX;

/// Attributes in this namespace (`xsi:type`, `xsi:nil`, …) describe typing, not data,
/// so they are kept out of the JSON view (`xsi:nil="true"` turns an element into null).
const XSI_NAMESPACE: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Why building or reading SOAP XML failed. Messages say where (JSON path or byte
/// offset) and what was expected, so they can go into the probe's error as is.
#[derive(Debug, thiserror::Error)]
pub enum SoapXmlError {
    /// An operation, parameter or attribute name is not a valid XML name (NCName).
    #[error("{field}: {value:?} is not a valid XML name")]
    InvalidName {
        /// Where the name came from: `operation` or the parameter's JSON path.
        field: String,
        /// The name as given.
        value: String,
    },
    /// A value holds a character that XML 1.0 cannot carry, even escaped.
    #[error("{path}: character U+{code:04X} is not allowed in XML 1.0")]
    InvalidChar {
        /// JSON path of the value (or `namespace`).
        path: String,
        /// The character's code point.
        code: u32,
    },
    /// The parameters have a shape with no XML form (e.g. an object as an attribute
    /// value, an array directly inside an array).
    #[error("{0}")]
    Json(String),
    /// The XML is not well-formed, or the response is not a SOAP envelope.
    #[error("{0}")]
    Malformed(String),
    /// The document has a DOCTYPE declaration; refused so no entity can be defined.
    #[error(
        "the XML has a DOCTYPE declaration, which is refused (it could define entities: XXE, billion laughs)"
    )]
    Doctype,
    /// The root is an `Envelope`, but in neither SOAP namespace.
    #[error(
        "SOAP Envelope in unknown namespace {found:?}; expected \"http://schemas.xmlsoap.org/soap/envelope/\" (1.1) or \"http://www.w3.org/2003/05/soap-envelope\" (1.2)"
    )]
    VersionMismatch {
        /// The namespace the Envelope was in.
        found: String,
    },
    /// Elements are nested deeper than [`MAX_DEPTH`].
    #[error("XML elements are nested deeper than {limit}")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
}

/// A response envelope taken apart.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedEnvelope {
    /// The version, from the Envelope's namespace.
    pub version: SoapVersion,
    /// The Body's inner XML as it appeared in the response (None for a Fault), made to
    /// stand on its own: each top-level element also declares every namespace binding
    /// that was in scope on the Envelope and Body, so a namespace-aware parser reads it
    /// without the rest of the document.
    pub body: Option<String>,
    /// The Body's first element as `{ "<local name>": value }` (None for a Fault or an
    /// empty Body). A leaf's value is its text; an element with children or attributes
    /// is an object of children by local name (repeated ones as arrays), attributes as
    /// `"@name"`, and a leaf's text as `"#text"` when it also has attributes. Empty
    /// elements and `xsi:nil` ones are null. Mixed text next to children is dropped;
    /// `xsi:*`, `xmlns` and SOAP-envelope attributes (`encodingStyle`) are left out.
    pub result: Option<Value>,
    /// The Fault, when the Body holds one.
    pub fault: Option<SoapFault>,
}

#[cfg(test)]
mod tests;

/// Checks a caller-supplied Body fragment before it is sent: proto's
/// [`check_body`](openmid_proto::soap::xml::check_body), the same check the instance
/// makes at the API door (a Body the instance queued can still come from an older
/// instance or straight through the ECC API).
pub fn check_body_xml(body_xml: &str) -> Result<(), SoapXmlError> {
    openmid_proto::soap::xml::check_body(body_xml).map_err(SoapXmlError::from)
}

impl From<openmid_proto::soap::xml::XmlError> for SoapXmlError {
    fn from(e: openmid_proto::soap::xml::XmlError) -> Self {
        match e {
            openmid_proto::soap::xml::XmlError::Malformed(what) => SoapXmlError::Malformed(what),
            openmid_proto::soap::xml::XmlError::Doctype => SoapXmlError::Doctype,
        }
    }
}
