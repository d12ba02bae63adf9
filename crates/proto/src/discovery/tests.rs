//! The discovery contracts' checks, target expansion (sizes, order, the cap, never a
//! panic), chunks, banners and resuming.

use super::*;
use crate::probe::Contract;
use proptest::prelude::*;
use serde_json::json;
use std::net::IpAddr;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn expand(items: &[&str]) -> Result<Vec<IpAddr>, FieldError> {
    expand_targets("targets", &strings(items))
}

#[test]
fn cidrs_ranges_and_addresses_expand_to_the_right_sizes() {
    let n = |items: &[&str]| expand(items).map(|v| v.len()).unwrap_or(usize::MAX);
    assert_eq!(n(&["198.18.0.0/27"]), 30, "network and broadcast left out");
    assert_eq!(n(&["198.18.0.0/24"]), 254);
    assert_eq!(n(&["198.18.0.0/31"]), 2);
    assert_eq!(n(&["198.18.0.7/32"]), 1);
    assert_eq!(n(&["198.18.0.10-198.18.0.20"]), 11);
    assert_eq!(n(&["198.18.0.5"]), 1);
    assert_eq!(n(&["fd00::/120"]), 256, "IPv6 keeps every address");
    assert_eq!(n(&["198.18.0.0/16"]), 65_534);
    assert_eq!(n(&["fd00::/112"]), 65_536, "exactly the cap");
    // Overlaps and duplicates count once, in address order, IPv4 first.
    let v = expand(&[
        "fd00::1",
        "198.18.0.9",
        "198.18.0.8-198.18.0.10",
        "198.18.0.9",
    ])
    .expect("valid");
    let shown: Vec<String> = v.iter().map(|ip| ip.to_string()).collect();
    assert_eq!(
        shown,
        ["198.18.0.8", "198.18.0.9", "198.18.0.10", "fd00::1"]
    );
}

#[test]
fn the_cap_and_bad_targets_name_the_field() {
    let e = expand(&["198.18.0.0/15"]).expect_err("too many");
    assert_eq!(e.field, "targets");
    assert!(e.message.contains("65536"), "{e}");
    let e = expand(&["fd00::/64"]).expect_err("too many");
    assert_eq!(e.field, "targets");
    let e = expand(&["198.18.0.0/16", "198.19.0.0/29"]).expect_err("sum too large");
    assert!(e.message.contains("198.19.0.0/29"), "{e}");
    for (bad, why) in [
        ("198.18.0.20-198.18.0.10", "ends before"),
        ("198.18.0.1-fd00::1", "mixes"),
        ("198.18.0.0/33", "at most /32"),
        ("host.corp", "not an address"),
    ] {
        let e = expand(&["198.18.0.1", bad]).expect_err(bad);
        assert_eq!(e.field, "targets[1]", "{bad}");
        assert!(e.message.contains(why), "{bad}: {e}");
    }
    assert_eq!(expand(&[]).expect_err("empty").field, "targets");
}

#[test]
fn ports_expand_and_refuse_zero() {
    let specs = vec![
        PortSpec::Number(443),
        PortSpec::Text("20-22".into()),
        PortSpec::Text("22".into()),
    ];
    assert_eq!(
        expand_ports("ports", &specs).ok(),
        Some(vec![20, 21, 22, 443])
    );
    for bad in [
        PortSpec::Number(0),
        PortSpec::Number(70_000),
        PortSpec::Text("9-1".into()),
    ] {
        let e = expand_ports("ports", &[PortSpec::Number(1), bad]).expect_err("bad");
        assert_eq!(e.field, "ports[1]");
    }
    let all = expand_ports("ports", &[PortSpec::Text("1-65535".into())]).map(|p| p.len());
    assert_eq!(all.ok(), Some(65_535));
}

