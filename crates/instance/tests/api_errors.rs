//! Bad input on every endpoint is answered 4xx with `{"error":{"code","message"}}`
//! naming the problem, and writes nothing.

use crate::support::{Raw, instance};
use serde_json::json;

async fn record_count(raw: &Raw) -> usize {
    let page = raw.get("/api/v1/ecc?limit=1000").await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    page.body["records"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn admin_endpoints_require_the_admin_token() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    let calls = [
        ("POST", "/api/v1/enrollment-tokens"),
        ("GET", "/api/v1/mids"),
        ("GET", "/api/v1/mids/x"),
        ("POST", "/api/v1/mids/x/validate"),
        ("POST", "/api/v1/ecc"),
        ("GET", "/api/v1/ecc"),
        ("GET", "/api/v1/ecc/x"),
        ("POST", "/api/v1/actions/rest"),
    ];
    for (method, path) in calls {
        for token in [None, Some("omadm_wrong"), Some("garbage with spaces")] {
            let a = raw
                .send(method, path, token, Some("application/json"), "{}")
                .await;
            assert_eq!(a.status, 401, "{method} {path} with {token:?}");
            let (code, message) = a.error();
            assert_eq!(code, "unauthorized");
            assert!(message.contains("admin token"), "{message}");
        }
    }
    assert_eq!(record_count(&raw).await, 0);
    let tokens = raw.get("/api/v1/mids").await;
    assert_eq!(tokens.body["mids"], json!([]));
}

#[tokio::test]
async fn bad_output_records_are_refused_and_nothing_is_written() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    // A real, enrolled MID so only the field under test is wrong.
    let _client = crate::support::enrolled_client(&instance, "mid-a", true).await;
    let good = json!({"agent": "mid.server.mid-a", "topic": "RESTProbe", "payload": {"url": "http://127.0.0.1:9/x"}});
    let with = |key: &str, value: serde_json::Value| {
        let mut v = good.clone();
        v[key] = value;
        v
    };
    let without = |key: &str| {
        let mut v = good.clone();
        v.as_object_mut().map(|o| o.remove(key));
        v
    };
    let cases: Vec<(serde_json::Value, u16, &str, &str)> = vec![
        (
            without("agent"),
            422,
            "invalid_body",
            "missing field `agent`",
        ),
        (
            without("topic"),
            422,
            "invalid_body",
            "missing field `topic`",
        ),
        (
            without("payload"),
            422,
            "invalid_body",
            "missing field `payload`",
        ),
        (
            with("topic", json!("NoSuchProbe")),
            422,
            "invalid_body",
            "unknown variant `NoSuchProbe`",
        ),
        (with("topic", json!(7)), 422, "invalid_body", "topic"),
        (with("priority", json!(5)), 422, "invalid_body", "priority"),
        (
            with("priority", json!("urgent")),
            422,
            "invalid_body",
            "unknown variant `urgent`",
        ),
        (
            with("max_attempts", json!(-1)),
            422,
            "invalid_body",
            "max_attempts",
        ),
        (
            with("max_attempts", json!(50)),
            422,
            "invalid_field",
            "max_attempts",
        ),
        (
            with("surprise", json!(1)),
            422,
            "invalid_body",
            "unknown field `surprise`",
        ),
        (
            with("agent", json!("mid.server.nobody")),
            422,
            "invalid_field",
            "no MID named `nobody`",
        ),
        (
            with("agent", json!("somebody")),
            422,
            "invalid_field",
            "invalid agent",
        ),
        (
            with("agent", json!("mid.cluster.east")),
            422,
            "invalid_field",
            "no cluster named `east`",
        ),
        (
            with("payload", json!({"url": "ftp://x/y"})),
            422,
            "invalid_field",
            "url",
        ),
        (
            with("payload", json!({"uri": "http://x"})),
            422,
            "invalid_field",
            "payload",
        ),
        (
            with("payload", json!({"url": "http://x", "timeout_ms": 0})),
            422,
            "invalid_field",
            "timeout_ms",
        ),
        (
            with("topic", json!("SystemCommand")),
            422,
            "invalid_field",
            "no probe in this release",
        ),
        (
            with("correlator", json!("c".repeat(500))),
            422,
            "invalid_field",
            "correlator",
        ),
    ];
    for (body, status, code, needle) in cases {
        let a = raw.admin("POST", "/api/v1/ecc", body.clone()).await;
        let (got_code, message) = a.error();
        assert_eq!(
            (a.status, got_code.as_str()),
            (status, code),
            "{body} → {message}"
        );
        assert!(
            message.contains(needle),
            "{body}: `{message}` should mention `{needle}`"
        );
    }
    let syntax = raw
        .send(
            "POST",
            "/api/v1/ecc",
            Some(""),
            Some("application/json"),
            "{\"agent\": ",
        )
        .await;
    assert_eq!(
        (syntax.status, syntax.error().0.as_str()),
        (400, "invalid_json")
    );
    let no_type = raw
        .send("POST", "/api/v1/ecc", Some(""), None, good.to_string())
        .await;
    assert_eq!(no_type.status, 415);
    assert!(no_type.error().1.contains("application/json"));
    let huge = format!(
        "{{\"agent\":\"mid.server.mid-a\",\"topic\":\"RESTProbe\",\"payload\":{{\"url\":\"http://x\",\"body\":\"{}\"}}}}",
        "x".repeat(33 * 1024 * 1024)
    );
    let big = raw
        .send(
            "POST",
            "/api/v1/ecc",
            Some(""),
            Some("application/json"),
            huge,
        )
        .await;
    assert_eq!(
        (big.status, big.error().0.as_str()),
        (413, "body_too_large")
    );

    assert_eq!(record_count(&raw).await, 0, "no bad request wrote a record");
    let ok = raw.admin("POST", "/api/v1/ecc", good).await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    assert_eq!(ok.body["state"], "ready");
    assert_eq!(record_count(&raw).await, 1);
}

