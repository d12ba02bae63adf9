//! The dashboard, from outside: plain HTTPS for its security promises (the session
//! cookie's attributes, CSRF refusals, expiry and logout, redirects to the login page,
//! a queue page over 100,000 records that stays one page), and a real headless
//! Chromium driven through chromedriver for what a person does with it.

use crate::support::{Raw, enrolled_client, instance, instance_with};
use openmid_mid::session::client::InstanceClient;
use openmid_proto::api::NewOutput;
use openmid_proto::ecc::Topic;
use openmid_proto::mid::{Capacity, MidStatus, PollRequest, ResultsRequest, WorkResult};
use openmid_proto::trust::client_config;
use openmid_testkit::TestInstance;
use serde_json::json;
use std::time::{Duration, Instant};

/// A forged request: what it is, its form fields, its extra headers.
type Refusal<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>);

/// The session cookie's name.
const COOKIE: &str = "__Host-openmid_session";

/// An HTTPS client for the dashboard that follows no redirect (the tests look at
/// them) and keeps no cookies (the tests send the one they mean).
pub struct Browserless {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// What a request got back.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    fn set_cookie(&self) -> Option<&str> {
        self.headers.get("set-cookie").and_then(|v| v.to_str().ok())
    }

    /// The CSRF token a page's forms carry.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).expect("the page has a CSRF field") + marker.len();
        let end = self.body[start..].find('"').expect("end of the value") + start;
        self.body[start..end].to_string()
    }
}