#[test]
fn requests_default_and_validate_by_field() {
    let ping = crate::probe::decode::<Ping>(&json!({"targets": ["198.18.0.0/30"]})).expect("valid");
    assert_eq!(
        (
            ping.count,
            ping.interval_ms,
            ping.timeout_ms,
            ping.concurrency
        ),
        (3, 200, 1000, 256)
    );
    assert_eq!(ping.tcp_ports, [22, 80, 443, 3389]);
    let scan = crate::probe::decode::<Shazzam>(
        &json!({"targets": ["198.18.0.1"], "ports": [22, "80-81"]}),
    )
    .expect("valid");
    assert_eq!(
        (
            scan.rate_per_sec,
            scan.concurrency,
            scan.timeout_ms,
            scan.banner
        ),
        (1000, 512, 1000, true)
    );
    let field = |topic_scan: bool, extra: serde_json::Value| {
        let mut v = if topic_scan {
            json!({"targets": ["198.18.0.1"], "ports": [22]})
        } else {
            json!({"targets": ["198.18.0.1"]})
        };
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        let r = if topic_scan {
            crate::probe::decode::<Shazzam>(&v).err()
        } else {
            crate::probe::decode::<Ping>(&v).err()
        };
        r.map(|e| e.field)
    };
    assert_eq!(field(false, json!({"count": 0})).as_deref(), Some("count"));
    assert_eq!(
        field(false, json!({"tcp_ports": [0]})).as_deref(),
        Some("tcp_ports[0]")
    );
    assert_eq!(
        field(false, json!({"bogus": 1})).as_deref(),
        Some("payload")
    );
    assert_eq!(
        field(true, json!({"rate_per_sec": 0})).as_deref(),
        Some("rate_per_sec")
    );
    assert_eq!(
        field(true, json!({"chunk": {"index": 3, "of": 3}})).as_deref(),
        Some("chunk.index")
    );
    assert_eq!(
        field(
            true,
            json!({"ports": ["1-65535"], "targets": ["198.18.0.0/16"]})
        )
        .as_deref(),
        Some("ports")
    );
    assert_eq!(
        field(true, json!({"resume": {"next_page": 1, "hosts_done": 2}})).as_deref(),
        Some("resume.hosts_done")
    );
    assert_eq!(field(true, json!({})), None);
}

#[test]
fn a_scan_resumes_after_the_last_stored_page() {
    const { assert!(Shazzam::RESUMES) };
    let mut req =
        crate::probe::decode::<Shazzam>(&json!({"targets": ["198.18.0.0/24"], "ports": [22]}))
            .expect("valid");
    let page = ScanPage {
        page: 4,
        hosts: vec![],
        hosts_done: 120,
        hosts_up: 7,
        open_ports: 9,
    };
    let line = serde_json::to_vec(&page).expect("json");
    Shazzam::resume(&mut req, &line).expect("resumes");
    assert_eq!(
        req.resume,
        Some(ScanResume {
            next_page: 5,
            hosts_done: 120,
            hosts_up: 7,
            open_ports: 9
        })
    );
    assert!(Shazzam::resume(&mut req, b"{not json").is_err());
    assert_eq!(
        Shazzam::target(&req).map(|t| t.host),
        Some("198.18.0.0".to_string())
    );
}

#[test]
fn banners_are_one_safe_line() {
    assert_eq!(
        escape_banner(b"SSH-2.0-OpenSSH_9.6\r\n"),
        "SSH-2.0-OpenSSH_9.6\\r\\n"
    );
    assert_eq!(escape_banner(b"a\x1bb\xffc\\"), "a\\u{1b}b\u{fffd}c\\\\");
}

proptest! {
    #[test]
    fn expansion_never_panics(items in proptest::collection::vec(".{0,40}", 0..4)) {
        let _ = expand_targets("targets", &items);
    }

    #[test]
    fn expansion_matches_its_count(a in any::<u32>(), len in 17u32..=32, b in any::<u32>(), span in 0u32..5000) {
        let net = format!("{}/{len}", std::net::Ipv4Addr::from(a));
        let lo = std::net::Ipv4Addr::from(b);
        let hi = std::net::Ipv4Addr::from(b.saturating_add(span));
        let range = format!("{lo}-{hi}");
        let host_bits = 32 - len;
        let net_size = if host_bits >= 2 { (1u64 << host_bits) - 2 } else { 1u64 << host_bits };
        let v = expand_targets("targets", std::slice::from_ref(&net)).expect("a /17 or smaller fits");
        prop_assert_eq!(v.len() as u64, net_size);
        let v = expand_targets("targets", std::slice::from_ref(&range)).expect("fits");
        prop_assert_eq!(v.len() as u64, u64::from(b.saturating_add(span) - b) + 1);
        let both = expand_targets("targets", &[net, range]).expect("fits");
        prop_assert!(both.windows(2).all(|w| w[0] < w[1]), "ascending, each once");
    }

    #[test]
    fn chunks_hold_each_host_once(hosts in 0usize..5000, of in 1u32..50) {
        let mut next = 0;
        for index in 0..of {
            let r = chunk_range(hosts, index, of);
            prop_assert_eq!(r.start, next);
            next = r.end;
        }
        prop_assert_eq!(next, hosts);
    }

    #[test]
    fn banners_have_no_control_characters(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert!(!escape_banner(&bytes).chars().any(char::is_control));
    }
}

