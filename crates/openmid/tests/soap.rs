//! SOAP interoperability end to end: a real instance, a real MID and the test SOAP
//! service, which answers the way an independent (spyne-style) service does —
//! namespaces declared once on the Envelope, prefixed and refined fault codes, HTML for
//! a failed login, a SOAPAction only its WSDL tells (issue #10, items 13–18).

use crate::connections::{Rig, add, credential, soap, soap_alias};
use openmid_client::ClientError;
use openmid_proto::api::{NewOutput, SoapAction};
use openmid_proto::credential::{CredentialSpec, SecretValue};
use openmid_proto::ecc::{State, Topic};
use openmid_proto::soap::xml::check_fragment;
use openmid_proto::soap::{ElementForm, SoapVersion};
use openmid_testkit::SoapService;
use openmid_testkit::soap_service::{
    CALC_NS, SOAP11_ENV_NS, SOAP12_ENV_NS, UNAUTHORIZED_HTML, soap_action_of,
};
use serde_json::json;
use std::time::Duration;

/// A rig with the SOAP service behind Basic authentication and an alias `calc` to it.
async fn rig_with_calc() -> (Rig, SoapService, String) {
    let rig = Rig::start().await;
    let password = format!(
        "soap-pw-{}",
        hex::encode(openmid_proto::secret::random_32())
    );
    let service = SoapService::start(Some(("soap-user".into(), password.clone())))
        .await
        .expect("soap service");
    rig.api()
        .create_credential(&credential(
            "soap-basic",
            CredentialSpec::Basic {
                username: "soap-user".into(),
                password: SecretValue::stored(&password),
            },
        ))
        .await
        .expect("credential");
    rig.api()
        .create_alias(&soap_alias(
            "calc",
            &service.url("/calc"),
            Some("soap-basic"),
        ))
        .await
        .expect("alias");
    (rig, service, password)
}

/// Item 13 and 14: the Body and the Fault detail parse on their own although the
/// service declared `tns` only on the Envelope; fault codes come resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_parse_on_their_own_and_fault_codes_come_resolved() {
    let (rig, _service, _) = rig_with_calc().await;
    let api = rig.api();
    for version in [SoapVersion::V1_1, SoapVersion::V1_2] {
        let r = soap(api, &add("calc", version, 1, 2)).await;
        let resp = r.response.expect("response");
        let body = resp.body.expect("body");
        assert!(body.contains("tns:AddResponse"), "{body}");
        check_fragment(&body, &[]).unwrap_or_else(|e| panic!("{version}: {e}: {body}"));

        let mut divide = add("calc", version, 7, 0);
        divide.operation = Some("Divide".into());
        divide.soap_action = Some(format!("{CALC_NS}#Divide"));
        let fault = soap(api, &divide)
            .await
            .response
            .and_then(|r| r.fault)
            .expect("fault");
        let detail = fault.detail.clone().expect("detail");
        check_fragment(&detail, &[]).unwrap_or_else(|e| panic!("{version}: {e}: {detail}"));
        let (envelope_ns, client) = match version {
            SoapVersion::V1_1 => (SOAP11_ENV_NS, "Client"),
            SoapVersion::V1_2 => (SOAP12_ENV_NS, "Sender"),
        };
        assert_eq!(
            (fault.code_namespace.as_deref(), fault.code_local.as_str()),
            (Some(envelope_ns), client),
            "{fault:?}"
        );

        // A refined code: dotted in 1.1, a Subcode in 1.2.
        let mut unknown = add("calc", version, 1, 1);
        unknown.operation = Some("Multiply".into());
        unknown.soap_action = Some(format!("{CALC_NS}#Multiply"));
        let fault = soap(api, &unknown)
            .await
            .response
            .and_then(|r| r.fault)
            .expect("fault");
        match version {
            SoapVersion::V1_1 => {
                assert_eq!(fault.code, "soap11env:Client.UnknownOperation");
                assert_eq!(fault.code_namespace.as_deref(), Some(SOAP11_ENV_NS));
                assert_eq!(fault.code_local, "Client.UnknownOperation");
            }
            SoapVersion::V1_2 => {
                assert_eq!(fault.code_local, "Sender");
                let sub = fault.subcodes.first().expect("subcode");
                assert_eq!(
                    (sub.namespace.as_deref(), sub.local.as_str()),
                    (Some(CALC_NS), "UnknownOperation")
                );
                assert_eq!(fault.subcode.as_deref(), Some("tns:UnknownOperation"));
            }
        }
    }
    rig.stop().await;
}

