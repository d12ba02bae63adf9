//! `openmid-mid`, the MID Server as a binary of its own: it runs a MID that serves calls
//! as `openmid mid` does, has none of the instance's commands, and installs a unit that
//! runs it without the `mid` word.

use crate::support::{MID, get, instance_target_and_mid_config, run, up_and_heartbeated};
use openmid_proto::ecc::State;
use openmid_testkit::MidProcess;
use std::path::Path;
use std::process::Command;

const MID_BIN: &str = env!("CARGO_BIN_EXE_openmid-mid");

#[tokio::test]
async fn the_mid_only_binary_runs_a_mid_that_serves_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (instance, target, config) = instance_target_and_mid_config(dir.path()).await;
    let process = MidProcess::spawn(Path::new(MID_BIN), &config).expect("MID process starts");
    assert!(
        up_and_heartbeated(&instance.api, MID).await,
        "the MID is up: {}",
        std::fs::read_to_string(dir.path().join("mid").join("mid.log")).unwrap_or_default()
    );
    let result = run(&instance, &get(target.url("/hello"))).await;
    assert_eq!(result.state, State::Processed, "{result:?}");
    assert_eq!(result.response.map(|r| r.status), Some(200));
    assert_eq!(target.hits(), 1);
    drop(process);
    instance.shutdown().await;
}

#[test]
fn the_mid_only_binary_has_the_mid_commands_and_none_of_the_instance() {
    let help = Command::new(MID_BIN).arg("--help").output().expect("runs");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for command in ["install-service", "check-policy", "--config"] {
        assert!(text.contains(command), "{command} in\n{text}");
    }
    for other in ["instance", "ctl", "demo", "bench"] {
        assert!(
            !text.contains(&format!("  {other} ")),
            "no {other} in\n{text}"
        );
    }
    let refused = Command::new(MID_BIN)
        .arg("instance")
        .output()
        .expect("runs");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unrecognized subcommand 'instance'"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn the_mid_only_binary_installs_a_unit_that_runs_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mid.toml");
    std::fs::write(
        &config,
        "name = \"svc-mid\"\ninstance_url = \"https://instance.example:8443\"\nstate_dir = \"/var/lib/openmid-mid\"\n",
    )
    .expect("write");
    let out = Command::new(MID_BIN)
        .args(["install-service", "--dry-run", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = String::from_utf8_lossy(&out.stdout).into_owned();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let canonical = std::fs::canonicalize(&config).expect("canonical");
    // systemd's quoting: each word in double quotes.
    let words: Vec<&str> = exec
        .split_whitespace()
        .map(|w| w.trim_matches('"'))
        .collect();
    assert!(words[0].ends_with("openmid-mid"), "{exec}");
    assert_eq!(words[1], "--config", "no `mid` word: {exec}");
    assert!(exec.contains(&canonical.display().to_string()), "{exec}");
}