#[tokio::test]
async fn other_endpoints_name_what_is_wrong() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    let _client = crate::support::enrolled_client(&instance, "mid-a", true).await;

    let cases = [
        (
            "POST",
            "/api/v1/actions/rest",
            json!({"url": "http://x"}),
            422,
            "give either `mid`",
        ),
        (
            "POST",
            "/api/v1/actions/rest",
            json!({"path": "/x"}),
            422,
            "`path` and `query` go with `alias`",
        ),
        (
            "POST",
            "/api/v1/actions/rest",
            json!({"mid": "mid-a"}),
            422,
            "give `alias` (a Connection & Credential alias), or `url` with `mid` or `agent`",
        ),
        (
            "POST",
            "/api/v1/actions/rest",
            json!({"mid": "mid-a", "url": 5}),
            422,
            "url",
        ),
        (
            "POST",
            "/api/v1/actions/rest",
            json!({"mid": "ghost", "url": "http://x"}),
            422,
            "no MID named `ghost`",
        ),
        (
            "POST",
            "/api/v1/actions/rest",
            json!({"mid": "mid-a", "url": "http://x", "headers": {"a b": "c"}}),
            422,
            "header name",
        ),
        (
            "POST",
            "/api/v1/actions/rest",
            json!({"mid": "mid-a", "url": "http://x", "method": "BAD METHOD"}),
            422,
            "method",
        ),
        (
            "POST",
            "/api/v1/actions/rest?wait=-1",
            json!({"mid": "mid-a", "url": "http://x"}),
            400,
            "wait",
        ),
        (
            "POST",
            "/api/v1/actions/rest?wait=soon",
            json!({"mid": "mid-a", "url": "http://x"}),
            400,
            "wait",
        ),
        (
            "POST",
            "/api/v1/actions/rest?wait=100000",
            json!({"mid": "mid-a", "url": "http://x"}),
            400,
            "wait",
        ),
        (
            "POST",
            "/api/v1/enrollment-tokens",
            json!({"ttl_secs": 0}),
            422,
            "ttl_secs",
        ),
        (
            "POST",
            "/api/v1/enrollment-tokens",
            json!({"ttl_secs": "long"}),
            422,
            "ttl_secs",
        ),
        (
            "GET",
            "/api/v1/ecc?state=bogus",
            json!(null),
            400,
            "unknown state `bogus`",
        ),
        (
            "GET",
            "/api/v1/ecc?queue=sideways",
            json!(null),
            400,
            "unknown queue `sideways`",
        ),
        (
            "GET",
            "/api/v1/ecc?topic=Nope",
            json!(null),
            400,
            "unknown topic `Nope`",
        ),
        ("GET", "/api/v1/ecc?limit=0", json!(null), 400, "limit"),
        ("GET", "/api/v1/ecc?limit=many", json!(null), 400, "limit"),
        ("GET", "/api/v1/ecc?colour=red", json!(null), 400, "colour"),
        ("GET", "/api/v1/ecc/nope", json!(null), 404, "nope"),
        ("GET", "/api/v1/mids/ghost", json!(null), 404, "ghost"),
        (
            "POST",
            "/api/v1/mids/ghost/validate",
            json!(null),
            404,
            "ghost",
        ),
        ("GET", "/api/v1/nothing-here", json!(null), 404, "no route"),
        ("DELETE", "/api/v1/mids", json!(null), 405, "DELETE"),
    ];
    for (method, path, body, status, needle) in cases {
        let a = if body.is_null() {
            raw.send(method, path, Some(""), None, Vec::new()).await
        } else {
            raw.admin(method, path, body.clone()).await
        };
        let (_, message) = a.error();
        assert_eq!(a.status, status, "{method} {path} {body}: {message}");
        assert!(
            message.contains(needle),
            "{method} {path}: `{message}` should mention `{needle}`"
        );
    }
    assert_eq!(record_count(&raw).await, 0, "no bad request wrote a record");
}

