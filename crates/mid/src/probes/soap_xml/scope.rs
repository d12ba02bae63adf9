//! Namespace scope of the fragments taken out of a response (the Body's content, a
//! Fault's detail), so each stands on its own.
//!
//! A slice of the document keeps prefixes whose declarations stayed outside it: services
//! such as spyne declare every namespace once on the Envelope (`xmlns:tns=…`) and use
//! `tns:` throughout the Body, and a namespace-aware parser then fails on the slice
//! with "unbound prefix". So every binding in scope where the fragment starts is
//! declared again on each top-level element of the fragment that does not declare that
//! prefix itself. All of them, not only the ones the names use: prefixes also appear in
//! content (`xsi:type="tns:Quote"`, a Fault code), where no parser can find them.

use super::SoapXmlError;
use super::parse::Element;
use quick_xml::name::{NamespaceResolver, PrefixDeclaration};
use std::ops::Range;

/// Most bytes of declarations added to one fragment.
pub(super) const MAX_ADDED_BYTES: usize = 16 << 20;

/// One namespace declaration: `xmlns="…"` (no prefix) or `xmlns:prefix="…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Binding {
    /// The prefix; None for the default namespace.
    pub(super) prefix: Option<String>,
    /// The namespace URI as written in the attribute (not unescaped, so it can be
    /// written back as is). Empty: the default namespace undeclared (`xmlns=""`).
    pub(super) namespace: String,
}

/// The bindings in scope at the reader's position, without the predefined `xml` and
/// `xmlns` ones (which must not be declared again).
pub(super) fn in_scope(resolver: &NamespaceResolver) -> Vec<Binding> {
    resolver
        .bindings()
        .map(|(prefix, namespace)| Binding {
            prefix: match prefix {
                PrefixDeclaration::Default => None,
                PrefixDeclaration::Named(name) => Some(name.to_string()),
            },
            namespace: namespace.0.to_string(),
        })
        .collect()
}

/// `scope` with the declarations of an element inside it applied: the scope within
/// that element.
pub(super) fn within(scope: &[Binding], declarations: &[Binding]) -> Vec<Binding> {
    let mut inner: Vec<Binding> = scope
        .iter()
        .filter(|b| !declarations.iter().any(|d| d.prefix == b.prefix))
        .cloned()
        .collect();
    inner.extend(
        declarations
            .iter()
            .filter(|d| !d.namespace.is_empty())
            .cloned(),
    );
    inner
}

/// The namespace a prefix of a QName in content (a Fault code) stands for in `scope`;
/// None when it is not bound. Without a prefix the default namespace applies, as XML
/// Schema's QName type says.
pub(super) fn resolve<'s>(scope: &'s [Binding], prefix: Option<&str>) -> Option<&'s str> {
    scope
        .iter()
        .find(|b| b.prefix.as_deref() == prefix)
        .map(|b| b.namespace.as_str())
        .filter(|ns| !ns.is_empty())
}

/// The fragment `text[inner]` with the bindings of `scope` declared on each of its
/// top-level elements (`top`, in document order, all inside `inner`) that does not
/// declare the prefix itself.
///
/// The declarations added are bounded by [`MAX_ADDED_BYTES`]: they grow with top-level
/// elements × bindings, so a hostile answer (a million `<a/>` under an Envelope with
/// hundreds of long declarations) could otherwise take quadratic memory. Honest
/// answers stay far below it; past it the answer is refused, not cut.
pub(super) fn self_contained(
    text: &str,
    inner: Range<usize>,
    top: &[Element],
    scope: &[Binding],
) -> Result<String, SoapXmlError> {
    let limit = inner.len().saturating_add(MAX_ADDED_BYTES);
    let mut out = String::with_capacity(inner.len());
    let mut copied = inner.start;
    for element in top {
        let Some(before) = text.get(copied..element.name_end) else {
            continue;
        };
        out.push_str(before);
        copied = element.name_end;
        for binding in scope {
            if element
                .declarations
                .iter()
                .any(|d| d.prefix == binding.prefix)
            {
                continue;
            }
            out.push_str(" xmlns");
            if let Some(prefix) = &binding.prefix {
                out.push(':');
                out.push_str(prefix);
            }
            out.push_str("=\"");
            // The value was valid inside its original quotes; only a `"` from a
            // single-quoted value needs escaping inside double quotes.
            out.push_str(&binding.namespace.replace('"', "&quot;"));
            out.push('"');
        }
        if out.len() > limit {
            return Err(SoapXmlError::Malformed(format!(
                "the response's {} top-level elements would each need its {} namespace declarations again, more than {} MiB; refused",
                top.len(),
                scope.len(),
                MAX_ADDED_BYTES >> 20
            )));
        }
    }
    out.push_str(text.get(copied..inner.end).unwrap_or_default());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{SoapXmlError, parse_response};

    #[test]
    fn declarations_added_are_bounded() {
        let declarations: String = (0..100)
            .map(|i| format!(" xmlns:p{i}=\"urn:{}\"", "x".repeat(1000)))
            .collect();
        let many = "<a/>".repeat(200);
        let xml = format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"{declarations}><s:Body>{many}</s:Body></s:Envelope>"
        );
        // 200 elements × 100 KB of declarations: 20 MB, refused.
        assert!(matches!(
            parse_response(xml.as_bytes()),
            Err(SoapXmlError::Malformed(m)) if m.contains("namespace declarations")
        ));
        let few = "<a/>".repeat(100);
        let xml = format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"{declarations}><s:Body>{few}</s:Body></s:Envelope>"
        );
        assert!(parse_response(xml.as_bytes()).is_ok());
    }
}
