//! The SSH probe against a real OpenSSH server (`/usr/sbin/sshd`), started per test on
//! a free loopback port. Tests that need a local user with a password or sudo need
//! root; without it they print `SKIPPED:` and pass.

#[path = "ssh/sshd.rs"]
mod sshd;

use openmid_mid::config::LocalSecretPolicy;
use openmid_mid::policy::{EgressPolicy, NetworkConfig, PolicyConfig};
use openmid_mid::probes::{self, JobContext, ProbeContext, ProbeError};
use openmid_proto::command::{CommandEnd, CommandExit};
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::ecc::Topic;
use openmid_proto::mid::JobRef;
use openmid_proto::ssh::SshResponse;
use serde_json::{Value, json};
use sshd::{Sshd, TEST_PASSWORD, TEST_USER, current_user, keygen, processes_with, root_or_skip};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A MID's probe side: its state directory (where `ssh/known_hosts` and
/// `ssh/pinned_hosts` live) and a policy allowing loopback for SSH.
struct Mid {
    state: tempfile::TempDir,
    ctx: ProbeContext,
}

fn policy_allowing_loopback() -> EgressPolicy {
    EgressPolicy::new(PolicyConfig {
        ssh: NetworkConfig {
            allow_cidrs: vec!["127.0.0.0/8".into()],
            ..NetworkConfig::default()
        },
        ..PolicyConfig::default()
    })
    .expect("policy")
}

fn context(state: &Path, policy: EgressPolicy) -> ProbeContext {
    ProbeContext::new(1 << 20, LocalSecretPolicy::default(), Arc::new(policy))
        .expect("context")
        .with_bodies(state.join("outbox"), usize::MAX)
}

impl Mid {
    fn new() -> Self {
        let state = tempfile::tempdir().expect("state");
        let ctx = context(state.path(), policy_allowing_loopback());
        Self { state, ctx }
    }

    /// Another MID process on the same state directory (no kept connections).
    fn restarted(&self) -> ProbeContext {
        context(self.state.path(), policy_allowing_loopback())
    }

    fn ssh_dir(&self) -> PathBuf {
        self.state.path().join("ssh")
    }

    /// Lists the server's host key in the MID's known_hosts file.
    fn knows(&self, server: &Sshd) {
        std::fs::create_dir_all(self.ssh_dir()).expect("ssh dir");
        let mut words = server
            .host_key()
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>();
        words.truncate(2);
        let line = format!("[127.0.0.1]:{} {}\n", server.port, words.join(" "));
        std::fs::write(self.ssh_dir().join("known_hosts"), line).expect("known_hosts");
    }

    async fn run(
        &self,
        payload: Value,
        credential: CredentialSpec,
    ) -> Result<SshResponse, ProbeError> {
        run_in(&self.ctx, payload, credential, &job()).await
    }
}

fn job() -> JobContext {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    JobContext::new(JobRef {
        output_id: format!(
            "ssh-test-{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
        attempt: 1,
    })
}

async fn run_in(
    ctx: &ProbeContext,
    payload: Value,
    credential: CredentialSpec,
    job: &JobContext,
) -> Result<SshResponse, ProbeError> {
    let value = probes::run(
        Topic::SSHCommand,
        payload.into(),
        Some(credential),
        job,
        ctx,
    )
    .await?;
    Ok(value.decode().expect("an SshResponse"))
}

fn payload(server: &Sshd, command: &str) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": server.port,
        "credential": {"id": "c1", "name": "test"},
        "command": command,
    })
}

fn with(mut payload: Value, key: &str, value: Value) -> Value {
    payload[key] = value;
    payload
}

fn key_credential(private: &str, passphrase: Option<&str>) -> CredentialSpec {
    CredentialSpec::SshKey {
        username: current_user(),
        private_key: SecretValue::stored(private),
        passphrase: passphrase.map(SecretValue::stored),
    }
}