#[tokio::test]
async fn mid_session_refuses_bad_credentials_and_versions() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    let poll = json!({"capacity": {"interactive": 1, "expedited": 0, "standard": 0}, "wait_ms": 0})
        .to_string();
    let send = |headers: Vec<(&'static str, String)>| {
        raw.post_with_headers("/mid/v1/poll", headers, poll.clone())
    };
    let no_version = send(vec![("authorization", "Bearer a.b".into())]).await;
    assert_eq!(
        (no_version.status, no_version.error().0.as_str()),
        (400, "missing_protocol")
    );
    let future = send(vec![
        ("authorization", "Bearer a.b".into()),
        (openmid_proto::PROTOCOL_HEADER, "99".into()),
    ])
    .await;
    assert_eq!(future.status, 426);
    assert!(
        future.error().1.contains("upgrade the instance"),
        "{}",
        future.error().1
    );
    let stranger = send(vec![
        ("authorization", "Bearer 0190.notasecret".into()),
        (openmid_proto::PROTOCOL_HEADER, "1".into()),
    ])
    .await;
    assert_eq!(stranger.status, 401);

    let enroll = |token: &str, name: &str| {
        json!({
            "token": token, "name": name, "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "secret": "s".repeat(40), "protocol_version": 1, "version": "t", "hostname": "h"
        })
    };
    let bad_token = raw
        .admin("POST", "/mid/v1/enroll", enroll("omenr_forged", "m1"))
        .await;
    assert_eq!(
        (bad_token.status, bad_token.error().0.as_str()),
        (403, "enrollment_refused")
    );
    let token = instance
        .api
        .create_enrollment_token(&Default::default())
        .await
        .expect("token")
        .token;
    let bad_name = raw
        .admin("POST", "/mid/v1/enroll", enroll(&token, "no spaces please"))
        .await;
    assert_eq!(bad_name.status, 422);
    assert!(bad_name.error().1.contains("name"));
    let mut bad_key = enroll(&token, "m1");
    bad_key["public_key"] = json!("short");
    let bad_key = raw.admin("POST", "/mid/v1/enroll", bad_key).await;
    assert!(
        bad_key.error().1.contains("public_key"),
        "{:?}",
        bad_key.body
    );
    assert!(
        instance.api.list_mids().await.expect("mids").is_empty(),
        "nothing enrolled"
    );

    let first = raw
        .admin("POST", "/mid/v1/enroll", enroll(&token, "m1"))
        .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let reused = raw
        .admin("POST", "/mid/v1/enroll", enroll(&token, "m2"))
        .await;
    assert_eq!(reused.status, 403, "a token enrolls one MID only");
    let token2 = instance
        .api
        .create_enrollment_token(&Default::default())
        .await
        .expect("token")
        .token;
    let taken = raw
        .admin("POST", "/mid/v1/enroll", enroll(&token2, "m1"))
        .await;
    assert_eq!(
        (taken.status, taken.error().0.as_str()),
        (409, "name_taken")
    );
    assert_eq!(instance.api.list_mids().await.expect("mids").len(), 1);
}

