//! The LDAP probe against a real OpenLDAP server (`slapd`) that each test starts on
//! loopback, seeded with users in nested OUs ([`slapd`], the harness `openmid-local`
//! has, included by path: that crate depends on this one). Without slapd installed
//! each test prints a loud `SKIPPED:` line and passes.

// Not every helper of the harness is used by these tests.
#[allow(dead_code)]
#[path = "../../local/src/slapd.rs"]
mod slapd;

#[path = "support/pages_instance.rs"]
mod instance;

use base64::Engine as _;
use openmid_mid::config::LocalSecretPolicy;
use openmid_mid::policy::{EgressPolicy, PolicyConfig};
use openmid_mid::probes::{JobContext, ProbeContext, ProbeError};
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::ecc::Topic;
use openmid_proto::ldap::{LdapEntry, LdapResponse};
use openmid_proto::mid::JobRef;
use openmid_proto::secret::Secret;
use serde_json::{Value, json};
use slapd::{LocalSlapd, PEOPLE_DN, SlapdOptions};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The stand-in instance, recording this probe's pages.
type FakeInstance = instance::FakeInstance<openmid_proto::ldap::LdapPage>;

/// A server with `users` users (and TLS when asked), or `None` (printed) without
/// slapd.
fn server(users: u32, tls: bool) -> Option<LocalSlapd> {
    match LocalSlapd::start(&SlapdOptions { users, tls }) {
        Ok(s) => Some(s),
        Err(slapd::SlapdError::Missing) => {
            eprintln!(
                "SKIPPED: {} is not installed (apt-get install slapd ldap-utils)",
                slapd::SLAPD
            );
            None
        }
        Err(e) => panic!("starting slapd: {e}"),
    }
}

/// A policy reaching loopback for LDAP (refused by default).
fn loopback_policy() -> EgressPolicy {
    let config: PolicyConfig = toml::from_str("[ldap]\nallow_cidrs = [\"127.0.0.0/8\"]\n")
        .unwrap_or_else(|e| panic!("{e}"));
    EgressPolicy::new(config).unwrap_or_else(|e| panic!("{e}"))
}

fn context(policy: EgressPolicy, instance: Option<&FakeInstance>) -> ProbeContext {
    let ctx = ProbeContext::new(1 << 20, LocalSecretPolicy::default(), Arc::new(policy))
        .unwrap_or_else(|e| panic!("{e}"));
    match instance {
        Some(i) => ctx.with_instance(Arc::new(i.client())),
        None => ctx,
    }
}

fn job(name: &str) -> JobContext {
    JobContext::new(JobRef {
        output_id: name.to_string(),
        attempt: 1,
    })
}

fn bind(dn: &str, password: &str) -> Option<CredentialSpec> {
    Some(CredentialSpec::LdapBind {
        bind_dn: dn.to_string(),
        password: SecretValue::Stored(Secret::new(password)),
    })
}

fn admin() -> Option<CredentialSpec> {
    bind(slapd::ADMIN_DN, slapd::ADMIN_PASSWORD)
}

/// A request to `url` with `extra` fields; a credential reference when `login`.
fn request(url: &str, login: bool, extra: Value) -> Value {
    let mut v = json!({"url": url, "base": slapd::BASE_DN});
    if login {
        v["credential"] = json!({"id": "cred-1", "name": "directory login"});
    }
    if let (Some(map), Some(more)) = (v.as_object_mut(), extra.as_object()) {
        map.extend(more.clone());
    }
    v
}

async fn run(
    ctx: &ProbeContext,
    job: &JobContext,
    payload: Value,
    credential: Option<CredentialSpec>,
) -> Result<Value, ProbeError> {
    openmid_mid::probes::run(Topic::LDAPProbe, payload.into(), credential, job, ctx)
        .await
        .map(|p| p.to_value())
}

fn response(value: Result<Value, ProbeError>) -> LdapResponse {
    let value = value.unwrap_or_else(|e| panic!("the job failed: {e}"));
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
}

fn message<T: std::fmt::Debug>(r: &Result<T, ProbeError>) -> String {
    match r {
        Ok(v) => format!("(no error: {v:?})"),
        Err(e) => e.to_string(),
    }
}

