//! Tests of the whole policy as the MID uses it: from TOML, through each rule, to the
//! resolver, redirects and explanations.

use super::*;
use proptest::prelude::*;
use std::net::IpAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    policy: EgressPolicy,
}

fn parse(text: &str) -> Result<EgressPolicy, String> {
    toml::from_str::<File>(text)
        .map(|f| f.policy)
        .map_err(|e| e.to_string())
}

fn policy(text: &str) -> EgressPolicy {
    parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn url(text: &str) -> url::Url {
    url::Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn denial<T: fmt::Debug>(result: Result<T, Denial>) -> Denial {
    match result {
        Ok(v) => panic!("allowed: {v:?}"),
        Err(d) => d,
    }
}

const HTTP: Protocol = Protocol::Http;

/// The example of the module documentation, kept in step with it.
const EXAMPLE: &str = r#"
[policy.default]
deny_cidrs = ["10.99.0.0/16"]

[policy.http]
allow_hosts = ["*.corp.example.com", "api.example.com"]
allow_cidrs = ["10.0.0.0/8"]
allow_ports = [443, "8000-8999"]
deny_ports = ["1-1023"]

[policy.command]
interpreters = ["/bin/sh"]

[[policy.command.programs]]
path = "/usr/bin/df"
args = ["-h", "**"]
env = ["LANG", "LC_*"]
max_runtime_secs = 30

[[policy.command.programs]]
path = "/bin/sh"
cwd = ["/var/lib/openmid/work"]
max_runtime_secs = 120
"#;

#[test]
fn the_documented_example_parses_and_round_trips() {
    let p = policy(EXAMPLE);
    assert_eq!(p.config().http.allow_ports.len(), 2);
    let written = toml::to_string(&p).unwrap_or_else(|e| panic!("{e}"));
    let again: EgressPolicy = toml::from_str(&written).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.config(), p.config());
    // With the policy in place, `deny_ports = ["1-1023"]` wins over `allow_ports = [443]`.
    assert!(matches!(
        p.check_host(HTTP, "db.corp.example.com", 443),
        Err(Denial::Denied { ref rule, .. }) if rule == "policy.http.deny_ports[0]"
    ));
    assert!(p.check_host(HTTP, "db.corp.example.com", 8080).is_ok());
}

#[test]
fn a_mid_config_takes_the_policy_table_and_defaults_without_it() {
    let base = "name = \"m1\"\ninstance_url = \"https://i:8443\"\nstate_dir = \"/tmp/m1\"\n";
    let plain: crate::config::MidConfig = toml::from_str(base).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plain.policy.config(), &PolicyConfig::default());
    let with: crate::config::MidConfig =
        toml::from_str(&format!("{base}{EXAMPLE}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(with.policy.config().command.programs.len(), 2);
    let bad = format!("{base}[policy.http]\nallow_cidrs = [\"10.0.0.0/33\"]\n");
    let err = toml::from_str::<crate::config::MidConfig>(&bad)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("policy.http.allow_cidrs[0]"), "{err}");
}

#[test]
fn bad_settings_are_refused_at_load_naming_the_key() {
    let cases = [
        (
            "[policy.http]\nallow_cidrs = [\"10.0.0.0/33\"]",
            "policy.http.allow_cidrs[0]: ",
        ),
        (
            "[policy.default]\ndeny_cidrs = [\"10.0.0.0/8\", \"bad\"]",
            "policy.default.deny_cidrs[1]: ",
        ),
        (
            "[policy.ssh]\nallow_cidrs = [\"10.1.2.3/8\"]",
            "did you mean 10.0.0.0/8",
        ),
        (
            "[policy.sql]\nallow_hosts = [\"a.*.com\"]",
            "policy.sql.allow_hosts[0]: ",
        ),
        (
            "[policy.ldap]\ndeny_hosts = [\"10.0.0.1\"]",
            "policy.ldap.deny_hosts[0]: ",
        ),
        (
            "[policy.snmp]\nallow_ports = [0]",
            "policy.snmp.allow_ports[0]: ",
        ),
        (
            "[policy.scan]\ndeny_ports = [\"9-1\"]",
            "policy.scan.deny_ports[0]: ",
        ),
        (
            "[policy.http]\nallow_ports = [70000]",
            "policy.http.allow_ports[0]: ",
        ),
        (
            "[[policy.command.programs]]\npath = \"df\"",
            "policy.command.programs[0].path: must be an absolute path",
        ),
        (
            "[[policy.command.programs]]\npath = \"/bin/../tmp/x\"",
            "policy.command.programs[0].path: ",
        ),
        (
            "[[policy.command.programs]]\npath = \"/bin/ls\"\nargs = [\"**\", \"-l\"]",
            "policy.command.programs[0].args[0]: `**`",
        ),
        (
            "[[policy.command.programs]]\npath = \"/bin/ls\"\nargs = [\"a\\\\\"]",
            "policy.command.programs[0].args[0]: ",
        ),
        (
            "[[policy.command.programs]]\npath = \"/bin/ls\"\ncwd = [\"tmp\"]",
            "policy.command.programs[0].cwd[0]: ",
        ),
        (
            "[[policy.command.programs]]\npath = \"/bin/ls\"\nenv = [\"A=B\"]",
            "policy.command.programs[0].env[0]: ",
        ),
        (
            "[[policy.command.programs]]\npath = \"/bin/ls\"\nmax_runtime_secs = 0",
            "policy.command.programs[0].max_runtime_secs: must be 1–86400",
        ),
        (
            "[policy.command]\ninterpreters = [\"sh\"]",
            "policy.command.interpreters[0]: ",
        ),
        (
            "[policy.command]\ninterpreters = [\"/bin/sh\"]",
            "policy.command.interpreters[0]: /bin/sh has no policy.command.programs entry",
        ),
        ("[policy.soap]\nallow_cidrs = []", "unknown field `soap`"),
        (
            "[policy.http]\nallow_cidr = []",
            "unknown field `allow_cidr`",
        ),
    ];
    for (text, want) in cases {
        let err = parse(text).err().unwrap_or_default();
        assert!(err.contains(want), "{text}\n→ {err}");
    }
}

#[test]
fn the_default_refuses_the_mid_hosts_own_and_metadata_addresses() {
    let p = EgressPolicy::default();
    let cases = [
        ("127.0.0.1", "loopback addresses"),
        ("127.8.9.10", "loopback addresses"),
        ("::1", "loopback addresses"),
        ("::ffff:127.0.0.1", "loopback addresses"),
        ("0.0.0.0", "unspecified addresses"),
        ("::", "unspecified addresses"),
        ("169.254.10.1", "link-local addresses"),
        ("fe80::1", "link-local addresses"),
        ("169.254.169.254", "cloud metadata addresses"),
        ("::ffff:169.254.169.254", "cloud metadata addresses"),
        ("fd00:ec2::254", "cloud metadata addresses"),
        ("100.100.100.200", "cloud metadata addresses"),
    ];
    for (host, words) in cases {
        let text = denial(p.check_host(HTTP, host, 80)).to_string();
        assert!(text.contains(words), "{host}: {text}");
        assert!(text.contains("policy.http.allow_cidrs"), "{text}");
        let sock = SocketAddr::new(ip(host), 80);
        assert!(
            p.check_addr(HTTP, "svc.example.com", sock).is_err(),
            "{host}"
        );
    }
    for host in [
        "10.0.0.1",
        "8.8.8.8",
        "2001:db8::1",
        "example.com",
        "localhost",
    ] {
        // Names pass before resolution: `localhost` is refused by its address.
        assert!(p.check_host(HTTP, host, 80).is_ok(), "{host}");
    }
    let text = denial(p.check_host(HTTP, "127.0.0.1", 8080)).to_string();
    assert_eq!(
        text,
        "egress policy (http) refuses 127.0.0.1:8080: default: loopback addresses are refused \
         (allow them with policy.http.allow_cidrs, e.g. \"127.0.0.1/32\")"
    );
}

#[test]
fn only_an_allow_entry_inside_a_built_in_range_lifts_it() {
    let p = policy("[policy.http]\nallow_cidrs = [\"127.0.0.1/32\", \"169.254.0.0/16\"]");
    assert!(p.check_host(HTTP, "127.0.0.1", 8080).is_ok());
    assert!(p.check_host(HTTP, "::ffff:127.0.0.1", 8080).is_ok());
    assert!(p.check_host(HTTP, "127.0.0.2", 8080).is_err());
    assert!(p.check_host(HTTP, "169.254.3.4", 80).is_ok());
    // The metadata address is its own range: link-local does not lift it.
    let d = denial(p.check_host(HTTP, "169.254.169.254", 80));
    assert!(
        matches!(
            d,
            Denial::Default {
                builtin: builtin::Builtin::Metadata,
                ..
            }
        ),
        "{d}"
    );
    // Only http's rules changed.
    assert!(p.check_host(Protocol::Ssh, "127.0.0.1", 22).is_err());

    let broad = policy("[policy.http]\nallow_cidrs = [\"0.0.0.0/0\", \"::/0\"]");
    assert!(broad.check_host(HTTP, "8.8.8.8", 443).is_ok());
    for host in ["127.0.0.1", "169.254.169.254", "::1", "fe80::1"] {
        assert!(broad.check_host(HTTP, host, 80).is_err(), "{host}");
    }
    let meta = policy("[policy.http]\nallow_cidrs = [\"169.254.169.254\"]");
    assert!(meta.check_host(HTTP, "169.254.169.254", 80).is_ok());
}

#[test]
fn deny_entries_win_and_name_themselves() {
    let p = policy(
        "[policy.default]\ndeny_cidrs = [\"10.9.0.0/16\"]\n\
         [policy.http]\nallow_cidrs = [\"10.0.0.0/8\"]\ndeny_cidrs = [\"10.1.0.0/16\", \"10.2.0.0/16\", \"10.3.0.0/16\"]\n\
         deny_hosts = [\"*.lab.corp\"]\n",
    );
    let d = denial(p.check_host(HTTP, "10.3.0.7", 80));
    assert_eq!(
        d.to_string(),
        "egress policy (http) refuses 10.3.0.7:80: it matches policy.http.deny_cidrs[2] \
         (10.3.0.0/16); remove or narrow that entry to allow it"
    );
    let d = denial(p.check_host(HTTP, "10.9.1.1", 80));
    assert!(
        d.to_string()
            .contains("policy.default.deny_cidrs[0] (10.9.0.0/16)"),
        "{d}"
    );
    let d = denial(p.check_host(HTTP, "db.lab.corp", 80));
    assert!(
        d.to_string()
            .contains("policy.http.deny_hosts[0] (*.lab.corp)"),
        "{d}"
    );
    assert!(p.check_host(HTTP, "10.4.0.1", 80).is_ok());
    let d = denial(p.check_host(HTTP, "192.168.1.1", 80));
    assert_eq!(
        d.to_string(),
        "egress policy (http) refuses 192.168.1.1:80: the address is not in policy.http.allow_cidrs; add it there to allow it"
    );
    // A resolved address is judged the same way.
    let d = denial(p.check_addr(HTTP, "app.corp", addr("10.1.2.3:443")));
    assert!(d.to_string().contains("app.corp:443 (10.1.2.3)"), "{d}");
}

#[test]
fn allow_hosts_restrict_names_and_ip_literals_alike() {
    let p = policy("[policy.http]\nallow_hosts = [\"*.corp.example.com\", \"api.example.com\"]");
    assert!(p.check_host(HTTP, "db.corp.example.com", 443).is_ok());
    assert!(p.check_host(HTTP, "API.example.com.", 443).is_ok());
    let d = denial(p.check_host(HTTP, "evil.example.net", 443));
    assert!(
        matches!(
            d,
            Denial::NotAllowed {
                aspect: Aspect::HostName,
                ..
            }
        ),
        "{d}"
    );
    assert!(d.to_string().contains("policy.http.allow_hosts"), "{d}");
    // An IP literal has no name to match: without allow_cidrs it is refused.
    let d = denial(p.check_host(HTTP, "8.8.8.8", 443));
    assert!(
        matches!(
            d,
            Denial::NotAllowed {
                aspect: Aspect::AddressWithoutName,
                ..
            }
        ),
        "{d}"
    );
    assert!(d.to_string().contains("policy.http.allow_cidrs"), "{d}");
    // A listed name may resolve anywhere except the built-in ranges.
    assert!(
        p.check_addr(HTTP, "db.corp.example.com", addr("52.1.2.3:443"))
            .is_ok()
    );
    assert!(
        p.check_addr(HTTP, "db.corp.example.com", addr("127.0.0.1:443"))
            .is_err()
    );
    assert!(
        p.check_addr(HTTP, "evil.example.net", addr("52.1.2.3:443"))
            .is_err()
    );
    // check_addr with an IP for a name checks that address and the one connected to.
    assert!(p.check_addr(HTTP, "8.8.8.8", addr("8.8.8.8:443")).is_err());
    let lax = EgressPolicy::default();
    assert!(
        lax.check_addr(HTTP, "10.0.0.1", addr("10.0.0.1:80"))
            .is_ok()
    );
    let d = denial(lax.check_addr(HTTP, "10.0.0.1", addr("127.0.0.1:80")));
    assert!(d.to_string().contains("refuses 127.0.0.1:80"), "{d}");

    let both = policy("[policy.http]\nallow_hosts = [\"*.corp\"]\nallow_cidrs = [\"10.0.0.0/8\"]");
    assert!(both.check_host(HTTP, "10.1.1.1", 80).is_ok());
    assert!(both.check_addr(HTTP, "a.corp", addr("10.1.1.1:80")).is_ok());
    assert!(
        both.check_addr(HTTP, "a.corp", addr("52.1.1.1:80"))
            .is_err()
    );
}

#[test]
fn ports_are_checked_single_and_in_ranges() {
    let p =
        policy("[policy.sql]\nallow_ports = [5432, \"3306\", \"8000-8999\"]\ndeny_ports = [8443]");
    let sql = Protocol::Sql;
    for ok in [5432, 3306, 8000, 8999] {
        assert!(p.check_host(sql, "db.corp", ok).is_ok(), "{ok}");
    }
    let d = denial(p.check_host(sql, "db.corp", 22));
    assert!(
        matches!(
            d,
            Denial::NotAllowed {
                aspect: Aspect::Port,
                ..
            }
        ),
        "{d}"
    );
    assert!(d.to_string().contains("policy.sql.allow_ports"), "{d}");
    let d = denial(p.check_host(sql, "db.corp", 8443));
    assert!(
        d.to_string().contains("policy.sql.deny_ports[0] (8443)"),
        "{d}"
    );
    assert!(p.check_host(HTTP, "db.corp", 22).is_ok());
}

#[test]
fn a_protocols_allow_list_replaces_the_defaults_and_deny_lists_add_up() {
    let p = policy(
        "[policy.default]\nallow_cidrs = [\"10.0.0.0/8\"]\ndeny_ports = [25]\n\
         [policy.ssh]\nallow_cidrs = [\"192.168.0.0/16\"]\n",
    );
    let ssh = Protocol::Ssh;
    assert!(p.check_host(HTTP, "10.1.1.1", 80).is_ok());
    let d = denial(p.check_host(HTTP, "192.168.1.1", 80));
    assert!(d.to_string().contains("policy.default.allow_cidrs"), "{d}");
    assert!(p.check_host(ssh, "192.168.1.1", 22).is_ok());
    assert!(p.check_host(ssh, "10.1.1.1", 22).is_err());
    let d = denial(p.check_host(ssh, "192.168.1.1", 25));
    assert!(
        d.to_string().contains("policy.default.deny_ports[0]"),
        "{d}"
    );
}

#[test]
fn urls_are_checked_by_host_and_port_and_shown_without_secrets() {
    let p = policy("[policy.http]\nallow_ports = [443]");
    assert!(
        p.check_url(HTTP, &url("https://api.example.com/v1?q=1"))
            .is_ok()
    );
    let d = denial(p.check_url(
        HTTP,
        &url("http://user:hunter2@api.example.com/x?token=s3cret"),
    ));
    let text = d.to_string();
    assert!(text.contains("api.example.com:80"), "{text}");
    for secret in ["hunter2", "s3cret", "token", "user"] {
        assert!(!text.contains(secret), "{text}");
    }
    let d = denial(p.check_url(HTTP, &url("https://[::ffff:169.254.169.254]/latest")));
    assert!(d.to_string().contains("cloud metadata"), "{d}");
    let d = denial(p.check_url(HTTP, &url("https://[fe80::1]:443/")));
    assert!(d.to_string().contains("[fe80::1]:443"), "{d}");
    let d = denial(p.check_url(HTTP, &url("unix:/run/docker.sock")));
    assert!(
        matches!(
            d,
            Denial::NoTarget {
                reason: "the URL has no host",
                ..
            }
        ),
        "{d}"
    );
    let d = denial(p.check_url(HTTP, &url("foo://host/")));
    assert!(matches!(d, Denial::NoTarget { .. }), "{d}");
    assert!(matches!(
        p.check_host(HTTP, "", 443),
        Err(Denial::NoTarget { .. })
    ));
}

fn commands() -> EgressPolicy {
    policy(
        r#"
[policy.command]
interpreters = ["/bin/sh"]
[[policy.command.programs]]
path = "/usr/bin/df"
args = ["-h", "**"]
env = ["LANG", "LC_*"]
max_runtime_secs = 30
[[policy.command.programs]]
path = "/usr/bin/df"
args = ["-i"]
[[policy.command.programs]]
path = "/usr/bin/tail"
args = ["-n", "*", "/var/log/*.log"]
[[policy.command.programs]]
path = "/bin/sh"
args = ["-e"]
max_runtime_secs = 120
"#,
    )
}

const NONE: &[&str] = &[];

#[test]
fn commands_run_only_as_an_entry_allows() {
    let p = commands();
    let df = Path::new("/usr/bin/df");
    let ok = p.check_command(df, &["-h", "/", "/home"], None, &["LANG", "LC_ALL"], None);
    assert_eq!(
        ok,
        Ok(Allowed {
            timeout: Duration::from_secs(30),
            rule: "policy.command.programs[0]".into()
        })
    );
    let second = p.check_command(df, &["-i"], None, NONE, Some(Duration::from_secs(5)));
    assert_eq!(
        second.map(|a| (a.rule, a.timeout)),
        Ok(("policy.command.programs[1]".into(), Duration::from_secs(5)))
    );
    let tail = Path::new("/usr/bin/tail");
    assert!(
        p.check_command(tail, &["-n", "20", "/var/log/syslog.log"], None, NONE, None)
            .is_ok()
    );
    // Neither entry allows `df -x`; both say why, without showing the argument.
    let d = denial(p.check_command(df, &["-x", "s3cret"], None, NONE, None));
    assert_eq!(
        d.to_string(),
        "egress policy refuses running /usr/bin/df: no entry allows this run: \
         policy.command.programs[0]: argument 0 does not match args[0] (`-h`); \
         policy.command.programs[1]: 2 arguments given, its args patterns allow 1 \
         (end them with \"**\" to allow more)"
    );
    assert!(!d.to_string().contains("s3cret"));
    let d = denial(p.check_command(tail, &["-n", "1", "/etc/shadow"], None, NONE, None));
    assert!(
        d.to_string()
            .contains("argument 2 does not match args[2] (`/var/log/*.log`)"),
        "{d}"
    );
    let d = denial(p.check_command(tail, &["-n"], None, NONE, None));
    assert!(
        d.to_string()
            .contains("1 arguments given, its args patterns need 3"),
        "{d}"
    );
    let d = denial(p.check_command(df, &["-h"], None, &["LD_PRELOAD"], None));
    assert!(
        d.to_string()
            .contains("environment variable LD_PRELOAD is not in its env list"),
        "{d}"
    );
    let d = denial(p.check_command(df, &["-h"], None, NONE, Some(Duration::from_millis(30_500))));
    assert!(
        d.to_string()
            .contains("a run time of 31 s was asked for, its max_runtime_secs is 30"),
        "{d}"
    );
    let d = denial(p.check_command(Path::new("/usr/bin/rm"), &["-rf", "/"], None, NONE, None));
    assert!(
        matches!(
            d,
            Denial::Command {
                reason: CommandRefusal::NotListed,
                ..
            }
        ),
        "{d}"
    );
    for relative in ["df", "./df", "/usr/bin/../bin/df"] {
        let d = denial(p.check_command(Path::new(relative), &["-h"], None, NONE, None));
        assert!(
            matches!(
                d,
                Denial::Command {
                    reason: CommandRefusal::NotAbsolute,
                    ..
                }
            ),
            "{d}"
        );
    }
}

#[test]
fn scripts_run_only_by_listed_interpreters_within_their_entry() {
    let p = commands();
    let sh = Path::new("/bin/sh");
    let ok = p.check_script(sh, &["-e"], None, NONE, None);
    assert_eq!(ok.map(|a| a.timeout), Ok(Duration::from_secs(120)));
    let d = denial(p.check_script(sh, NONE, None, NONE, None));
    assert!(
        d.to_string()
            .contains("policy.command.programs[3]: 0 arguments given"),
        "{d}"
    );
    let d = denial(p.check_script(Path::new("/usr/bin/df"), &["-h"], None, NONE, None));
    assert!(
        matches!(
            d,
            Denial::Command {
                reason: CommandRefusal::NotInterpreter,
                ..
            }
        ),
        "{d}"
    );
    // The entry for /bin/sh does not allow `-c <anything>` as a plain command either.
    assert!(
        p.check_command(sh, &["-c", "curl evil"], None, NONE, None)
            .is_err()
    );
}

#[test]
fn working_directories_must_resolve_inside_an_allowed_prefix() {
    let root = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let work = root.path().join("work");
    let outside = root.path().join("outside");
    for dir in [&work, &work.join("job1"), &outside] {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    }
    let link = work.join("escape");
    std::os::unix::fs::symlink(&outside, &link).unwrap_or_else(|e| panic!("{e}"));
    let p = policy(&format!(
        "[[policy.command.programs]]\npath = \"/bin/ls\"\ncwd = [\"{}\", \"{}\"]\n\
         [[policy.command.programs]]\npath = \"/bin/pwd\"\n",
        root.path().join("missing").display(),
        work.display()
    ));
    let ls = Path::new("/bin/ls");
    assert!(p.check_command(ls, NONE, Some(&work), NONE, None).is_ok());
    assert!(
        p.check_command(ls, NONE, Some(&work.join("job1")), NONE, None)
            .is_ok()
    );
    assert!(p.check_command(ls, NONE, None, NONE, None).is_ok());
    let refused = |cwd: &Path| denial(p.check_command(ls, NONE, Some(cwd), NONE, None)).to_string();
    assert!(refused(&outside).contains("is not inside any of its cwd entries"));
    assert!(refused(&link).contains("is not inside any of its cwd entries"));
    assert!(refused(&work.join("job1/../../outside")).contains("not inside"));
    assert!(refused(&work.join("nope")).contains("it does not exist"));
    assert!(refused(Path::new("work")).contains("it does not exist"));
    let work_sibling = root.path().join("workshop");
    std::fs::create_dir_all(&work_sibling).unwrap_or_else(|e| panic!("{e}"));
    assert!(refused(&work_sibling).contains("not inside"));
    let d = denial(p.check_command(Path::new("/bin/pwd"), NONE, Some(&work), NONE, None));
    assert!(d.to_string().contains("the entry has no cwd list"), "{d}");
}

#[test]
fn refusals_are_counted_per_protocol_and_shared_by_clones() {
    let p = commands();
    let clone = p.clone();
    assert_eq!(p.denials().total(), 0);
    let _ = p.check_host(HTTP, "127.0.0.1", 80);
    let _ = p.check_url(HTTP, &url("http://169.254.169.254/"));
    let _ = p.check_addr(Protocol::Ssh, "h", addr("127.0.0.1:22"));
    let _ = p.check_command(Path::new("/bin/rm"), NONE, None, NONE, None);
    let _ = p.check_host(HTTP, "example.com", 80);
    let counts = clone.denials();
    assert_eq!(counts.of(HTTP), 2);
    assert_eq!(counts.of(Protocol::Ssh), 1);
    assert_eq!(counts.command, 1);
    assert_eq!(counts.total(), 4);
}

#[test]
fn the_default_policy_is_the_empty_table_compiled() {
    let compiled = EgressPolicy::new(PolicyConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let default = EgressPolicy::default();
    for protocol in Protocol::ALL {
        for host in ["127.0.0.1", "10.0.0.1", "fe80::1", "example.com"] {
            assert_eq!(
                default.check_host(protocol, host, 80),
                compiled.check_host(protocol, host, 80),
                "{protocol} {host}"
            );
        }
    }
    assert_eq!(
        default.check_command(Path::new("/bin/ls"), NONE, None, NONE, None),
        compiled.check_command(Path::new("/bin/ls"), NONE, None, NONE, None)
    );
}

fn loopback() -> Arc<EgressPolicy> {
    Arc::new(policy("[policy.http]\nallow_cidrs = [\"127.0.0.1/32\"]"))
}

#[tokio::test]
async fn the_resolver_drops_refused_addresses_and_fails_when_none_remain() {
    let refusing = PolicyResolver::new(Arc::new(EgressPolicy::default()), HTTP);
    match refusing.lookup("localhost").await {
        Err(ResolveError::Denied(d)) => {
            assert!(d.to_string().contains("localhost ("), "{d}");
            assert!(d.to_string().contains("loopback addresses"), "{d}");
        }
        other => panic!("{other:?}"),
    }
    let allowing = PolicyResolver::new(loopback(), HTTP);
    let found = allowing
        .lookup("localhost")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // ::1 (if /etc/hosts lists it) is dropped: only 127.0.0.1/32 was allowed.
    assert_eq!(found, vec![addr("127.0.0.1:0")]);
    assert_eq!(
        allowing.lookup("127.0.0.1").await.ok(),
        Some(vec![addr("127.0.0.1:0")])
    );
    let named = PolicyResolver::new(
        Arc::new(policy("[policy.http]\ndeny_hosts = [\"localhost\"]")),
        HTTP,
    );
    assert!(matches!(
        named.lookup("localhost").await,
        Err(ResolveError::Denied(Denial::Denied { .. }))
    ));
    // Numeric forms the system resolver accepts are judged by the address they mean.
    assert!(matches!(
        refusing.lookup("127.1").await,
        Err(ResolveError::Denied(_))
    ));
    let d = denial(EgressPolicy::default().check_url(HTTP, &url("http://2130706433/")));
    assert!(d.to_string().contains("127.0.0.1:80"), "{d}");
    assert!(matches!(
        allowing.lookup("").await,
        Err(ResolveError::Denied(Denial::NoTarget { .. }))
    ));
    assert!(matches!(
        allowing.lookup("no-such-host.invalid").await,
        Err(ResolveError::Lookup { .. } | ResolveError::Timeout { .. })
    ));
}

/// A one-connection-at-a-time HTTP server answering every request with `response`.
async fn serve(response: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let local = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    local
}

fn ok_response() -> String {
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".into()
}

fn client(policy: &Arc<EgressPolicy>) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(PolicyResolver::new(policy.clone(), HTTP))
        .redirect(policy.clone().redirect_policy(HTTP, 3))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_reqwest_client_with_the_resolver_refuses_names_of_refused_addresses() {
    let server = serve(ok_response()).await;
    let by_name = format!("http://localhost:{}/", server.port());
    let refusing = Arc::new(EgressPolicy::default());
    let err = client(&refusing).get(&by_name).send().await.err();
    let found = err.as_ref().and_then(|e| find_denial(e));
    assert!(
        matches!(
            found,
            Some(Denial::Default {
                builtin: builtin::Builtin::Loopback,
                ..
            })
        ),
        "{err:?}"
    );
    assert_eq!(refusing.denials().of(HTTP), 1);
    let allowing = loopback();
    let body = client(&allowing)
        .get(&by_name)
        .send()
        .await
        .and_then(|r| r.error_for_status());
    assert!(body.is_ok(), "{body:?}");
}

#[tokio::test]
async fn redirects_are_followed_only_where_the_policy_allows() {
    let target = serve(ok_response()).await;
    let to_metadata = serve(
        "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
    )
    .await;
    let to_target = serve(format!(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{}/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        target.port()
    ))
    .await;
    let p = loopback();
    let err = client(&p)
        .get(format!("http://127.0.0.1:{}/", to_metadata.port()))
        .send()
        .await
        .err();
    let found = err.as_ref().and_then(|e| find_denial(e));
    assert!(
        matches!(
            found,
            Some(Denial::Default {
                builtin: builtin::Builtin::Metadata,
                ..
            })
        ),
        "{err:?}"
    );
    let followed = client(&p)
        .get(format!("http://127.0.0.1:{}/", to_target.port()))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(followed.ok(), Some(200));
    // A self-redirect chain stops at the limit with its own error, not a denial.
    let self_loop = serve_redirect_to_self().await;
    let err = client(&p)
        .get(format!("http://127.0.0.1:{}/", self_loop.port()))
        .send()
        .await
        .err();
    let limit = err
        .as_ref()
        .and_then(|e| std::error::Error::source(e))
        .and_then(|s| s.downcast_ref::<TooManyRedirects>());
    assert_eq!(limit, Some(&TooManyRedirects(3)), "{err:?}");
}

/// A server redirecting every request to itself.
async fn serve_redirect_to_self() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let local = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let response = format!(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{}/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        local.port()
    );
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    local
}

#[tokio::test]
async fn explanations_walk_the_rules_and_agree_with_the_checks() {
    let p = policy(EXAMPLE);
    let job = Job::Target {
        protocol: HTTP,
        host: "db.corp.example.com".into(),
        port: 8443,
        addrs: Some(vec![ip("10.1.2.3"), ip("169.254.169.254"), ip("10.99.0.1")]),
    };
    let e = p.explain(&job).await;
    let text = e.to_string();
    assert!(
        matches!(&e.verdict, Verdict::Allowed(how) if how == "reached at 10.1.2.3"),
        "{text}"
    );
    for step in [
        "rules of policy.http (with policy.default)",
        "port: none of 1 deny entries matches",
        "the port: allowed by policy.http.allow_ports[1] (8000-8999)",
        "the host name: allowed by policy.http.allow_hosts[0] (*.corp.example.com)",
        "address 169.254.169.254: default refuses cloud metadata addresses",
        "address: policy.default.deny_cidrs[0] (10.99.0.0/16) matches: refused",
        "db.corp.example.com: 10.99.0.1 dropped",
    ] {
        assert!(text.contains(step), "missing {step:?} in\n{text}");
    }
    assert!(
        text.ends_with("verdict: allowed — reached at 10.1.2.3"),
        "{text}"
    );

    let refused = Job::Url {
        protocol: HTTP,
        url: url("https://db.corp.example.com:8080/x"),
        addrs: Some(vec![ip("10.99.0.1")]),
    };
    let e = p.explain(&refused).await;
    let check = p.check_addr(HTTP, "db.corp.example.com", addr("10.99.0.1:8080"));
    assert!(
        matches!(&e.verdict, Verdict::Refused(d) if Err(d.clone()) == check),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("URL: connects to db.corp.example.com port 8080"),
        "{e}"
    );

    let port = Job::Target {
        protocol: HTTP,
        host: "[::1]".into(),
        port: 22,
        addrs: None,
    };
    let e = p.explain(&port).await;
    assert!(
        matches!(&e.verdict, Verdict::Refused(d) if d.to_string().contains("[::1]:22")),
        "{e}"
    );
    let no_host = Job::Url {
        protocol: HTTP,
        url: url("unix:/x"),
        addrs: None,
    };
    assert!(matches!(
        p.explain(&no_host).await.verdict,
        Verdict::Refused(Denial::NoTarget { .. })
    ));
    let empty = Job::Target {
        protocol: HTTP,
        host: "a.corp.example.com".into(),
        port: 8443,
        addrs: Some(Vec::new()),
    };
    let e = p.explain(&empty).await;
    assert!(
        matches!(&e.verdict, Verdict::Unresolved(why) if why.contains("no addresses")),
        "{e}"
    );
    assert!(e.to_string().contains("verdict: undecided"), "{e}");
    assert_eq!(
        p.denials().total(),
        1,
        "explanations count nothing; the one check did"
    );
}

#[tokio::test]
async fn command_explanations_name_each_entry_tried() {
    let p = commands();
    let job = |args: &[&str], script| Job::Command {
        program: "/usr/bin/df".into(),
        args: args.iter().map(ToString::to_string).collect(),
        cwd: None,
        env_names: vec!["LANG".into()],
        timeout: None,
        script,
    };
    let e = p.explain(&job(&["-i"], false)).await;
    let text = e.to_string();
    assert!(
        text.contains("policy.command.programs[0]: argument 0 does not match"),
        "{text}"
    );
    assert!(
        text.contains("policy.command.programs[1]: environment variable LANG"),
        "{text}"
    );
    assert!(matches!(e.verdict, Verdict::Refused(_)), "{text}");
    let e = p.explain(&job(&["-h"], false)).await;
    assert!(
        e.to_string()
            .ends_with("verdict: allowed — by policy.command.programs[0], for at most 30 s"),
        "{e}"
    );
    let e = p.explain(&job(&["-h"], true)).await;
    assert!(
        e.to_string()
            .contains("script: the program is not in policy.command.interpreters"),
        "{e}"
    );
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        // Addresses near the built-in ranges, so they are hit often.
        (
            prop_oneof![Just(127u8), Just(169), Just(0), Just(100), Just(10)],
            any::<[u8; 3]>()
        )
            .prop_map(|(a, [b, c, d])| IpAddr::from([a, b, c, d])),
        any::<[u16; 8]>().prop_map(IpAddr::from),
        (
            prop_oneof![Just(0xfe80u16), Just(0xfd00), Just(0)],
            any::<[u16; 7]>()
        )
            .prop_map(|(a, r)| IpAddr::from([a, r[0], r[1], r[2], r[3], r[4], r[5], r[6]])),
    ]
}

