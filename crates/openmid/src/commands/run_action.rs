//! `openmid ctl run NAME --field value …`: any action of the instance, known from its
//! OpenAPI document rather than written out here. The body's fields become flags:
//! `--field value` sets a field (by the schema's type: a number, `true`/`false`, a JSON
//! array or object, or text), a repeated flag of an array field adds an item, a flag
//! of an object field takes `key=value`. `ctl run NAME --help` lists the fields with
//! their descriptions, from the same document. So a new action on the instance has its
//! command line here without a line written for it.

use super::ctl_output::print_json;
use super::rows_output::{RowsFormat, RowsPrinter};
use anyhow::{Result, anyhow, bail};
use openmid_client::{ActionOutcome, ApiClient};
use openmid_proto::ecc::State;
use serde_json::{Map, Value};
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `ctl run NAME` itself; every other flag is a body field.
const OWN_FLAGS: &str = "  --wait SECONDS   wait this long for the result (default 30)
  --follow         print the action's streamed output (stdout, stderr, rows) as it arrives
                   (the default for actions that stream: command, ssh, sql)
  --no-follow      wait for the result instead, and print it as JSON
  --rows FORMAT    how --follow prints rows: table (default) or jsonl
  --body JSON      start from this body (or @FILE); flags then set fields on it
  --json           print the result as one JSON line";

/// The action's flags, parsed.
#[derive(Debug, Default, PartialEq)]
struct Parsed {
    body: Map<String, Value>,
    wait: Option<f64>,
    follow: bool,
    no_follow: bool,
    rows: RowsFormat,
    json: bool,
    help: bool,
}

