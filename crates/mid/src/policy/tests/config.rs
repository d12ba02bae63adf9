//! The `[policy]` table: the documented example, MidConfig, errors naming the key.

use super::*;

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
    // The test kit writes configs out for `openmid mid` processes: both forms survive.
    for config in [&plain, &with] {
        let text = toml::to_string(config).unwrap_or_else(|e| panic!("{e}"));
        let again: crate::config::MidConfig =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again.policy.config(), config.policy.config());
    }
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
fn sql_writes_are_off_unless_policy_sql_allows_them() {
    let p = policy("[policy.sql]\nallow_cidrs = [\"127.0.0.0/8\"]\n");
    assert!(!p.config().sql.writes);
    assert_eq!(p.config().sql.network.allow_cidrs.len(), 1);
    let d = denial(p.check_sql_write("db.corp:5432"));
    assert!(matches!(&d, Denial::SqlWrite { target } if target == "db.corp:5432"));
    assert!(d.to_string().contains("policy.sql.writes"), "{d}");
    assert_eq!(p.denials().of(Protocol::Sql), 1);
    let open = policy("[policy.sql]\nwrites = true\n");
    assert!(open.check_sql_write("db.corp:5432").is_ok());
    let written = toml::to_string(&open).unwrap_or_else(|e| panic!("{e}"));
    let again: EgressPolicy = toml::from_str(&written).unwrap_or_else(|e| panic!("{e}"));
    assert!(again.config().sql.writes, "{written}");
    for bad in [
        "[policy.sql]\nwritez = true\n",
        "[policy.http]\nwrites = true\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}