#[test]
fn an_http_head_gives_its_status_and_server() {
    assert_eq!(
        parse_http_head(b"HTTP/1.1 200 OK\r\nDate: x\r\nserver:  nginx/1.22.1 \r\n\r\n"),
        Some((200, Some("nginx/1.22.1".into())))
    );
    assert_eq!(
        parse_http_head(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\nServer: body"),
        Some((404, None)),
        "a header after the blank line is the body's"
    );
    assert_eq!(parse_http_head(b"SSH-2.0-OpenSSH_9.2\r\n"), None);
    assert_eq!(parse_http_head(b""), None);
    let long = format!(
        "HTTP/1.1 200 OK\r\nServer: {}\u{1}\r\n\r\n",
        "é".repeat(300)
    );
    let (_, server) = parse_http_head(long.as_bytes()).expect("http");
    let server = server.expect("server");
    assert!(server.len() <= MAX_IDENTITY_TEXT && !server.contains('\u{1}'));
}

#[test]
fn identify_requests_are_checked_by_field() {
    let ok: IdentifyRequest = serde_json::from_value(json!({
        "hosts": [{"address": "198.18.0.2", "http_ports": [80], "tls_ports": [443]}]
    }))
    .expect("decodes");
    assert_eq!(ok.validate(), Ok(()));
    assert_eq!(ok.timeout_ms, 2000);
    let field = |v: serde_json::Value| {
        serde_json::from_value::<IdentifyRequest>(v)
            .expect("decodes")
            .validate()
            .err()
            .map(|e| e.field)
    };
    assert_eq!(field(json!({"hosts": []})).as_deref(), Some("hosts"));
    assert_eq!(
        field(json!({"hosts": [{"address": "nope"}]})).as_deref(),
        Some("hosts[0].address")
    );
    assert_eq!(
        field(json!({"hosts": [{"address": "198.18.0.2", "tls_ports": [443, 0]}]})).as_deref(),
        Some("hosts[0].tls_ports[1]")
    );
    assert_eq!(
        field(json!({"hosts": [{"address": "198.18.0.2"}], "concurrency": 0})).as_deref(),
        Some("concurrency")
    );
    let with_snmp: IdentifyRequest = serde_json::from_value(json!({
        "hosts": [{"address": "198.18.0.2"}],
        "snmp": {"version": "v2c"}, "credential": {"id": "c1", "name": "ro"}
    }))
    .expect("decodes");
    assert_eq!(
        Identify::credential(&with_snmp).map(|c| c.id.as_str()),
        Some("c1")
    );
    assert_eq!(with_snmp.snmp.as_ref().map(|s| s.port), Some(161));
    assert_eq!(with_snmp.validate(), Ok(()));
    assert_eq!(
        field(json!({"hosts": [{"address": "198.18.0.2"}], "snmp": {}})).as_deref(),
        Some("credential")
    );
}

proptest! {
    #[test]
    fn any_http_head_parses_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Some((_, Some(server))) = parse_http_head(&bytes) {
            prop_assert!(server.len() <= MAX_IDENTITY_TEXT);
            prop_assert!(!server.chars().any(|c| c.is_control()));
        }
    }

    #[test]
    fn any_server_value_is_found(value in "[ -~]{1,200}") {
        let trimmed = value.trim().to_string();
        prop_assume!(!trimmed.is_empty());
        let head = format!("HTTP/1.1 200 OK\r\nServer: {value}\r\n\r\n");
        let got = parse_http_head(head.as_bytes()).and_then(|(_, s)| s);
        prop_assert_eq!(got, Some(shown(&trimmed)));
    }
}
