//! The canary: unique secrets stored in credentials are used for real calls, and then
//! searched for everywhere they must never be — the instance's database files, both
//! processes' logs at debug level, ECC payloads, API answers and `openmid ctl` output.

use openmid_proto::alias::{Alias, ConnectionKind, Execution};
use openmid_proto::api::RecordQuery;
use openmid_proto::mid::MidStatus;
use openmid_proto::rest::RetryPolicy;
use openmid_testkit::{
    AuthTarget, AuthTargetConfig, InstanceProcess, MidProcess, SoapService, wait_until,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_openmid");

/// Runs `openmid ctl ARGS` against `instance`, feeding `stdin`; returns stdout + stderr.
fn ctl(instance: &InstanceProcess, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(BIN)
        .arg("ctl")
        .args(args)
        .env("OPENMID_URL", &instance.url)
        .env("OPENMID_TOKEN", instance.token.expose())
        .env("OPENMID_CA", &instance.cert_path)
        .env_remove("OPENMID_FINGERPRINT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctl runs");
    if let Some(mut input) = child.stdin.take() {
        use std::io::Write;
        let _ = input.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("ctl finishes");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn alias(name: &str, kind: ConnectionKind, base_url: &str, credential: &str) -> Alias {
    Alias {
        name: name.into(),
        description: None,
        kind,
        base_url: base_url.into(),
        headers: Default::default(),
        timeout_ms: Some(10_000),
        retry: RetryPolicy::default(),
        credential: Some(credential.into()),
        execution: Execution {
            mid: Some("canary-mid".into()),
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
    }
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_secrets_never_leak_anywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("instance");
    let instance = InstanceProcess::spawn_logging(Path::new(BIN), &data_dir, "debug")
        .expect("instance process");
    let api = instance.api().expect("api client");
    let token = openmid_testkit::auto_validating_token(&api)
        .await
        .expect("token");
    let mid_dir = dir.path().join("mid");
    let config = instance.mid_config("canary-mid", &mid_dir, Some(token));
    let _mid = MidProcess::spawn_logging(Path::new(BIN), &config, "debug").expect("MID process");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            api.get_mid("canary-mid")
                .await
                .is_ok_and(|m| m.status == MidStatus::Up)
        })
        .await,
        "MID up"
    );

    let target = AuthTarget::start(AuthTargetConfig::random())
        .await
        .expect("auth target");
    let cfg = target.config().clone();
    let soap_password = format!("soap-{}", hex::encode(openmid_proto::secret::random_32()));
    let soap = SoapService::start(Some(("soap-user".into(), soap_password.clone())))
        .await
        .expect("soap service");
    let canaries = [
        cfg.password.clone(),
        cfg.api_key.clone(),
        cfg.bearer_token.clone(),
        cfg.oauth_client_secret.clone(),
        soap_password.clone(),
    ];

    // Credentials made with `openmid ctl`, secrets on stdin as a user would.
    let mut shown = String::new();
    for (args, stdin) in [
        (
            vec![
                "credentials",
                "create",
                "basic",
                "--type",
                "basic",
                "--set",
                &format!("username={}", cfg.username),
                "--secret",
                "password",
            ],
            format!("{}\n", cfg.password),
        ),
        (
            vec![
                "credentials",
                "create",
                "key",
                "--type",
                "api_key",
                "--set",
                "key_name=api_key",
                "--set",
                "placement=query",
                "--secret",
                "key",
            ],
            format!("{}\n", cfg.api_key),
        ),
        (
            vec![
                "credentials",
                "create",
                "bearer",
                "--type",
                "bearer",
                "--secret",
                "token",
            ],
            format!("{}\n", cfg.bearer_token),
        ),
        (
            vec![
                "credentials",
                "create",
                "oauth",
                "--type",
                "oauth2_client_credentials",
                "--set",
                &format!("token_url={}", target.url("/oauth/token")),
                "--set",
                &format!("client_id={}", cfg.oauth_client_id),
                "--secret",
                "client_secret",
            ],
            format!("{}\n", cfg.oauth_client_secret),
        ),
        (
            vec![
                "credentials",
                "create",
                "soap",
                "--type",
                "basic",
                "--set",
                "username=soap-user",
                "--secret",
                "password",
            ],
            format!("{soap_password}\n"),
        ),
    ] {
        let (ok, out) = ctl(&instance, &args, &stdin);
        assert!(ok, "{args:?}: {out}");
        shown.push_str(&out);
    }
    let base = target.url("");
    for (name, credential) in [
        ("basic", "basic"),
        ("key", "key"),
        ("bearer", "bearer"),
        ("oauth", "oauth"),
    ] {
        api.create_alias(&alias(name, ConnectionKind::Http, &base, credential))
            .await
            .expect("alias");
    }
    api.create_alias(&alias(
        "calc",
        ConnectionKind::Soap,
        &soap.url("/calc"),
        "soap",
    ))
    .await
    .expect("alias");

    // Real calls, through ctl, each of which must succeed with its secret.
    for (alias, path) in [
        ("basic", "/basic"),
        ("key", "/apikey-query"),
        ("bearer", "/bearer"),
        ("oauth", "/oauth-protected"),
    ] {
        let (ok, out) = ctl(
            &instance,
            &["run", "rest", "--alias", alias, "--path", path],
            "",
        );
        assert!(ok && out.contains("\"ok\":true"), "{alias}: {out}");
        shown.push_str(&out);
    }
    let (ok, out) = ctl(
        &instance,
        &[
            "run",
            "soap",
            "--alias",
            "calc",
            "--operation",
            "Add",
            "--namespace",
            "urn:openmid:test:calc",
            "--soap-action",
            "urn:openmid:test:calc#Add",
            "--param",
            "a=1",
            "--param",
            "b=2",
        ],
        "",
    );
    assert!(ok && out.contains('3'), "soap: {out}");
    shown.push_str(&out);
    for args in [
        vec!["credentials", "list"],
        vec!["--json", "credentials", "list"],
        vec!["credentials", "show", "oauth"],
        vec!["--json", "credentials", "show", "basic"],
        vec!["--json", "aliases", "list"],
        vec!["--json", "ecc", "list", "--limit", "1000"],
    ] {
        let (ok, out) = ctl(&instance, &args, "");
        assert!(ok, "{args:?}: {out}");
        shown.push_str(&out);
    }
    // An update through ctl that keeps the secret, then a call proving it was kept.
    let (ok, out) = ctl(
        &instance,
        &[
            "credentials",
            "update",
            "basic",
            "--description",
            "rotated never",
        ],
        "",
    );
    assert!(ok, "{out}");
    shown.push_str(&out);
    let (ok, out) = ctl(
        &instance,
        &["run", "rest", "--alias", "basic", "--path", "/basic"],
        "",
    );
    assert!(
        ok && out.contains("\"ok\":true"),
        "kept secret still works: {out}"
    );

    // API answers and ECC payloads.
    let records = api
        .list_records(&RecordQuery {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .expect("records");
    assert!(
        records.records.len() >= 12,
        "outputs and inputs were written"
    );
    shown.push_str(&serde_json::to_string(&records).expect("json"));
    shown.push_str(
        &serde_json::to_string(&api.list_credentials().await.expect("list")).expect("json"),
    );

    // Stop both (so logs and the WAL are flushed), then read every file they wrote.
    drop(_mid);
    drop(instance);
    let mut places: Vec<(String, Vec<u8>)> =
        vec![("ctl and API output".into(), shown.into_bytes())];
    for path in files(dir.path()) {
        if path.file_name().is_some_and(|n| n == "mid.toml") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        places.push((path.display().to_string(), bytes));
    }
    let logs: Vec<&(String, Vec<u8>)> =
        places.iter().filter(|(p, _)| p.ends_with(".log")).collect();
    assert_eq!(
        logs.len(),
        2,
        "both processes logged: {:?}",
        places.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    assert!(
        logs.iter()
            .all(|(_, b)| String::from_utf8_lossy(b).contains("DEBUG")),
        "the logs are at debug level"
    );
    for canary in &canaries {
        for (place, bytes) in &places {
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "a stored secret appears in {place}"
            );
        }
    }
}