/// Item 16: a Body that is not well-formed is refused at the API door with a 422 naming
/// `body`, through an alias and straight into the ECC queue, and nothing is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_refused_at_the_api_door() {
    let (rig, service, _) = rig_with_calc().await;
    let api = rig.api();
    let calls = service.calls();
    for body in ["<Echo><text>unclosed</Echo>", "<x:Echo/>", "<a>&nbsp;</a>"] {
        let refused = api
            .soap_action(
                &SoapAction {
                    alias: "calc".into(),
                    body: Some(body.into()),
                    ..SoapAction::default()
                },
                Duration::from_secs(30),
            )
            .await;
        match refused {
            Err(ClientError::Api {
                status, message, ..
            }) => {
                assert_eq!(status, 422, "{body}: {message}");
                assert!(message.starts_with("body"), "{body}: {message}");
            }
            other => panic!("{body}: accepted: {other:?}"),
        }
        let direct = api
            .insert_output(&NewOutput {
                durability: Default::default(),
                agent: format!("mid.server.{}", crate::connections::MID),
                topic: Topic::SOAPProbe,
                name: None,
                source: None,
                payload: serde_json::json!({"url": service.url("/calc"), "body": body}).into(),
                priority: None,
                correlator: None,
                max_attempts: None,
                at_most_once: false,
                application: None,
            })
            .await;
        assert!(
            matches!(&direct, Err(ClientError::Api { status: 422, message, .. }) if message.starts_with("body")),
            "{body}: {direct:?}"
        );
    }
    assert_eq!(service.calls(), calls, "nothing reached the service");
    rig.stop().await;
}

/// Item 17: an answer that is not SOAP (an HTML 401 page, an empty 503) is still an
/// error, but the result keeps the status, the headers (without the cookie the service
/// set, and nothing the MID sent) and the start of the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_soap_answers_keep_status_headers_and_the_start_of_the_body() {
    let (rig, service, password) = rig_with_calc().await;
    let api = rig.api();
    api.create_credential(&credential(
        "soap-wrong",
        CredentialSpec::Basic {
            username: "soap-user".into(),
            password: SecretValue::stored("not-the-password"),
        },
    ))
    .await
    .expect("credential");
    api.create_alias(&soap_alias(
        "calc-wrong",
        &service.url("/calc"),
        Some("soap-wrong"),
    ))
    .await
    .expect("alias");
    let r = soap(api, &add("calc-wrong", SoapVersion::V1_1, 1, 2)).await;
    assert_eq!(r.state, State::Error);
    let shown = serde_json::to_string(&r).expect("json");
    assert!(!shown.contains("not-the-password") && !shown.contains(&password));
    assert!(
        !shown.to_ascii_lowercase().contains("authorization"),
        "{shown}"
    );
    let error = r.error.clone().unwrap_or_default();
    assert!(error.contains("HTTP 401"), "{error}");
    let resp = r.response.expect("the answer is kept");
    assert_eq!(resp.status, 401);
    assert!(
        resp.headers.contains_key("www-authenticate"),
        "{:?}",
        resp.headers
    );
    assert!(
        !resp
            .headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("set-cookie")),
        "{:?}",
        resp.headers
    );
    let not_soap = resp.not_soap.expect("not_soap");
    assert_eq!(not_soap.body, UNAUTHORIZED_HTML);
    assert!(!not_soap.truncated);
    assert!(not_soap.problem.contains("HTML"), "{}", not_soap.problem);
    assert!(
        not_soap
            .content_type
            .is_some_and(|ct| ct.starts_with("text/html")),
        "content type"
    );

    api.create_alias(&soap_alias(
        "empty",
        &service.url("/empty"),
        Some("soap-basic"),
    ))
    .await
    .expect("alias");
    let r = soap(api, &add("empty", SoapVersion::V1_2, 1, 2)).await;
    assert_eq!(r.state, State::Error);
    let resp = r.response.expect("the answer is kept");
    assert_eq!(resp.status, 503);
    let not_soap = resp.not_soap.expect("not_soap");
    assert_eq!((not_soap.body.as_str(), not_soap.body_bytes), ("", 0));
    rig.stop().await;
}

/// `Concat` of the test service with `element_form` (and its action, unless `None`).
fn concat(alias: &str, form: Option<ElementForm>, soap_action: Option<String>) -> SoapAction {
    let mut params = serde_json::Map::new();
    params.insert("a".into(), "x".into());
    params.insert("b".into(), "y".into());
    SoapAction {
        alias: alias.into(),
        operation: Some("Concat".into()),
        namespace: Some(CALC_NS.into()),
        params,
        element_form: form,
        soap_action,
        ..SoapAction::default()
    }
}

