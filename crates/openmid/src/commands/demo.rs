//! `openmid demo`: the whole path on one machine — an instance with a fresh data dir, an
//! "internal" HTTP service, a MID that enrolls and is validated, a REST call that
//! travels instance → ECC queue → MID → service → back, a call through an alias with a
//! credential, a command run on the MID's host — with one its policy refuses — and a
//! file brought in as an import set.

mod import;

use anyhow::{Context, Result, bail};
use openmid_client::ActionOutcome;
use openmid_local::{
    AuthTarget, AuthTargetConfig, LocalInstance, TargetService, loopback_any_port,
};
use openmid_mid::config::TlsTrust;
use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::{CommandAction, NewCredential, NewEnrollmentToken, RestAction};
use openmid_proto::command::CommandExit;
use openmid_proto::command_output::OutputLine;
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::ecc::EccRecord;
use openmid_proto::mid::MidStatus;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const MID_NAME: &str = "demo-mid";

/// The demo MID's `[policy.command]`: one harmless program with fixed arguments, so
/// step 6 can show a command that runs and one the MID refuses on its own authority.
const COMMAND_POLICY: &str = r#"
[[command.programs]]
path = "/bin/uname"
args = ["-a"]
max_runtime_secs = 10

[[command.programs]]
path = "/bin/sh"
args = ["-c", "for i in 1 2 3; do echo \"tick $i: $(uname -sr)\"; sleep 0.4; done"]
max_runtime_secs = 10
"#;

/// The one shell line the demo policy allows: output spread over a second, to show it
/// arriving while the command runs.
const TICKS: &str = "for i in 1 2 3; do echo \"tick $i: $(uname -sr)\"; sleep 0.4; done";

/// Flags of `openmid demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Exit after the call (status 0 if it succeeded) instead of running until Ctrl-C.
    #[arg(long)]
    once: bool,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("openmid-demo-")
        .tempdir()
        .context("making a temporary data directory")?;
    println!(
        "openmid demo: everything on loopback, data in {}\n",
        dir.path().display()
    );

    let instance = LocalInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
        .await
        .context("starting the instance")?;
    println!("[1/7] instance  {}", instance.running.url);
    println!(
        "                self-signed certificate, SHA256:{}",
        instance.running.fingerprint
    );

    let service = TargetService::start()
        .await
        .context("starting the internal service")?;
    println!(
        "[2/7] service   {}  (an internal HTTP service; only the MID calls it)",
        service.url("")
    );

    let token = instance
        .api
        .create_enrollment_token(&NewEnrollmentToken {
            note: Some("openmid demo".into()),
            ..Default::default()
        })
        .await?;
    let mut config = instance.mid_config(MID_NAME, &dir.path().join("mid"), Some(token.token));
    // Trust the instance by the fingerprint it printed, as a MID on another machine would.
    config.tls = TlsTrust {
        fingerprint: Some(instance.running.fingerprint.clone()),
        ..TlsTrust::default()
    };
    // Keep the network rules the test kit set (loopback targets allowed), add commands.
    let commands: PolicyConfig = toml::from_str(COMMAND_POLICY).context("the demo's policy")?;
    let mut table = config.policy.config().clone();
    table.command = commands.command;
    // Files the MID may import: one directory of the demo's own.
    let imports = dir.path().join("imports");
    std::fs::create_dir_all(&imports).context("making the demo's imports directory")?;
    table.file.allow_dirs = vec![imports.clone()];
    config.policy = EgressPolicy::new(table).context("compiling the demo's policy")?;
    let started = Instant::now();
    let mut mid = openmid_mid::start(config)
        .await
        .context("starting the MID")?;
    if !mid
        .wait_for_status(MidStatus::ValidationPending, Duration::from_secs(20))
        .await
    {
        bail!("the MID did not enroll within 20 s");
    }
    println!(
        "[3/7] MID       {MID_NAME} dialled out, enrolled with a one-time token: validation_pending"
    );
    instance.api.validate_mid(MID_NAME).await?;
    if !mid
        .wait_for_status(MidStatus::Up, Duration::from_secs(20))
        .await
    {
        bail!("the MID did not see its validation within 20 s");
    }
    println!(
        "                validated by the admin: up  ({} ms from MID start)",
        started.elapsed().as_millis()
    );

    let url = service.url("/hello?from=openmid-demo");
    println!("[4/7] REST call GET {url}  via mid.server.{MID_NAME}");
    let sent = Instant::now();
    let outcome = instance
        .api
        .rest_action(
            &RestAction {
                timeout_ms: Some(10_000),
                correlator: Some("demo".into()),
                ..RestAction::new(format!("mid.server.{MID_NAME}"), url)
            },
            Duration::from_secs(15),
        )
        .await?;
    let round_trip = sent.elapsed();
    let ok = match outcome {
        ActionOutcome::Pending(p) => {
            println!("      still {} after 15 s: output {}", p.state, p.output_id);
            false
        }
        ActionOutcome::Done(result) => {
            let output = instance.api.get_record(&result.output_id).await?;
            print_record("output", &output);
            if let Some(input_id) = &result.input_id {
                print_record("input ", &instance.api.get_record(input_id).await?);
            }
            println!(
                "      timings  queued {} ms · probe {} ms · instance total {} ms · API round trip {:.1} ms",
                result.timings.queued_ms,
                result.timings.run_ms,
                result.timings.total_ms,
                round_trip.as_secs_f64() * 1e3
            );
            match &result.response {
                Some(resp) => {
                    println!(
                        "      response {} from the service (MID saw it in {:.2} ms)",
                        resp.status, resp.timings.total_ms
                    );
                    if let Some(ct) = resp.headers.get("content-type") {
                        println!("               content-type: {ct}");
                    }
                    println!(
                        "               {}",
                        resp.body.as_deref().unwrap_or("<binary>")
                    );
                    (200..300).contains(&resp.status)
                }
                None => {
                    println!(
                        "      failed: {}",
                        result.error.as_deref().unwrap_or("unknown error")
                    );
                    false
                }
            }
        }
    };
    let ok = alias_call(&instance).await? && ok;
    let ok = command_calls(&instance).await? && ok;
    let ok = import::import_set(&instance, &imports, MID_NAME).await? && ok;
    println!();

    if !args.once {
        println!("The instance and the MID keep running until Ctrl-C. In another shell:\n");
        println!("export OPENMID_URL={}", instance.running.url);
        println!("export OPENMID_TOKEN={}", instance.token.expose());
        println!("export OPENMID_CA={}", instance.running.cert_path.display());
        println!("\n# MID name: {MID_NAME}");
        println!("cargo run --release -- ctl mids list");
        println!(
            "cargo run --release -- ctl run rest --mid {MID_NAME} --url {} --wait 10",
            service.url("/hello")
        );
        println!(
            "curl --cacert \"$OPENMID_CA\" -H \"Authorization: Bearer $OPENMID_TOKEN\" -H 'content-type: application/json' \\\n  -d '{{\"mid\":\"{MID_NAME}\",\"method\":\"POST\",\"url\":\"{}\",\"body\":{{\"hi\":1}}}}' \\\n  \"$OPENMID_URL/api/v1/actions/rest?wait=10\"",
            service.url("/echo")
        );
        println!(
            "curl --cacert \"$OPENMID_CA\" -H \"Authorization: Bearer $OPENMID_TOKEN\" -H 'content-type: application/json' \\\n  -d '{{\"mid\":\"{MID_NAME}\",\"program\":\"/bin/uname\",\"args\":[\"-a\"]}}' \\\n  \"$OPENMID_URL/api/v1/actions/command?wait=10\""
        );
        super::stop_requested().await;
        println!("\nstopping…");
    }
    mid.shutdown().await?;
    instance.shutdown().await;
    drop(service);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Step 5: a credential and an alias, and a call through the alias to a service that
