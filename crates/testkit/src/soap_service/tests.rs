//! Tests of the service, against it running on loopback.

use super::*;

const V11: &str = "text/xml; charset=utf-8";
const V12: &str = "application/soap+xml; charset=utf-8";

fn envelope_of(ns: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><e:Envelope xmlns:e=\"{ns}\"><e:Header/><e:Body>{body}</e:Body></e:Envelope>"
    )
}

async fn post(
    svc: &SoapService,
    content_type: &str,
    action: Option<&str>,
    xml: String,
) -> (u16, String, Element) {
    let mut req = reqwest::Client::new()
        .post(svc.url("/calc"))
        .header(CONTENT_TYPE, content_type)
        .body(xml);
    if let Some(action) = action {
        req = req.header("SOAPAction", action);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let ct = resp.headers()[CONTENT_TYPE].to_str().unwrap().to_string();
    let text = resp.text().await.unwrap();
    (status, ct, parse(&text).expect("response parses"))
}

/// The first child of the response's Body.
fn body_child(envelope: &Element) -> &Element {
    &envelope
        .children
        .iter()
        .find(|e| e.name == "Body")
        .unwrap()
        .children[0]
}

fn child<'e>(e: &'e Element, name: &str) -> &'e Element {
    e.children
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} in {e:?}"))
}

#[tokio::test]
async fn soap11_add_and_echo() {
    let svc = SoapService::start(None).await.unwrap();
    let add = r#"<c:Add xmlns:c="urn:openmid:test:calc"><c:a>2</c:a><c:b> 40 </c:b></c:Add>"#;
    let (status, ct, env) = post(
        &svc,
        V11,
        Some("\"urn:openmid:test:calc#Add\""),
        envelope_of(SOAP11_ENV_NS, add),
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, "text/xml; charset=utf-8"));
    assert_eq!(env.ns.as_deref(), Some(SOAP11_ENV_NS));
    let resp = body_child(&env);
    assert_eq!(
        (resp.name.as_str(), resp.ns.as_deref()),
        ("AddResponse", Some(CALC_NS))
    );
    assert_eq!(child(resp, "result").text, "42");

    let text = "a < b && \"c\" > 'd' — grüße 日本 ]]>";
    let echo = format!(
        "<Echo xmlns=\"urn:openmid:test:calc\"><text>{}</text></Echo>",
        escape(text)
    );
    let (status, _, env) = post(&svc, V11, None, envelope_of(SOAP11_ENV_NS, &echo)).await;
    assert_eq!(status, 200);
    assert_eq!(child(body_child(&env), "text").text, text);
    assert_eq!(svc.calls(), 2);
    let headers = svc.last_request_headers().unwrap();
    assert_eq!(headers[CONTENT_TYPE], V11);
    assert!(svc.last_request_body().unwrap().contains("grüße"));
}

#[tokio::test]
async fn soap12_add_and_echo() {
    let svc = SoapService::start(None).await.unwrap();
    let add = r#"<Add xmlns="urn:openmid:test:calc"><a>-5</a><b>3</b></Add>"#;
    let (status, ct, env) = post(
        &svc,
        "application/soap+xml; charset=utf-8; action=\"urn:openmid:test:calc#Add\"",
        None,
        envelope_of(SOAP12_ENV_NS, add),
    )
    .await;
    assert_eq!((status, ct.as_str()), (200, V12));
    assert_eq!(env.ns.as_deref(), Some(SOAP12_ENV_NS));
    assert_eq!(child(body_child(&env), "result").text, "-2");

    let echo = r#"<x:Echo xmlns:x="urn:openmid:test:calc"><x:text><![CDATA[<b>&</b>]]> &#x263A;&amp;</x:text></x:Echo>"#;
    let (status, _, env) = post(&svc, V12, None, envelope_of(SOAP12_ENV_NS, echo)).await;
    assert_eq!(status, 200);
    assert_eq!(child(body_child(&env), "text").text, "<b>&</b> ☺&");
}

#[tokio::test]
async fn divide_and_its_faults() {
    let svc = SoapService::start(None).await.unwrap();
    let divide = |a: i64, b: i64| {
        format!(
            r#"<c:Divide xmlns:c="urn:openmid:test:calc"><c:a>{a}</c:a><c:b>{b}</c:b></c:Divide>"#
        )
    };
    let (status, _, env) = post(&svc, V11, None, envelope_of(SOAP11_ENV_NS, &divide(7, 2))).await;
    assert_eq!(status, 200);
    assert_eq!(child(body_child(&env), "result").text, "3");

    let (status, _, env) = post(&svc, V11, None, envelope_of(SOAP11_ENV_NS, &divide(7, 0))).await;
    assert_eq!(status, 500);
    let fault = body_child(&env);
    assert_eq!(fault.name, "Fault");
    assert_eq!(child(fault, "faultcode").text, "soap11env:Client");
    assert_eq!(child(fault, "faultstring").text, "division by zero");
    let detail = child(child(fault, "detail"), "DivideFault");
    assert_eq!(detail.ns.as_deref(), Some(CALC_NS));
    assert_eq!(child(detail, "dividend").text, "7");

    let (status, _, env) = post(&svc, V12, None, envelope_of(SOAP12_ENV_NS, &divide(9, 0))).await;
    assert_eq!(status, 500);
    let fault = body_child(&env);
    assert_eq!(
        child(child(fault, "Code"), "Value").text,
        "soap12env:Sender"
    );
    assert_eq!(
        child(child(fault, "Reason"), "Text").text,
        "division by zero"
    );
    let detail = child(child(fault, "Detail"), "DivideFault");
    assert_eq!(child(detail, "dividend").text, "9");
}