/// Item 18: a service whose schema says `elementFormDefault="unqualified"` gets its
/// parameters in no namespace when asked, and refuses the qualified default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_can_be_unqualified() {
    let (rig, service, _) = rig_with_calc().await;
    let api = rig.api();
    let action = Some(soap_action_of("Concat"));
    for version in [SoapVersion::V1_1, SoapVersion::V1_2] {
        let mut call = concat("calc", Some(ElementForm::Unqualified), action.clone());
        call.version = Some(version);
        let r = soap(api, &call).await;
        let resp = r.response.expect("response");
        assert_eq!(
            resp.result,
            Some(json!({"ConcatResponse": {"result": "xy"}})),
            "{version}: {:?}",
            resp.fault
        );
        let sent = service.last_request_body().unwrap_or_default();
        assert!(
            sent.contains(&format!(
                "<tns:Concat xmlns:tns=\"{CALC_NS}\"><a>x</a><b>y</b></tns:Concat>"
            )),
            "{sent}"
        );
    }
    let r = soap(api, &concat("calc", None, action)).await;
    let fault = r
        .response
        .and_then(|r| r.fault)
        .expect("qualified is refused");
    assert_eq!(fault.code_local, "Client.SchemaValidationError");
    // `element_form` belongs to the operation form.
    let refused = api
        .soap_action(
            &SoapAction {
                alias: "calc".into(),
                body: Some("<a/>".into()),
                element_form: Some(ElementForm::Unqualified),
                ..SoapAction::default()
            },
            Duration::ZERO,
        )
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Api { status: 422, message, .. }) if message.starts_with("element_form")),
        "{refused:?}"
    );
    rig.stop().await;
}

/// Item 15: without `soap_action` an operation call sends the WSDL's action when the
/// alias names a WSDL, else `{namespace}#{operation}`; an action given quoted is not
/// quoted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soap_actions_come_from_the_wsdl_or_the_namespace_and_are_quoted_once() {
    let (rig, service, _) = rig_with_calc().await;
    let api = rig.api();
    let header_action = |service: &SoapService| {
        let headers = service.last_request_headers().expect("headers");
        let soap_action = headers
            .get("soapaction")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (soap_action, content_type)
    };
    for version in [SoapVersion::V1_1, SoapVersion::V1_2] {
        // Derived from namespace and operation.
        let mut call = add("calc", version, 2, 3);
        call.soap_action = None;
        let r = soap(api, &call).await;
        let resp = r.response.expect("response");
        assert_eq!(
            resp.result,
            Some(json!({"AddResponse": {"result": "5"}})),
            "{version}: {:?}",
            resp.fault
        );
        let (soap_action, content_type) = header_action(&service);
        match version {
            SoapVersion::V1_1 => {
                assert_eq!(
                    soap_action.as_deref(),
                    Some("\"urn:openmid:test:calc#Add\"")
                )
            }
            SoapVersion::V1_2 => assert!(
                content_type.ends_with("; action=\"urn:openmid:test:calc#Add\""),
                "{content_type}"
            ),
        }
        // Given already quoted: sent quoted once.
        call.soap_action = Some("\"urn:openmid:test:calc#Add\"".into());
        let resp = soap(api, &call).await.response.expect("response");
        assert!(resp.fault.is_none(), "{version}: {:?}", resp.fault);
        let (soap_action, content_type) = header_action(&service);
        match version {
            SoapVersion::V1_1 => {
                assert_eq!(
                    soap_action.as_deref(),
                    Some("\"urn:openmid:test:calc#Add\"")
                )
            }
            SoapVersion::V1_2 => assert!(
                content_type.ends_with("; action=\"urn:openmid:test:calc#Add\""),
                "{content_type}"
            ),
        }
    }

    // Concat's action only the WSDL tells: guessed, it is refused.
    let fault = soap(api, &concat("calc", Some(ElementForm::Unqualified), None))
        .await
        .response
        .and_then(|r| r.fault)
        .expect("a guessed action is refused");
    assert_eq!(fault.code_local, "Client.ActionMismatch");
    let mut with_wsdl = soap_alias("calc-wsdl", &service.url("/calc"), Some("soap-basic"));
    with_wsdl.wsdl = Some("?wsdl".into());
    api.create_alias(&with_wsdl).await.expect("alias with wsdl");
    for version in [SoapVersion::V1_1, SoapVersion::V1_2] {
        let calls = service.calls();
        let mut call = concat("calc-wsdl", Some(ElementForm::Unqualified), None);
        call.version = Some(version);
        let resp = soap(api, &call).await.response.expect("response");
        assert_eq!(
            resp.result,
            Some(json!({"ConcatResponse": {"result": "xy"}})),
            "{version}: {:?}",
            resp.fault
        );
        // The WSDL is fetched once, then remembered.
        let expected_calls = if version == SoapVersion::V1_1 { 2 } else { 1 };
        assert_eq!(service.calls() - calls, expected_calls, "{version}");
    }
    let (soap_action, _) = header_action(&service);
    assert_eq!(
        soap_action, None,
        "1.2 carries the action in the content type"
    );

    // The WSDL must be on the alias's origin (the MID sends the credential there).
    let mut elsewhere = soap_alias("calc-elsewhere", &service.url("/calc"), Some("soap-basic"));
    elsewhere.wsdl = Some("http://198.51.100.7/calc?wsdl".into());
    let refused = api.create_alias(&elsewhere).await;
    assert!(
        matches!(&refused, Err(ClientError::Api { status: 422, message, .. }) if message.starts_with("wsdl")),
        "{refused:?}"
    );
    rig.stop().await;
}