/// wants HTTP Basic — the secret sealed to the MID, never shown.
async fn alias_call(instance: &LocalInstance) -> Result<bool> {
    let target = AuthTarget::start(AuthTargetConfig::random())
        .await
        .context("starting the auth-checking service")?;
    let cfg = target.config().clone();
    let credential = instance
        .api
        .create_credential(&NewCredential {
            name: "demo-basic".into(),
            description: Some("made by the demo".into()),
            spec: CredentialSpec::Basic {
                username: cfg.username.clone(),
                password: SecretValue::stored(cfg.password.clone()),
            },
        })
        .await?;
    instance
        .api
        .create_alias(&Alias {
            name: "demo-api".into(),
            description: None,
            kind: ConnectionKind::Http,
            base_url: target.url(""),
            headers: Default::default(),
            timeout_ms: Some(10_000),
            retry: Default::default(),
            credential: Some("demo-basic".into()),
            execution: Execution {
                mid: Some(MID_NAME.into()),
                ..Execution::default()
            },
            soap_version: None,
            wsdl: None,
            ca_pem: None,
            host_key: None,
            pool_size: None,
            tls: None,
            options: Default::default(),
            durability: None,
        })
        .await?;
    println!(
        "[5/7] alias     demo-api → {} with credential demo-basic ({}; the API shows {})",
        target.url(""),
        credential.spec.type_name(),
        serde_json::to_string(&credential.spec).unwrap_or_default()
    );
    let outcome = instance
        .api
        .rest_action(
            &RestAction::via("demo-api", "/basic"),
            Duration::from_secs(15),
        )
        .await?;
    Ok(match outcome {
        ActionOutcome::Done(r) => match &r.response {
            Some(resp) => {
                println!(
                    "      GET demo-api:/basic via MID {} → {} {}",
                    r.mid.as_deref().unwrap_or("?"),
                    resp.status,
                    resp.body.as_deref().unwrap_or("")
                );
                resp.status == 200
            }
            None => {
                println!("      failed: {}", r.error.as_deref().unwrap_or("unknown"));
                false
            }
        },
        ActionOutcome::Pending(p) => {
            println!("      still {} after 15 s", p.state);
            false
        }
    })
}