fn dns(entries: &[LdapEntry]) -> Vec<String> {
    entries.iter().map(|e| e.dn.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bind_test() {
    let Some(s) = server(10, false) else { return };
    let ctx = context(loopback_policy(), None);
    let bind_op = |login| request(&s.url(), login, json!({"operation": "bind"}));
    let r = response(run(&ctx, &job("bind"), bind_op(true), admin()).await);
    assert_eq!(r.bound_as.as_deref(), Some("dn:cn=admin,dc=example,dc=com"));
    assert_eq!((r.entries, r.pages), (0, 0));

    let wrong = "Wr0ng-Canary-Password-58";
    let r = run(
        &ctx,
        &job("wrong"),
        bind_op(true),
        bind(slapd::ADMIN_DN, wrong),
    )
    .await;
    let text = message(&r);
    eprintln!("wrong password: {text}");
    assert!(matches!(r, Err(ProbeError::Target(_))), "{text}");
    assert!(
        text.contains("refused the bind") && text.contains("invalidCredentials"),
        "{text}"
    );
    assert!(
        !text.contains(wrong) && !text.contains(slapd::ADMIN_PASSWORD),
        "{text}"
    );

    let r = response(run(&ctx, &job("anon"), bind_op(false), None).await);
    assert_eq!(r.bound_as.as_deref(), Some(""), "anonymous");

    let r = run(
        &ctx,
        &job("empty"),
        bind_op(true),
        bind(slapd::ADMIN_DN, ""),
    )
    .await;
    assert!(
        matches!(&r, Err(ProbeError::Credential(m)) if m.contains("unauthenticated")),
        "{}",
        message(&r)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_filters_attributes_and_values() {
    let Some(s) = server(100, false) else { return };
    let ctx = context(loopback_policy(), None);
    let search = |extra: Value| request(&s.url(), false, extra);

    let r = response(
        run(
            &ctx,
            &job("base"),
            search(json!({"base": PEOPLE_DN, "scope": "base"})),
            None,
        )
        .await,
    );
    assert_eq!(dns(&r.first_page), [PEOPLE_DN]);
    let r = response(
        run(
            &ctx,
            &job("one"),
            search(json!({"base": PEOPLE_DN, "scope": "one"})),
            None,
        )
        .await,
    );
    let mut regions = dns(&r.first_page);
    regions.sort();
    let mut want: Vec<String> = slapd::REGIONS
        .iter()
        .map(|r| format!("ou={r},{PEOPLE_DN}"))
        .collect();
    want.sort();
    assert_eq!(regions, want);
    let r = response(
        run(
            &ctx,
            &job("sub"),
            search(json!({"base": PEOPLE_DN, "filter": "(objectClass=inetOrgPerson)"})),
            None,
        )
        .await,
    );
    assert_eq!((r.entries, r.pages, r.first_page.len()), (100, 1, 100));

    let r = response(
        run(
            &ctx,
            &job("filter"),
            search(
                json!({"filter": "(&(objectClass=inetOrgPerson)(uid=user0004*))",
                "attributes": ["uid", "mail", "jpegPhoto", "cn"]}),
            ),
            None,
        )
        .await,
    );
    let mut uids: Vec<&str> = r
        .first_page
        .iter()
        .filter_map(|e| e.attributes.get("uid").and_then(Value::as_str))
        .collect();
    uids.sort();
    let want: Vec<String> = (40..50).map(slapd::user_uid).collect();
    assert_eq!(uids, want);
    let e = &r.first_page[0];
    let keys: HashSet<&str> = e.attributes.keys().map(String::as_str).collect();
    assert!(
        keys.is_subset(&HashSet::from(["uid", "mail", "cn", "jpegPhoto"])),
        "{keys:?}"
    );
    assert!(e.attributes["cn"].is_string(), "single-valued: a string");
    assert_eq!(e.attributes["mail"].as_array().map(Vec::len), Some(2));

    // A binary attribute's bytes come back base64.
    let r = response(
        run(
            &ctx,
            &job("photo"),
            search(
                json!({"filter": "(uid=user00000)", "attributes": ["jpegPhoto", "employeeNumber"],
                "binary_attributes": ["employeeNumber"]}),
            ),
            None,
        )
        .await,
    );
    let e = &r.first_page[0];
    let photo = base64::engine::general_purpose::STANDARD.encode(slapd::photo_of(0));
    assert_eq!(e.attributes["jpegPhoto"], json!(photo));
    assert_eq!(
        e.attributes["employeeNumber"],
        json!("MA=="),
        "`0` as base64"
    );

    // What the server refuses is said clearly.
    let r = run(
        &ctx,
        &job("nobase"),
        search(json!({"base": "ou=nowhere,dc=example,dc=com"})),
        None,
    )
    .await;
    assert!(message(&r).contains("does not exist"), "{}", message(&r));
    let r = run(
        &ctx,
        &job("badfilter"),
        search(json!({"filter": "(cn~~x)"})),
        None,
    )
    .await;
    assert!(
        matches!(&r, Err(ProbeError::InvalidInput(m)) if m.contains("filter")),
        "{}",
        message(&r)
    );
    let r = run(
        &ctx,
        &job("unbalanced"),
        search(json!({"filter": "(cn=x"})),
        None,
    )
    .await;
    assert!(matches!(&r, Err(ProbeError::InvalidInput(m)) if m.contains("filter")));

    // max_entries cuts the result and says so.
    let r = response(
        run(
            &ctx,
            &job("max"),
            search(json!({"filter": "(objectClass=inetOrgPerson)", "max_entries": 7})),
            None,
        )
        .await,
    );
    assert_eq!((r.entries, r.truncated, r.first_page.len()), (7, true, 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_users_page_by_page() {
    let Some(s) = server(10_000, false) else {
        return;
    };
    let instance = FakeInstance::start(Duration::ZERO).await;
    let ctx = context(loopback_policy(), Some(&instance));
    let payload = request(
        &s.url(),
        true,
        json!({"base": PEOPLE_DN, "filter": "(objectClass=inetOrgPerson)", "page_size": 500,
            "attributes": ["uid", "mail"]}),
    );
    let started = Instant::now();
    let r = response(run(&ctx, &job("big"), payload, admin()).await);
    eprintln!("10 000 entries in {:?}", started.elapsed());
    assert_eq!(
        (r.entries, r.pages, r.first_page.len(), r.truncated),
        (10_000, 20, 500, false)
    );
    let pages = instance.pages();
    assert_eq!(pages.len(), 20);
    for (i, page) in pages.iter().enumerate() {
        assert_eq!(
            (page.page, page.first_row, page.entries.len()),
            (i as u64, i as u64 * 500, 500)
        );
    }
    let all: Vec<String> = pages.iter().flat_map(|p| dns(&p.entries)).collect();
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(
        (all.len(), unique.len()),
        (10_000, 10_000),
        "each entry exactly once"
    );
    assert_eq!(dns(&r.first_page), dns(&pages[0].entries));
    let (disorder, largest) = instance.disorder_and_largest();
    assert_eq!(disorder, 0);
    assert!(largest < 512 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_without_paging_is_searched_in_one_go() {
    let Some(s) = server(100, false) else { return };
    let instance = FakeInstance::start(Duration::ZERO).await;
    let ctx = context(loopback_policy(), Some(&instance));
    // slapd refuses this login the paged-results control.
    let payload = request(
        &s.url(),
        true,
        json!({"base": PEOPLE_DN, "filter": "(objectClass=inetOrgPerson)", "page_size": 30}),
    );
    let r = response(
        run(
            &ctx,
            &job("nopage"),
            payload,
            bind(slapd::NOPAGE_DN, slapd::NOPAGE_PASSWORD),
        )
        .await,
    );
    assert_eq!((r.entries, r.pages), (100, 4));
    let sizes: Vec<usize> = instance.pages().iter().map(|p| p.entries.len()).collect();
    assert_eq!(sizes, [30, 30, 30, 10], "the output is paged all the same");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldaps_and_start_tls_check_the_certificate() {
    let Some(s) = server(10, true) else { return };
    let ctx = context(loopback_policy(), None);
    let ca = s.ca_pem.clone().unwrap_or_default();
    let ldaps = s.ldaps_url().unwrap_or_default();
    let bind_op = |url: &str, extra: Value| {
        let mut extra = extra;
        extra["operation"] = json!("bind");
        request(url, true, extra)
    };

    let r = response(
        run(
            &ctx,
            &job("ldaps"),
            bind_op(&ldaps, json!({"ca_pem": ca})),
            admin(),
        )
        .await,
    );
    assert_eq!(r.bound_as.as_deref(), Some("dn:cn=admin,dc=example,dc=com"));
    let start_tls_url = format!("ldap://localhost:{}", s.port);
    let r = response(
        run(
            &ctx,
            &job("starttls"),
            bind_op(&start_tls_url, json!({"ca_pem": ca, "start_tls": true})),
            admin(),
        )
        .await,
    );
    assert_eq!(r.bound_as.as_deref(), Some("dn:cn=admin,dc=example,dc=com"));

    // Another CA: refused, saying why.
    let other = slapd::unrelated_ca_pem().unwrap_or_else(|e| panic!("{e}"));
    for (name, payload) in [
        ("ldaps-wrong-ca", bind_op(&ldaps, json!({"ca_pem": other}))),
        (
            "starttls-wrong-ca",
            bind_op(&start_tls_url, json!({"ca_pem": other, "start_tls": true})),
        ),
        // The certificate names localhost, not 127.0.0.1.
        (
            "wrong-name",
            bind_op(
                &format!("ldaps://127.0.0.1:{}", s.ldaps_port.unwrap_or_default()),
                json!({"ca_pem": ca}),
            ),
        ),
    ] {
        let r = run(&ctx, &job(name), payload, admin()).await;
        let text = message(&r);
        eprintln!("{name}: {text}");
        assert!(matches!(r, Err(ProbeError::Target(_))), "{name}: {text}");
        assert!(text.contains("certificate"), "{name}: {text}");
        assert!(!text.contains(slapd::ADMIN_PASSWORD), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_refused_without_the_policy() {
    let Some(s) = server(1, false) else { return };
    let ctx = context(
        EgressPolicy::new(PolicyConfig::default()).unwrap_or_else(|e| panic!("{e}")),
        None,
    );
    let r = run(
        &ctx,
        &job("denied"),
        request(&s.url(), false, json!({})),
        None,
    )
    .await;
    assert!(matches!(r, Err(ProbeError::Policy(_))), "{}", message(&r));
    assert!(message(&r).contains("ldap"), "{}", message(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_search_stores_each_entry_once() {
    let Some(s) = server(10_000, false) else {
        return;
    };
    let search = json!({"base": PEOPLE_DN, "filter": "(objectClass=inetOrgPerson)",
        "page_size": 500, "attributes": ["uid"]});
    let first = FakeInstance::start(Duration::ZERO).await;
    let ctx = context(loopback_policy(), Some(&first));
    response(
        run(
            &ctx,
            &job("first"),
            request(&s.url(), false, search.clone()),
            None,
        )
        .await,
    );
    let stored: Vec<_> = first.pages().into_iter().take(3).collect();
    let last_dn = stored[2].entries.last().map(|e| e.dn.clone());

    // The instance hands the new attempt the last stored page, as `Contract::resume`.
    let mut req: openmid_proto::ldap::LdapRequest =
        serde_json::from_value(request(&s.url(), false, search.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
    let line = serde_json::to_vec(&stored[2]).unwrap_or_else(|e| panic!("{e}"));
    <openmid_proto::ldap::Ldap as openmid_proto::probe::Contract>::resume(&mut req, &line)
        .unwrap_or_else(|e| panic!("{e}"));
    let resume = req.resume.clone().unwrap_or_else(|| panic!("no resume"));
    assert_eq!(
        (resume.next_page, resume.rows_done, resume.last_dn.clone()),
        (3, 1500, last_dn)
    );

    let second = FakeInstance::start(Duration::ZERO).await;
    second.expect_seq("second", 3);
    let ctx = context(loopback_policy(), Some(&second));
    let payload = serde_json::to_value(&req).unwrap_or_else(|e| panic!("{e}"));
    let r = response(run(&ctx, &job("second"), payload, None).await);
    assert_eq!((r.entries, r.pages, r.first_page.len()), (10_000, 20, 500));
    let later = second.pages();
    assert_eq!(
        later.first().map(|p| (p.page, p.first_row)),
        Some((3, 1500))
    );
    assert_eq!(
        second.disorder_and_largest().0,
        0,
        "pages continue the sequence"
    );
    let all: Vec<String> = stored
        .iter()
        .chain(later.iter())
        .flat_map(|p| dns(&p.entries))
        .collect();
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(
        (all.len(), unique.len()),
        (10_000, 10_000),
        "the union is each entry once"
    );

    // A resume whose last stored entry is no longer where it was fails clearly.
    let mut moved = req.clone();
    if let Some(r) = moved.resume.as_mut() {
        r.last_dn = Some(format!("uid=someone-else,{PEOPLE_DN}"));
    }
    let ctx = context(loopback_policy(), None);
    let payload = serde_json::to_value(&moved).unwrap_or_else(|e| panic!("{e}"));
    let r = run(&ctx, &job("moved"), payload, None).await;
    let text = message(&r);
    eprintln!("moved: {text}");
    assert!(
        text.contains("order changed") && text.contains("run it again"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marker_max_tracks_the_latest_change() {
    let Some(s) = server(50, false) else { return };
    // GeneralizedTime has whole seconds: the change must be in a later one.
    std::thread::sleep(Duration::from_millis(1100));
    s.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: description\ndescription: changed\n",
        slapd::user_dn(42)
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    s.add_users(50, 1).unwrap_or_else(|e| panic!("{e}"));
    let ctx = context(loopback_policy(), None);
    let payload = request(
        &s.url(),
        false,
        json!({"base": PEOPLE_DN, "filter": "(objectClass=inetOrgPerson)", "page_size": 7,
            "attributes": ["uid", "modifyTimestamp"], "marker_attribute": "modifyTimestamp"}),
    );
    let r = response(run(&ctx, &job("marker"), payload, None).await);
    assert_eq!(r.entries, 51);
    let stamps: Vec<(String, String)> = r
        .first_page
        .iter()
        .filter_map(|e| {
            Some((
                e.attributes.get("uid")?.as_str()?.to_string(),
                e.attributes.get("modifyTimestamp")?.as_str()?.to_string(),
            ))
        })
        .collect();
    let marker = r
        .marker_max
        .clone()
        .unwrap_or_else(|| panic!("no marker_max"));
    assert!(
        stamps.iter().all(|(_, t)| t <= &marker),
        "{stamps:?} {marker}"
    );
    // The changed and the added users carry a later stamp than the seeded ones.
    let seeded = stamps
        .iter()
        .filter(|(uid, _)| uid != &slapd::user_uid(42) && uid != &slapd::user_uid(50))
        .map(|(_, t)| t.clone())
        .max()
        .unwrap_or_default();
    assert!(marker > seeded, "{marker} > {seeded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_and_the_deadline_end_a_search_promptly() {
    let Some(s) = server(10_000, false) else {
        return;
    };
    // A slow instance: the search waits on its pages (back-pressure).
    let instance = FakeInstance::start(Duration::from_millis(300)).await;
    let ctx = context(loopback_policy(), Some(&instance));
    let payload = request(
        &s.url(),
        false,
        json!({"base": PEOPLE_DN, "filter": "(objectClass=inetOrgPerson)", "page_size": 50}),
    );
    let job_cx = job("cancel");
    let cancel = job_cx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let r = run(&ctx, &job_cx, payload.clone(), None).await;
    assert!(matches!(r, Err(ProbeError::Cancelled)), "{}", message(&r));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    let mut timed = payload;
    timed["timeout_ms"] = json!(700);
    let started = Instant::now();
    let r = run(&ctx, &job("deadline"), timed, None).await;
    assert!(
        matches!(r, Err(ProbeError::Timeout(700))),
        "{}",
        message(&r)
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // The server is still fine for the next job.
    let ctx = context(loopback_policy(), None);
    let r = response(
        run(
            &ctx,
            &job("after"),
            request(&s.url(), false, json!({"operation": "bind"})),
            None,
        )
        .await,
    );
    assert_eq!(r.bound_as.as_deref(), Some(""));
}
