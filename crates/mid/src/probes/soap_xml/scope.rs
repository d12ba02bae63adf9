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

use super::parse::Element;
use quick_xml::name::{NamespaceResolver, PrefixDeclaration};
use std::ops::Range;

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
pub(super) fn self_contained(
    text: &str,
    inner: Range<usize>,
    top: &[Element],
    scope: &[Binding],
) -> String {
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
    }
    out.push_str(text.get(copied..inner.end).unwrap_or_default());
    out
}
