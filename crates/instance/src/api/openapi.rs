//! `GET /api/v1/openapi.json`: the API's OpenAPI 3.1 document. The routes of the
//! registry, queue, aliases and blobs are described in `openapi.json` beside this file;
//! every action's entry — `POST /api/v1/actions/{name}`, its body, its result — is
//! generated here from the action table and the types themselves (utoipa's
//! `ToSchema`), so an action added to [`super::actions`] is documented by being added,
//! and a field added to a request type is documented by being added.

use super::actions::{Documented, documented};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

/// The document, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| document().to_string());

/// `GET /api/v1/openapi.json`.
pub(super) async fn serve() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

/// The hand-written part with every action's entry added.
pub fn document() -> Value {
    let mut doc: Value = serde_json::from_str(include_str!("openapi.json")).unwrap_or_else(|e| {
        // The file is part of the build and checked by the tests; a broken one is a
        // build defect, and the answer says so instead of failing every request.
        json!({"openapi": "3.1.0", "info": {"title": "openmid", "version": "", "description": format!("openapi.json does not parse: {e}")}, "paths": {}})
    });
    let actions = documented();
    // What every action's result holds besides its response.
    for (name, schema) in shared_schemas() {
        set(&mut doc, &["components", "schemas", &name], schema);
    }
    let mut results = Vec::new();
    for action in &actions {
        let result = format!("{}ActionResult", capitalized(action.name));
        insert_schemas(&mut doc, action);
        set(
            &mut doc,
            &["components", "schemas", &result],
            action_result(&action.response.0),
        );
        set(
            &mut doc,
            &["paths", &format!("/api/v1/actions/{}", action.name)],
            path_item(action, &result),
        );
        results.push(json!({"$ref": format!("#/components/schemas/{result}")}));
    }
    // Polling answers with whichever action the output was.
    set(
        &mut doc,
        &[
            "paths",
            "/api/v1/actions/{id}",
            "get",
            "responses",
            "200",
            "content",
            "application/json",
            "schema",
        ],
        json!({"anyOf": results}),
    );
    doc
}

fn shared_schemas() -> Vec<(String, Value)> {
    use openmid_proto::api::{ActionPending, ActionTimings};
    use openmid_proto::ecc::State;
    use openmid_proto::sql::TlsMode;
    use openmid_proto::ssh::HostKeyPolicy;
    use utoipa::{PartialSchema, ToSchema};
    // Also the alias fields of ssh and jdbc aliases, which the hand-written `Alias`
    // refers to.
    let mut all = vec![
        (State::name().to_string(), State::schema()),
        (ActionTimings::name().to_string(), ActionTimings::schema()),
        (ActionPending::name().to_string(), ActionPending::schema()),
        (HostKeyPolicy::name().to_string(), HostKeyPolicy::schema()),
        (TlsMode::name().to_string(), TlsMode::schema()),
    ];
    ActionPending::schemas(&mut all);
    all.into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or(Value::Null)))
        .collect()
}

fn insert_schemas(doc: &mut Value, action: &Documented) {
    for (name, schema) in action.body.1.iter().chain(&action.response.1) {
        let value = serde_json::to_value(schema).unwrap_or(Value::Null);
        set(doc, &["components", "schemas", name], value);
    }
}

/// `POST /api/v1/actions/{name}`: every action takes `?wait` and `Idempotency-Key` and
/// answers the same way ([`super::actions::act`]).
fn path_item(action: &Documented, result: &str) -> Value {
    json!({"post": {
        "summary": action.summary,
        "operationId": format!("action_{}", action.name),
        // What its jobs stream while they run (followed at /api/v1/actions/{id}/output).
        "x-openmid-streams": action.streams,
        "tags": ["actions"],
        "parameters": [
            {
                "name": "wait",
                "in": "query",
                "required": false,
                "description": "seconds to wait for the result (default 0; at most max_action_wait_secs, 300 unless configured)",
                "schema": {"type": "number", "minimum": 0, "maximum": 300, "default": 0}
            },
            {"$ref": "#/components/parameters/IdempotencyKey"},
            {"$ref": "#/components/parameters/Traceparent"}
        ],
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", action.body.0)}}}
        },
        "responses": {
            "200": {
                "description": action.finished,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{result}")}}}
            },
            "202": {
                "description": "Not finished within ?wait",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ActionPending"}}}
            },
            "400": {"$ref": "#/components/responses/BadRequest"},
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "413": {"$ref": "#/components/responses/TooLarge"},
            "415": {"$ref": "#/components/responses/NotJson"},
            "422": {"$ref": "#/components/responses/Invalid"},
            "default": {"$ref": "#/components/responses/Error"}
        }
    }})
}

/// `ActionResult<R>` for the response schema `response`.
fn action_result(response: &str) -> Value {
    json!({
        "type": "object",
        "required": ["state", "output_id", "attempt", "timings"],
        "properties": {
            "state": {"$ref": "#/components/schemas/State"},
            "output_id": {"type": "string"},
            "input_id": {"type": ["string", "null"]},
            "mid": {"type": ["string", "null"], "description": "the MID that ran it"},
            "attempt": {"type": "integer"},
            "error": {"type": ["string", "null"], "description": "why it failed, when state is error"},
            "response": {
                "description": "the probe's response; absent when the call itself failed, unless the probe kept what the target answered",
                "oneOf": [{"$ref": format!("#/components/schemas/{response}")}, {"type": "null"}]
            },
            "timings": {"$ref": "#/components/schemas/ActionTimings"}
        }
    })
}

fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Sets `doc[path…]`, making the objects on the way.
fn set(doc: &mut Value, path: &[&str], value: Value) {
    let mut at = doc;
    for key in path {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        at = match at {
            Value::Object(map) => map.entry(key.to_string()).or_insert(Value::Null),
            _ => return,
        };
    }
    *at = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document points at something that exists.
    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 50, "{}", refs.len());
        for r in refs {
            let target = r
                .strip_prefix("#/")
                .map(|p| p.split('/').fold(&doc, |v, k| &v[k]));
            assert!(
                target.is_some_and(|t| !t.is_null()),
                "`{r}` resolves to nothing"
            );
        }
    }

    #[test]
    fn actions_come_from_the_table() {
        let doc = document();
        for name in ["rest", "soap", "command"] {
            let op = &doc["paths"][format!("/api/v1/actions/{name}")]["post"];
            assert!(op["summary"].is_string(), "{name}");
        }
        // A field of a request type is documented because it exists.
        let command = &doc["components"]["schemas"]["CommandAction"]["properties"];
        assert!(command["max_output_bytes"].is_object(), "{command}");
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => out.push(r.clone()),
                        _ => collect_refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
            _ => {}
        }
    }
}
