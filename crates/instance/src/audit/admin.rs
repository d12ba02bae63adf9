//! What an admin API call is, for the audit log: its action (`thing.verb`) and target,
//! read from the route it matched and the path it named. Reads (GET, HEAD) are not
//! actions and are not recorded.

use axum::http::Method;

/// The thing a route's leading literal segments name.
fn thing(literals: &[&str]) -> Option<(&'static str, usize)> {
    Some(match literals {
        ["discovery", "runs", ..] => ("discovery-run", 2),
        ["discovery", "schedules", ..] => ("discovery-schedule", 2),
        ["metrics", "targets", ..] => ("metric-target", 2),
        ["enrollment-tokens", ..] => ("enroll-token", 1),
        ["mids", ..] => ("mid", 1),
        ["clusters", ..] => ("cluster", 1),
        ["ecc", ..] => ("ecc", 1),
        ["actions", ..] => ("action", 1),
        ["blobs", ..] => ("blob", 1),
        ["credentials", ..] => ("credential", 1),
        ["aliases", ..] => ("alias", 1),
        ["data-sources", ..] => ("data-source", 1),
        ["devices", ..] => ("device", 1),
        ["import-sets", ..] => ("import-set", 1),
        ["audit", ..] => ("audit", 1),
        [first, ..] => return Some((leak_free(first), 1)),
        [] => return None,
    })
}

/// Unknown routes are named "other": the table above covers the admin router, and a
/// name made from a client's path would let it write what it likes into the log.
fn leak_free(_: &str) -> &'static str {
    "other"
}

/// Decodes `%XX` escapes of one path segment (lossy for bytes that are not UTF-8).
fn decoded(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// The action and target of a call: `method` on the route pattern `route`
/// (`/api/v1/mids/{name}/{action}`, as the router matched it) for the request path
/// `path`. `None` for reads.
pub fn describe(method: &Method, route: &str, path: &str) -> Option<(String, Option<String>)> {
    if [Method::GET, Method::HEAD, Method::OPTIONS].contains(method) {
        return None;
    }
    let strip = |s: &str| -> Vec<String> {
        s.strip_prefix("/api/v1")
            .unwrap_or(s)
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let pattern = strip(route);
    let actual = strip(path);
    let literals: Vec<&str> = pattern
        .iter()
        .take_while(|s| !s.starts_with('{'))
        .map(String::as_str)
        .collect();
    let (thing, used) = thing(&literals)?;
    let mut params = Vec::new();
    let mut verb = None;
    for (i, seg) in pattern.iter().enumerate().skip(used) {
        let value = actual.get(i).map(|v| decoded(v)).unwrap_or_default();
        match seg.as_str() {
            // `/mids/{name}/{action}`: the action is the verb.
            "{action}" => verb = Some(value),
            s if s.starts_with('{') => params.push(value),
            literal => verb = Some(literal.to_string()),
        }
    }
    let verb = match (verb, thing) {
        (Some(v), _) => v,
        (None, "action") => "run".into(),
        (None, "ecc") => "insert".into(),
        (None, "blob") => "upload".into(),
        (None, _) if *method == Method::PUT => "put".into(),
        (None, _) if *method == Method::PATCH => "update".into(),
        (None, _) if *method == Method::DELETE => "delete".into(),
        (None, "metric-target") => "put".into(),
        (None, _) => "create".into(),
    };
    // A verb from the path is the client's text: keep it to a name's alphabet.
    let verb: String = verb
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(40)
        .collect();
    let target = (!params.is_empty()).then(|| params.join("/"));
    Some((format!("{thing}.{verb}"), target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(method: Method, route: &str, path: &str) -> Option<(String, Option<String>)> {
        describe(&method, route, path)
    }

    fn named(action: &str, target: Option<&str>) -> Option<(String, Option<String>)> {
        Some((action.to_string(), target.map(str::to_string)))
    }

    #[test]
    fn routes_are_named_as_the_log_shows_them() {
        let v1 = "/api/v1";
        let cases = [
            (
                Method::POST,
                "/mids/{name}/{action}",
                "/mids/m1/validate",
                named("mid.validate", Some("m1")),
            ),
            (
                Method::PUT,
                "/aliases/{name}",
                "/aliases/crm%20api",
                named("alias.put", Some("crm api")),
            ),
            (
                Method::DELETE,
                "/credentials/{name}",
                "/credentials/c1",
                named("credential.delete", Some("c1")),
            ),
            (Method::POST, "/ecc", "/ecc", named("ecc.insert", None)),
            (
                Method::POST,
                "/ecc/{id}/cancel",
                "/ecc/0190/cancel",
                named("ecc.cancel", Some("0190")),
            ),
            (
                Method::POST,
                "/actions/{id}",
                "/actions/rest",
                named("action.run", Some("rest")),
            ),
            (
                Method::POST,
                "/enrollment-tokens",
                "/enrollment-tokens",
                named("enroll-token.create", None),
            ),
            (
                Method::PATCH,
                "/mids/{name}",
                "/mids/m1",
                named("mid.update", Some("m1")),
            ),
            (
                Method::POST,
                "/data-sources/{name}/run",
                "/data-sources/hr/run",
                named("data-source.run", Some("hr")),
            ),
            (
                Method::POST,
                "/discovery/runs",
                "/discovery/runs",
                named("discovery-run.create", None),
            ),
            (
                Method::DELETE,
                "/metrics/targets/{agent}/{name}",
                "/metrics/targets/mid.server.a/node",
                named("metric-target.delete", Some("mid.server.a/node")),
            ),
            (
                Method::POST,
                "/metrics/targets",
                "/metrics/targets",
                named("metric-target.put", None),
            ),
            (Method::GET, "/mids", "/mids", None),
        ];
        for (method, route, path, want) in cases {
            let got = d(method, &format!("{v1}{route}"), &format!("{v1}{path}"));
            assert_eq!(got, want, "{route}");
        }
    }

    #[test]
    fn a_verb_from_the_path_keeps_to_a_names_alphabet() {
        let (action, _) = d(
            Method::POST,
            "/api/v1/mids/{name}/{action}",
            "/api/v1/mids/m1/va%0Alid%22ate",
        )
        .unwrap();
        assert_eq!(action, "mid.validate");
    }
}
