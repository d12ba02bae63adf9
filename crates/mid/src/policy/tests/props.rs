//! Property tests: deny wins, IPv4-mapped forms, built-in ranges, ports and hosts,
//! argument lists.

use super::*;
use proptest::prelude::*;

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
