//! Network rules: built-in refusals, deny over allow, hosts, ports, sections, URLs,
//! counters.

use super::*;

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
    let numeric = denial(EgressPolicy::default().check_host(HTTP, "127.1", 80));
    assert!(
        numeric
            .to_string()
            .contains("\"127.1\": the host looks like an IP address"),
        "{numeric}"
    );
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
