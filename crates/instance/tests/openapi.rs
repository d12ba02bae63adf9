//! The served OpenAPI document against the server: every operation is called, and
//! every answer's status must be documented for it and its body must match the
//! documented schema — successes, 401 without a token, 400 for a bad path parameter
//! or body, 404, 422. A small validator for the JSON Schema the document uses
//! (`$ref`, `allOf`/`oneOf`/`anyOf`, `type`, `enum`, `properties`, `required`,
//! `additionalProperties`, `items`, numeric and length bounds) keeps it free of
//! dependencies.

use crate::support::{Raw, enrolled_client, instance};
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Where `value` breaks `schema`, or None.
fn violation(doc: &Value, schema: &Value, value: &Value, at: &str) -> Option<String> {
    if let Some(r) = schema["$ref"].as_str() {
        let target = r
            .strip_prefix("#/")
            .map(|p| p.split('/').fold(doc, |v, k| &v[k]))
            .unwrap_or(&Value::Null);
        return violation(doc, target, value, at);
    }
    if let Some(all) = schema["allOf"].as_array()
        && let Some(v) = all.iter().find_map(|s| violation(doc, s, value, at))
    {
        return Some(v);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(any) = schema[key].as_array()
            && any.iter().all(|s| violation(doc, s, value, at).is_some())
        {
            return Some(format!("{at}: matches none of {key}: {value}"));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let type_ok = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    };
    if !types.is_empty() && !types.iter().any(|t| type_ok(t)) {
        return Some(format!("{at}: {value} is not {types:?}"));
    }
    if let Some(options) = schema["enum"].as_array()
        && !value.is_null()
        && !options.contains(value)
    {
        return Some(format!("{at}: {value} is not one of {options:?}"));
    }
    if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64())
        && n < min
    {
        return Some(format!("{at}: {n} < minimum {min}"));
    }
    if let (Some(max), Some(n)) = (schema["maximum"].as_f64(), value.as_f64())
        && n > max
    {
        return Some(format!("{at}: {n} > maximum {max}"));
    }
    if let (Some(max), Some(s)) = (schema["maxLength"].as_u64(), value.as_str())
        && s.chars().count() as u64 > max
    {
        return Some(format!("{at}: longer than {max}"));
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            if let Some(name) = required.as_str()
                && !object.contains_key(name)
            {
                return Some(format!("{at}: required `{name}` missing"));
            }
        }
        let properties = schema["properties"].as_object();
        for (key, v) in object {
            let here = format!("{at}.{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(s) => {
                    if let Some(e) = violation(doc, s, v, &here) {
                        return Some(e);
                    }
                }
                None => match &schema["additionalProperties"] {
                    Value::Bool(false) => return Some(format!("{here}: not allowed")),
                    s @ Value::Object(_) => {
                        if let Some(e) = violation(doc, s, v, &here) {
                            return Some(e);
                        }
                    }
                    _ => {}
                },
            }
        }
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            if let Some(e) = violation(doc, &schema["items"], item, &format!("{at}[{i}]")) {
                return Some(e);
            }
        }
    }
    None
}

