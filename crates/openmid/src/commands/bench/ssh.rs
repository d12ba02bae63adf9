//! `openmid bench ssh`: short commands on one host through a MID against OpenSSH's
//! client sharing one connection (`ControlMaster`), in the same run, against the same
//! real `sshd` started on loopback; with the MID's peak memory. Both sides reuse a
//! connection, so the figures compare the per-command cost a user pays.

use super::{mb, percentile, setup};
use anyhow::{Context, Result, bail};
use openmid_client::ActionOutcome;
use openmid_local::sshd::LocalSshd;
use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::NewCredential;
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::ecc::State;
use openmid_proto::secret::Secret;
use openmid_proto::ssh::{HostKeyPolicy, SshAction, SshResponse};

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const MID_NAME: &str = "bench-ssh-mid";

const POLICY: &str = r#"
[ssh]
allow_cidrs = ["127.0.0.0/8"]
"#;

/// Flags of `openmid bench ssh`.
#[derive(clap::Args)]
pub(super) struct SshArgs {
    /// Commands run one after another each way (after a warm-up).
    #[arg(long, default_value_t = 100)]
    commands: usize,
    /// The command.
    #[arg(long, default_value = "true")]
    command: String,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

pub(super) async fn run(args: SshArgs) -> Result<ExitCode> {
    if args.commands == 0 {
        bail!("--commands must be at least 1");
    }
    let setup = setup()?;
    let api = setup.api.clone();
    let sshd_dir = setup.dir.path().join("sshd");
    std::fs::create_dir(&sshd_dir)?;
    let sshd = LocalSshd::start(&sshd_dir).context("starting sshd")?;
    let control = setup.dir.path().join("cm");
    let openssh = |extra: &[&str]| {
        let mut c = Command::new("ssh");
        c.args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                sshd.known_hosts_file.display()
            ))
            .arg("-i")
            .arg(&sshd.private_key_file)
            .arg("-o")
            .arg(format!("ControlPath={}", control.display()))
            .args(extra)
            .args(["-p", &sshd.port.to_string()])
            .arg(format!("{}@127.0.0.1", sshd.user))
            .arg(&args.command)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        c
    };
    // The master connection every later client shares.
    let master = openssh(&["-o", "ControlMaster=yes", "-o", "ControlPersist=120"])
        .status()
        .context("running OpenSSH's ssh")?;
    if !master.success() {
        bail!("ssh could not log in: {}", sshd.log());
    }
    eprintln!(
        "OpenSSH: {} commands over its shared connection",
        args.commands
    );
    let mut openssh_ms = Vec::with_capacity(args.commands);
    for _ in 0..args.commands {
        let t = Instant::now();
        if !openssh(&["-o", "ControlMaster=no"]).status()?.success() {
            bail!("an ssh command failed");
        }
        openssh_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let _ = openssh(&["-O", "exit"]).stderr(Stdio::null()).status();

    let mid = setup
        .spawn_mid(MID_NAME, POLICY, openmid_mid::config::PoolSizes::default())
        .await?;
    let mid_rss_idle = mb(mid.rss_bytes());
    api.create_credential(&NewCredential {
        name: "bench-key".into(),
        description: None,
        spec: CredentialSpec::SshKey {
            username: sshd.user.clone(),
            private_key: SecretValue::Stored(Secret::new(sshd.private_key.clone())),
            passphrase: None,
        },
    })
    .await?;
    api.create_alias(&Alias {
        name: "bench-host".into(),
        description: None,
        kind: ConnectionKind::Ssh,
        base_url: format!("ssh://127.0.0.1:{}", sshd.port),
        headers: Default::default(),
        timeout_ms: Some(30_000),
        retry: Default::default(),
        credential: Some("bench-key".into()),
        execution: Execution {
            mid: Some(MID_NAME.into()),
            ..Execution::default()
        },
        soap_version: None,
        wsdl: None,
        ca_pem: None,
        host_key: Some(HostKeyPolicy::Pinned {
            key: sshd.host_key.clone(),
        }),
        pool_size: Some(1),
        tls: None,
        options: Default::default(),
        durability: None,
    })
    .await?;
    let action = SshAction {
        alias: "bench-host".into(),
        command: Some(args.command.clone()),
        ..SshAction::default()
    };
    let once = || async {
        match api
            .run_action::<_, SshResponse>("ssh", &action, Duration::from_secs(30))
            .await
        {
            Ok(ActionOutcome::Done(r)) => r.state == State::Processed,
            _ => false,
        }
    };
    // Warm-up: the MID's pooled connection is opened here, as ControlMaster's was.
    for _ in 0..5 {
        if !once().await {
            bail!("an ssh action failed");
        }
    }
    eprintln!("openmid: {} commands through the MID", args.commands);
    let mut mid_ms = Vec::with_capacity(args.commands);
    for _ in 0..args.commands {
        let t = Instant::now();
        if !once().await {
            bail!("an ssh action failed");
        }
        mid_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mid_rss_peak = mb(super::command::rss_high_water(mid.pid()));
    for v in [&mut openssh_ms, &mut mid_ms] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    let total = |v: &[f64]| v.iter().sum::<f64>() / 1e3;
    let (openssh_rate, mid_rate) = (
        args.commands as f64 / total(&openssh_ms),
        args.commands as f64 / total(&mid_ms),
    );
    let ratio = mid_rate / openssh_rate;
    let (o50, m50) = (percentile(&openssh_ms, 0.5), percentile(&mid_ms, 0.5));
    let (o99, m99) = (percentile(&openssh_ms, 0.99), percentile(&mid_ms, 0.99));

    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(vec!["figure", "OpenSSH, ControlMaster", "via MID", "ratio"]);
    t.add_row(vec![
        format!("p50, `{}`", args.command),
        format!("{o50:.2} ms"),
        format!("{m50:.2} ms"),
        String::new(),
    ]);
    t.add_row(vec![
        "p99".into(),
        format!("{o99:.2} ms"),
        format!("{m99:.2} ms"),
        String::new(),
    ]);
    t.add_row(vec![
        "commands/s, one after another".into(),
        format!("{openssh_rate:.0}"),
        format!("{mid_rate:.0}"),
        format!("{ratio:.2}×"),
    ]);
    t.add_row(vec![
        "MID RSS idle / peak".into(),
        String::new(),
        format!("{mid_rss_idle:.1} / {mid_rss_peak:.1} MB"),
        String::new(),
    ]);
    println!("{t}");
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "commands": args.commands,
                "openssh_p50_ms": o50,
                "mid_p50_ms": m50,
                "openssh_per_s": openssh_rate,
                "mid_per_s": mid_rate,
                "ratio": ratio,
                "mid_rss_idle_mb": mid_rss_idle,
                "mid_rss_peak_mb": mid_rss_peak,
            })
        );
    }
    drop(mid);
    drop(setup);
    drop(sshd);
    Ok(ExitCode::SUCCESS)
}
