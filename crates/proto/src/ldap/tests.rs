//! The LDAP contract's checks, field by field, the filter's outline, and resuming.

use super::*;
use crate::probe::Contract;
use proptest::prelude::*;
use serde_json::json;

fn with(extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({"url": "ldap://dir.corp", "base": "dc=corp"});
    if let (Some(map), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        map.extend(more.clone());
    }
    v
}

fn field_of(payload: serde_json::Value) -> Option<String> {
    crate::probe::decode::<Ldap>(&payload)
        .err()
        .map(|e| e.field)
}

#[test]
fn defaults_and_target() {
    let req = crate::probe::decode::<Ldap>(&with(json!({}))).expect("valid");
    assert_eq!(
        (
            req.operation,
            req.scope,
            req.filter.as_str(),
            req.page_size()
        ),
        (
            LdapOperation::Search,
            LdapScope::Sub,
            "(objectClass=*)",
            500
        )
    );
    let t = Ldap::target(&req).expect("target");
    assert_eq!((t.host.as_str(), t.port), ("dir.corp", Some(389)));
    assert_eq!(
        Ldap::timeout(&req),
        Some(std::time::Duration::from_secs(300))
    );
    let req =
        crate::probe::decode::<Ldap>(&with(json!({"url": "ldaps://[fd00::7]"}))).expect("valid");
    let t = Ldap::target(&req).expect("target");
    assert_eq!((t.ip(), t.port), ("fd00::7".parse().ok(), Some(636)));
}

#[test]
fn each_bad_field_is_named() {
    let cases = [
        (json!({"url": "http://dir.corp"}), "url"),
        (json!({"url": "ldap://dir.corp/dc=corp?cn"}), "url"),
        (json!({"url": "ldap://user:pw@dir.corp"}), "url"),
        (json!({"url": "ldap:///"}), "url"),
        (
            json!({"url": "ldaps://dir.corp", "start_tls": true}),
            "start_tls",
        ),
        (json!({"ca_pem": "-----BEGIN CERTIFICATE-----"}), "ca_pem"),
        (json!({"url": "ldaps://d", "ca_pem": "not pem"}), "ca_pem"),
        (json!({"base": "dc=\u{0}"}), "base"),
        (json!({"filter": "(cn=a"}), "filter"),
        (json!({"attributes": ["cn", "bad name"]}), "attributes[1]"),
        (json!({"binary_attributes": ["*"]}), "binary_attributes[0]"),
        (json!({"page_size": 0}), "page_size"),
        (json!({"page_size": 10_001}), "page_size"),
        (json!({"max_entries": 0}), "max_entries"),
        (json!({"marker_attribute": "a b"}), "marker_attribute"),
        (json!({"timeout_ms": 0}), "timeout_ms"),
        (
            json!({"resume": {"next_page": 1, "rows_done": 5}}),
            "resume.last_dn",
        ),
        (
            json!({"operation": "bind", "resume": {"next_page": 0, "rows_done": 0}}),
            "resume",
        ),
        (json!({"surprise": 1}), "payload"),
    ];
    for (extra, field) in cases {
        assert_eq!(
            field_of(with(extra.clone())).as_deref(),
            Some(field),
            "{extra}"
        );
    }
    assert_eq!(
        field_of(with(json!({"url": "ldap://d", "start_tls": true,
            "ca_pem": "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----"}))),
        None
    );
    assert_eq!(
        field_of(with(
            json!({"attributes": ["*", "+", "cn;binary", "2.5.4.3"]})
        )),
        None
    );
}

