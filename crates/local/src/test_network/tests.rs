//! Three hosts with a service of each kind, each checked from the root namespace with
//! an independent client: OpenSSH's `ssh`, reqwest (plain and trusting only the
//! host's self-signed certificate), net-snmp's `snmpget`, a bare TCP connect; and a
//! fourth host down, answering nothing.

use super::*;
use crate::snmpd::{COMMUNITY, SNMPGET};
use std::io::Read;

fn specs() -> Vec<HostSpec> {
    vec![
        HostSpec::new()
            .ssh()
            .http(80, "nginx/1.24.0 (Ubuntu)")
            .snmp(
                "Linux web-0 6.1.0-18-amd64",
                "1.3.6.1.4.1.8072.3.2.10",
                "web-0",
            ),
        HostSpec::new()
            .https(
                443,
                "Apache/2.4.57 (Debian)",
                &["app.example.test", "198.18.0.11"],
            )
            .banner(5432, "not really postgres"),
        HostSpec::new().open(&[3306, 6379]),
        HostSpec::new().ssh().http(80, "never").down(),
    ]
}

fn network() -> Option<TestNetwork> {
    match TestNetwork::start("omtn", &specs()) {
        Ok(net) => Some(net),
        Err(e @ TestNetworkError::Unavailable(_)) => {
            eprintln!("{e}");
            None
        }
        Err(e) => panic!("starting the test network: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_runs_what_its_spec_says_and_answers_from_the_root_namespace() {
    let Some(net) = network() else { return };
    let (a0, a1, a2, a3) = (net.addr(0), net.addr(1), net.addr(2), net.addr(3));

    // SSH: a real login with the key the fixture made, checking the host key.
    let sshd = net.sshd(0).expect("host 0 runs sshd");
    let out = Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-i",
        ])
        .arg(&sshd.private_key_file)
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            sshd.known_hosts_file.display()
        ))
        .arg(format!("{}@{a0}", sshd.user))
        .arg("echo logged-in")
        .output()
        .expect("ssh runs");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("logged-in"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sshd.log()
    );

    // HTTP with the chosen Server header.
    let plain = reqwest::Client::new();
    let r = plain
        .get(format!("http://{a0}/"))
        .send()
        .await
        .expect("HTTP");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["server"], "nginx/1.24.0 (Ubuntu)");

    // HTTPS: trusted through the host's own certificate, by one of its names.
    let pem = net.https_cert_pem(1, 443).expect("host 1 serves HTTPS");
    let tls = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("PEM"))
        .resolve(
            "app.example.test",
            std::net::SocketAddr::from((net.ip(1), 443)),
        )
        .build()
        .expect("client");
    let r = tls
        .get("https://app.example.test/")
        .send()
        .await
        .expect("HTTPS by name");
    assert_eq!(r.headers()["server"], "Apache/2.4.57 (Debian)");
    assert!(
        plain.get(format!("https://{a1}/")).send().await.is_err(),
        "a client that does not trust the self-signed certificate is refused"
    );

    // SNMP with the chosen identity.
    let agent = net.snmpd(0).expect("host 0 runs snmpd");
    let got = agent
        .client(
            SNMPGET,
            &["-v2c", "-c", COMMUNITY, "-Oqvn"],
            &[
                "1.3.6.1.2.1.1.1.0",
                "1.3.6.1.2.1.1.2.0",
                "1.3.6.1.2.1.1.5.0",
            ],
        )
        .expect("snmpget");
    assert!(got.contains("Linux web-0 6.1.0-18-amd64"), "{got}");
    assert!(got.contains("1.3.6.1.4.1.8072.3.2.10"), "{got}");
    assert!(got.contains("web-0"), "{got}");

    // The plain ports: one with a banner, two that only accept.
    let mut banner = String::new();
    std::net::TcpStream::connect((a1.as_str(), 5432))
        .expect("5432")
        .read_to_string(&mut banner)
        .expect("banner");
    assert_eq!(banner, "not really postgres\r\n");
    for port in [3306, 6379] {
        std::net::TcpStream::connect((a2.as_str(), port)).expect("open port");
    }
    // Closed ports are refused; the host that is down does not answer at all.
    assert!(std::net::TcpStream::connect((a2.as_str(), 22)).is_err());
    let down = std::net::SocketAddr::from((net.ip(3), 80));
    assert!(std::net::TcpStream::connect_timeout(&down, Duration::from_millis(500)).is_err());

    let want = BTreeMap::from([
        (a0.clone(), BTreeSet::from([22, 80])),
        (a1.clone(), BTreeSet::from([443, 5432])),
        (a2.clone(), BTreeSet::from([3306, 6379])),
    ]);
    assert_eq!(net.expected_open(&[22, 80, 443, 3306, 5432, 6379]), want);
    assert_eq!(net.up(), BTreeSet::from([a0, a1, a2.clone()]));
    assert!(!net.up().contains(&a3));
    // Gone after drop: the namespaces (and with them every address and process in
    // them). Nothing is sent to the addresses then: off the test net they would
    // route elsewhere.
    let namespaces: Vec<String> = (0..net.hosts()).map(|n| net.net().namespace(n)).collect();
    drop(net);
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let listed = String::from_utf8_lossy(&out.stdout);
    for ns in namespaces {
        assert!(
            !listed.split_whitespace().any(|w| w == ns),
            "{ns} is deleted: {listed}"
        );
    }
}