/// Runs `ctl run NAME ARGS…` (`args[0]` is NAME).
pub async fn run(api: &ApiClient, args: Vec<String>, json: bool) -> Result<ExitCode> {
    let (name, rest) = args
        .split_first()
        .ok_or_else(|| anyhow!("give the action's name"))?;
    let doc = api.openapi().await?;
    let schema = body_schema(&doc, name)?;
    let parsed = parse(&doc, &schema, rest)?;
    if parsed.help {
        print!("{}", help(&doc, name, &schema));
        return Ok(ExitCode::SUCCESS);
    }
    let json = json || parsed.json;
    // An action whose jobs stream is followed unless told otherwise: a person running
    // a command or a query wants to see it come.
    let streams = doc["paths"][format!("/api/v1/actions/{name}")]["post"]["x-openmid-streams"]
        .as_array()
        .is_some_and(|s| !s.is_empty());
    let parsed = Parsed {
        follow: parsed.follow || (streams && !parsed.no_follow && !json),
        ..parsed
    };
    let wait = parsed.wait.unwrap_or(30.0);
    if !(0.0..=3600.0).contains(&wait) {
        bail!("--wait must be 0–3600 seconds");
    }
    let body = Value::Object(parsed.body);
    let first_wait = if parsed.follow { 0.0 } else { wait };
    let outcome: ActionOutcome<Value> = api
        .run_action(name, &body, Duration::from_secs_f64(first_wait))
        .await?;
    let outcome = match outcome {
        ActionOutcome::Pending(p) if parsed.follow => {
            let mut rows = RowsPrinter::new(parsed.rows);
            super::run_command::copy_output(api, &p.output_id, &mut rows).await?;
            api.get_action::<Value>(&p.output_id, Duration::from_secs_f64(wait))
                .await?
        }
        other => other,
    };
    match outcome {
        ActionOutcome::Pending(p) => {
            if json {
                print_json(&p)?;
            } else {
                println!(
                    "{} is {}; poll: openmid ctl ecc get {}",
                    p.output_id, p.state, p.output_id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ActionOutcome::Done(r) => {
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else if parsed.follow {
                // The output was printed as it came; the result would repeat it.
                eprintln!(
                    "[openmid: {} on {} in {} ms{}]",
                    r.state,
                    r.mid.as_deref().unwrap_or("?"),
                    r.timings.total_ms,
                    r.error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            } else {
                print_json(&r)?;
            }
            Ok(if r.state == State::Processed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// The body schema of action `name`, resolved.
fn body_schema(doc: &Value, name: &str) -> Result<Value> {
    let op = &doc["paths"][format!("/api/v1/actions/{name}")]["post"];
    if op.is_null() {
        let names: Vec<&str> = doc["paths"]
            .as_object()
            .map(|p| {
                p.iter()
                    .filter(|(_, item)| item.get("post").is_some())
                    .filter_map(|(k, _)| k.strip_prefix("/api/v1/actions/"))
                    .filter(|k| !k.contains('{'))
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "the instance has no action `{name}`; its actions: {}",
            names.join(", ")
        );
    }
    Ok(resolve(
        doc,
        &op["requestBody"]["content"]["application/json"]["schema"],
    )
    .clone())
}

/// Follows `$ref`s.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let mut at = schema;
    for _ in 0..16 {
        match at["$ref"].as_str().and_then(|r| r.strip_prefix("#/")) {
            Some(path) => at = path.split('/').fold(doc, |v, k| &v[k]),
            None => break,
        }
    }
    at
}

/// The JSON type a property holds (`string` when the schema does not say).
fn kind(doc: &Value, property: &Value) -> String {
    let p = resolve(doc, property);
    let named = |t: &Value| match t {
        Value::String(s) => Some(s.clone()),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .map(str::to_string),
        _ => None,
    };
    if let Some(t) = named(&p["type"]) {
        return t;
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = p[key].as_array() {
            for o in options {
                let t = kind(doc, o);
                if t != "null" {
                    return t;
                }
            }
        }
    }
    "string".into()
}

fn parse(doc: &Value, schema: &Value, args: &[String]) -> Result<Parsed> {
    let props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(flag) = arg.strip_prefix("--") else {
            bail!("`{arg}`: give fields as `--name value` (see --help)");
        };
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (flag, None),
        };
        let value = |i: &mut usize, what: &str| -> Result<String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            let v = args
                .get(*i)
                .ok_or_else(|| anyhow!("--{flag} needs {what}"))?;
            *i += 1;
            Ok(v.clone())
        };
        match flag {
            "help" => out.help = true,
            "follow" => out.follow = true,
            "no-follow" => out.no_follow = true,
            "rows" => {
                out.rows = match value(&mut i, "table or jsonl")?.as_str() {
                    "table" => RowsFormat::Table,
                    "jsonl" => RowsFormat::JsonLines,
                    other => bail!("--rows `{other}`: give table or jsonl"),
                }
            }
            "json" => out.json = true,
            "wait" => {
                let v = value(&mut i, "a number of seconds")?;
                out.wait = Some(
                    v.parse()
                        .map_err(|_| anyhow!("--wait `{v}`: not a number"))?,
                );
            }
            "body" => {
                let v = value(&mut i, "a JSON object or @FILE")?;
                let text = match v.strip_prefix('@') {
                    Some(path) => {
                        std::fs::read_to_string(path).map_err(|e| anyhow!("--body @{path}: {e}"))?
                    }
                    None => v,
                };
                match serde_json::from_str(&text) {
                    Ok(Value::Object(map)) => out.body.extend(map),
                    _ => bail!("--body: not a JSON object"),
                }
            }
            _ => {
                let field = flag.replace('-', "_");
                let Some(property) = props.get(&field) else {
                    let names: Vec<String> = props
                        .keys()
                        .map(|k| format!("--{}", k.replace('_', "-")))
                        .collect();
                    bail!(
                        "--{flag}: the action has no such field; its fields: {}",
                        names.join(" ")
                    );
                };
                let kind = kind(doc, property);
                // A boolean flag may stand alone: `--sudo`.
                let text = if kind == "boolean"
                    && inline.is_none()
                    && args.get(i).is_none_or(|n| n.starts_with("--"))
                {
                    "true".to_string()
                } else {
                    value(&mut i, "a value")?
                };
                set_field(doc, &mut out.body, &field, property, &kind, &text)?;
            }
        }
    }
    Ok(out)
}

fn set_field(
    doc: &Value,
    body: &mut Map<String, Value>,
    field: &str,
    property: &Value,
    kind: &str,
    text: &str,
) -> Result<()> {
    let bad = |what: &str| anyhow!("--{}: `{text}` is not {what}", field.replace('_', "-"));
    match kind {
        "integer" | "number" => {
            let n: serde_json::Number = text.parse().map_err(|_| bad("a number"))?;
            body.insert(field.into(), Value::Number(n));
        }
        "boolean" => {
            let b = match text {
                "true" | "yes" | "1" => true,
                "false" | "no" | "0" => false,
                _ => return Err(bad("true or false")),
            };
            body.insert(field.into(), Value::Bool(b));
        }
        "array" => {
            if text.starts_with('[') {
                let v: Value = serde_json::from_str(text).map_err(|_| bad("a JSON array"))?;
                body.insert(field.into(), v);
            } else {
                let items = resolve(doc, property);
                let item_kind = kind_of_items(doc, items);
                let item = match item_kind.as_str() {
                    "string" => Value::String(text.into()),
                    _ => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into())),
                };
                match body
                    .entry(field.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    Value::Array(a) => a.push(item),
                    other => *other = Value::Array(vec![item]),
                }
            }
        }
        "object" => {
            if text.starts_with('{') {
                let v: Value = serde_json::from_str(text).map_err(|_| bad("a JSON object"))?;
                body.insert(field.into(), v);
            } else {
                let (k, v) = text
                    .split_once('=')
                    .ok_or_else(|| bad("`key=value` or a JSON object"))?;
                match body
                    .entry(field.to_string())
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    Value::Object(m) => {
                        m.insert(k.into(), Value::String(v.into()));
                    }
                    other => *other = serde_json::json!({ k: v }),
                }
            }
        }
        _ => {
            body.insert(field.into(), Value::String(text.into()));
        }
    }
    Ok(())
}

fn kind_of_items(doc: &Value, array: &Value) -> String {
    // Items of no stated type (bound SQL parameters) take JSON when the text is JSON.
    match array.get("items") {
        Some(items)
            if resolve(doc, items)
                .as_object()
                .is_some_and(|o| !o.is_empty()) =>
        {
            kind(doc, items)
        }
        _ => "any".into(),
    }
}

fn help(doc: &Value, name: &str, schema: &Value) -> String {
    let op = &doc["paths"][format!("/api/v1/actions/{name}")]["post"];
    let mut text = format!(
        "{}\n\nUsage: openmid ctl run {name} [--FIELD VALUE]...\n\nFields:\n",
        op["summary"].as_str().unwrap_or(name)
    );
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(props) = schema["properties"].as_object() {
        for (field, p) in props {
            let description = resolve(doc, p)["description"]
                .as_str()
                .or(p["description"].as_str())
                .unwrap_or("")
                .replace('\n', " ");
            let mark = if required.contains(&field.as_str()) {
                " (required)"
            } else {
                ""
            };
            let flag = format!(
                "{} {}",
                field.replace('_', "-"),
                kind(doc, p).to_uppercase()
            );
            text.push_str(&format!("  --{flag:<30} {description}{mark}\n"));
        }
    }
    text.push_str("\nOptions:\n");
    text.push_str(OWN_FLAGS);
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({"paths": {"/api/v1/actions/x": {"post": {"summary": "X",
        "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/XBody"}}}}}}},
        "components": {"schemas": {
            "XBody": {"type": "object", "required": ["alias"], "properties": {
                "alias": {"type": "string"},
                "timeout_ms": {"type": ["integer", "null"]},
                "sudo": {"type": "boolean"},
                "params": {"type": "array", "items": {}},
                "args": {"type": "array", "items": {"type": "string"}},
                "env": {"type": "object"},
                "version": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/V"}]}
            }},
            "V": {"type": "string", "enum": ["1.1", "1.2"]}
        }}})
    }

    fn run(args: &[&str]) -> Result<Parsed> {
        let d = doc();
        let schema = body_schema(&d, "x")?;
        parse(
            &d,
            &schema,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn flags_become_typed_fields() {
        let p = run(&[
            "--alias",
            "web",
            "--timeout-ms",
            "5000",
            "--sudo",
            "--args",
            "-l",
            "--args=007",
            "--params",
            "42",
            "--params",
            "x",
            "--env",
            "A=b",
            "--version",
            "1.2",
            "--wait",
            "3",
        ])
        .expect("parses");
        assert_eq!(
            Value::Object(p.body),
            json!({"alias": "web", "timeout_ms": 5000, "sudo": true, "args": ["-l", "007"],
                   "params": [42, "x"], "env": {"A": "b"}, "version": "1.2"})
        );
        assert_eq!(p.wait, Some(3.0));
    }

    #[test]
    fn mistakes_name_the_flag() {
        for (args, needle) in [
            (vec!["--nope", "1"], "--nope: the action has no such field"),
            (
                vec!["--timeout-ms", "soon"],
                "--timeout-ms: `soon` is not a number",
            ),
            (vec!["--alias"], "--alias needs a value"),
            (vec!["web"], "`web`"),
            (vec!["--env", "novalue"], "--env"),
            (vec!["--body", "[1]"], "--body"),
        ] {
            let e = run(&args).expect_err("refused").to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
        let d = doc();
        let e = body_schema(&d, "y").expect_err("unknown").to_string();
        assert!(e.contains("its actions: x"), "{e}");
    }

    #[test]
    fn help_lists_the_fields() {
        let d = doc();
        let schema = body_schema(&d, "x").expect("schema");
        let h = help(&d, "x", &schema);
        assert!(
            h.contains("--alias STRING") && h.contains("(required)"),
            "{h}"
        );
        assert!(h.contains("--timeout-ms INTEGER"), "{h}");
    }
}
