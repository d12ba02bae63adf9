//! `openmid ctl credentials …` and `ctl run soap` (aliases: [`super::ctl_aliases`]).
//! Secret values are never taken as arguments (they
//! would land in shell history and `ps`): `--secret FIELD` reads the value from stdin.

use anyhow::{Context, Result, anyhow};
use openmid_client::{ActionOutcome, ApiClient};
use openmid_proto::alias::CredentialInfo;
use openmid_proto::api::{NewCredential, SoapAction};
use openmid_proto::soap::{ElementForm, SoapVersion};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::ctl_output::{print_json, table};

/// `ctl credentials`.
#[derive(clap::Subcommand)]
pub enum CredentialsCommand {
    /// List credentials (secrets shown as ***).
    List,
    /// Show one credential (secrets shown as ***).
    Show {
        /// Credential name.
        name: String,
    },
    /// Create a credential: `--type basic --set username=svc --secret password`
    /// (the password is read from stdin), or `--from-json FILE` (`-` for stdin).
    Create(CredentialFields),
    /// Change a credential; secrets not given keep their stored values.
    Update(CredentialFields),
    /// Delete a credential no alias uses.
    Delete {
        /// Credential name.
        name: String,
    },
}

/// The fields of `credentials create` and `update`.
#[derive(clap::Args)]
pub struct CredentialFields {
    /// Credential name.
    name: String,
    /// basic, api_key, bearer, oauth2_client_credentials, client_certificate,
    /// ssh_password, ssh_key, database, ldap_bind, snmp_community, snmp_v3.
    #[arg(long = "type")]
    kind: Option<String>,
    /// A non-secret field, `key=value` (repeatable), e.g. `username=svc`.
    #[arg(long = "set")]
    sets: Vec<String>,
    /// A non-secret field read from a file, `key=PATH` (e.g. certificate_pem=cert.pem).
    #[arg(long = "set-file")]
    set_files: Vec<String>,
    /// A secret field whose value is read from stdin, one line per `--secret` in order.
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// A secret field whose value is a whole file read here and stored (e.g.
    /// `private_key_pem=key.pem`).
    #[arg(long = "secret-file")]
    secret_files: Vec<String>,
    /// A secret the MID resolves itself: `field=env:NAME` or `field=file:/path`.
    #[arg(long = "local")]
    locals: Vec<String>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
    /// The whole body as JSON (`-`: stdin); other flags then must not be given.
    #[arg(long, conflicts_with_all = ["kind", "sets", "secrets", "locals", "set_files", "secret_files"])]
    from_json: Option<PathBuf>,
}

/// `ctl run soap`.
#[derive(clap::Args)]
pub struct SoapRun {
    /// The soap alias.
    #[arg(long)]
    alias: String,
    /// Path below the alias's base URL.
    #[arg(long)]
    path: Option<String>,
    /// Operation element name (the MID builds the Body).
    #[arg(
        long,
        required_unless_present = "body_file",
        conflicts_with = "body_file"
    )]
    operation: Option<String>,
    /// Namespace of the operation element.
    #[arg(long)]
    namespace: Option<String>,
    /// Operation parameter `name=value` (repeatable).
    #[arg(long = "param")]
    params: Vec<String>,
    /// `unqualified`: parameter elements in no namespace (`<tns:Op><a>1</a></tns:Op>`),
    /// for schemas with `elementFormDefault="unqualified"` (default: qualified).
    #[arg(long, value_parser = ["qualified", "unqualified"])]
    element_form: Option<String>,
    /// File holding the Body's XML (`-`: stdin).
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// SOAP action.
    #[arg(long)]
    soap_action: Option<String>,
    /// 1.1 or 1.2 (default: the alias's).
    #[arg(long, value_parser = ["1.1", "1.2"])]
    version: Option<String>,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 30.0)]
    wait: f64,
}

pub(super) fn read_source(path: &PathBuf) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("reading stdin")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

fn key_value<'a>(flag: &str, s: &'a str) -> Result<(&'a str, &'a str)> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| anyhow!("{flag} `{s}`: expected `field=value`"))
}

