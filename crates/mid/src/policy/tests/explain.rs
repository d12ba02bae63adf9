//! Explanations: the steps consulted and a verdict that agrees with the checks.

use super::*;

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
