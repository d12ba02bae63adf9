//! The resolver and the redirect policy, through tokio's resolver and a real reqwest
//! client against local servers.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// A one-connection-at-a-time HTTP server answering every request with what `respond`
/// makes of the server's own address.
async fn serve(respond: impl FnOnce(SocketAddr) -> String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let local = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let response = respond(local);
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

fn ok_response(_: SocketAddr) -> String {
    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".into()
}

fn redirect(location: &str) -> String {
    format!(
        "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
}

fn client(policy: &Arc<EgressPolicy>) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(PolicyResolver::new(policy.clone(), HTTP))
        .redirect(policy.clone().redirect_policy(HTTP, 3))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn denial_of(err: Option<&reqwest::Error>) -> Option<&Denial> {
    err.and_then(|e| find_denial(e))
}

#[tokio::test]
async fn a_reqwest_client_with_the_resolver_refuses_names_of_refused_addresses() {
    let server = serve(ok_response).await;
    let by_name = format!("http://localhost:{}/", server.port());
    let refusing = Arc::new(EgressPolicy::default());
    let err = client(&refusing).get(&by_name).send().await.err();
    assert!(
        matches!(
            denial_of(err.as_ref()),
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
async fn reqwest_does_not_resolve_ip_literals_so_check_url_must_run_first() {
    let server = serve(ok_response).await;
    let literal = url(&format!("http://127.0.0.1:{}/", server.port()));
    let refusing = Arc::new(EgressPolicy::default());
    // The resolver alone never sees this request: it would go through.
    let sent = client(&refusing).get(literal.clone()).send().await;
    assert!(sent.is_ok(), "{sent:?}");
    // Which is why callers check the URL before sending.
    assert!(refusing.check_url(HTTP, &literal).is_err());
}

#[tokio::test]
async fn redirects_are_followed_only_where_the_policy_allows() {
    let target = serve(ok_response).await;
    let to_metadata = serve(|_| redirect("http://169.254.169.254/latest/meta-data/")).await;
    let to_target = serve(|_| redirect(&format!("http://127.0.0.1:{}/", target.port()))).await;
    let to_ssh = serve(|_| redirect("http://127.0.0.1:22/")).await;
    let to_itself = serve(|me| redirect(&format!("http://127.0.0.1:{}/", me.port()))).await;
    let p = Arc::new(policy(
        "[policy.http]\nallow_cidrs = [\"127.0.0.1/32\"]\ndeny_ports = [22]",
    ));
    let get = |server: SocketAddr| {
        client(&p)
            .get(format!("http://127.0.0.1:{}/", server.port()))
            .send()
    };
    let err = get(to_metadata).await.err();
    assert!(
        matches!(
            denial_of(err.as_ref()),
            Some(Denial::Default {
                builtin: builtin::Builtin::Metadata,
                ..
            })
        ),
        "{err:?}"
    );
    let err = get(to_ssh).await.err();
    assert!(
        matches!(denial_of(err.as_ref()), Some(Denial::Denied { rule, .. }) if rule == "policy.http.deny_ports[0]"),
        "{err:?}"
    );
    let followed = get(to_target).await.map(|r| r.status().as_u16());
    assert_eq!(followed.ok(), Some(200));
    // A redirect loop stops at the limit with its own error, not a denial.
    let err = get(to_itself).await.err();
    let limit = err
        .as_ref()
        .and_then(|e| std::error::Error::source(e))
        .and_then(|s| s.downcast_ref::<TooManyRedirects>());
    assert_eq!(limit, Some(&TooManyRedirects(3)), "{err:?}");
    assert!(denial_of(err.as_ref()).is_none());
    assert_eq!(p.denials().of(HTTP), 2);
}
