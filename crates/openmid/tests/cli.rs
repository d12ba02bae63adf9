//! The `openmid` binary as a user runs it: the demo, `ctl`, and an instance and a MID
//! as two separate processes configured the way the README says.

use crate::support::{MID, Stack};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_openmid");

#[test]
fn demo_once_runs_a_call_end_to_end_and_exits_zero() {
    let out = Command::new(BIN)
        .args(["demo", "--once"])
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("validation_pending"), "{stdout}");
    assert!(stdout.contains("response 200"), "{stdout}");
    assert!(stdout.contains(r#"{"hello":"world"}"#), "{stdout}");
    assert!(stdout.contains("processed"), "{stdout}");
    // Step 7: the file became an import set, its bad line refused with its number.
    assert!(
        stdout.contains("complete_with_errors, 3 rows, 1 refused"),
        "{stdout}"
    );
    assert!(stdout.contains("refused record 3 (line 4)"), "{stdout}");
    // Step 6: the allowed command ran and printed, the other was refused by its rule.
    assert!(
        stdout.contains("/bin/uname -a on MID demo-mid → exit code 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("allowed by policy.command.programs[0]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Linux"),
        "uname's output is shown: {stdout}"
    );
    assert!(
        stdout.contains("/bin/cat /etc/shadow → refused by the MID")
            && stdout.contains("policy.command.programs"),
        "{stdout}"
    );
}

async fn ctl(stack: &Stack, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(BIN)
        .arg("ctl")
        .args(args)
        .env("OPENMID_URL", &stack.instance.running.url)
        .env("OPENMID_TOKEN", stack.instance.token.expose())
        .env("OPENMID_CA", &stack.instance.running.cert_path)
        .output()
        .await
        .expect("ctl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn ctl_speaks_the_api_for_people_and_scripts() {
    let stack = Stack::start().await;
    let (ok, stdout, stderr) = ctl(&stack, &["mids", "list", "--json"]).await;
    assert!(ok, "{stderr}");
    let mids: serde_json::Value = serde_json::from_str(&stdout).expect("JSON for scripts");
    assert_eq!(mids[0]["name"], MID);
    assert_eq!(mids[0]["status"], "up");

    let (ok, table, _) = ctl(&stack, &["mids", "list"]).await;
    assert!(ok && table.contains(MID) && table.contains("up"), "{table}");

    let url = stack.target.url("/hello");
    let (ok, stdout, stderr) = ctl(
        &stack,
        &["run", "rest", "--mid", MID, "--url", &url, "--wait", "20"],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), r#"{"hello":"world"}"#);
    assert!(stderr.contains("HTTP 200 via MID"), "{stderr}");

    let (ok, stdout, _) = ctl(&stack, &["ecc", "list", "--queue", "input", "--json"]).await;
    assert!(ok);
    let page: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(page["records"].as_array().map(Vec::len), Some(1));

    let (ok, _, stderr) = ctl(&stack, &["ecc", "list", "--state", "bogus"]).await;
    assert!(!ok);
    assert!(stderr.contains("unknown state `bogus`"), "{stderr}");

    let (ok, _, stderr) = ctl(
        &stack,
        &[
            "clusters",
            "create",
            "pair",
            "--kind",
            "failover",
            "--members",
            &format!("{MID},spare"),
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    let (ok, stdout, _) = ctl(&stack, &["clusters", "list", "--json"]).await;
    let clusters: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert!(
        ok && clusters[0]["members"][1]["name"] == "spare",
        "{stdout}"
    );
    let (ok, stdout, stderr) = ctl(
        &stack,
        &[
            "run",
            "rest",
            "--agent",
            "mid.cluster.pair",
            "--url",
            &url,
            "--wait",
            "20",
        ],
    )
    .await;
    assert!(ok && stdout.trim() == r#"{"hello":"world"}"#, "{stderr}");
    let (ok, table, _) = ctl(&stack, &["mids", "pause", MID]).await;
    assert!(ok && table.contains("paused"), "{table}");
    let (ok, _, _) = ctl(&stack, &["mids", "resume", MID]).await;
    assert!(ok);
    let (ok, stdout, _) = ctl(&stack, &["mids", "history", MID, "--json"]).await;
    let history: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert!(
        ok && history[0]["reason"] == "resumed by an admin",
        "{stdout}"
    );
    let (ok, stdout, _) = ctl(
        &stack,
        &["mids", "set", MID, "--capabilities", "REST,SSH", "--json"],
    )
    .await;
    let info: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert!(
        ok && info["profile"]["capabilities"][1] == "SSH",
        "{stdout}"
    );
    let (ok, _, stderr) = ctl(
        &stack,
        &[
            "clusters",
            "create",
            "x",
            "--kind",
            "sideways",
            "--members",
            "a",
        ],
    )
    .await;
    assert!(!ok && stderr.contains("sideways"), "{stderr}");

    let (ok, stdout, _) = ctl(&stack, &["enroll-token", "create", "--ttl", "60"]).await;
    assert!(ok && stdout.trim().starts_with("omenr_"), "{stdout}");

    let out = tokio::process::Command::new(BIN)
        .args(["ctl", "mids", "list"])
        .env_remove("OPENMID_URL")
        .output()
        .await
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("OPENMID_URL"));
    stack.stop().await;
}

/// Kills the child when dropped, so a failing test leaves no process behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the child's stdout until `want` keys are seen (`key: value` lines).
fn read_fields(child: &mut Child, want: &[&str]) -> std::collections::HashMap<String, String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut found = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while found.len() < want.len() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some((k, v)) = line.trim().split_once(':') {
            let k = k.trim();
            if want.contains(&k) {
                found.insert(k.to_string(), v.trim().to_string());
            }
        }
    }
    // Keep reading, as a terminal would, so the child never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    found
}

#[test]
fn instance_and_mid_run_as_separate_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut instance = Proc(
        Command::new(BIN)
            .args(["instance", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("OPENMID_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("instance starts"),
    );
    let fields = read_fields(&mut instance.0, &["URL", "fingerprint", "admin token"]);
    let url = fields.get("URL").expect("URL printed").clone();
    let fingerprint = fields
        .get("fingerprint")
        .expect("fingerprint printed")
        .clone();
    let token = fields
        .get("admin token")
        .expect("admin token printed")
        .clone();
    let ctl = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("ctl")
            .args(args)
            .env("OPENMID_URL", &url)
            .env("OPENMID_TOKEN", &token)
            .env("OPENMID_FINGERPRINT", &fingerprint)
            .output()
            .expect("ctl runs");
        assert!(
            out.status.success(),
            "ctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let enroll = ctl(&["enroll-token", "create"]).trim().to_string();
    let config = dir.path().join("mid.toml");
    std::fs::write(
        &config,
        format!(
            // The target runs on this host: the egress policy must allow loopback.
            "name = \"proc-mid\"\ninstance_url = \"{url}\"\nstate_dir = \"{}\"\nenrollment_token = \"{enroll}\"\n\n[tls]\nfingerprint = \"{fingerprint}\"\n\n[policy.http]\nallow_cidrs = [\"127.0.0.0/8\"]\n",
            dir.path().join("mid-state").display()
        ),
    )
    .expect("write config");
    let _mid = Proc(
        Command::new(BIN)
            .args(["mid", "--config"])
            .arg(&config)
            .env("OPENMID_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("MID starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ctl(&["mids", "list"]).contains("validation_pending") {
        assert!(Instant::now() < deadline, "the MID enrolled");
        std::thread::sleep(Duration::from_millis(100));
    }
    ctl(&["mids", "validate", "proc-mid"]);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let target = runtime
        .block_on(openmid_testkit::TargetService::start())
        .expect("target");
    let _guard = runtime.enter();
    let body = ctl(&[
        "run",
        "rest",
        "--mid",
        "proc-mid",
        "--url",
        &target.url("/hello"),
        "--wait",
        "20",
    ]);
    assert_eq!(body.trim(), r#"{"hello":"world"}"#);
    assert_eq!(target.hits(), 1);
}

#[test]
fn ctl_reaches_an_instance_on_its_own_address_and_ignores_empty_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut instance = Proc(
        Command::new(BIN)
            .args([
                "instance",
                "--listen",
                "127.0.0.2:0",
                "--hostname",
                "openmid.test",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("OPENMID_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("instance starts"),
    );
    let fields = read_fields(
        &mut instance.0,
        &["URL", "certificate", "fingerprint", "admin token"],
    );
    let field = |k: &str| {
        fields
            .get(k)
            .unwrap_or_else(|| panic!("{k} printed"))
            .clone()
    };
    let (url, cert, fingerprint, token) = (
        field("URL"),
        field("certificate"),
        field("fingerprint"),
        field("admin token"),
    );
    assert!(url.starts_with("https://127.0.0.2:"), "{url}");
    let ctl = |url: &str, ca: &str, fp: &str| {
        let out = Command::new(BIN)
            .args(["ctl", "mids", "list", "--json"])
            .env("OPENMID_URL", url)
            .env("OPENMID_TOKEN", &token)
            .env("OPENMID_CA", ca)
            .env("OPENMID_FINGERPRINT", fp)
            .output()
            .expect("ctl runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The certificate names the address the instance listens on, and an empty
    // variable counts as unset.
    let (ok, stderr) = ctl(&url, &cert, "");
    assert!(ok, "CA trust on 127.0.0.2: {stderr}");
    let (ok, stderr) = ctl(&url, "", &fingerprint);
    assert!(ok, "fingerprint trust with OPENMID_CA empty: {stderr}");

    // Nobody listens on port 1: the error says each thing once.
    let (ok, stderr) = ctl("https://127.0.0.1:1", &cert, "");
    assert!(!ok);
    assert_eq!(
        stderr.matches("error sending request").count(),
        1,
        "{stderr}"
    );
    assert_eq!(stderr.matches("127.0.0.1:1").count(), 1, "{stderr}");
}

#[test]
fn install_service_writes_a_systemd_unit_for_a_valid_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mid.toml");
    std::fs::write(
        &config,
        "name = \"svc-mid\"\ninstance_url = \"https://instance.example:8443\"\nstate_dir = \"/var/lib/openmid-mid\"\n",
    )
    .expect("write");
    let unit = dir.path().join("openmid-mid.service");
    let out = Command::new(BIN)
        .args(["mid", "install-service", "--user", "openmid", "--config"])
        .arg(&config)
        .arg("--unit-file")
        .arg(&unit)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&unit).expect("unit written");
    assert!(
        text.contains(&format!(
            "\"mid\" \"--config\" \"{}\"",
            config.canonicalize().expect("abs").display()
        )),
        "{text}"
    );
    assert!(text.contains("User=openmid"));

    std::fs::write(
        &config,
        "name = \"svc mid\"\ninstance_url = \"http://x\"\nstate_dir = \"/tmp/x\"\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["mid", "install-service", "--config"])
        .arg(&config)
        .arg("--unit-file")
        .arg(dir.path().join("bad.service"))
        .output()
        .expect("runs");
    assert!(
        !out.status.success(),
        "a broken config is refused at install time"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("name"),
        "names the bad key"
    );

    std::fs::write(
        &config,
        "name = \"m\"\ninstance_url = \"https://x\"\nstate_dir = \"/tmp/x\"\ncolour = \"red\"\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["mid", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown field `colour`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bench_failover_reports_its_figures_as_json() {
    let out = Command::new(BIN)
        .args([
            "bench", "failover", "--rounds", "1", "--jobs", "3", "--json",
        ])
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    let figures: serde_json::Value = serde_json::from_str(last).expect("JSON on the last line");
    for key in [
        "rounds",
        "jobs_in_flight",
        "detect_ms",
        "complete_ms",
        "complete_ms_max",
        "lost",
        "duplicates",
    ] {
        assert!(figures.get(key).is_some(), "{key} in {last}");
    }
    assert_eq!(figures["lost"], 0);
    assert_eq!(figures["duplicates"], 0);
    assert!(figures["detect_ms"].as_i64().is_some_and(|d| d > 0));
}

#[test]
fn bench_command_reports_its_figures_as_json() {
    let figures = bench_json(&[
        "command",
        "--requests",
        "10",
        "--seconds",
        "0.3",
        "--concurrency",
        "2",
        "--stream-bytes",
        "20M",
    ]);
    for key in [
        "rtt_p50_ms",
        "rtt_p99_ms",
        "local_p50_ms",
        "throughput_per_s",
        "local_throughput_per_s",
        "stream_mid_bytes_per_s",
        "stream_local_bytes_per_s",
        "stream_ratio",
        "mid_rss_peak_mb",
    ] {
        assert!(
            figures[key]
                .as_f64()
                .is_some_and(|v| v.is_finite() && v > 0.0),
            "{key} positive and finite in {figures}"
        );
    }
    assert_eq!(figures["mid_failed"], 0);
    assert_eq!(figures["stream_bytes"], 20_000_000);

    // A bad size is refused naming its flag, without a panic.
    let out = Command::new(BIN)
        .args(["bench", "command", "--stream-bytes", "lots"])
        .output()
        .expect("bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--stream-bytes") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn instance_reads_a_toml_config_with_environment_overrides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("instance.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:1\"\nlease_ms = 20000\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write");
    let mut instance = Proc(
        Command::new(BIN)
            .args(["instance", "--config"])
            .arg(&config)
            // The environment wins over the file (port 1 would need root).
            .env("OPENMID_INSTANCE_LISTEN", "127.0.0.1:0")
            .env("OPENMID_INSTANCE_HOSTNAMES", "[\"mid-gateway.internal\"]")
            .env("OPENMID_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("instance starts"),
    );
    let fields = read_fields(&mut instance.0, &["URL", "certificate"]);
    assert!(
        fields
            .get("URL")
            .is_some_and(|u| u.starts_with("https://127.0.0.1:")),
        "{fields:?}"
    );
    let cert =
        std::fs::read(fields.get("certificate").expect("certificate printed")).expect("cert file");
    use rustls_pki_types::pem::PemObject;
    let der: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&cert)
        .filter_map(Result::ok)
        .collect();
    assert!(
        der.first()
            .is_some_and(|c| c.windows(20).any(|w| w == b"mid-gateway.internal")),
        "the extra host name is in the certificate"
    );
    drop(instance);

    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nlease_milliseconds = 5\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["instance", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown field `lease_milliseconds`"),
        "{stderr}"
    );
}

/// Runs `openmid bench …` and returns the JSON object on its last line.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("JSON on the last line")
}

#[test]
fn bench_rest_and_scale_report_their_figures() {
    let rest = bench_json(&[
        "rest",
        "--requests",
        "20",
        "--seconds",
        "0.5",
        "--concurrency",
        "8",
    ]);
    for key in [
        "direct_rps",
        "mid_rps",
        "throughput_ratio",
        "direct_p50_ms",
        "mid_p50_ms",
        "p50_overhead_ms",
        "mid_p99_ms",
        "mid_rss_idle_mb",
        "mid_rss_load_mb",
        "start_to_up_ms",
    ] {
        assert!(rest[key].as_f64().is_some(), "{key} in {rest}");
    }
    assert_eq!(rest["mid_failed"], 0);
    assert!(rest["mid_rps"].as_f64().is_some_and(|r| r > 0.0));
    // cargo builds the MID-only binary beside this one: the MID is measured on it.
    assert_eq!(rest["mid_program"], "openmid-mid", "{rest}");

    let scale = bench_json(&[
        "scale",
        "--mids",
        "20",
        "--idle-seconds",
        "0.5",
        "--pickups",
        "5",
    ]);
    for key in [
        "idle_cpu_percent",
        "idle_rss_mb",
        "pickup_p50_ms",
        "pickup_p99_ms",
    ] {
        assert!(scale[key].as_f64().is_some(), "{key} in {scale}");
    }
}

#[test]
fn check_policy_explains_each_verdict_and_exits_by_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mid.toml");
    std::fs::write(
        &config,
        "name = \"p\"\ninstance_url = \"https://instance.example:8443\"\nstate_dir = \"/var/lib/openmid-mid\"\n\n[policy.http]\ndeny_cidrs = [\"10.9.0.0/16\"]\n\n[[policy.command.programs]]\npath = \"/usr/bin/df\"\nargs = [\"-h\", \"**\"]\n",
    )
    .expect("write");
    let check = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["mid", "--config"])
            .arg(&config)
            .arg("check-policy")
            .args(args)
            .output()
            .expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = check(&["--url", "http://10.9.1.1/x", "--addr", "10.9.1.1"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("policy.http.deny_cidrs[0]"), "{text}");
    let (code, text) = check(&["--url", "http://127.0.0.1:8080/"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("loopback"), "{text}");
    let (code, text) = check(&["--url", "http://10.1.1.1/x", "--addr", "10.1.1.1"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = check(&["--command", "/usr/bin/df", "--", "-h", "/"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("policy.command.programs[0]"), "{text}");
    let (code, text) = check(&["--command", "/bin/rm", "--", "-rf", "/"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("not in policy.command.programs"), "{text}");
}

#[tokio::test]
async fn ctl_discovery_schedules_are_made_listed_run_paused_and_deleted() {
    let stack = Stack::start().await;
    let agent = format!("mid.server.{MID}");
    let create = [
        "discovery",
        "schedules",
        "create",
        "dc-east",
        "--agent",
        &agent,
        "--target",
        "198.18.0.0/30",
        "--port",
        "22",
        "--port",
        "80-81",
        "--cron",
        "0 3 * * *",
        "--time-zone",
        "Europe/Paris",
    ];
    let (ok, stdout, stderr) = ctl(&stack, &create).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("discovery schedule dc-east: enabled, next run 20"),
        "{stdout}"
    );
    let (ok, _, stderr) = ctl(&stack, &create).await;
    assert!(!ok && stderr.contains("exists"), "{stderr}");
    let mut bad = create;
    bad[3] = "bad";
    bad[13] = "61 * * * *";
    let (ok, _, stderr) = ctl(&stack, &bad).await;
    assert!(!ok && stderr.contains("schedule.cron"), "{stderr}");

    let (ok, table, stderr) = ctl(&stack, &["discovery", "schedules", "list"]).await;
    assert!(ok, "{stderr}");
    assert!(
        table.contains("dc-east") && table.contains("0 3 * * * Europe/Paris"),
        "{table}"
    );

    let (ok, stdout, stderr) = ctl(&stack, &["discovery", "schedules", "run", "dc-east"]).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("discovery run dsc_"), "{stdout}");
    let (ok, stdout, stderr) = ctl(
        &stack,
        &["discovery", "list", "--schedule", "dc-east", "--json"],
    )
    .await;
    assert!(ok, "{stderr}");
    let runs: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    assert_eq!(runs[0]["schedule"], "dc-east");
    let (ok, stdout, _) = ctl(
        &stack,
        &["discovery", "list", "--schedule", "other", "--json"],
    )
    .await;
    assert!(ok && stdout.trim() == "[]", "{stdout}");

    let mut paused = create;
    paused[2] = "update";
    let mut args: Vec<&str> = paused.to_vec();
    args.push("--disabled");
    let (ok, stdout, stderr) = ctl(&stack, &args).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("dc-east: paused, next run none"),
        "{stdout}"
    );
    let (ok, shown, _) = ctl(&stack, &["discovery", "schedules", "show", "dc-east"]).await;
    let shown: serde_json::Value = serde_json::from_str(&shown).expect("json");
    assert!(
        ok && shown["enabled"] == false && shown["next_run_at"].is_null(),
        "{shown}"
    );
    assert!(
        shown["last_run"]
            .as_str()
            .is_some_and(|r| r.starts_with("dsc_")),
        "{shown}"
    );

    let (ok, _, stderr) = ctl(&stack, &["discovery", "schedules", "delete", "dc-east"]).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = ctl(&stack, &["discovery", "schedules", "show", "dc-east"]).await;
    assert!(
        !ok && stderr.contains("no discovery schedule named `dc-east`"),
        "{stderr}"
    );
}