/// Builds a credential body from the flags over `base` (on update: the current
/// credential as shown, so fields not given stay, and stored secrets go back as `***`,
/// which keeps them). Secrets come from stdin or files, never from arguments.
fn credential_body(
    f: &CredentialFields,
    base: serde_json::Map<String, serde_json::Value>,
) -> Result<NewCredential> {
    let mut body = base;
    if let Some(path) = &f.from_json {
        let value: serde_json::Value =
            serde_json::from_str(&read_source(path)?).context("--from-json: not valid JSON")?;
        body = value
            .as_object()
            .cloned()
            .ok_or_else(|| anyhow!("--from-json: must be a JSON object"))?;
    } else {
        match &f.kind {
            Some(kind) => {
                if body.get("type").and_then(|t| t.as_str()) != Some(kind.as_str()) {
                    // Another type: none of the old fields carries over.
                    body.retain(|k, _| k == "description");
                }
                body.insert("type".into(), kind.clone().into());
            }
            None if body.contains_key("type") => {}
            None => return Err(anyhow!("--type is required (or give --from-json)")),
        }
        for s in &f.sets {
            let (k, v) = key_value("--set", s)?;
            body.insert(k.into(), v.into());
        }
        for s in &f.set_files {
            let (k, path) = key_value("--set-file", s)?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--set-file {k}: reading {path}"))?;
            body.insert(k.into(), text.into());
        }
        for s in &f.secret_files {
            let (k, path) = key_value("--secret-file", s)?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--secret-file {k}: reading {path}"))?;
            body.insert(k.into(), text.into());
        }
        let stdin = std::io::stdin();
        let interactive = std::io::IsTerminal::is_terminal(&stdin);
        let mut lines = stdin.lock().lines();
        for field in &f.secrets {
            if interactive {
                eprint!("{field} (input is shown; prefer piping it in): ");
            }
            let line = lines
                .next()
                .ok_or_else(|| anyhow!("--secret {field}: stdin ended before its value"))?
                .with_context(|| format!("--secret {field}: reading stdin"))?;
            body.insert(field.clone(), line.trim_end_matches('\r').into());
        }
        for s in &f.locals {
            let (k, v) = key_value("--local", s)?;
            let local = match v.split_once(':') {
                Some(("env", name)) => serde_json::json!({ "env": name }),
                Some(("file", path)) => serde_json::json!({ "file": path }),
                _ => return Err(anyhow!("--local {k}: expected `env:NAME` or `file:/path`")),
            };
            body.insert(k.into(), local);
        }
    }
    body.remove("name");
    let kept = body
        .remove("description")
        .and_then(|d| d.as_str().map(str::to_string));
    let description = f.description.clone().or(kept);
    let name = f.name.clone();
    let spec = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| anyhow!("credential fields: {e}"))?;
    Ok(NewCredential {
        name,
        description,
        spec,
    })
}

fn print_credential(c: &CredentialInfo) -> Result<()> {
    let mut t = table(&["field", "value"]);
    t.add_row(vec!["name".to_string(), c.name.clone()]);
    t.add_row(vec!["id".to_string(), c.id.clone()]);
    if let Some(d) = &c.description {
        t.add_row(vec!["description".to_string(), d.clone()]);
    }
    if let serde_json::Value::Object(fields) = serde_json::to_value(&c.spec)? {
        for (k, v) in fields {
            let shown = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            t.add_row(vec![k, shown]);
        }
    }
    t.add_row(vec!["used by".to_string(), c.used_by.join(", ")]);
    t.add_row(vec!["updated".to_string(), c.updated_at.clone()]);
    println!("{t}");
    Ok(())
}