fn any_cidr() -> impl Strategy<Value = String> {
    (any_ip(), any::<u8>()).prop_map(|(ip, len)| {
        let len = match ip {
            IpAddr::V4(_) => len % 33,
            IpAddr::V6(_) => len % 129,
        };
        ipnet::IpNet::new(ip, len).map_or_else(|_| ip.to_string(), |n| n.trunc().to_string())
    })
}

fn network(allow: &[String], deny: &[String]) -> EgressPolicy {
    let config = PolicyConfig {
        http: NetworkConfig {
            allow_cidrs: allow.to_vec(),
            deny_cidrs: deny.to_vec(),
            ..NetworkConfig::default()
        },
        ..PolicyConfig::default()
    };
    EgressPolicy::new(config).unwrap_or_else(|e| panic!("{e}"))
}

fn mapped(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        IpAddr::V6(_) => None,
    }
}

proptest! {
    #[test]
    fn deny_always_wins(ip in any_ip(), allow in proptest::collection::vec(any_cidr(), 0..4), deny_len in 0u8..=32) {
        // A deny CIDR around the address, whatever the allow list holds (even the
        // address itself).
        let len = if ip.is_ipv4() { deny_len } else { deny_len * 4 };
        let deny = ipnet::IpNet::new(ip, len).map(|n| n.trunc().to_string()).unwrap_or_else(|_| ip.to_string());
        let mut allow = allow;
        allow.push(ip.to_string());
        let p = network(&allow, &[deny]);
        let denied = matches!(p.check_host(HTTP, &ip.to_string(), 443), Err(Denial::Denied { .. }));
        prop_assert!(denied);
        prop_assert!(p.check_addr(HTTP, "x.example.com", SocketAddr::new(ip, 443)).is_err());
        if let Some(m) = mapped(ip) {
            prop_assert!(p.check_addr(HTTP, "x.example.com", SocketAddr::new(m, 443)).is_err());
        }
    }

    #[test]
    fn an_ipv4_mapped_address_decides_like_its_ipv4_form(
        ip in any::<[u8; 4]>().prop_map(IpAddr::from),
        allow in proptest::collection::vec(any_cidr(), 0..4),
        deny in proptest::collection::vec(any_cidr(), 0..4),
    ) {
        let p = network(&allow, &deny);
        let v6 = mapped(ip).unwrap_or(ip);
        let plain = p.check_addr(HTTP, "x.example.com", SocketAddr::new(ip, 80));
        let wrapped = p.check_addr(HTTP, "x.example.com", SocketAddr::new(v6, 80));
        prop_assert_eq!(plain, wrapped);
        prop_assert_eq!(
            p.check_host(HTTP, &ip.to_string(), 80),
            p.check_host(HTTP, &format!("[{v6}]"), 80)
        );
    }

    #[test]
    fn built_in_ranges_refuse_unless_an_entry_inside_them_allows(
        ip in any_ip(),
        allow in proptest::collection::vec(any_cidr(), 0..4),
    ) {
        let p = network(&allow, &[]);
        let ip = ip.to_canonical();
        let nets: Vec<ipnet::IpNet> = allow.iter().filter_map(|a| a.parse().ok()).collect();
        let decided = p.check_host(HTTP, &ip.to_string(), 80);
        for (range, _) in builtin::containing(ip) {
            let lifted = nets.iter().any(|n| n.contains(&ip) && range.contains(n));
            if !lifted {
                prop_assert!(matches!(decided, Err(Denial::Default { .. })), "{ip} {range} {allow:?}");
            }
        }
        if decided.is_ok() && !nets.is_empty() {
            prop_assert!(nets.iter().any(|n| n.contains(&ip)));
        }
        if builtin::containing(ip).next().is_none() && nets.is_empty() {
            prop_assert!(decided.is_ok());
        }
    }

    #[test]
    fn denied_ports_and_hosts_win_over_allowed_ones(port in 1u16.., label in "[a-z]{1,8}") {
        let p = policy(&format!(
            "[policy.http]\nallow_ports = [\"1-65535\"]\ndeny_ports = [{port}]\n\
             allow_hosts = [\"*.corp\", \"{label}.corp\"]\ndeny_hosts = [\"{label}.corp\"]\n"
        ));
        prop_assert!(p.check_host(HTTP, "ok.corp-x.corp", port).is_err());
        let free = if port == 1 { 2 } else { 1 };
        let by_name = matches!(p.check_host(HTTP, &format!("{label}.corp"), free), Err(Denial::Denied { .. }));
        prop_assert!(by_name);
        let other = if port == 65535 { 1 } else { port + 1 };
        let listed = p.check_host(HTTP, &format!("x{label}.corp"), other);
        prop_assert!(listed.is_ok());
    }

    #[test]
    fn argument_lists_fit_only_their_patterns(
        args in proptest::collection::vec("[a-z/-]{0,6}", 0..6),
        fixed in 0usize..4,
        rest in any::<bool>(),
    ) {
        // Patterns: the first `fixed` arguments literally, then `**` or nothing.
        let mut patterns: Vec<String> = args.iter().take(fixed).cloned().collect();
        if rest {
            patterns.push("**".into());
        }
        let config = PolicyConfig {
            command: CommandConfig {
                programs: vec![ProgramConfig {
                    path: "/bin/x".into(),
                    args: patterns.clone(),
                    cwd: Vec::new(),
                    env: Vec::new(),
                    max_runtime_secs: 10,
                }],
                ..CommandConfig::default()
            },
            ..PolicyConfig::default()
        };
        let p = EgressPolicy::new(config).unwrap_or_else(|e| panic!("{e}"));
        let fits = p.check_command(Path::new("/bin/x"), &args, None, &[] as &[String], None).is_ok();
        let literal = patterns.len() - usize::from(rest);
        let expected = args.len() >= literal && (rest || args.len() == literal);
        prop_assert_eq!(fits, expected, "{:?} vs {:?}", args, patterns);
        if !args.is_empty() && fixed > 0 && !rest {
            let mut changed = args.clone();
            changed[0].push('!');
            let refused = p.check_command(Path::new("/bin/x"), &changed, None, &[] as &[String], None);
            prop_assert!(refused.is_err());
        }
    }
}
