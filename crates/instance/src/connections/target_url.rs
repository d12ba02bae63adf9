//! Where an action through an alias goes: its path and query joined to the alias's base
//! URL without ever leaving it (a `..` in any spelling is refused, and the result is
//! checked to stay below the base), its headers laid over the alias's, and the WSDL
//! an alias names resolved on its origin.

use super::*;

/// Action headers replace alias headers of the same name, whatever their case.
pub(super) fn overlay_headers(base: &mut BTreeMap<String, String>, over: BTreeMap<String, String>) {
    for (name, value) in over {
        base.retain(|k, _| !k.eq_ignore_ascii_case(&name));
        base.insert(name, value);
    }
}

/// `base_url` + `path` + `query`. The path is appended to the base's path (one `/`
/// between them), never replacing its host: an action cannot leave its alias's target.
pub(super) fn join_url(
    base_url: &str,
    path: Option<&str>,
    query: &BTreeMap<String, String>,
) -> Result<String, DispatchError> {
    let mut url = url::Url::parse(base_url)
        .map_err(|e| invalid("alias", format!("base_url does not parse: {e}")))?;
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        if path.contains("://") || path.starts_with("//") {
            return Err(invalid(
                "path",
                "must be a path below the alias's base URL, not a URL",
            ));
        }
        let (path, extra_query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        if climbs(path) {
            return Err(invalid(
                "path",
                "must not contain `..` segments (in any spelling: percent-encoded, with backslashes)",
            ));
        }
        let joined = format!(
            "{}/{}",
            url.path().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        url.set_path(&joined);
        if let Some(q) = extra_query {
            let existing = url.query().map(str::to_string);
            url.set_query(Some(&match existing {
                Some(e) if !e.is_empty() => format!("{e}&{q}"),
                _ => q.to_string(),
            }));
        }
    }
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            pairs.append_pair(k, v);
        }
    }
    // Whatever the checks above missed, the URL as parsed must still be below the base.
    let base = url::Url::parse(base_url)
        .map_err(|e| invalid("alias", format!("base_url does not parse: {e}")))?;
    if url.origin() != base.origin() || !url.path().starts_with(base.path().trim_end_matches('/')) {
        return Err(invalid("path", "must stay below the alias's base URL"));
    }
    Ok(url.into())
}

/// Whether a path could climb above where it is appended: a `..` segment however it
/// is spelled — percent-encoded (`.%2E`, `%2e.`, doubly encoded `%252e`), or between
/// backslashes, which URL parsers and many servers treat as `/`.
fn climbs(path: &str) -> bool {
    let mut decoded = path.to_string();
    // Each round undoes one layer of encoding; a server that decodes twice sees the
    // second layer, so keep going until nothing changes (bounded: each round shrinks).
    for _ in 0..8 {
        let next = percent_decode(&decoded);
        if next == decoded {
            break;
        }
        decoded = next;
    }
    decoded.split(['/', '\\']).any(|segment| segment == "..")
}