impl Browserless {
    pub fn new(instance: &TestInstance) -> Self {
        let tls = client_config(&instance.trust().expect("trust"))
            .expect("tls")
            .expect("custom trust");
        Self {
            http: reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: instance.running.url.trim_end_matches('/').to_string(),
            token: instance.token.expose().to_string(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        form: &[(&str, &str)],
    ) -> Page {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(c) = cookie {
            req = req.header("cookie", format!("{COOKIE}={c}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if method == reqwest::Method::POST {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter())
                .finish();
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = req.send().await.expect("answered");
        Page {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.expect("body"),
        }
    }

    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Page {
        self.send("GET", path, cookie, &[], &[]).await
    }

    /// Logs in; returns the session cookie's value and the session's CSRF token.
    pub async fn login(&self) -> (String, String) {
        let token = self.token.clone();
        let page = self
            .send("POST", "/ui/login", None, &[], &[("token", &token)])
            .await;
        assert_eq!(page.status, 303, "a good token logs in: {}", page.body);
        assert_eq!(page.location(), Some("/ui/mids"));
        let cookie = page.set_cookie().expect("a session cookie");
        let value = cookie
            .split(';')
            .next()
            .and_then(|kv| kv.trim().strip_prefix(&format!("{COOKIE}=")))
            .expect("the session cookie")
            .to_string();
        let mids = self.get("/ui/mids", Some(&value)).await;
        assert_eq!(mids.status, 200, "{}", mids.body);
        (value, mids.csrf())
    }
}

#[tokio::test]
async fn the_session_cookie_is_random_httponly_secure_and_strict() {
    let (instance, _dir) = instance().await;
    let web = Browserless::new(&instance);

    let wrong = web
        .send("POST", "/ui/login", None, &[], &[("token", "omadm_wrong")])
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.set_cookie().is_none(), "no session for a wrong token");
    assert!(
        wrong.body.contains("That is not the admin token."),
        "{}",
        wrong.body
    );
    assert!(
        wrong.headers["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );

    let token = web.token.clone();
    let page = web
        .send("POST", "/ui/login", None, &[], &[("token", &token)])
        .await;
    let cookie = page.set_cookie().expect("cookie").to_string();
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    for wanted in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(attributes.contains(&wanted), "{wanted} in `{cookie}`");
    }
    assert!(
        !attributes.iter().any(|a| a.starts_with("Domain")),
        "a __Host- cookie names no domain"
    );
    let value = attributes[0]
        .strip_prefix(&format!("{COOKIE}="))
        .expect("named __Host-openmid_session");
    let random = value.strip_prefix("omdsh_").expect("prefixed id");
    assert_eq!(random.len(), 43, "256 bits, base64url without padding");
    assert!(!value.contains(&token) && !cookie.contains(&token));

    let (second, _) = web.login().await;
    assert_ne!(second, value, "every login makes a new id");
    let page = web.get("/ui/mids", Some(value)).await;
    assert_eq!(page.status, 200);
    assert!(page.headers["cache-control"] == "no-store");
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap_or("")
            .contains("script-src 'self'")
    );
    assert!(
        !page.body.contains(value),
        "the page never carries the session id"
    );
    instance.shutdown().await;
}

#[tokio::test]
async fn pages_without_a_session_send_to_the_login_page() {
    let (instance, _dir) = instance().await;
    let web = Browserless::new(&instance);
    for path in [
        "/ui/mids",
        "/ui/mids/x",
        "/ui/clusters",
        "/ui/ecc",
        "/ui/ecc/some-id",
        "/ui/connections",
        "/ui/imports",
        "/ui/devices",
    ] {
        for cookie in [None, Some("omdsh_not-a-session")] {
            let page = web.get(path, cookie).await;
            assert_eq!(page.status, 303, "{path} with {cookie:?}");
            assert_eq!(page.location(), Some("/ui/login"), "{path}");
        }
    }
    let root = web.get("/", None).await;
    assert_eq!((root.status, root.location()), (303, Some("/ui/mids")));
    // A fragment refreshing itself moves the whole page.
    let fragment = web
        .send("GET", "/ui/ecc/rows", None, &[("hx-request", "true")], &[])
        .await;
    assert_eq!(fragment.status, 401);
    assert_eq!(
        fragment
            .headers
            .get("hx-redirect")
            .and_then(|v| v.to_str().ok()),
        Some("/ui/login")
    );
    let login = web.get("/ui/login", None).await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("name=\"token\""));
    // A forged POST without a session changes nothing and is sent to log in.
    let post = web.send("POST", "/ui/mids/x/pause", None, &[], &[]).await;
    assert_eq!((post.status, post.location()), (303, Some("/ui/login")));
    // The API is untouched: its JSON 404 still answers unknown paths.
    let raw = Raw::new(&instance);
    let unknown = raw.get("/api/v1/no-such-thing").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.error().0, "not_found");
    instance.shutdown().await;
}

#[tokio::test]
async fn state_changing_forms_need_the_sessions_csrf_token_and_origin() {
    let (instance, _dir) = instance().await;
    let _client = enrolled_client(&instance, "csrf-mid", true).await;
    let web = Browserless::new(&instance);
    let (cookie, csrf) = web.login().await;
    let (_, other_csrf) = web.login().await;
    assert_ne!(csrf, other_csrf, "each session has its own token");

    let status = || async { instance.api.get_mid("csrf-mid").await.expect("mid").status };
    let host = web.base.trim_start_matches("https://").to_string();
    let origin = web.base.clone();
    let refusals: Vec<Refusal> = vec![
        ("no token", vec![], vec![]),
        ("an empty token", vec![], vec![("csrf", "")]),
        (
            "another session's token",
            vec![],
            vec![("csrf", &other_csrf)],
        ),
        (
            "a cross-site request",
            vec![("sec-fetch-site", "cross-site")],
            vec![("csrf", &csrf)],
        ),
        (
            "another origin",
            vec![("origin", "https://evil.example")],
            vec![("csrf", &csrf)],
        ),
    ];
    for (what, headers, form) in &refusals {
        let page = web
            .send(
                "POST",
                "/ui/mids/csrf-mid/pause",
                Some(&cookie),
                headers,
                form,
            )
            .await;
        assert_eq!(page.status, 403, "{what}: {}", page.body);
        assert!(
            page.body.contains("refused"),
            "{what}: an HTML page says why"
        );
        assert_eq!(status().await, MidStatus::Up, "{what} changed nothing");
    }
    let logout = web
        .send("POST", "/ui/logout", Some(&cookie), &[], &[])
        .await;
    assert_eq!(
        logout.status, 403,
        "logout without the token is refused too"
    );

    let done = web
        .send(
            "POST",
            "/ui/mids/csrf-mid/pause",
            Some(&cookie),
            &[
                ("origin", &origin),
                ("sec-fetch-site", "same-origin"),
                ("host", &host),
            ],
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), Some("/ui/mids/csrf-mid?done=pause"));
    assert_eq!(status().await, MidStatus::Paused);
    // The dispatcher's rules hold: validating a paused MID is a conflict, shown as a
    // page.
    let again = web
        .send(
            "POST",
            "/ui/mids/csrf-mid/validate",
            Some(&cookie),
            &[],
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        again.headers["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );
    let history = web.get("/ui/mids/csrf-mid", Some(&cookie)).await;
    assert!(
        history.body.contains("paused by an admin"),
        "{}",
        history.body
    );
    instance.shutdown().await;
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_logout() {
    let (instance, _dir) = instance_with(|c| c.dashboard_session_idle_ms = 1_500).await;
    let web = Browserless::new(&instance);

    let (idle, _) = web.login().await;
    // Used within the idle time, it lives past its first expiry.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(web.get("/ui/ecc", Some(&idle)).await.status, 200);
    }
    // Background polls do not keep it alive.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let poll = web
            .send(
                "GET",
                "/ui/ecc/rows",
                Some(&idle),
                &[("hx-request", "true")],
                &[],
            )
            .await;
        if poll.status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "an idle session never expired");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let page = web.get("/ui/mids", Some(&idle)).await;
    assert_eq!((page.status, page.location()), (303, Some("/ui/login")));

    let (cookie, csrf) = web.login().await;
    let out = web
        .send("POST", "/ui/logout", Some(&cookie), &[], &[("csrf", &csrf)])
        .await;
    assert_eq!((out.status, out.location()), (303, Some("/ui/login")));
    let cleared = out.set_cookie().expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let after = web.get("/ui/mids", Some(&cookie)).await;
    assert_eq!(
        (after.status, after.location()),
        (303, Some("/ui/login")),
        "a logged-out session is refused"
    );
    instance.shutdown().await;
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// chromedriver, started on a free loopback port; killed on drop.
struct Chromedriver {
    child: std::process::Child,
    url: String,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver, or says loudly why not (and fails under `CI`).
async fn chromedriver() -> Option<Chromedriver> {
    let missing: Vec<&str> = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .into_iter()
        .filter(|p| !std::path::Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        let why = format!(
            "{} missing (apt-get install chromium chromium-driver)",
            missing.join(" and ")
        );
        assert!(std::env::var_os("CI").is_none(), "under CI: {why}");
        eprintln!("SKIPPED: the dashboard's browser test: {why}");
        return None;
    }
    let port = free_port();
    let child = std::process::Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Chromedriver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(driver)
}

/// A headless Chromium session through `driver`, profile in `profile`. The instance's
/// certificate is self-signed: the browser is told to accept it.
async fn browser(driver: &Chromedriver, profile: &std::path::Path) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert("acceptInsecureCerts".into(), json!(true));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--ignore-certificate-errors",
                "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Checks a screenshot is a real, non-trivial PNG and keeps it in `dir`.
fn keep_screenshot(png: &[u8], dir: &std::path::Path, name: &str) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{name}: not a PNG");
    assert_eq!(&png[12..16], b"IHDR", "{name}: no IHDR chunk first");
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert!(width >= 800 && height >= 600, "{name}: {width}x{height}");
    assert!(
        png.len() > 10_000,
        "{name}: only {} bytes: a blank page?",
        png.len()
    );
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
}

fn rest_output(mid: &str, name: &str) -> NewOutput {
    NewOutput {
        durability: Default::default(),
        agent: format!("mid.server.{mid}"),
        topic: Topic::RESTProbe,
        name: Some(name.into()),
        source: None,
        payload: json!({"url": "http://127.0.0.1:9/", "method": "GET"}).into(),
        priority: None,
        correlator: None,
        max_attempts: None,
        at_most_once: false,
        application: None,
    }
}

/// Claims what waits for `client` and answers it.
async fn run_one(client: &InstanceClient, output_id: &str) {
    let poll = client
        .poll(&PollRequest {
            capacity: Capacity {
                interactive: 4,
                expedited: 4,
                standard: 4,
            },
            wait_ms: 5_000,
            known_status: Some(MidStatus::Up),
        })
        .await
        .expect("poll");
    let job = poll
        .work
        .iter()
        .find(|w| w.output_id == output_id)
        .expect("the output was handed out");
    client
        .post_results(&ResultsRequest {
            results: vec![WorkResult {
                output_id: output_id.to_string(),
                attempt: job.attempt,
                payload: json!({"status": 200, "headers": {}, "body": "pong", "timings": {"headers_ms": 1.0, "total_ms": 2.0}}).into(),
                error: None,
                started_at_ms: 0,
                duration_ms: 2,
            }],
        })
        .await
        .expect("results");
}

/// An element, waited for (a page may still be loading after a click).
async fn el(
    web: &fantoccini::Client,
    locator: fantoccini::Locator<'_>,
) -> fantoccini::elements::Element {
    web.wait()
        .at_most(Duration::from_secs(15))
        .for_element(locator)
        .await
        .unwrap_or_else(|e| panic!("no element {locator:?}: {e}"))
}

/// Waits until the browser is at `path`.
async fn at(web: &fantoccini::Client, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = web.current_url().await.expect("url");
        if url.path() == path {
            return;
        }
        assert!(Instant::now() < deadline, "at {url}, wanted {path}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_person_logs_in_pauses_a_mid_follows_a_record_and_logs_out() {
    use fantoccini::Locator;
    let Some(driver) = chromedriver().await else {
        return;
    };
    let (instance, dir) = instance().await;
    let raw = Raw::new(&instance);
    const PASSWORD: &str = "dashboard-test-pw-7f3a91c2";
    let made = raw
        .admin(
            "POST",
            "/api/v1/credentials",
            json!({"name": "svc-login", "type": "basic", "username": "svc", "password": PASSWORD}),
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let alias = raw
        .admin(
            "POST",
            "/api/v1/aliases",
            json!({"name": "svc-api", "kind": "http", "base_url": "http://127.0.0.1:9", "credential": "svc-login"}),
        )
        .await;
    assert_eq!(alias.status, 201, "{:?}", alias.body);
    let client = enrolled_client(&instance, "web-mid", true).await;
    let output = instance
        .api
        .insert_output(&rest_output("web-mid", "ping the service"))
        .await
        .expect("output");
    run_one(&client, &output.id).await;

    let shots = dir.path().join("screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let web = browser(&driver, &dir.path().join("chromium")).await;
    let base = instance.running.url.trim_end_matches('/').to_string();
    let mut sources = Vec::new();

    // A wrong token: an error, still on the login page.
    web.goto(&format!("{base}/ui/mids")).await.expect("open");
    at(&web, "/ui/login").await;
    el(&web, Locator::Id("token"))
        .await
        .send_keys("omadm_not-the-token")
        .await
        .expect("type");
    el(&web, Locator::Id("login"))
        .await
        .click()
        .await
        .expect("click");
    let error = el(&web, Locator::Id("login-error")).await;
    assert!(
        error
            .text()
            .await
            .expect("text")
            .contains("not the admin token")
    );
    keep_screenshot(
        &web.screenshot().await.expect("shot"),
        &shots,
        "login-refused",
    );

    // The right one: the MID list, with the enrolled MID.
    el(&web, Locator::Id("token"))
        .await
        .send_keys(instance.token.expose())
        .await
        .expect("type");
    el(&web, Locator::Id("login"))
        .await
        .click()
        .await
        .expect("click");
    at(&web, "/ui/mids").await;
    let table = el(&web, Locator::Id("mids")).await;
    assert!(table.text().await.expect("text").contains("web-mid"));
    assert_eq!(
        web.execute("return document.cookie", vec![])
            .await
            .expect("js"),
        json!(""),
        "scripts cannot read the session cookie"
    );
    sources.push(web.source().await.expect("source"));
    keep_screenshot(&web.screenshot().await.expect("shot"), &shots, "mids");

    // Open the MID and pause it, through the confirmation.
    el(&web, Locator::LinkText("web-mid"))
        .await
        .click()
        .await
        .expect("click");
    let status = el(&web, Locator::Id("mid-status")).await;
    assert_eq!(status.text().await.expect("text"), "up");
    el(&web, Locator::Id("action-pause"))
        .await
        .click()
        .await
        .expect("click");
    at(&web, "/ui/mids/web-mid/pause").await;
    sources.push(web.source().await.expect("source"));
    keep_screenshot(
        &web.screenshot().await.expect("shot"),
        &shots,
        "confirm-pause",
    );
    el(&web, Locator::Id("confirm"))
        .await
        .click()
        .await
        .expect("click");
    let status = el(&web, Locator::Id("mid-status")).await;
    assert_eq!(status.text().await.expect("text"), "paused");
    let history = el(&web, Locator::Id("history")).await;
    assert!(
        history
            .text()
            .await
            .expect("text")
            .contains("paused by an admin")
    );
    assert_eq!(
        instance.api.get_mid("web-mid").await.expect("mid").status,
        MidStatus::Paused,
        "the registry says so too"
    );
    sources.push(web.source().await.expect("source"));
    keep_screenshot(&web.screenshot().await.expect("shot"), &shots, "mid-paused");

    // The ECC queue, filtered by topic; it refreshes itself.
    el(&web, Locator::LinkText("ECC queue"))
        .await
        .click()
        .await
        .expect("click");
    el(
        &web,
        Locator::Css("#filter-topic option[value='RESTProbe']"),
    )
    .await
    .click()
    .await
    .expect("choose");
    el(&web, Locator::Id("apply-filters"))
        .await
        .click()
        .await
        .expect("click");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !web
        .current_url()
        .await
        .expect("url")
        .query()
        .unwrap_or("")
        .contains("topic=RESTProbe")
    {
        assert!(Instant::now() < deadline, "the filter was not applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    el(&web, Locator::Css("#records td.topic")).await;
    let topics = web
        .find_all(Locator::Css("#records td.topic"))
        .await
        .expect("rows");
    assert_eq!(topics.len(), 2, "the output and its input");
    for t in &topics {
        assert_eq!(t.text().await.expect("text"), "RESTProbe");
    }
    let late = instance
        .api
        .insert_output(&rest_output("web-mid", "arrives while watching"))
        .await
        .expect("output");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !web.source().await.expect("source").contains(&late.id) {
        assert!(
            Instant::now() < deadline,
            "the queue page did not refresh itself"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sources.push(web.source().await.expect("source"));
    keep_screenshot(&web.screenshot().await.expect("shot"), &shots, "queue");

    // A record, linked to its input and back.
    el(
        &web,
        Locator::Css(&format!("a[href='/ui/ecc/{}']", output.id)),
    )
    .await
    .click()
    .await
    .expect("click");
    let linked = el(&web, Locator::Id("linked-input")).await;
    let input_href = linked.attr("href").await.expect("href").expect("a link");
    let state = el(&web, Locator::Id("record-state")).await;
    assert_eq!(state.text().await.expect("text"), "processed");
    let payload = el(&web, Locator::Id("payload")).await;
    assert!(payload.text().await.expect("text").contains("127.0.0.1:9"));
    sources.push(web.source().await.expect("source"));
    keep_screenshot(&web.screenshot().await.expect("shot"), &shots, "record");
    linked.click().await.expect("follow");
    at(&web, &input_href).await;
    let back = el(&web, Locator::Id("linked-output")).await;
    assert_eq!(back.text().await.expect("text"), output.id);
    let input_payload = el(&web, Locator::Id("payload")).await;
    assert!(input_payload.text().await.expect("text").contains("pong"));
    sources.push(web.source().await.expect("source"));

    // Aliases and credentials: names and types, never the password.
    el(&web, Locator::LinkText("Aliases & credentials"))
        .await
        .click()
        .await
        .expect("click");
    let creds = el(&web, Locator::Id("credentials")).await;
    let text = creds.text().await.expect("text");
    assert!(text.contains("svc-login") && text.contains("basic") && text.contains("svc-api"));
    sources.push(web.source().await.expect("source"));
    keep_screenshot(
        &web.screenshot().await.expect("shot"),
        &shots,
        "connections",
    );
    for path in ["/ui/clusters", "/ui/imports", "/ui/devices"] {
        web.goto(&format!("{base}{path}")).await.expect("open");
        sources.push(web.source().await.expect("source"));
    }
    for (i, source) in sources.iter().enumerate() {
        assert!(
            !source.contains(PASSWORD),
            "page {i} shows the credential's password"
        );
        assert!(
            !source.contains(instance.token.expose()),
            "page {i} shows the admin token"
        );
    }

    // Log out: back to the login page, and the dashboard asks again.
    el(&web, Locator::Id("logout"))
        .await
        .click()
        .await
        .expect("click");
    at(&web, "/ui/login").await;
    web.goto(&format!("{base}/ui/mids")).await.expect("open");
    at(&web, "/ui/login").await;
    keep_screenshot(&web.screenshot().await.expect("shot"), &shots, "logged-out");
    web.close().await.expect("close the browser");
    drop(client);
    instance.shutdown().await;
}