/// The documented answer of `status` for an operation (following a `$ref` to
/// components/responses), or None when the status is not documented explicitly.
fn documented<'a>(doc: &'a Value, op: &'a Value, status: u16) -> Option<&'a Value> {
    let answer = op["responses"].get(status.to_string())?;
    match answer["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next()?;
            doc["components"]["responses"].get(name)
        }
        None => Some(answer),
    }
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    let doc = raw
        .send("GET", "/api/v1/openapi.json", None, None, Vec::new())
        .await
        .body;
    let _mid = enrolled_client(&instance, "mid-a", true).await;
    let _pending = enrolled_client(&instance, "mid-b", false).await;
    let blob = raw
        .send(
            "POST",
            "/api/v1/blobs",
            Some(""),
            Some("application/octet-stream"),
            vec![1u8; 10],
        )
        .await;
    let output = raw
        .admin(
            "POST",
            "/api/v1/ecc",
            json!({"agent": "mid.server.mid-a", "topic": "RESTProbe",
                   "payload": {"url": "http://127.0.0.1:9/"}}),
        )
        .await;
    let output_id = output.body["id"].as_str().unwrap_or_default().to_string();
    let blob_id = blob.body["id"].as_str().unwrap_or_default().to_string();
    let alias = json!({"name": "crm", "kind": "http", "base_url": "http://127.0.0.1:9/api",
                       "credential": "crm-svc", "timeout_ms": 5000,
                       "execution": {"mid": "mid-a"}});
    let credential = json!({"name": "crm-svc", "description": "service account", "type": "basic",
                            "username": "svc", "password": "pw"});
    let cluster = json!({"name": "dc1", "kind": "failover", "members": ["mid-a", "mid-b"]});
    // An import set to read: a file source run once before the calls.
    let file_source = |name: &str| {
        json!({"name": name, "kind": "file", "agent": "mid.server.mid-a",
               "read": {"path": "/srv/imports/hosts.csv", "format": {"type": "csv"}}})
    };
    let created = raw
        .admin("POST", "/api/v1/data-sources", file_source("users"))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let run = raw
        .send(
            "POST",
            "/api/v1/data-sources/users/run",
            Some(""),
            None,
            Vec::new(),
        )
        .await;
    let set_id = run.body["id"].as_str().unwrap_or_default().to_string();
    // (method, documented path, concrete path, body): in an order that makes each work.
    let calls: Vec<(&str, &str, String, Option<Value>)> = vec![
        (
            "GET",
            "/api/v1/openapi.json",
            "/api/v1/openapi.json".into(),
            None,
        ),
        (
            "POST",
            "/api/v1/enrollment-tokens",
            "/api/v1/enrollment-tokens".into(),
            Some(json!({"ttl_secs": 60, "note": "for dc1"})),
        ),
        ("GET", "/api/v1/mids", "/api/v1/mids".into(), None),
        (
            "GET",
            "/api/v1/mids/{name}",
            "/api/v1/mids/mid-a".into(),
            None,
        ),
        (
            "PATCH",
            "/api/v1/mids/{name}",
            "/api/v1/mids/mid-a".into(),
            Some(json!({"capabilities": ["REST"]})),
        ),
        (
            "GET",
            "/api/v1/mids/{name}/history",
            "/api/v1/mids/mid-a/history".into(),
            None,
        ),
        (
            "POST",
            "/api/v1/mids/{name}/{action}",
            "/api/v1/mids/mid-a/pause".into(),
            None,
        ),
        (
            "POST",
            "/api/v1/mids/{name}/{action}",
            "/api/v1/mids/mid-a/resume".into(),
            None,
        ),
        (
            "POST",
            "/api/v1/clusters",
            "/api/v1/clusters".into(),
            Some(cluster.clone()),
        ),
        ("GET", "/api/v1/clusters", "/api/v1/clusters".into(), None),
        (
            "GET",
            "/api/v1/clusters/{name}",
            "/api/v1/clusters/dc1".into(),
            None,
        ),
        (
            "PUT",
            "/api/v1/clusters/{name}",
            "/api/v1/clusters/dc1".into(),
            Some(cluster),
        ),
        (
            "POST",
            "/api/v1/credentials",
            "/api/v1/credentials".into(),
            Some(credential.clone()),
        ),
        (
            "GET",
            "/api/v1/credentials",
            "/api/v1/credentials".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/credentials/{name}",
            "/api/v1/credentials/crm-svc".into(),
            None,
        ),
        (
            "PUT",
            "/api/v1/credentials/{name}",
            "/api/v1/credentials/crm-svc".into(),
            Some(credential),
        ),
        (
            "POST",
            "/api/v1/aliases",
            "/api/v1/aliases".into(),
            Some(alias.clone()),
        ),
        (
            "POST",
            "/api/v1/aliases",
            "/api/v1/aliases".into(),
            Some(
                json!({"name": "billing", "kind": "soap", "base_url": "http://127.0.0.1:9/ws",
                        "soap_version": "1.1", "execution": {"mid": "mid-a"}}),
            ),
        ),
        (
            "POST",
            "/api/v1/credentials",
            "/api/v1/credentials".into(),
            Some(
                json!({"name": "deploy", "type": "ssh_password", "username": "deploy", "password": "pw-1"}),
            ),
        ),
        (
            "POST",
            "/api/v1/credentials",
            "/api/v1/credentials".into(),
            Some(
                json!({"name": "reader", "type": "database", "username": "reader", "password": "pw-2"}),
            ),
        ),
        (
            "POST",
            "/api/v1/aliases",
            "/api/v1/aliases".into(),
            Some(
                json!({"name": "web1", "kind": "ssh", "base_url": "ssh://127.0.0.1:9",
                        "credential": "deploy", "host_key": {"mode": "trust_on_first_use"},
                        "pool_size": 2, "execution": {"mid": "mid-a"}}),
            ),
        ),
        (
            "POST",
            "/api/v1/aliases",
            "/api/v1/aliases".into(),
            Some(
                json!({"name": "inv", "kind": "jdbc", "base_url": "postgres://127.0.0.1:9/inventory",
                        "credential": "reader", "tls": "verify_full",
                        "options": {"application_name": "openmid"}, "execution": {"mid": "mid-a"}}),
            ),
        ),
        (
            "POST",
            "/api/v1/credentials",
            "/api/v1/credentials".into(),
            Some(
                json!({"name": "dir-bind", "type": "ldap_bind", "bind_dn": "cn=svc,dc=example,dc=com", "password": "pw-3"}),
            ),
        ),
        (
            "POST",
            "/api/v1/aliases",
            "/api/v1/aliases".into(),
            Some(
                json!({"name": "dir", "kind": "ldap", "base_url": "ldap://127.0.0.1:9/dc=example,dc=com",
                        "credential": "dir-bind", "tls": "verify_full", "execution": {"mid": "mid-a"}}),
            ),
        ),
        ("GET", "/api/v1/aliases", "/api/v1/aliases".into(), None),
        (
            "GET",
            "/api/v1/aliases/{name}",
            "/api/v1/aliases/crm".into(),
            None,
        ),
        (
            "PUT",
            "/api/v1/aliases/{name}",
            "/api/v1/aliases/crm".into(),
            Some(alias),
        ),
        (
            "POST",
            "/api/v1/ecc",
            "/api/v1/ecc".into(),
            Some(json!({"agent": "mid.server.mid-a", "topic": "RESTProbe",
                        "payload": {"url": "http://127.0.0.1:9/"}, "correlator": "c-1"})),
        ),
        ("GET", "/api/v1/ecc", "/api/v1/ecc?limit=10".into(), None),
        (
            "GET",
            "/api/v1/ecc/{id}",
            format!("/api/v1/ecc/{output_id}"),
            None,
        ),
        (
            "POST",
            "/api/v1/actions/rest",
            "/api/v1/actions/rest?wait=0".into(),
            Some(json!({"alias": "crm", "path": "/x"})),
        ),
        (
            "POST",
            "/api/v1/actions/soap",
            "/api/v1/actions/soap?wait=0".into(),
            Some(json!({"alias": "billing", "operation": "Ping", "namespace": "urn:x"})),
        ),
        (
            "POST",
            "/api/v1/actions/command",
            "/api/v1/actions/command?wait=0".into(),
            Some(json!({"mid": "mid-a", "program": "/bin/echo", "args": ["hi"]})),
        ),
        (
            "POST",
            "/api/v1/actions/ssh",
            "/api/v1/actions/ssh?wait=0".into(),
            Some(json!({"alias": "web1", "command": "uptime"})),
        ),
        (
            "POST",
            "/api/v1/actions/sql",
            "/api/v1/actions/sql?wait=0".into(),
            Some(
                json!({"alias": "inv", "statement": "SELECT $1::int", "params": [1], "page_rows": 100}),
            ),
        ),
        (
            "POST",
            "/api/v1/actions/ldap",
            "/api/v1/actions/ldap?wait=0".into(),
            Some(
                json!({"alias": "dir", "filter": "(uid=a*)", "attributes": ["cn", "mail"], "page_size": 200}),
            ),
        ),
        (
            "POST",
            "/api/v1/actions/file_import",
            "/api/v1/actions/file_import?wait=0".into(),
            Some(
                json!({"path": "/srv/imports/hosts.csv", "agent": "mid.server.mid-a", "format": {"type": "csv"}}),
            ),
        ),
        (
            "POST",
            "/api/v1/credentials",
            "/api/v1/credentials".into(),
            Some(json!({"name": "snmp-ro", "type": "snmp_community", "community": "c0mm"})),
        ),
        (
            "POST",
            "/api/v1/aliases",
            "/api/v1/aliases".into(),
            Some(
                json!({"name": "sw1", "kind": "snmp", "base_url": "snmp://127.0.0.1:9",
                        "credential": "snmp-ro", "execution": {"mid": "mid-a"}}),
            ),
        ),
        (
            "POST",
            "/api/v1/actions/snmp",
            "/api/v1/actions/snmp?wait=0".into(),
            Some(json!({"alias": "sw1", "operation": {"op": "walk", "oid": "1.3.6.1.2.1.1"}})),
        ),
        (
            "POST",
            "/api/v1/discovery/runs",
            "/api/v1/discovery/runs".into(),
            Some(
                json!({"agent": "mid.server.mid-a", "targets": ["198.18.0.0/30"], "ports": [22, "80-81"]}),
            ),
        ),
        (
            "GET",
            "/api/v1/discovery/runs",
            "/api/v1/discovery/runs?limit=5".into(),
            None,
        ),
        (
            "POST",
            "/api/v1/discovery/schedules",
            "/api/v1/discovery/schedules".into(),
            Some(
                json!({"name": "dc-east", "run": {"agent": "mid.server.mid-a", "targets": ["198.18.0.0/30"],
                        "snmp_aliases": ["sw1"], "chunk_size": 2},
                        "schedule": {"cron": "0 3 * * *", "time_zone": "Europe/Paris"}}),
            ),
        ),
        (
            "PUT",
            "/api/v1/discovery/schedules/{name}",
            "/api/v1/discovery/schedules/dc-east".into(),
            Some(
                json!({"name": "dc-east", "run": {"agent": "mid.server.mid-a", "targets": ["198.18.0.0/30"]},
                        "schedule": {"every": "6h"}, "enabled": false}),
            ),
        ),
        (
            "GET",
            "/api/v1/discovery/schedules",
            "/api/v1/discovery/schedules".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/discovery/schedules/{name}",
            "/api/v1/discovery/schedules/dc-east".into(),
            None,
        ),
        (
            "POST",
            "/api/v1/discovery/schedules/{name}/run",
            "/api/v1/discovery/schedules/dc-east/run".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/discovery/runs",
            "/api/v1/discovery/runs?schedule=dc-east&limit=5".into(),
            None,
        ),
        (
            "DELETE",
            "/api/v1/discovery/schedules/{name}",
            "/api/v1/discovery/schedules/dc-east".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/devices",
            "/api/v1/devices?class=linux_server&limit=10".into(),
            None,
        ),
        (
            "POST",
            "/api/v1/actions/ping",
            "/api/v1/actions/ping?wait=0".into(),
            Some(json!({"agent": "mid.server.mid-a", "targets": ["198.18.0.0/30"], "count": 2})),
        ),
        (
            "POST",
            "/api/v1/actions/scan",
            "/api/v1/actions/scan?wait=0".into(),
            Some(
                json!({"agent": "mid.server.mid-a", "targets": ["198.18.0.10-198.18.0.20"], "ports": [22, "80-81"], "rate_per_sec": 100}),
            ),
        ),
        (
            "POST",
            "/api/v1/data-sources",
            "/api/v1/data-sources".into(),
            Some(
                json!({"name": "people", "kind": "ldap", "marker": "modifyTimestamp",
                        "read": {"alias": "dir", "filter": "(objectClass=inetOrgPerson)"},
                        "schedule": {"cron": "0 2 * * *", "time_zone": "Europe/Paris"}}),
            ),
        ),
        (
            "PUT",
            "/api/v1/data-sources/{name}",
            "/api/v1/data-sources/people".into(),
            Some(
                json!({"name": "people", "kind": "ldap", "marker": "modifyTimestamp",
                        "read": {"alias": "dir", "filter": "(objectClass=inetOrgPerson)"},
                        "schedule": {"every": "6h"}, "retention_days": 7}),
            ),
        ),
        (
            "GET",
            "/api/v1/data-sources",
            "/api/v1/data-sources".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/data-sources/{name}",
            "/api/v1/data-sources/people".into(),
            None,
        ),
        (
            "POST",
            "/api/v1/data-sources/{name}/run",
            "/api/v1/data-sources/people/run".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/import-sets",
            "/api/v1/import-sets?source=users&limit=10".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/import-sets/{id}",
            format!("/api/v1/import-sets/{set_id}"),
            None,
        ),
        (
            "GET",
            "/api/v1/import-sets/{id}/rows",
            format!("/api/v1/import-sets/{set_id}/rows?after=0&limit=10"),
            None,
        ),
        (
            "GET",
            "/api/v1/import-sets/{id}/errors",
            format!("/api/v1/import-sets/{set_id}/errors"),
            None,
        ),
        (
            "GET",
            "/api/v1/import-sets/{id}/download",
            format!("/api/v1/import-sets/{set_id}/download?format=jsonl"),
            None,
        ),
        (
            "DELETE",
            "/api/v1/data-sources/{name}",
            "/api/v1/data-sources/people".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/actions/{id}",
            format!("/api/v1/actions/{output_id}?wait=0"),
            None,
        ),
        (
            "GET",
            "/api/v1/actions/{id}/output",
            format!("/api/v1/actions/{output_id}/output"),
            None,
        ),
        (
            "POST",
            "/api/v1/ecc/{id}/cancel",
            format!("/api/v1/ecc/{output_id}/cancel"),
            None,
        ),
        (
            "GET",
            "/api/v1/blobs/{id}",
            format!("/api/v1/blobs/{blob_id}"),
            None,
        ),
        (
            "POST",
            "/api/v1/metrics/targets",
            "/api/v1/metrics/targets".into(),
            Some(
                json!({"agent": "mid.server.mid-a", "name": "node", "url": "http://198.18.0.5:9100/metrics",
                        "interval_ms": 15000, "labels": {"team": "core"}}),
            ),
        ),
        (
            "GET",
            "/api/v1/metrics/targets",
            "/api/v1/metrics/targets?agent=mid.server.mid-a".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/metrics/targets/{agent}/{name}",
            "/api/v1/metrics/targets/mid.server.mid-a/node".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/metrics/query_range",
            "/api/v1/metrics/query_range?query=up%7Bjob%3D%22node%22%7D&start=2026-01-01T00:00:00Z&end=1767225660&step=15s".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/metrics/query",
            "/api/v1/metrics/query?query=up%5B5m%5D".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/metrics/series",
            "/api/v1/metrics/series?match%5B%5D=up".into(),
            None,
        ),
        (
            "GET",
            "/api/v1/audit",
            "/api/v1/audit?action=alias.*&limit=5".into(),
            None,
        ),
        (
            "DELETE",
            "/api/v1/metrics/targets/{agent}/{name}",
            "/api/v1/metrics/targets/mid.server.mid-a/node".into(),
            None,
        ),
        (
            "DELETE",
            "/api/v1/aliases/{name}",
            "/api/v1/aliases/crm".into(),
            None,
        ),
        (
            "DELETE",
            "/api/v1/credentials/{name}",
            "/api/v1/credentials/crm-svc".into(),
            None,
        ),
        (
            "DELETE",
            "/api/v1/clusters/{name}",
            "/api/v1/clusters/dc1".into(),
            None,
        ),
        (
            "POST",
            "/api/v1/mids/{name}/{action}",
            "/api/v1/mids/mid-b/invalidate".into(),
            None,
        ),
        (
            "DELETE",
            "/api/v1/mids/{name}",
            "/api/v1/mids/mid-b".into(),
            None,
        ),
    ];
    let mut problems = Vec::new();
    let mut check = |what: String, op: &Value, status: u16, body: &Value| {
        let Some(answer) = documented(&doc, op, status) else {
            problems.push(format!("{what}: {status} is not documented ({body})"));
            return;
        };
        let schema = &answer["content"]["application/json"]["schema"];
        if schema.is_object()
            && let Some(v) = violation(&doc, schema, body, "body")
        {
            problems.push(format!("{what} {status}: {v}"));
        }
    };
    let mut called = BTreeSet::new();
    for (method, template, path, request) in &calls {
        let op = &doc["paths"][template][method.to_lowercase()];
        assert!(op.is_object(), "{method} {template} is documented");
        called.insert(format!("{} {template}", method.to_lowercase()));
        let a = match request {
            Some(b) => raw.admin(method, path, b.clone()).await,
            None => raw.send(method, path, Some(""), None, Vec::new()).await,
        };
        assert!(a.status < 300, "{method} {path}: {} {:?}", a.status, a.body);
        let body = if a.status == 204 { Value::Null } else { a.body };
        if a.status != 204 && !path.starts_with("/api/v1/blobs/") && !path.contains("/download") {
            check(format!("{method} {path}"), op, a.status, &body);
        }
        if *template == "/api/v1/openapi.json" {
            continue;
        }
        // Refusals every operation can give, each documented with its shape.
        let unauthorized = raw
            .send(method, path, None, Some("application/json"), "{}")
            .await;
        check(
            format!("{method} {path} without a token"),
            op,
            unauthorized.status,
            &unauthorized.body,
        );
        if template.contains('{') {
            let bad = template
                .split('/')
                .map(|s| if s.starts_with('{') { "%FF" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let a = raw
                .send(method, &bad, Some(""), Some("application/json"), "{}")
                .await;
            check(format!("{method} {bad}"), op, a.status, &a.body);
        }
        if request.is_some() {
            let a = raw
                .send(
                    method,
                    path,
                    Some(""),
                    Some("application/json"),
                    "{not json",
                )
                .await;
            check(
                format!("{method} {path} with bad JSON"),
                op,
                a.status,
                &a.body,
            );
            let a = raw
                .send(method, path, Some(""), Some("application/json"), "[1]")
                .await;
            check(
                format!("{method} {path} with a wrong shape"),
                op,
                a.status,
                &a.body,
            );
        }
    }
    let a = raw.get("/api/v1/ecc?limit=0").await;
    check(
        "GET /api/v1/ecc?limit=0".into(),
        &doc["paths"]["/api/v1/ecc"]["get"],
        a.status,
        &a.body,
    );
    let a = raw.get("/api/v1/mids/nobody").await;
    check(
        "GET /api/v1/mids/nobody".into(),
        &doc["paths"]["/api/v1/mids/{name}"]["get"],
        a.status,
        &a.body,
    );
    let a = raw
        .send("POST", "/api/v1/blobs", Some(""), None, Vec::new())
        .await;
    check(
        "POST /api/v1/blobs empty".into(),
        &doc["paths"]["/api/v1/blobs"]["post"],
        a.status,
        &a.body,
    );

    let documented_ops: BTreeSet<String> = doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .map(move |(method, _)| format!("{method} {path}"))
        })
        .filter(|op| op != "post /api/v1/blobs" && !op.starts_with("parameters "))
        .collect();
    // A run and a device that do not exist: documented 404s (the runs this instance
    // has never reach a MID that could file a device).
    let runs = raw.get("/api/v1/discovery/runs").await;
    let run_id = runs.body[0]["id"].as_str().unwrap_or_default().to_string();
    let a = raw.get(&format!("/api/v1/discovery/runs/{run_id}")).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    check(
        "GET /api/v1/discovery/runs/{id}".into(),
        &doc["paths"]["/api/v1/discovery/runs/{id}"]["get"],
        a.status,
        &a.body,
    );
    called.insert("get /api/v1/discovery/runs/{id}".into());
    // A schedule's run while its last one still runs: a documented 409.
    let a = raw
        .admin(
            "POST",
            "/api/v1/discovery/schedules",
            json!({"name": "busy", "run": {"agent": "mid.server.mid-a", "targets": ["198.18.0.0/30"]},
                    "schedule": {"every": "1h"}}),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let first = raw
        .send(
            "POST",
            "/api/v1/discovery/schedules/busy/run",
            Some(""),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let again = raw
        .send(
            "POST",
            "/api/v1/discovery/schedules/busy/run",
            Some(""),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    check(
        "POST /api/v1/discovery/schedules/{name}/run while running".into(),
        &doc["paths"]["/api/v1/discovery/schedules/{name}/run"]["post"],
        again.status,
        &again.body,
    );
    let a = raw
        .admin(
            "POST",
            "/api/v1/discovery/schedules",
            json!({"name": "bad", "run": {"agent": "mid.server.mid-a", "targets": ["198.18.0.0/30"],
                    "snmp_aliases": ["nope"]}, "schedule": {"cron": "61 * * * *"}}),
        )
        .await;
    assert_eq!(a.status, 422, "{:?}", a.body);
    check(
        "POST /api/v1/discovery/schedules bad".into(),
        &doc["paths"]["/api/v1/discovery/schedules"]["post"],
        a.status,
        &a.body,
    );
    let a = raw.get("/api/v1/devices/198.18.0.99").await;
    assert_eq!(a.status, 404, "{:?}", a.body);
    check(
        "GET /api/v1/devices/{id}".into(),
        &doc["paths"]["/api/v1/devices/{id}"]["get"],
        a.status,
        &a.body,
    );
    called.insert("get /api/v1/devices/{id}".into());
    let a = raw.get("/api/v1/nodes").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    check(
        "GET /api/v1/nodes".into(),
        &doc["paths"]["/api/v1/nodes"]["get"],
        a.status,
        &a.body,
    );
    called.insert("get /api/v1/nodes".into());
    let missed: Vec<_> = documented_ops.difference(&called).collect();
    assert!(
        missed.is_empty(),
        "operations the test does not call: {missed:?}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
