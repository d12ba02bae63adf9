//! The operator's commands: `openmid completions`, `install-service --dry-run` (checked
//! by `systemd-analyze verify` when this host has it) and `openmid ctl ecc tail`
//! following a real instance while a real MID works.

use openmid_testkit::{TargetService, TestInstance, loopback_any_port, rest_output};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_openmid");

#[test]
fn completions_are_made_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef openmid"),
        ("fish", "complete -c openmid"),
    ] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell} script lacks {marker:?}");
        // Subcommands deep in the tree are in it.
        assert!(
            script.contains("install-service") && script.contains("tail"),
            "{shell}"
        );
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .expect("runs");
    assert!(!out.status.success(), "an unknown shell is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}

/// `systemd-analyze verify` on a unit: None when the tool is missing (SKIPPED).
fn verify_unit(dir: &std::path::Path, name: &str, unit: &str) -> Option<String> {
    let path = dir.join(name);
    std::fs::write(&path, unit).expect("write unit");
    let out = match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("systemd-analyze is needed in CI: {e}");
            }
            eprintln!("SKIPPED: systemd-analyze verify ({e})");
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    Some(stderr)
}

#[test]
fn install_service_dry_run_prints_a_hardened_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mid_config = dir.path().join("mid.toml");
    std::fs::write(
        &mid_config,
        "name = \"svc-mid\"\ninstance_url = \"https://instance.example:8443\"\nstate_dir = \"/var/lib/openmid-mid\"\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["mid", "install-service", "--dry-run", "--config"])
        .arg(&mid_config)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in [
        "User=openmid-mid\n",
        "NoNewPrivileges=yes\n",
        "ProtectSystem=strict\n",
        "ProtectHome=yes\n",
        "PrivateTmp=yes\n",
        "StateDirectory=openmid-mid\n",
        "ReadWritePaths=\"/var/lib/openmid-mid\"\n",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n",
        "Restart=on-failure\n",
        "Type=simple\n",
    ] {
        assert!(unit.contains(line), "missing {line:?} in\n{unit}");
    }
    assert!(
        !dir.path().join("openmid-mid.service").exists()
            && !std::path::Path::new("/etc/systemd/system/openmid-mid.service").exists(),
        "a dry run writes nothing"
    );
    if let Some(warnings) = verify_unit(dir.path(), "openmid-mid.service", &unit) {
        assert!(
            !warnings.contains("openmid-mid.service:"),
            "systemd finds fault with a line: {warnings}"
        );
    }

    // The instance's unit, from its config file.
    let instance_config = dir.path().join("instance.toml");
    std::fs::write(
        &instance_config,
        "data_dir = \"/var/lib/openmid-instance\"\nlisten = \"0.0.0.0:443\"\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args([
            "instance",
            "install-service",
            "--dry-run",
            "--user",
            "hub",
            "--config",
        ])
        .arg(&instance_config)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        unit.contains("User=hub\n") && unit.contains("StateDirectory=openmid-instance\n"),
        "{unit}"
    );
    assert!(
        unit.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE\n"),
        "port 443 needs the one capability: {unit}"
    );
    if let Some(warnings) = verify_unit(dir.path(), "openmid-instance.service", &unit) {
        assert!(
            !warnings.contains("openmid-instance.service:"),
            "{warnings}"
        );
    }

    // A bad user name is refused, naming the flag.
    let out = Command::new(BIN)
        .args([
            "mid",
            "install-service",
            "--dry-run",
            "--user",
            "two words",
            "--config",
        ])
        .arg(&mid_config)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecc_tail_prints_new_and_changed_records_of_its_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_in(&dir.path().join("instance"), loopback_any_port(), None)
        .await
        .expect("instance");
    let target = TargetService::start().await.expect("target");
    let mid = instance
        .start_mid("watched", &dir.path().join("mid"), true)
        .await
        .expect("MID up");
    let mut child = Command::new(BIN)
        .args([
            "ctl",
            "ecc",
            "tail",
            "--agent",
            "mid.server.watched",
            "--interval-ms",
            "200",
        ])
        .env("OPENMID_URL", &instance.running.url)
        .env("OPENMID_TOKEN", instance.token.expose())
        .env("OPENMID_CA", &instance.running.cert_path)
        .env_remove("OPENMID_FINGERPRINT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail runs");
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let stderr = child.stderr.take().expect("stderr");
    let (started_tx, started) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = started_tx.send(line);
        }
    });
    let first = started
        .recv_timeout(Duration::from_secs(20))
        .expect("tail says it follows");
    assert!(first.contains("following the ECC queue"), "{first}");

    let other = instance
        .api
        .insert_output(&rest_output(
            "mid.auto",
            &target.url("/hello"),
            "tail-other",
        ))
        .await
        .expect("insert");
    let watched = instance
        .api
        .insert_output(&rest_output(
            "mid.server.watched",
            &target.url("/hello"),
            "tail-watched",
        ))
        .await
        .expect("insert");

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let (mut new, mut finished) = (false, false);
    while !(new && finished) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = lines.recv_timeout(left) else {
            panic!(
                "tail did not show the record's life; it printed:\n{}",
                seen.join("\n")
            );
        };
        if line.contains(&watched.id) {
            new |= line.starts_with("new ");
            finished |= line.contains(" processed");
        }
        assert!(
            !line.contains(&other.id),
            "a record of another agent is filtered out: {line}"
        );
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|l| l.contains(&watched.id)
            && l.contains("RESTProbe")
            && l.contains("agent=mid.server.watched")),
        "{seen:?}"
    );
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
}