/// Step 6: a command on the MID's host, which its `[policy.command]` allows, and one it
/// refuses (the error names the rule). True when the first exited 0 and the second was
/// refused.
/// A command whose output is printed as it arrives, each line with the time it came.
async fn streamed_command(instance: &LocalInstance) -> Result<bool> {
    let action = CommandAction {
        timeout_ms: Some(10_000),
        correlator: Some("demo".into()),
        ..CommandAction::on(MID_NAME, "/bin/sh", &["-c", TICKS])
    };
    let started = Instant::now();
    let pending = match instance.api.command_action(&action, Duration::ZERO).await? {
        ActionOutcome::Pending(p) => p.output_id,
        ActionOutcome::Done(r) => r.output_id,
    };
    println!("      /bin/sh -c '{TICKS}', its output as it streams:");
    let mut lines = instance.api.follow_output(&pending, None, true).await?;
    let mut ended = None;
    while let Some(line) = lines.next().await? {
        match &line {
            OutputLine::Chunk { .. } => {
                let text = String::from_utf8_lossy(&line.bytes().unwrap_or_default()).into_owned();
                for l in text.lines() {
                    println!("        +{:>5} ms  {l}", started.elapsed().as_millis());
                }
            }
            OutputLine::End { end } => {
                ended = Some(end.clone());
                break;
            }
            _ => {}
        }
    }
    let ok = ended
        .as_ref()
        .is_some_and(|e| e.exit == Some(CommandExit::Code { code: 0 }));
    println!(
        "      ended after {} ms: {}",
        started.elapsed().as_millis(),
        match ended.and_then(|e| e.exit) {
            Some(CommandExit::Code { code }) => format!("exit code {code}"),
            Some(CommandExit::Signal { name, .. }) => format!("killed by {name}"),
            None => "no exit status".into(),
        }
    );
    Ok(ok)
}

async fn command_calls(instance: &LocalInstance) -> Result<bool> {
    println!("[6/7] command   the MID's policy allows `/bin/uname -a` and one fixed shell line");
    let allowed = CommandAction {
        timeout_ms: Some(10_000),
        correlator: Some("demo".into()),
        ..CommandAction::on(MID_NAME, "/bin/uname", &["-a"])
    };
    let ran = match instance
        .api
        .command_action(&allowed, Duration::from_secs(15))
        .await?
    {
        ActionOutcome::Done(r) => match &r.response {
            Some(out) => {
                let exit = match &out.exit {
                    CommandExit::Code { code } => format!("exit code {code}"),
                    CommandExit::Signal { name, .. } => format!("killed by {name}"),
                };
                println!(
                    "      /bin/uname -a on MID {} → {exit} in {} ms (allowed by {})",
                    r.mid.as_deref().unwrap_or("?"),
                    out.duration_ms,
                    out.allowed_by
                );
                for line in out.stdout.text.lines() {
                    println!("               {line}");
                }
                out.succeeded()
            }
            None => {
                println!("      failed: {}", r.error.as_deref().unwrap_or("unknown"));
                false
            }
        },
        ActionOutcome::Pending(p) => {
            println!("      still {} after 15 s", p.state);
            false
        }
    };
    let streamed = streamed_command(instance).await?;
    let refused = match instance
        .api
        .command_action(
            &CommandAction::on(MID_NAME, "/bin/cat", &["/etc/shadow"]),
            Duration::from_secs(15),
        )
        .await?
    {
        ActionOutcome::Done(r) => match (&r.response, &r.error) {
            (None, Some(error)) => {
                println!("      /bin/cat /etc/shadow → refused by the MID: {error}");
                true
            }
            (response, error) => {
                println!(
                    "      /bin/cat /etc/shadow was not refused: {:?} {error:?}",
                    response.as_ref().map(|o| &o.exit)
                );
                false
            }
        },
        ActionOutcome::Pending(p) => {
            println!("      /bin/cat /etc/shadow: still {} after 15 s", p.state);
            false
        }
    };
    Ok(ran && streamed && refused)
}

fn print_record(label: &str, r: &EccRecord) {
    let by = r.claimed_by.as_deref().unwrap_or(&r.source);
    println!(
        "      {label} {}  {}  {}  attempt {}  MID {by}",
        r.id, r.topic, r.state, r.attempt
    );
    let mut times = format!("created {}", r.created_at);
    if let Some(c) = &r.claimed_at {
        times.push_str(&format!(" · claimed {c}"));
    }
    if let Some(p) = &r.processed_at {
        times.push_str(&format!(" · done {p}"));
    }
    println!("             {times}");
}