#[test]
fn filter_outline() {
    for good in [
        "(objectClass=*)",
        "(&(uid=a*)(|(ou=x)(!(ou=y))))",
        "(cn=paren \\28x\\29)",
        "  (cn=a)  ",
    ] {
        assert_eq!(check_filter(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        "cn=a",
        "(cn=a",
        "(cn=a))",
        "(cn=a)(cn=b)",
        "(&(cn=a)",
        "()",
        "(cn=\u{0})",
    ] {
        assert!(check_filter(bad).is_err(), "{bad}");
    }
    let deep = format!("{}cn=a{}", "(&".repeat(70), ")".repeat(70));
    assert!(check_filter(&deep).is_err_and(|m| m.contains("deeper")));
    assert!(check_filter(&format!("(cn={})", "a".repeat(MAX_FILTER_BYTES))).is_err());
}

#[test]
fn markers_compare_as_numbers_or_text() {
    assert!(marker_greater("10", "9"));
    assert!(!marker_greater("9", "10"));
    assert!(marker_greater("20250102000000Z", "20241231235959Z"));
    assert!(marker_greater("b", "a"));
}

#[test]
fn resume_from_the_last_page() {
    let mut req = crate::probe::decode::<Ldap>(&with(json!({}))).expect("valid");
    let page = LdapPage {
        page: 3,
        first_row: 1500,
        entries: vec![LdapEntry {
            dn: "uid=u1,dc=corp".into(),
            attributes: BTreeMap::new(),
        }],
        marker_max: Some("42".into()),
    };
    let bytes = serde_json::to_vec(&page).expect("json");
    Ldap::resume(&mut req, &bytes).expect("resume");
    assert_eq!(
        req.resume,
        Some(LdapResume {
            next_page: 4,
            rows_done: 1501,
            last_dn: Some("uid=u1,dc=corp".into()),
            marker_max: Some("42".into()),
        })
    );
    assert_eq!(req.validate(), Ok(()));
    assert_eq!(
        Ldap::resume(&mut req, b"{").map_err(|e| e.field),
        Err("resume".to_string())
    );
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[()&|!=*a-z\\\\ ]{0,40}",
        Just("ldap://h".to_string()),
        Just("ldaps://[::1]:1".to_string()),
    ]
}

proptest! {
    #[test]
    fn validate_never_panics(
        url in text(), filter in text(), base in text(),
        attrs in proptest::collection::vec(text(), 0..4),
        page_size in proptest::option::of(any::<u32>()),
        start_tls in any::<bool>(), ca in proptest::option::of(text()),
        marker in proptest::option::of(text()),
        rows_done in any::<u64>(), last_dn in proptest::option::of(text()),
    ) {
        let req = LdapRequest {
            url, start_tls, ca_pem: ca, credential: None,
            operation: LdapOperation::Search, base, scope: LdapScope::One, filter,
            attributes: attrs.clone(), binary_attributes: attrs, page_size,
            max_entries: None, marker_attribute: marker, timeout_ms: None,
            resume: Some(LdapResume { next_page: 0, rows_done, last_dn, marker_max: None }),
        };
        let _ = req.validate();
        let _ = Ldap::target(&req);
        let _ = check_filter(&req.filter);
    }

    #[test]
    fn resume_round_trips(
        page in any::<u64>().prop_map(|p| p / 2),
        first_row in any::<u64>().prop_map(|r| r / 2),
        dns in proptest::collection::vec("[a-z=,]{1,20}", 1..5),
        marker in proptest::option::of("[0-9]{1,12}"),
    ) {
        let entries: Vec<LdapEntry> = dns.iter().map(|dn| LdapEntry {
            dn: dn.clone(),
            attributes: BTreeMap::from([("cn".to_string(), json!(["a", "b"]))]),
        }).collect();
        let stored = LdapPage { page, first_row, entries, marker_max: marker.clone() };
        let line = serde_json::to_vec(&stored).expect("json");
        let back: LdapPage = serde_json::from_slice(&line).expect("parse");
        prop_assert_eq!(&back, &stored);
        let mut req = crate::probe::decode::<Ldap>(&with(json!({}))).expect("valid");
        Ldap::resume(&mut req, &line).expect("resume");
        let resume = req.resume.clone().expect("set");
        prop_assert_eq!(resume.next_page, page + 1);
        prop_assert_eq!(resume.rows_done, first_row + dns.len() as u64);
        prop_assert_eq!(resume.last_dn.as_deref(), dns.last().map(String::as_str));
        prop_assert_eq!(resume.marker_max, marker);
        prop_assert_eq!(req.validate(), Ok(()));
        let json = serde_json::to_value(&req).expect("json");
        prop_assert_eq!(crate::probe::decode::<Ldap>(&json).expect("decode"), req);
    }
}