/// Runs `ctl credentials …`.
pub async fn credentials(api: &ApiClient, cmd: CredentialsCommand, json: bool) -> Result<()> {
    match cmd {
        CredentialsCommand::List => {
            let list = api.list_credentials().await?;
            if json {
                return print_json(&list);
            }
            let mut t = table(&["name", "type", "used by", "updated"]);
            for c in &list {
                t.add_row(vec![
                    c.name.clone(),
                    c.spec.type_name().to_string(),
                    c.used_by.join(", "),
                    c.updated_at.clone(),
                ]);
            }
            println!("{t}");
        }
        CredentialsCommand::Show { name } => {
            let c = api.get_credential(&name).await?;
            if json {
                print_json(&c)?
            } else {
                print_credential(&c)?
            }
        }
        CredentialsCommand::Create(fields) => {
            let body = credential_body(&fields, serde_json::Map::new())?;
            let c = api.create_credential(&body).await?;
            if json {
                print_json(&c)?
            } else {
                print_credential(&c)?
            }
        }
        CredentialsCommand::Update(fields) => {
            let base = if fields.from_json.is_some() {
                serde_json::Map::new()
            } else {
                let current = api.get_credential(&fields.name).await?;
                let mut base = match serde_json::to_value(&current.spec)? {
                    serde_json::Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                };
                if let Some(d) = current.description {
                    base.insert("description".into(), d.into());
                }
                base
            };
            let body = credential_body(&fields, base)?;
            let c = api.put_credential(&body).await?;
            if json {
                print_json(&c)?
            } else {
                print_credential(&c)?
            }
        }
        CredentialsCommand::Delete { name } => {
            api.delete_credential(&name).await?;
            if !json {
                println!("deleted credential {name}");
            }
        }
    }
    Ok(())
}

/// Runs `ctl run soap`.
pub async fn run_soap(api: &ApiClient, run: SoapRun, json: bool) -> Result<ExitCode> {
    if !(0.0..=3600.0).contains(&run.wait) {
        return Err(anyhow!("--wait must be 0–3600 seconds"));
    }
    let mut params = serde_json::Map::new();
    for p in &run.params {
        let (k, v) = key_value("--param", p)?;
        params.insert(k.to_string(), v.into());
    }
    let action = SoapAction {
        alias: run.alias,
        path: run.path,
        version: match run.version.as_deref() {
            Some("1.2") => Some(SoapVersion::V1_2),
            Some(_) => Some(SoapVersion::V1_1),
            None => None,
        },
        soap_action: run.soap_action,
        body: run.body_file.as_ref().map(read_source).transpose()?,
        operation: run.operation,
        namespace: run.namespace,
        params,
        element_form: match run.element_form.as_deref() {
            Some("unqualified") => Some(ElementForm::Unqualified),
            Some(_) => Some(ElementForm::Qualified),
            None => None,
        },
        headers: BTreeMap::new(),
        timeout_ms: None,
        at_most_once: false,
        correlator: None,
    };
    match api
        .soap_action(&action, Duration::from_secs_f64(run.wait))
        .await?
    {
        ActionOutcome::Pending(p) => {
            if json {
                print_json(&p)?;
            } else {
                println!(
                    "not finished after {} s: output {} is {}",
                    run.wait, p.output_id, p.state
                );
            }
            Ok(ExitCode::from(2))
        }
        ActionOutcome::Done(r) => {
            if json {
                print_json(&r)?;
            }
            let mid = r.mid.clone().unwrap_or_default();
            match &r.response {
                None => {
                    if !json {
                        eprintln!(
                            "failed via MID {mid}: {} (output {})",
                            r.error.clone().unwrap_or_default(),
                            r.output_id
                        );
                    }
                    Ok(ExitCode::FAILURE)
                }
                Some(resp) => {
                    if let Some(fault) = &resp.fault {
                        if !json {
                            eprintln!(
                                "SOAP Fault via MID {mid} (HTTP {}): {}: {}",
                                resp.status, fault.code, fault.reason
                            );
                            if let Some(d) = &fault.detail {
                                println!("{d}");
                            }
                        }
                        return Ok(ExitCode::FAILURE);
                    }
                    if !json {
                        eprintln!(
                            "HTTP {} via MID {mid} in {} ms (SOAP {})",
                            resp.status, r.timings.total_ms, resp.version
                        );
                        match &resp.result {
                            Some(v) => println!("{}", serde_json::to_string_pretty(v)?),
                            None => println!("{}", resp.body.clone().unwrap_or_default()),
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
    }
}