#[tokio::test]
async fn the_openapi_document_describes_every_admin_route() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    let doc = raw
        .send("GET", "/api/v1/openapi.json", None, None, Vec::new())
        .await;
    assert_eq!(doc.status, 200, "served without a token");
    assert_eq!(doc.body["openapi"], "3.1.0");
    for (path, method) in [
        ("/api/v1/enrollment-tokens", "post"),
        ("/api/v1/mids", "get"),
        ("/api/v1/mids/{name}", "get"),
        ("/api/v1/mids/{name}", "patch"),
        ("/api/v1/mids/{name}/history", "get"),
        ("/api/v1/mids/{name}/{action}", "post"),
        ("/api/v1/clusters", "post"),
        ("/api/v1/clusters", "get"),
        ("/api/v1/clusters/{name}", "get"),
        ("/api/v1/clusters/{name}", "put"),
        ("/api/v1/clusters/{name}", "delete"),
        ("/api/v1/ecc", "post"),
        ("/api/v1/ecc", "get"),
        ("/api/v1/ecc/{id}", "get"),
        ("/api/v1/actions/rest", "post"),
        ("/api/v1/actions/soap", "post"),
        ("/api/v1/actions/{id}", "get"),
        ("/api/v1/credentials", "post"),
        ("/api/v1/credentials", "get"),
        ("/api/v1/credentials/{name}", "get"),
        ("/api/v1/credentials/{name}", "put"),
        ("/api/v1/credentials/{name}", "delete"),
        ("/api/v1/aliases", "post"),
        ("/api/v1/aliases", "get"),
        ("/api/v1/aliases/{name}", "get"),
        ("/api/v1/aliases/{name}", "put"),
        ("/api/v1/aliases/{name}", "delete"),
    ] {
        assert!(
            doc.body["paths"][path][method].is_object(),
            "{method} {path} is documented"
        );
    }
}

#[tokio::test]
async fn bad_cluster_requests_are_refused() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    let cases = [
        (
            "POST",
            "/api/v1/clusters",
            json!({"name": "c", "kind": "round_robin", "members": ["a"]}),
            422,
            "unknown variant `round_robin`",
        ),
        (
            "POST",
            "/api/v1/clusters",
            json!({"name": "c", "kind": "failover", "members": []}),
            422,
            "members",
        ),
        (
            "POST",
            "/api/v1/clusters",
            json!({"name": "c", "kind": "failover", "members": ["a", "a"]}),
            422,
            "listed twice",
        ),
        (
            "POST",
            "/api/v1/clusters",
            json!({"name": "c d", "kind": "failover", "members": ["a"]}),
            422,
            "name",
        ),
        (
            "POST",
            "/api/v1/clusters",
            json!({"name": "c", "kind": "failover"}),
            422,
            "missing field `members`",
        ),
        (
            "PUT",
            "/api/v1/clusters/c",
            json!({"name": "other", "kind": "failover", "members": ["a"]}),
            422,
            "must match the path",
        ),
        (
            "PATCH",
            "/api/v1/mids/ghost",
            json!({"capabilities": ["REST"]}),
            404,
            "ghost",
        ),
        (
            "PATCH",
            "/api/v1/mids/ghost",
            json!({"colour": "red"}),
            422,
            "unknown field `colour`",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let a = raw.admin(method, path, body.clone()).await;
        let (_, message) = a.error();
        assert_eq!(a.status, status, "{method} {path} {body}: {message}");
        assert!(
            message.contains(needle),
            "{method} {path}: `{message}` should mention `{needle}`"
        );
    }
    assert!(
        instance.api.list_clusters().await.expect("list").is_empty(),
        "nothing written"
    );
    let ok = raw
        .admin(
            "POST",
            "/api/v1/clusters",
            json!({"name": "c", "kind": "failover", "members": ["b", "a"]}),
        )
        .await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    assert_eq!(ok.body["members"][0]["name"], "b");
    assert_eq!(
        ok.body["members"][0]["status"],
        serde_json::Value::Null,
        "not enrolled yet"
    );
    let again = raw
        .admin(
            "POST",
            "/api/v1/clusters",
            json!({"name": "c", "kind": "failover", "members": ["a"]}),
        )
        .await;
    assert_eq!(again.status, 409);
    let gone = raw
        .send("DELETE", "/api/v1/clusters/c", Some(""), None, Vec::new())
        .await;
    assert_eq!(gone.status, 204);
    let missing = raw
        .send("DELETE", "/api/v1/clusters/c", Some(""), None, Vec::new())
        .await;
    assert_eq!(missing.status, 404);
}
