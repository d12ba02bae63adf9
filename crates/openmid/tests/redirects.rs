//! Credentials never leave the alias's host: a redirect to another origin is followed
//! without them (no header key, no query key, no Authorization, no Referer carrying a
//! key), while a redirect on the same origin keeps them.

use crate::connections::{Rig, credential, http_alias, rest};
use openmid_proto::api::RestAction;
use openmid_proto::credential::{CredentialSpec, KeyPlacement, SecretValue};
use openmid_testkit::{AuthTarget, AuthTargetConfig, TargetService};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_host_carries_no_credential() {
    let rig = Rig::start().await;
    let api = rig.api();
    let target = AuthTarget::start(AuthTargetConfig::random())
        .await
        .expect("auth target");
    let elsewhere = TargetService::start().await.expect("other host");
    let cfg = target.config().clone();
    let cases = [
        (
            "rd-header",
            CredentialSpec::ApiKey {
                key_name: "X-API-Key".into(),
                placement: KeyPlacement::Header,
                key: SecretValue::stored(&cfg.api_key),
            },
        ),
        (
            "rd-query",
            CredentialSpec::ApiKey {
                key_name: "api_key".into(),
                placement: KeyPlacement::Query,
                key: SecretValue::stored(&cfg.api_key),
            },
        ),
        (
            "rd-basic",
            CredentialSpec::Basic {
                username: cfg.username.clone(),
                password: SecretValue::stored(&cfg.password),
            },
        ),
        (
            "rd-bearer",
            CredentialSpec::Bearer {
                token: SecretValue::stored(&cfg.bearer_token),
            },
        ),
    ];
    for (name, spec) in cases {
        api.create_credential(&credential(name, spec))
            .await
            .expect("credential");
        api.create_alias(&http_alias(name, &target.url(""), Some(name)))
            .await
            .expect("alias");
        for status in [301, 302, 303, 307, 308] {
            let mut action = RestAction::via(name, "/redirect");
            action
                .query
                .insert("to".into(), elsewhere.url("/echo?from=redirect"));
            action.query.insert("status".into(), status.to_string());
            let r = rest(api, &action).await;
            let resp = r
                .response
                .as_ref()
                .unwrap_or_else(|| panic!("{name} {status}: {:?}", r.error));
            assert_eq!(resp.status, 200, "{name} {status}: followed to the echo");
            let echoed = resp.body.as_deref().unwrap_or_default();
            let lower = echoed.to_ascii_lowercase();
            for secret in [&cfg.api_key, &cfg.password, &cfg.bearer_token] {
                assert!(
                    !echoed.contains(secret.as_str()),
                    "{name} {status}: a secret reached the other host: {echoed}"
                );
            }
            for header in ["x-api-key", "authorization", "referer"] {
                assert!(
                    !lower.contains(&format!("\"{header}\"")),
                    "{name} {status}: {header} reached the other host: {echoed}"
                );
            }
        }
    }

    // On the alias's own origin the credential goes along.
    let mut action = RestAction::via("rd-header", "/redirect");
    action.query.insert("to".into(), "/apikey-header".into());
    let r = rest(api, &action).await;
    let resp = r.response.as_ref().expect("response");
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    assert!(
        resp.body
            .as_deref()
            .is_some_and(|b| b.contains("api_key_header")),
        "{:?}",
        resp.body
    );
    target.stop();
    elsewhere.stop();
    rig.stop().await;
}
