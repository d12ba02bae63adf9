//! Building a request: the Body from an operation and its JSON parameters, and the
//! envelope around it.

use super::names::{is_ncname, is_xml_char};
use super::{ENVELOPE_PREFIX, MAX_DEPTH, SoapXmlError};
use openmid_proto::soap::{ElementForm, SoapVersion};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Builds the Body content `<operation xmlns="namespace">…</operation>` from JSON
/// parameters.
///
/// Each parameter becomes a child element: strings, numbers and booleans its escaped
/// text, null an empty element, an object nested elements, an array the element repeated
/// once per item (an empty array: no element). A key starting with `@` becomes an
/// attribute of the enclosing element; its value must be a string, number or boolean.
/// An empty string and null both come out as an empty element, which
/// [`parse_response`](super::parse_response) reads back as null. Element order follows the map's order.
pub fn operation_body(
    operation: &str,
    namespace: Option<&str>,
    params: &Map<String, Value>,
) -> Result<String, SoapXmlError> {
    operation_body_in_form(operation, namespace, params, ElementForm::Qualified)
}

/// [`operation_body`] with the parameter elements named in `form`: qualified puts the
/// namespace as the default on the operation, so every child is in it; unqualified binds
/// it to the prefix [`OPERATION_PREFIX`] used by the operation alone
/// (`<tns:Op xmlns:tns="…"><a>1</a></tns:Op>`), so the children are in no namespace.
/// Without a namespace both forms are the same.
pub fn operation_body_in_form(
    operation: &str,
    namespace: Option<&str>,
    params: &Map<String, Value>,
    form: ElementForm,
) -> Result<String, SoapXmlError> {
    if !is_ncname(operation) {
        return Err(SoapXmlError::InvalidName {
            field: "operation".into(),
            value: operation.into(),
        });
    }
    // `xmlns=""` would only undeclare a default namespace that is not there.
    let namespace = namespace.filter(|ns| !ns.is_empty());
    if namespace.is_some() && params.contains_key("@xmlns") {
        // Two `xmlns` attributes on one element would be ill-formed, and in the
        // unqualified form a default namespace would qualify the children again.
        return Err(SoapXmlError::Json(
            "params.@xmlns: conflicts with `namespace`; give the namespace once".into(),
        ));
    }
    let name = match (namespace, form) {
        (Some(_), ElementForm::Unqualified) => format!("{OPERATION_PREFIX}:{operation}"),
        _ => operation.to_string(),
    };
    let mut out = String::new();
    out.push('<');
    out.push_str(&name);
    if let Some(ns) = namespace {
        out.push_str(" xmlns");
        if form == ElementForm::Unqualified {
            out.push(':');
            out.push_str(OPERATION_PREFIX);
        }
        out.push_str("=\"");
        push_escaped(&mut out, ns, true).map_err(|c| invalid_char("namespace", c))?;
        out.push('"');
    }
    write_object_rest(&mut out, &name, params, "params", 1)?;
    Ok(out)
}

/// The prefix the unqualified form binds to the operation's namespace (spyne's, and
/// what WSDL tools conventionally call the target namespace).
pub const OPERATION_PREFIX: &str = "tns";

/// Wraps Body content in a SOAP envelope of `version`. `body_xml` is inserted as is:
/// it is the caller's XML (check it first with [`check_body_xml`](super::check_body_xml) if it came from
/// outside). The envelope prefix is `soap`.
pub fn envelope(version: SoapVersion, body_xml: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><{p}:Envelope xmlns:{p}=\"{ns}\"><{p}:Body>{body_xml}</{p}:Body></{p}:Envelope>",
        p = ENVELOPE_PREFIX,
        ns = version.envelope_namespace(),
    )
}

/// Writes one parameter as an element (or, for an array, one element per item).
fn write_element(
    out: &mut String,
    name: &str,
    value: &Value,
    path: &str,
    depth: usize,
) -> Result<(), SoapXmlError> {
    // Values built in code (not parsed) can nest without limit; recursion must not.
    if depth > MAX_DEPTH {
        return Err(SoapXmlError::TooDeep { limit: MAX_DEPTH });
    }
    if !is_ncname(name) {
        return Err(SoapXmlError::InvalidName {
            field: path.into(),
            value: name.into(),
        });
    }
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                if item.is_array() {
                    return Err(SoapXmlError::Json(format!(
                        "{item_path}: an array inside an array has no XML form; wrap the inner array in an object"
                    )));
                }
                write_element(out, name, item, &item_path, depth)?;
            }
        }
        Value::Object(map) => {
            out.push('<');
            out.push_str(name);
            write_object_rest(out, name, map, path, depth)?;
        }
        Value::Null => {
            out.push('<');
            out.push_str(name);
            out.push_str("/>");
        }
        scalar => {
            let text = scalar_text(scalar).unwrap_or_default();
            out.push('<');
            out.push_str(name);
            out.push('>');
            push_escaped(out, &text, false).map_err(|c| invalid_char(path, c))?;
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
    Ok(())
}

/// Finishes an element whose `<name` is already written: its `@` attributes, then its
/// children and end tag (or `/>` when it has none).
fn write_object_rest(
    out: &mut String,
    name: &str,
    map: &Map<String, Value>,
    path: &str,
    depth: usize,
) -> Result<(), SoapXmlError> {
    for (key, value) in map {
        let Some(attribute) = key.strip_prefix('@') else {
            continue;
        };
        let attribute_path = format!("{path}.{key}");
        if !is_ncname(attribute) {
            return Err(SoapXmlError::InvalidName {
                field: attribute_path,
                value: attribute.into(),
            });
        }
        let Some(text) = scalar_text(value) else {
            return Err(SoapXmlError::Json(format!(
                "{attribute_path}: an attribute value must be a string, number or boolean, found {}",
                json_kind(value)
            )));
        };
        out.push(' ');
        out.push_str(attribute);
        out.push_str("=\"");
        push_escaped(out, &text, true).map_err(|c| invalid_char(&attribute_path, c))?;
        out.push('"');
    }
    out.push('>');
    let content_start = out.len();
    for (key, value) in map.iter().filter(|(key, _)| !key.starts_with('@')) {
        write_element(out, key, value, &format!("{path}.{key}"), depth + 1)?;
    }
    // Children may all be empty arrays, so emptiness is only known after writing them.
    if out.len() == content_start {
        out.truncate(content_start - 1);
        out.push_str("/>");
        return Ok(());
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
    Ok(())
}

/// The text of a string, number or boolean; None for null, arrays and objects.
fn scalar_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// How a JSON value is called in messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Appends `text` escaped for element content or a double-quoted attribute value, or
/// returns the first character XML 1.0 cannot carry.
pub(super) fn push_escaped(out: &mut String, text: &str, attribute: bool) -> Result<(), char> {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // A literal CR would be folded into LF by the receiver's end-of-line handling.
            '\r' => out.push_str("&#xD;"),
            // Attribute-value normalisation turns literal tabs and newlines into spaces.
            '\t' if attribute => out.push_str("&#x9;"),
            '\n' if attribute => out.push_str("&#xA;"),
            c if is_xml_char(c) => out.push(c),
            c => return Err(c),
        }
    }
    Ok(())
}

fn invalid_char(path: &str, c: char) -> SoapXmlError {
    SoapXmlError::InvalidChar {
        path: path.into(),
        code: u32::from(c),
    }
}