fn password_credential(password: &str) -> CredentialSpec {
    CredentialSpec::SshPassword {
        username: TEST_USER.into(),
        password: SecretValue::stored(password),
    }
}

/// A server accepting one fresh ed25519 key (no passphrase), and that key.
fn server_with_key() -> (Sshd, CredentialSpec) {
    let keys = tempfile::tempdir().expect("keys");
    let (private, public) = keygen(keys.path(), "id_ed25519", &["-t", "ed25519"], "");
    (Sshd::start(&[&public]), key_credential(&private, None))
}

fn code(r: &SshResponse) -> Option<i32> {
    match r.exit {
        CommandExit::Code { code } => Some(code),
        CommandExit::Signal { .. } => None,
    }
}

fn message(r: Result<SshResponse, ProbeError>) -> (String, ProbeError) {
    let e = r.expect_err("an error");
    (e.to_string(), e)
}

/// Waits until no process runs `sleep <n>`; false if one still does after `within`.
fn gone(n: &str, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if processes_with(&["sleep", n]).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn appears(n: &str, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if !processes_with(&["sleep", n]).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[tokio::test]
async fn password_auth_runs_a_command_with_both_streams_and_its_exit_code() {
    if !root_or_skip("password_auth") {
        return;
    }
    sshd::ensure_test_user();
    let server = Sshd::start(&[]);
    let mid = Mid::new();
    mid.knows(&server);
    let r = mid
        .run(
            payload(&server, "id -un; echo to-stderr >&2; exit 3"),
            password_credential(TEST_PASSWORD),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(r.stdout.text, format!("{TEST_USER}\n"));
    assert_eq!(r.stderr.text, "to-stderr\n");
    assert_eq!(code(&r), Some(3));
    assert_eq!(r.ended_by, CommandEnd::Exit);
    assert_eq!(r.host_key, server.fingerprint());
    assert!(!r.reused_connection && !r.host_key_pinned);
}

#[tokio::test]
async fn a_wrong_password_is_a_credential_error_without_the_secret() {
    if !root_or_skip("wrong_password") {
        return;
    }
    sshd::ensure_test_user();
    let server = Sshd::start(&[]);
    let mid = Mid::new();
    mid.knows(&server);
    let (text, e) = message(
        mid.run(
            payload(&server, "true"),
            password_credential("Not-The-Password-991"),
        )
        .await,
    );
    assert!(matches!(e, ProbeError::Credential(_)), "{text}");
    assert!(
        text.contains("refused the password") && text.contains(TEST_USER),
        "{text}"
    );
    assert!(!text.contains("Not-The-Password-991"), "{text}");
}

#[tokio::test]
async fn key_auth_with_an_openssh_key_and_its_passphrase() {
    let keys = tempfile::tempdir().expect("keys");
    let (private, public) = keygen(keys.path(), "id_pp", &["-t", "ed25519"], "secret-pp");
    let server = Sshd::start(&[&public]);
    let mid = Mid::new();
    mid.knows(&server);
    let r = mid
        .run(
            payload(&server, "echo key-ok"),
            key_credential(&private, Some("secret-pp")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!((r.stdout.text.as_str(), code(&r)), ("key-ok\n", Some(0)));
    // A wrong passphrase, and no passphrase at all, are refused before connecting.
    let (text, e) = message(
        mid.run(
            payload(&server, "true"),
            key_credential(&private, Some("wrong-pp-77")),
        )
        .await,
    );
    assert!(matches!(e, ProbeError::Credential(_)), "{text}");
    assert!(
        !text.contains("wrong-pp-77") && !text.contains("PRIVATE KEY"),
        "{text}"
    );
    let (text, _) = message(
        mid.run(payload(&server, "true"), key_credential(&private, None))
            .await,
    );
    assert!(text.contains("encrypted"), "{text}");
}

#[tokio::test]
async fn key_auth_with_pem_keys_plain_and_encrypted() {
    let keys = tempfile::tempdir().expect("keys");
    let (plain, plain_pub) = keygen(
        keys.path(),
        "id_rsa",
        &["-t", "rsa", "-b", "2048", "-m", "PEM"],
        "",
    );
    let (enc, enc_pub) = keygen(
        keys.path(),
        "id_rsa_enc",
        &["-t", "rsa", "-b", "2048", "-m", "PEM"],
        "pem-pass",
    );
    assert!(
        plain.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{plain}"
    );
    assert!(enc.contains("ENCRYPTED"), "an encrypted PEM key");
    let server = Sshd::start(&[&plain_pub, &enc_pub]);
    let mid = Mid::new();
    mid.knows(&server);
    for credential in [
        key_credential(&plain, None),
        key_credential(&enc, Some("pem-pass")),
    ] {
        let r = mid
            .run(
                with(payload(&server, "echo pem-ok"), "pool_size", json!(1)),
                credential,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
        assert_eq!(r.stdout.text, "pem-ok\n");
        assert!(
            !r.reused_connection,
            "another credential never reuses a connection"
        );
    }
}

#[tokio::test]
async fn a_key_the_server_does_not_accept_is_a_credential_error() {
    let keys = tempfile::tempdir().expect("keys");
    let (_, public) = keygen(keys.path(), "id_ok", &["-t", "ed25519"], "");
    let (other, _) = keygen(keys.path(), "id_other", &["-t", "ed25519"], "");
    let server = Sshd::start(&[&public]);
    let mid = Mid::new();
    mid.knows(&server);
    let (text, e) = message(
        mid.run(payload(&server, "true"), key_credential(&other, None))
            .await,
    );
    assert!(matches!(e, ProbeError::Credential(_)), "{text}");
    assert!(text.contains("refused the key SHA256:"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");
}

#[tokio::test]
async fn an_unknown_host_key_is_refused_showing_what_was_presented() {
    let (server, credential) = server_with_key();
    let mid = Mid::new();
    let (text, _) = message(mid.run(payload(&server, "true"), credential).await);
    assert!(
        text.contains("unknown") && text.contains("none known"),
        "{text}"
    );
    assert!(text.contains(&server.fingerprint()), "{text}");
    assert!(
        text.contains(&mid.ssh_dir().join("known_hosts").display().to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn a_changed_host_key_is_refused_with_both_fingerprints() {
    let (mut server, credential) = server_with_key();
    let mid = Mid::new();
    mid.knows(&server);
    let old = server.fingerprint();
    server.restart_with_new_host_key();
    let new = server.fingerprint();
    assert_ne!(old, new);
    let (text, _) = message(mid.run(payload(&server, "true"), credential).await);
    assert!(
        text.contains("CHANGED") && text.contains(&old) && text.contains(&new),
        "{text}"
    );
}

#[tokio::test]
async fn hashed_known_hosts_entries_are_understood() {
    let (server, credential) = server_with_key();
    let mid = Mid::new();
    let key = server.host_key();
    let mut words = key.split_whitespace();
    let (algorithm, b64) = (words.next().expect("type"), words.next().expect("key"));
    let blob = base64_decode(b64);
    let line = openmid_mid::probes::ssh::known_hosts::hashed_line(
        "127.0.0.1",
        server.port,
        b"0123456789abcdefghij",
        algorithm,
        &blob,
    );
    let file = mid.state.path().join("user_known_hosts");
    std::fs::write(&file, format!("# the user's file\n{line}\n")).expect("write");
    let r = mid
        .run(
            with(
                payload(&server, "echo hashed"),
                "host_key",
                json!({"mode": "known_hosts", "path": file.display().to_string()}),
            ),
            credential,
        )
        .await
        .expect("accepted by the hashed entry");
    assert_eq!(r.stdout.text, "hashed\n");
}

fn base64_decode(b64: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64")
}

#[tokio::test]
async fn trust_on_first_use_pins_then_refuses_a_change() {
    let (mut server, credential) = server_with_key();
    let mid = Mid::new();
    let tofu = |p: Value| with(p, "host_key", json!({"mode": "trust_on_first_use"}));
    let first = mid
        .run(tofu(payload(&server, "echo first")), credential.clone())
        .await
        .expect("first use");
    assert!(first.host_key_pinned);
    assert_eq!(first.host_key, server.fingerprint());
    let pins = std::fs::read_to_string(mid.ssh_dir().join("pinned_hosts")).expect("pins");
    assert!(
        pins.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", server.port)),
        "{pins}"
    );
    // A restarted MID (no kept connection) finds the pin and accepts the same key.
    let again = run_in(
        &mid.restarted(),
        tofu(payload(&server, "true")),
        credential.clone(),
        &job(),
    )
    .await
    .expect("same key");
    assert!(!again.host_key_pinned && !again.reused_connection);
    let old = server.fingerprint();
    server.restart_with_new_host_key();
    let r = run_in(
        &mid.restarted(),
        tofu(payload(&server, "true")),
        credential,
        &job(),
    )
    .await;
    let (text, _) = message(r);
    assert!(
        text.contains("CHANGED") && text.contains(&old) && text.contains(&server.fingerprint()),
        "{text}"
    );
}

#[tokio::test]
async fn a_pinned_key_or_fingerprint_is_accepted_and_another_refused() {
    let (server, credential) = server_with_key();
    let mid = Mid::new();
    for pin in [server.host_key(), server.fingerprint()] {
        let p = with(
            payload(&server, "echo pinned"),
            "host_key",
            json!({"mode": "pinned", "key": pin}),
        );
        let r = mid.run(p, credential.clone()).await.expect("pinned");
        assert_eq!(r.stdout.text, "pinned\n");
    }
    let other = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let p = with(
        payload(&server, "true"),
        "host_key",
        json!({"mode": "pinned", "key": other}),
    );
    let (text, _) = message(mid.run(p, credential).await);
    assert!(
        text.contains(other) && text.contains(&server.fingerprint()),
        "{text}"
    );
}

#[tokio::test]
async fn env_stdin_scripts_and_the_output_cap() {
    let (server, credential) = server_with_key();
    let mid = Mid::new();
    mid.knows(&server);
    let p = json!({
        "host": "127.0.0.1", "port": server.port, "credential": {"id": "c", "name": "n"},
        "command": "printf '%s|%s|' \"$OPENMID_ACCEPTED\" \"$OPENMID_EXPORTED\"; cat",
        "env": {"OPENMID_ACCEPTED": "by-setenv", "OPENMID_EXPORTED": "it's exported"},
        "stdin": "from-stdin",
    });
    let r = mid.run(p, credential.clone()).await.expect("env");
    assert_eq!(r.stdout.text, "by-setenv|it's exported|from-stdin");
    let p = json!({
        "host": "127.0.0.1", "port": server.port, "credential": {"id": "c", "name": "n"},
        "script": "x=script\necho \"$x-ok\"\necho on-stderr >&2\nexit 4\n",
    });
    let r = mid.run(p, credential.clone()).await.expect("script");
    assert_eq!(
        (r.stdout.text.as_str(), r.stderr.text.as_str(), code(&r)),
        ("script-ok\n", "on-stderr\n", Some(4))
    );
    let p = with(
        payload(&server, "seq 1 1000"),
        "max_output_bytes",
        json!(10),
    );
    let r = mid.run(p, credential).await.expect("capped");
    assert_eq!(r.stdout.text, "1\n2\n3\n4\n5\n");
    assert_eq!(r.stdout.bytes, 3893);
    assert_eq!(r.stdout.dropped_bytes, 3883);
}

#[tokio::test]
async fn an_exit_by_signal_is_reported_as_the_signal() {
    let (server, credential) = server_with_key();
    let mid = Mid::new();
    mid.knows(&server);
    let r = mid
        .run(payload(&server, "kill -TERM $$"), credential)
        .await
        .expect("ran");
    assert_eq!(
        r.exit,
        CommandExit::Signal {
            number: 15,
            name: "SIGTERM".into()
        },
        "{r:?}"
    );
    assert_eq!(r.ended_by, CommandEnd::Exit);
}

#[tokio::test]
async fn sudo_is_fed_the_password_which_never_shows() {
    if !root_or_skip("sudo") {
        return;
    }
    if !Path::new("/usr/bin/sudo").exists() {
        println!("SKIPPED: sudo: /usr/bin/sudo is not installed");
        return;
    }
    sshd::ensure_test_user();
    let keys = tempfile::tempdir().expect("keys");
    let (private, public) = keygen(keys.path(), "id_sudo", &["-t", "ed25519"], "");
    let server = Sshd::start(&[&public]);
    let mid = Mid::new();
    mid.knows(&server);
    let p = json!({
        "host": "127.0.0.1", "port": server.port, "credential": {"id": "c", "name": "n"},
        "command": "id -u; printf '%s|' \"$OPENMID_ACCEPTED\"; cat", "sudo": true,
        "env": {"OPENMID_ACCEPTED": "kept-under-sudo"}, "stdin": "stdin-under-sudo",
    });
    let r = mid
        .run(p.clone(), password_credential(TEST_PASSWORD))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(
        r.stdout.text, "0\nkept-under-sudo|stdin-under-sudo",
        "{r:?}"
    );
    assert!(!r.stdout.text.contains(TEST_PASSWORD) && !r.stderr.text.contains(TEST_PASSWORD));
    assert!(
        !r.stderr.text.contains("openmid:"),
        "markers are taken out: {:?}",
        r.stderr.text
    );
    // Logged in by key, the MID has no password to give when sudo asks for one.
    let by_key = CredentialSpec::SshKey {
        username: TEST_USER.into(),
        private_key: SecretValue::stored(private),
        passphrase: None,
    };
    let (text, e) = message(mid.run(p, by_key).await);
    assert!(matches!(e, ProbeError::Credential(_)), "{text}");
    assert!(text.contains("asked for a password"), "{text}");
    // A command run as root through sudo is stopped on cancellation too.
    let job = job();
    let cancel = job.cancel.clone();
    let watcher = tokio::task::spawn_blocking(move || {
        let seen = appears("31339", Duration::from_secs(10));
        cancel.cancel();
        seen
    });
    let p = with(
        with(payload(&server, "sleep 31339"), "sudo", json!(true)),
        "pool_size",
        json!(2),
    );
    let r = run_in(&mid.ctx, p, password_credential(TEST_PASSWORD), &job)
        .await
        .expect("a result for the cancelled sudo run");
    assert!(watcher.await.expect("watcher"), "the remote sleep started");
    assert_eq!(r.ended_by, CommandEnd::Cancelled);
    assert!(
        gone("31339", Duration::from_secs(5)),
        "the remote root process is gone"
    );
}

#[tokio::test]
async fn a_cancelled_command_is_stopped_on_the_server() {
    let (server, credential) = server_with_key();
    let mid = Mid::new();
    mid.knows(&server);
    let job = job();
    let cancel = job.cancel.clone();
    let watcher = tokio::task::spawn_blocking(move || {
        let seen = appears("31337", Duration::from_secs(10));
        cancel.cancel();
        seen
    });
    let r = run_in(
        &mid.ctx,
        payload(&server, "sleep 31337; echo after"),
        credential,
        &job,
    )
    .await
    .expect("a result for the cancelled run");
    assert!(watcher.await.expect("watcher"), "the remote sleep started");
    assert_eq!(r.ended_by, CommandEnd::Cancelled);
    assert!(
        gone("31337", Duration::from_secs(5)),
        "the remote process is gone"
    );
    assert!(!r.stdout.text.contains("after"));
}

#[tokio::test]
async fn a_command_past_its_timeout_is_stopped_on_the_server() {
    let (server, credential) = server_with_key();
    let mid = Mid::new();
    mid.knows(&server);
    let started = Instant::now();
    let p = with(
        payload(&server, "echo before; sleep 31338"),
        "timeout_ms",
        json!(1500),
    );
    let r = mid
        .run(p, credential)
        .await
        .expect("a result for the timed-out run");
    assert_eq!(r.ended_by, CommandEnd::Timeout);
    assert_eq!(r.stdout.text, "before\n");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(
        gone("31338", Duration::from_secs(5)),
        "the remote process is gone"
    );
}

#[tokio::test]
async fn a_command_ignoring_the_signal_is_killed_through_a_second_channel() {
    let (server, credential) = server_with_key();
    let mid = Mid::new();
    mid.knows(&server);
    // Ignored signals stay ignored across exec: neither the shell nor sleep dies of the
    // SSH signal request, as with a server that does not deliver it.
    let p = with(
        payload(&server, "trap '' TERM; sleep 31340"),
        "timeout_ms",
        json!(1000),
    );
    let r = mid.run(p, credential.clone()).await.expect("a result");
    assert_eq!(r.ended_by, CommandEnd::Timeout);
    assert_eq!(
        r.exit,
        CommandExit::Signal {
            number: 9,
            name: "SIGKILL".into()
        },
        "{r:?}"
    );
    assert!(
        gone("31340", Duration::from_secs(5)),
        "the remote process is gone"
    );
    let after = mid
        .run(payload(&server, "echo still-usable"), credential)
        .await
        .expect("next job");
    assert_eq!(after.stdout.text, "still-usable\n");
}

#[tokio::test]
async fn connections_are_reused_and_a_dead_one_is_replaced() {
    let (server, credential) = server_with_key();
    let mid = Mid::new();
    mid.knows(&server);
    let first = mid
        .run(payload(&server, "echo 1"), credential.clone())
        .await
        .expect("first");
    assert!(!first.reused_connection);
    assert_eq!(mid.ctx.ssh.idle(), 1);
    let second = mid
        .run(payload(&server, "echo 2"), credential.clone())
        .await
        .expect("second");
    assert!(
        second.reused_connection,
        "the kept connection served the second job"
    );
    assert!(
        server.kill_connections() > 0,
        "the server side of the connection was killed"
    );
    let third = mid
        .run(payload(&server, "echo 3"), credential)
        .await
        .expect("a dead kept connection does not fail the job");
    assert_eq!(third.stdout.text, "3\n");
    assert!(!third.reused_connection);
}

#[tokio::test]
async fn jobs_past_the_pool_size_wait_for_a_connection() {
    let (server, credential) = server_with_key();
    let mid = Mid::new();
    mid.knows(&server);
    let one = |command: &str| with(payload(&server, command), "pool_size", json!(1));
    let started = Instant::now();
    let (a, b) = tokio::join!(mid.run(one("sleep 1; echo a"), credential.clone()), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        mid.run(one("echo b"), credential.clone()).await
    });
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_eq!(
        (a.stdout.text.as_str(), b.stdout.text.as_str()),
        ("a\n", "b\n")
    );
    assert!(
        !a.reused_connection && b.reused_connection,
        "b waited for a's connection"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(mid.ctx.ssh.idle(), 1, "one connection in all");
}

#[tokio::test]
async fn the_egress_policy_refuses_loopback_by_default_naming_the_rule() {
    let (server, credential) = server_with_key();
    let state = tempfile::tempdir().expect("state");
    let ctx = context(state.path(), EgressPolicy::default());
    for host in ["127.0.0.1", "localhost"] {
        let p = with(payload(&server, "true"), "host", json!(host));
        let (text, e) = message(run_in(&ctx, p, credential.clone(), &job()).await);
        assert!(matches!(e, ProbeError::Policy(_)), "{host}: {text}");
        assert!(text.contains("policy.ssh.allow_cidrs"), "{host}: {text}");
    }
    assert_eq!(
        ctx.policy.denials().of(openmid_mid::policy::Protocol::Ssh),
        2
    );
}