/// One round of `%XX` decoding; anything else is kept as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The alias's WSDL as an absolute URL: `wsdl` resolved against `base_url` (so `?wsdl`
/// is the endpoint's WSDL), and on the same origin, because the MID fetches it with the
/// alias's credential and credentials never leave the alias's host.
pub(super) fn wsdl_url(base_url: &str, wsdl: &str) -> Result<String, DispatchError> {
    let base = url::Url::parse(base_url)
        .map_err(|e| invalid("base_url", format!("does not parse: {e}")))?;
    let url = base
        .join(wsdl)
        .map_err(|e| invalid("wsdl", format!("`{wsdl}` is not a URL or reference: {e}")))?;
    if url.origin() != base.origin() {
        return Err(invalid(
            "wsdl",
            format!(
                "`{wsdl}` is not on the alias's origin ({}): the MID fetches it with the alias's credential",
                base.origin().ascii_serialization()
            ),
        ));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsdls_resolve_against_the_base_and_stay_on_its_origin() {
        assert_eq!(
            wsdl_url("http://h:8/ws/calc", "?wsdl").expect("ok"),
            "http://h:8/ws/calc?wsdl"
        );
        assert_eq!(
            wsdl_url("http://h:8/ws/calc", "/meta/calc.wsdl").expect("ok"),
            "http://h:8/meta/calc.wsdl"
        );
        assert_eq!(
            wsdl_url("http://h:8/ws/calc", "http://h:8/x?wsdl").expect("ok"),
            "http://h:8/x?wsdl"
        );
        for other in [
            "http://evil/x?wsdl",
            "https://h:8/x",
            "http://h:9/x",
            "//evil/x",
        ] {
            assert!(wsdl_url("http://h:8/ws/calc", other).is_err(), "{other}");
        }
    }

    #[test]
    fn paths_stay_below_the_base() {
        let q = BTreeMap::new();
        assert_eq!(
            join_url("http://h:8/api/", Some("/v1/x"), &q).expect("join"),
            "http://h:8/api/v1/x"
        );
        assert_eq!(
            join_url("http://h:8/api", Some("v1?a=1"), &q).expect("join"),
            "http://h:8/api/v1?a=1"
        );
        let mut q = BTreeMap::new();
        q.insert("k".into(), "a b&c".into());
        assert_eq!(
            join_url("http://h/", Some("x"), &q).expect("join"),
            "http://h/x?k=a+b%26c"
        );
        let empty = BTreeMap::new();
        for bad in [
            "http://evil/x",
            "//evil/x",
            "../x",
            "a/../../b",
            ".%2E/.%2E/etc",
            "%2e./%2e./etc",
            "%2E%2E/etc",
            "a/%252e%252e/%252e%252e/etc",
            "..\\..\\etc",
            "a\\..\\..\\etc",
            "%2e%2e%5c%2e%2e%5cetc",
            "a/..%2fb",
        ] {
            assert!(
                join_url("http://h/api", Some(bad), &empty).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn paths_with_dots_that_do_not_climb_are_fine() {
        let q = BTreeMap::new();
        for ok in [
            "v1/file.tar.gz",
            "a/.well-known/x",
            "a/...",
            "a/%2e%2ex",
            "x?y=../z",
        ] {
            let joined = join_url("http://h/api", Some(ok), &q);
            assert!(joined.is_ok(), "{ok}: {joined:?}");
        }
    }

    proptest::proptest! {
        /// However `..` is spelled between other segments, the joined URL never leaves
        /// the base path.
        #[test]
        fn no_spelling_of_dot_dot_leaves_the_base(
            segments in proptest::collection::vec(
                proptest::sample::select(vec![
                    "..", ".%2e", "%2e.", "%2E%2E", "%252e%252e", "x", "y.z", ".", "%2e",
                ]),
                1..6,
            ),
            separators in proptest::collection::vec(
                proptest::sample::select(vec!["/", "\\", "%2f", "%5c", "%5C"]),
                6,
            ),
        ) {
            let mut path = String::new();
            for (i, segment) in segments.iter().enumerate() {
                if i > 0 {
                    path.push_str(separators[i]);
                }
                path.push_str(segment);
            }
            if let Ok(url) = join_url("http://h/api/v1", Some(&path), &BTreeMap::new()) {
                let parsed = url::Url::parse(&url).expect("joined URL parses");
                proptest::prop_assert!(parsed.path().starts_with("/api/v1"), "{} -> {}", path, url);
                proptest::prop_assert!(!climbs(&path), "{} was let through", path);
            }
        }
    }

    #[test]
    fn action_headers_win_case_insensitively() {
        let mut base = BTreeMap::from([("Accept".to_string(), "a".to_string())]);
        overlay_headers(
            &mut base,
            BTreeMap::from([("accept".to_string(), "b".to_string())]),
        );
        assert_eq!(base.len(), 1);
        assert_eq!(base.get("accept").map(String::as_str), Some("b"));
    }
}
