//! Every answer, whatever part of the stack refuses the request, is the API's JSON
//! error `{"error":{"code","message"}}` naming the problem; text fields people read
//! refuse control characters; limits the documents promise are enforced.

use crate::support::{Answer, Raw, instance};
use openmid_proto::PROTOCOL_HEADER;
use openmid_proto::api::NewEnrollmentToken;
use openmid_testkit::TestInstance;
use serde_json::json;

/// Asserts a JSON error with this status and code whose message contains `names`.
fn assert_error(a: &Answer, status: u16, code: &str, names: &str) {
    assert_eq!(a.status, status, "{:?}", a.body);
    let (got_code, message) = a.error();
    assert_eq!(got_code, code, "{:?}", a.body);
    assert!(
        message.contains(names),
        "`{message}` does not name `{names}`"
    );
}

/// A MID enrolled by hand: its bearer for raw requests.
async fn mid_bearer(instance: &TestInstance, raw: &Raw, name: &str) -> String {
    let token = instance
        .api
        .create_enrollment_token(&NewEnrollmentToken::default())
        .await
        .expect("token");
    let secret = format!("{name}-secret-{}", "x".repeat(40));
    let a = raw
        .send(
            "POST",
            "/mid/v1/enroll",
            None,
            Some("application/json"),
            json!({
                "token": token.token,
                "name": name,
                "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                "secret": secret,
                "protocol_version": openmid_proto::PROTOCOL_VERSION,
                "version": "test",
                "hostname": "test-host",
            })
            .to_string(),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    format!("{}.{secret}", a.body["mid_id"].as_str().unwrap_or_default())
}

#[tokio::test]
async fn bad_path_parameters_are_json_errors_naming_the_parameter() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    let a = raw.get("/api/v1/mids/%FF%FE").await;
    assert_error(&a, 400, "invalid_path", "name");
    let a = raw.get("/api/v1/clusters/%C3%28/").await;
    assert!(a.body["error"]["code"].is_string(), "{:?}", a.body);
    // Routes whose handlers take axum's own extractors are answered in JSON too.
    let a = raw.get("/api/v1/credentials/%FF").await;
    assert_eq!(a.status, 400, "{:?}", a.body);
    assert!(a.body["error"]["message"].is_string(), "{:?}", a.body);

    let bearer = mid_bearer(&instance, &raw, "pathy").await;
    let a = raw
        .post_with_headers(
            "/mid/v1/results/some-output/not-a-number/body",
            vec![
                ("authorization", format!("Bearer {bearer}")),
                (PROTOCOL_HEADER, openmid_proto::PROTOCOL_VERSION.to_string()),
            ],
            String::new(),
        )
        .await;
    // POST on a PUT route: 405 in JSON.
    assert_error(&a, 405, "method_not_allowed", "POST");
    let a = raw
        .send(
            "PUT",
            "/mid/v1/results/some-output/not-a-number/body",
            Some(&bearer),
            Some("application/octet-stream"),
            "x",
        )
        .await;
    // The MID header is missing: still JSON; then with it, the attempt is named.
    assert_eq!(a.status, 400, "{:?}", a.body);
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(
            openmid_proto::trust::client_config(&instance.trust().expect("trust"))
                .expect("tls")
                .expect("custom"),
        )
        .build()
        .expect("client");
    let resp = http
        .put(format!(
            "{}/mid/v1/results/some-output/not-a-number/body",
            instance.running.url
        ))
        .bearer_auth(&bearer)
        .header(PROTOCOL_HEADER, openmid_proto::PROTOCOL_VERSION.to_string())
        .body("x")
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_path");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("attempt"), "{message}");
}

#[tokio::test]
async fn too_many_headers_are_a_json_431() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    let headers = (0..120)
        .map(|i| {
            let name: &'static str = Box::leak(format!("x-extra-{i}").into_boxed_str());
            (name, "v".to_string())
        })
        .collect();
    let a = raw
        .post_with_headers("/api/v1/enrollment-tokens", headers, "{}".into())
        .await;
    assert_error(&a, 431, "too_many_headers", "100");
}

#[tokio::test]
async fn invalid_utf8_in_a_json_body_is_400() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    let a = raw
        .send(
            "POST",
            "/api/v1/enrollment-tokens",
            Some(""),
            Some("application/json"),
            b"{\"note\":\"caf\xe9\"}".to_vec(),
        )
        .await;
    assert_error(&a, 400, "invalid_json", "UTF-8");
}

#[tokio::test]
async fn an_empty_blob_is_refused_naming_the_body() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    let a = raw
        .send(
            "POST",
            "/api/v1/blobs",
            Some(""),
            Some("application/octet-stream"),
            Vec::new(),
        )
        .await;
    assert_error(&a, 422, "invalid_field", "body");
}

#[tokio::test]
async fn text_fields_refuse_control_characters_and_notes_are_bounded() {
    let (instance, _dir) = instance().await;
    let raw = Raw::new(&instance);
    let a = raw
        .admin(
            "POST",
            "/api/v1/enrollment-tokens",
            json!({"note": "n".repeat(501)}),
        )
        .await;
    assert_error(&a, 422, "invalid_field", "note");
    let a = raw
        .admin(
            "POST",
            "/api/v1/enrollment-tokens",
            json!({"note": "n".repeat(500)}),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let a = raw
        .admin(
            "POST",
            "/api/v1/enrollment-tokens",
            json!({"note": "two\nlines"}),
        )
        .await;
    assert_eq!(
        a.status, 201,
        "free text may hold line breaks: {:?}",
        a.body
    );
    let a = raw
        .admin(
            "POST",
            "/api/v1/enrollment-tokens",
            json!({"note": "nul\u{0}here"}),
        )
        .await;
    assert_error(&a, 422, "invalid_field", "note");

    let a = raw
        .admin(
            "POST",
            "/api/v1/ecc",
            json!({"agent": "mid.server.nobody", "topic": "RESTProbe",
                   "payload": {"url": "http://127.0.0.1:9/"}, "correlator": "c\u{0}"}),
        )
        .await;
    assert_error(&a, 422, "invalid_field", "correlator");
    let a = raw
        .admin(
            "POST",
            "/api/v1/credentials",
            json!({"name": "c1", "description": "d\u{0}", "type": "basic",
                   "username": "u", "password": "p"}),
        )
        .await;
    assert_error(&a, 422, "invalid_field", "description");
    let a = raw
        .admin(
            "POST",
            "/api/v1/credentials",
            json!({"name": "c1", "type": "basic", "username": "u\u{1b}[31m", "password": "p"}),
        )
        .await;
    assert_error(&a, 422, "invalid_field", "username");
    let listed = raw.get("/api/v1/credentials").await;
    assert_eq!(listed.body, json!([]), "nothing was stored");
}