#[tokio::test]
async fn unknown_operation_bad_action_and_malformed_xml() {
    let svc = SoapService::start(None).await.unwrap();
    let op = r#"<c:Multiply xmlns:c="urn:openmid:test:calc"><c:a>1</c:a></c:Multiply>"#;
    let (status, _, env) = post(&svc, V11, None, envelope_of(SOAP11_ENV_NS, op)).await;
    assert_eq!(status, 500);
    assert_eq!(
        child(body_child(&env), "faultstring").text,
        "unknown operation Multiply"
    );
    let (status, _, env) = post(&svc, V12, None, envelope_of(SOAP12_ENV_NS, op)).await;
    assert_eq!(status, 500);
    let fault = body_child(&env);
    assert_eq!(
        child(child(fault, "Code"), "Value").text,
        "soap12env:Sender"
    );
    assert_eq!(
        child(child(fault, "Reason"), "Text").text,
        "unknown operation Multiply"
    );

    let add = r#"<c:Add xmlns:c="urn:openmid:test:calc"><c:a>1</c:a><c:b>2</c:b></c:Add>"#;
    let (status, _, env) = post(
        &svc,
        V11,
        Some("urn:openmid:test:calc#Echo"),
        envelope_of(SOAP11_ENV_NS, add),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(
        child(body_child(&env), "faultcode").text,
        "soap11env:Client.ActionMismatch"
    );
    // Quoted once is right, quoted twice is not.
    for (action, ok) in [
        ("\"urn:openmid:test:calc#Add\"", true),
        ("urn:openmid:test:calc#Add", true),
        ("\"\"urn:openmid:test:calc#Add\"\"", false),
    ] {
        let (status, _, _) = post(&svc, V11, Some(action), envelope_of(SOAP11_ENV_NS, add)).await;
        assert_eq!(status == 200, ok, "{action}");
    }

    let (status, _, env) = post(&svc, V11, None, "<e:Envelope xmlns:e=\"x\"><oops>".into()).await;
    assert_eq!(status, 500);
    assert_eq!(
        child(body_child(&env), "faultcode").text,
        "soap11env:Client"
    );

    // A SOAP 1.1 envelope sent as SOAP 1.2.
    let (status, _, env) = post(&svc, V12, None, envelope_of(SOAP11_ENV_NS, add)).await;
    assert_eq!(status, 500);
    assert_eq!(
        child(child(body_child(&env), "Code"), "Value").text,
        "soap12env:VersionMismatch"
    );
}

#[tokio::test]
async fn concat_wants_unqualified_parameters_and_the_wsdl_action() {
    let svc = SoapService::start(None).await.unwrap();
    let unqualified =
        r#"<tns:Concat xmlns:tns="urn:openmid:test:calc"><a>x</a><b>y</b></tns:Concat>"#;
    let action = format!("\"{}\"", soap_action_of("Concat"));
    let (status, _, env) = post(
        &svc,
        V11,
        Some(&action),
        envelope_of(SOAP11_ENV_NS, unqualified),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(child(body_child(&env), "result").text, "xy");
    let qualified = r#"<Concat xmlns="urn:openmid:test:calc"><a>x</a><b>y</b></Concat>"#;
    let (status, _, env) = post(
        &svc,
        V11,
        Some(&action),
        envelope_of(SOAP11_ENV_NS, qualified),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(
        child(body_child(&env), "faultcode").text,
        "soap11env:Client.SchemaValidationError"
    );
    let guessed = format!("\"{CALC_NS}#Concat\"");
    let (status, _, _) = post(
        &svc,
        V11,
        Some(&guessed),
        envelope_of(SOAP11_ENV_NS, unqualified),
    )
    .await;
    assert_eq!(status, 500);
}

#[tokio::test]
async fn big_response() {
    let svc = SoapService::start(None).await.unwrap();
    let big = r#"<c:Big xmlns:c="urn:openmid:test:calc"><c:bytes>100000</c:bytes></c:Big>"#;
    let (status, _, env) = post(&svc, V11, None, envelope_of(SOAP11_ENV_NS, big)).await;
    assert_eq!(status, 200);
    assert_eq!(child(body_child(&env), "data").text.len(), 100_000);
}

#[tokio::test]
async fn basic_auth_and_wsdl() {
    let svc = SoapService::start(Some(("u".into(), "p w".into())))
        .await
        .unwrap();
    let c = reqwest::Client::new();
    let resp = c.get(svc.url("/calc?wsdl")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key(WWW_AUTHENTICATE));
    assert!(resp.headers().contains_key(SET_COOKIE));
    assert!(
        resp.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(resp.text().await.unwrap(), UNAUTHORIZED_HTML);
    let resp = c
        .get(svc.url("/calc?wsdl"))
        .basic_auth("u", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = c
        .get(svc.url("/calc?wsdl"))
        .basic_auth("u", Some("p w"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let wsdl = parse(&resp.text().await.unwrap()).expect("WSDL parses");
    assert_eq!(wsdl.name, "definitions");
    assert_eq!(wsdl.ns.as_deref(), Some("http://schemas.xmlsoap.org/wsdl/"));
    let bindings = wsdl.children.iter().filter(|e| e.name == "binding").count();
    assert_eq!(bindings, 2);
    assert_eq!(svc.calls(), 3);

    let add = r#"<c:Add xmlns:c="urn:openmid:test:calc"><c:a>1</c:a><c:b>2</c:b></c:Add>"#;
    let resp = c
        .post(svc.url("/calc"))
        .header(CONTENT_TYPE, V11)
        .basic_auth("u", Some("p w"))
        .body(envelope_of(SOAP11_ENV_NS, add))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
