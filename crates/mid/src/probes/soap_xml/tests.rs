//! Tests of building, checking and parsing together: most are round trips.

use super::names::is_xml_char;
use super::*;

use openmid_proto::soap::{ElementForm, FaultCode, SoapFault, SoapVersion};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const NS11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const NS12: &str = "http://www.w3.org/2003/05/soap-envelope";

fn params(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn parse(xml: &str) -> ParsedEnvelope {
    parse_response(xml.as_bytes()).expect("parses")
}

fn parse_err(xml: &str) -> String {
    match parse_response(xml.as_bytes()) {
        Ok(parsed) => panic!("parsed {parsed:?} from {xml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn round_trip_1_1() {
    let p = params(json!({
        "symbol": "ACME",
        "qty": 3,
        "flag": true,
        "none": null,
        "nested": { "@id": 7, "a": "x", "b": { "c": "deep" } },
        "list": ["a", "b"],
        "rows": [{ "n": 1 }, { "n": 2 }],
    }));
    let body = operation_body("GetQuote", Some("urn:stock"), &p).expect("body");
    check_body_xml(&body).expect("own body is well-formed");
    let parsed = parse(&envelope(SoapVersion::V1_1, &body));
    assert_eq!(parsed.version, SoapVersion::V1_1);
    // The envelope's `soap` binding is declared again on the operation element.
    assert_eq!(
        parsed.body,
        Some(body.replacen("<GetQuote", &format!("<GetQuote xmlns:soap=\"{NS11}\""), 1))
    );
    assert_eq!(parsed.fault, None);
    assert_eq!(
        parsed.result,
        Some(json!({ "GetQuote": {
            "symbol": "ACME",
            "qty": "3",
            "flag": "true",
            "none": null,
            "nested": { "@id": "7", "a": "x", "b": { "c": "deep" } },
            "list": ["a", "b"],
            "rows": [{ "n": "1" }, { "n": "2" }],
        }}))
    );
}

#[test]
fn round_trip_1_2_with_attributes_on_the_operation() {
    let p = params(json!({ "@version": "2", "@strict": false, "item": "é & <ü>" }));
    let body = operation_body("Lookup", Some("urn:x?a=1&b=\"2\""), &p).expect("body");
    assert_eq!(
        body,
        "<Lookup xmlns=\"urn:x?a=1&amp;b=&quot;2&quot;\" strict=\"false\" version=\"2\">\
         <item>é &amp; &lt;ü&gt;</item></Lookup>"
    );
    let parsed = parse(&envelope(SoapVersion::V1_2, &body));
    assert_eq!(parsed.version, SoapVersion::V1_2);
    assert_eq!(
        parsed.result,
        Some(json!({ "Lookup": { "@version": "2", "@strict": "false", "item": "é & <ü>" } }))
    );
}

#[test]
fn operation_without_params_or_namespace() {
    let body = operation_body("Ping", None, &Map::new()).expect("body");
    assert_eq!(body, "<Ping/>");
    let parsed = parse(&envelope(SoapVersion::V1_1, &body));
    assert_eq!(parsed.result, Some(json!({ "Ping": null })));
    assert_eq!(
        operation_body("Ping", Some(""), &Map::new()).expect("body"),
        "<Ping/>"
    );
}

#[test]
fn unqualified_parameters_are_in_no_namespace() {
    let p = params(json!({ "a": 1, "@id": "x", "b": { "c": "d" } }));
    let body = operation_body_in_form("Concat", Some("urn:c"), &p, ElementForm::Unqualified)
        .expect("body");
    assert_eq!(
        body,
        "<tns:Concat xmlns:tns=\"urn:c\" id=\"x\"><a>1</a><b><c>d</c></b></tns:Concat>"
    );
    check_body_xml(&body).expect("well-formed");
    // The operation is in the namespace, its children in none.
    assert_eq!(
        namespaces_of(&body),
        Ok(vec![Some("urn:c".into()), None, None, None])
    );
    let parsed = parse(&envelope(SoapVersion::V1_1, &body));
    assert_eq!(
        parsed.result,
        Some(json!({ "Concat": { "@id": "x", "a": "1", "b": { "c": "d" } } }))
    );
    // Qualified is the default; without a namespace the forms are the same.
    assert_eq!(
        operation_body_in_form("Op", Some("urn:c"), &p, ElementForm::Qualified).expect("body"),
        operation_body("Op", Some("urn:c"), &p).expect("body")
    );
    assert_eq!(
        operation_body_in_form("Op", None, &Map::new(), ElementForm::Unqualified).expect("body"),
        "<Op/>"
    );
    assert_eq!(
        operation_body_in_form("Op", Some("urn:c"), &Map::new(), ElementForm::Unqualified)
            .expect("body"),
        "<tns:Op xmlns:tns=\"urn:c\"/>"
    );
}

#[test]
fn envelope_is_exact() {
    assert_eq!(
        envelope(SoapVersion::V1_1, "<a/>"),
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{NS11}\"><soap:Body><a/></soap:Body></soap:Envelope>"
        )
    );
    assert!(envelope(SoapVersion::V1_2, "").contains(NS12));
}

#[test]
fn text_escaping_covers_every_special_character() {
    let p = params(json!({ "s": "<&>\"'\r\n\tx", "@a": "\t\n\r<&>\"'" }));
    let body = operation_body("Op", None, &p).expect("body");
    assert_eq!(
        body,
        "<Op a=\"&#x9;&#xA;&#xD;&lt;&amp;&gt;&quot;&apos;\">\
         <s>&lt;&amp;&gt;&quot;&apos;&#xD;\n\tx</s></Op>"
    );
    let parsed = parse(&envelope(SoapVersion::V1_1, &body));
    assert_eq!(
        parsed.result,
        Some(json!({ "Op": { "@a": "\t\n\r<&>\"'", "s": "<&>\"'\r\n\tx" } }))
    );
}

#[test]
fn bad_names_are_refused_with_their_path() {
    let err = operation_body("1op", None, &Map::new()).expect_err("bad operation");
    assert!(
        matches!(&err, SoapXmlError::InvalidName { field, value } if field == "operation" && value == "1op")
    );
    assert!(operation_body("ns:op", None, &Map::new()).is_err());
    for (p, path, name) in [
        (json!({ "a b": 1 }), "params.a b", "a b"),
        (json!({ "ns:x": 1 }), "params.ns:x", "ns:x"),
        (json!({ "": 1 }), "params.", ""),
        (
            json!({ "outer": { "in-ok": { "9bad": 1 } } }),
            "params.outer.in-ok.9bad",
            "9bad",
        ),
        (
            json!({ "list": [{ "ok": 1 }, { "x y": 2 }] }),
            "params.list[1].x y",
            "x y",
        ),
        (
            json!({ "o": { "@bad name": "v" } }),
            "params.o.@bad name",
            "bad name",
        ),
    ] {
        match operation_body("Op", None, &params(p)) {
            Err(SoapXmlError::InvalidName { field, value }) => {
                assert_eq!((field.as_str(), value.as_str()), (path, name));
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    // Non-ASCII names are fine.
    operation_body("Opé", None, &params(json!({ "名前": "x", "a.b-c_d": 1 }))).expect("ok");
}

#[test]
fn characters_xml_cannot_carry_are_refused_with_their_path() {
    for (p, path, code) in [
        (json!({ "s": "a\u{0}b" }), "params.s", 0),
        (json!({ "o": { "t": "\u{8}" } }), "params.o.t", 8),
        (json!({ "l": ["ok", "\u{1f}"] }), "params.l[1]", 0x1f),
        (json!({ "@a": "\u{ffff}" }), "params.@a", 0xffff),
    ] {
        match operation_body("Op", None, &params(p)) {
            Err(SoapXmlError::InvalidChar { path: got, code: c }) => {
                assert_eq!((got.as_str(), c), (path, code));
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    assert!(matches!(
        operation_body("Op", Some("urn:\u{1}"), &Map::new()),
        Err(SoapXmlError::InvalidChar { path, .. }) if path == "namespace"
    ));
}

#[test]
fn shapes_without_an_xml_form_are_refused() {
    for p in [
        json!({ "@a": { "x": 1 } }),
        json!({ "@a": [1] }),
        json!({ "@a": null }),
        json!({ "l": [[1, 2]] }),
    ] {
        assert!(
            matches!(
                operation_body("Op", None, &params(p.clone())),
                Err(SoapXmlError::Json(_))
            ),
            "{p}"
        );
    }
    assert!(matches!(
        operation_body("Op", Some("urn:x"), &params(json!({ "@xmlns": "urn:y" }))),
        Err(SoapXmlError::Json(_))
    ));
    // On a nested element `@xmlns` switches that element's namespace.
    let body = operation_body(
        "Op",
        Some("urn:x"),
        &params(json!({ "c": { "@xmlns": "urn:y", "d": 1 } })),
    )
    .expect("body");
    assert_eq!(
        body,
        "<Op xmlns=\"urn:x\"><c xmlns=\"urn:y\"><d>1</d></c></Op>"
    );
    // Empty arrays give no element at all.
    assert_eq!(
        operation_body("Op", None, &params(json!({ "l": [] }))).expect("body"),
        "<Op/>"
    );
}

#[test]
fn parameters_nested_too_deep_are_refused() {
    let mut value = json!("leaf");
    for _ in 0..(MAX_DEPTH + 5) {
        value = json!({ "n": value });
    }
    let p = params(json!({ "n": value }));
    assert!(matches!(
        operation_body("Op", None, &p),
        Err(SoapXmlError::TooDeep { .. })
    ));
}

#[test]
fn fault_1_1_with_actor_and_detail() {
    let xml = format!(
        r#"<?xml version="1.0"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="{NS11}">
  <SOAP-ENV:Header><t:Trace xmlns:t="urn:t">abc</t:Trace></SOAP-ENV:Header>
  <SOAP-ENV:Body>
<SOAP-ENV:Fault>
  <faultcode>SOAP-ENV:Client</faultcode>
  <faultstring xml:lang="en">Invalid symbol &amp; more</faultstring>
  <faultactor>http://svc/quote</faultactor>
  <detail>
    <e:Err xmlns:e="urn:e"><e:code>42</e:code></e:Err>
  </detail>
</SOAP-ENV:Fault>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>"#
    );
    let parsed = parse(&xml);
    assert_eq!(parsed.version, SoapVersion::V1_1);
    assert_eq!(parsed.body, None);
    assert_eq!(parsed.result, None);
    assert_eq!(
        parsed.fault,
        Some(SoapFault {
            code: "SOAP-ENV:Client".into(),
            code_namespace: Some(NS11.into()),
            code_local: "Client".into(),
            subcode: None,
            subcodes: Vec::new(),
            reason: "Invalid symbol & more".into(),
            actor: Some("http://svc/quote".into()),
            detail: Some(format!(
                r#"<e:Err xmlns:SOAP-ENV="{NS11}" xmlns:e="urn:e"><e:code>42</e:code></e:Err>"#
            )),
        })
    );
}

#[test]
fn fault_1_2_with_subcode_role_and_detail() {
    let xml = format!(
        r#"<env:Envelope xmlns:env="{NS12}" xmlns:m="urn:m">
  <env:Body>
<env:Fault>
  <env:Code>
    <env:Value>env:Sender</env:Value>
    <env:Subcode><env:Value>m:MessageTimeout</env:Value></env:Subcode>
  </env:Code>
  <env:Reason>
    <env:Text xml:lang="en">Sender Timeout</env:Text>
    <env:Text xml:lang="de">Zeitüberschreitung</env:Text>
  </env:Reason>
  <env:Role>http://example.org/role</env:Role>
  <env:Detail><m:MaxTime>P5M</m:MaxTime></env:Detail>
</env:Fault>
  </env:Body>
</env:Envelope>"#
    );
    let parsed = parse(&xml);
    assert_eq!(parsed.version, SoapVersion::V1_2);
    assert_eq!(
        parsed.fault,
        Some(SoapFault {
            code: "env:Sender".into(),
            code_namespace: Some(NS12.into()),
            code_local: "Sender".into(),
            subcode: Some("m:MessageTimeout".into()),
            subcodes: vec![FaultCode {
                value: "m:MessageTimeout".into(),
                namespace: Some("urn:m".into()),
                local: "MessageTimeout".into(),
            }],
            reason: "Sender Timeout".into(),
            actor: Some("http://example.org/role".into()),
            // `m` was declared on the Envelope: the detail declares it again.
            detail: Some(format!(
                r#"<m:MaxTime xmlns:env="{NS12}" xmlns:m="urn:m">P5M</m:MaxTime>"#
            )),
        })
    );
}

/// Codes are qualified names whose prefix only the response knows: they come resolved.
#[test]
fn fault_codes_are_resolved_wherever_their_prefix_is_declared() {
    let fault_11 = |code: &str| {
        let xml = format!(
            r#"<soap11env:Envelope xmlns:soap11env="{NS11}" xmlns:tns="urn:calc&amp;x"><soap11env:Body xmlns="urn:default"><soap11env:Fault><faultcode xmlns="">{code}</faultcode><faultstring>no</faultstring></soap11env:Fault></soap11env:Body></soap11env:Envelope>"#
        );
        parse(&xml).fault.expect("fault")
    };
    let f = fault_11(" soap11env:Client.Refused ");
    assert_eq!(
        (
            f.code.as_str(),
            f.code_namespace.as_deref(),
            f.code_local.as_str()
        ),
        ("soap11env:Client.Refused", Some(NS11), "Client.Refused")
    );
    let f = fault_11("tns:Quota");
    assert_eq!(f.code_namespace.as_deref(), Some("urn:calc&x"));
    // `xmlns=""` on faultcode undeclares the default namespace for its content.
    let f = fault_11("Server");
    assert_eq!((f.code_namespace, f.code_local.as_str()), (None, "Server"));
    let f = fault_11("nope:Server");
    assert_eq!((f.code_namespace, f.code_local.as_str()), (None, "Server"));

    let xml = format!(
        r#"<e:Envelope xmlns:e="{NS12}"><e:Body><e:Fault><e:Code xmlns:a="urn:a"><e:Value>e:Sender</e:Value><e:Subcode><e:Value>a:Quota</e:Value><e:Subcode xmlns:b="urn:b"><e:Value>b:Daily</e:Value></e:Subcode></e:Subcode></e:Code><e:Reason><e:Text>x</e:Text></e:Reason></e:Fault></e:Body></e:Envelope>"#
    );
    let f = parse(&xml).fault.expect("fault");
    assert_eq!(
        (
            f.code_namespace.as_deref(),
            f.code_local.as_str(),
            f.subcode.as_deref()
        ),
        (Some(NS12), "Sender", Some("a:Quota"))
    );
    assert_eq!(
        f.subcodes,
        vec![
            FaultCode {
                value: "a:Quota".into(),
                namespace: Some("urn:a".into()),
                local: "Quota".into()
            },
            FaultCode {
                value: "b:Daily".into(),
                namespace: Some("urn:b".into()),
                local: "Daily".into()
            },
        ]
    );
}

#[test]
fn minimal_fault_has_no_optional_parts() {
    let xml = format!(
        r#"<s:Envelope xmlns:s="{NS11}"><s:Body><s:Fault><faultcode>s:Server</faultcode><faultstring>boom</faultstring><detail/></s:Fault></s:Body></s:Envelope>"#
    );
    let fault = parse(&xml).fault.expect("fault");
    assert_eq!(
        (fault.code.as_str(), fault.reason.as_str()),
        ("s:Server", "boom")
    );
    assert_eq!(
        (fault.actor, fault.detail, fault.subcode),
        (None, None, None)
    );
}

#[test]
fn a_fault_in_another_namespace_is_data() {
    let xml = format!(
        r#"<s:Envelope xmlns:s="{NS11}"><s:Body><Fault xmlns="urn:app"><why>x</why></Fault></s:Body></s:Envelope>"#
    );
    let parsed = parse(&xml);
    assert_eq!(parsed.fault, None);
    assert_eq!(parsed.result, Some(json!({ "Fault": { "why": "x" } })));
}

#[test]
fn default_namespace_envelope_and_header() {
    let xml = format!(
        r#"<Envelope xmlns="{NS12}">
  <Header><Security xmlns="urn:sec"><Token>secret</Token><Body>not the body</Body></Security></Header>
  <Body><GetResponse xmlns="urn:app"><Value>1</Value></GetResponse></Body>
</Envelope>"#
    );
    let parsed = parse(&xml);
    assert_eq!(parsed.version, SoapVersion::V1_2);
    assert_eq!(
        parsed.result,
        Some(json!({ "GetResponse": { "Value": "1" } }))
    );
    assert_eq!(
        parsed.body.as_deref(),
        Some(r#"<GetResponse xmlns="urn:app"><Value>1</Value></GetResponse>"#)
    );
}

#[test]
fn body_is_the_inner_xml_with_the_prefixes_from_outside_declared() {
    let inner = "\n  <m:R xmlns:x=\"urn:x\">a<!-- c --><![CDATA[<b>]]></m:R>\n  tail ";
    let xml = format!(
        r#"<e:Envelope xmlns:e="{NS11}" xmlns:m="urn:m"><e:Body>{inner}</e:Body></e:Envelope>"#
    );
    let parsed = parse(&xml);
    // Everything in scope is declared again on the top element, the rest is untouched.
    assert_eq!(
        parsed.body.as_deref(),
        Some(
            format!(
                "\n  <m:R xmlns:e=\"{NS11}\" xmlns:m=\"urn:m\" xmlns:x=\"urn:x\">a<!-- c --><![CDATA[<b>]]></m:R>\n  tail "
            )
            .as_str()
        )
    );
    assert_eq!(parsed.result, Some(json!({ "R": "a<b>" })));
}

/// What a spyne-style service answers: every namespace declared once on the Envelope.
#[test]
fn body_and_detail_declare_what_the_envelope_declared() {
    let xml = format!(
        r#"<?xml version='1.0' encoding='UTF-8'?>
<soap11env:Envelope xmlns:soap11env="{NS11}" xmlns:tns="urn:calc" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns='urn:default'><soap11env:Body><tns:AddResponse><tns:result xsi:type="tns:long">3</tns:result><plain/></tns:AddResponse><tns:Second xmlns:tns="urn:other" tns:a="1"/></soap11env:Body></soap11env:Envelope>"#
    );
    let parsed = parse(&xml);
    let body = parsed.body.expect("body");
    assert_eq!(
        body,
        format!(
            "<tns:AddResponse xmlns:soap11env=\"{NS11}\" xmlns:tns=\"urn:calc\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns=\"urn:default\">\
             <tns:result xsi:type=\"tns:long\">3</tns:result><plain/></tns:AddResponse>\
             <tns:Second xmlns:soap11env=\"{NS11}\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns=\"urn:default\" xmlns:tns=\"urn:other\" tns:a=\"1\"/>"
        )
    );
    assert_eq!(
        namespaces_of(&body),
        Ok(vec![
            Some("urn:calc".into()),
            Some("urn:calc".into()),
            Some("urn:default".into()),
            Some("urn:other".into()),
        ])
    );

    let fault = format!(
        r#"<s:Envelope xmlns:s="{NS11}" xmlns:tns="urn:calc"><s:Body xmlns:d="urn:d"><s:Fault xmlns:f="urn:f"><faultcode>s:Client</faultcode><faultstring>no</faultstring><detail><tns:Why><d:x/><f:y/></tns:Why></detail></s:Fault></s:Body></s:Envelope>"#
    );
    let detail = parse(&fault).fault.and_then(|f| f.detail).expect("detail");
    assert_eq!(
        namespaces_of(&detail),
        Ok(vec![
            Some("urn:calc".into()),
            Some("urn:d".into()),
            Some("urn:f".into()),
        ])
    );
}

/// The namespace of every element of an XML fragment, in document order, read by a
/// namespace-aware parser that knows no binding from outside; Err names an unbound
/// prefix (of an element or an attribute).
fn namespaces_of(fragment: &str) -> Result<Vec<Option<String>>, String> {
    use quick_xml::events::Event;
    use quick_xml::name::{Namespace, ResolveResult};
    let wrapped = format!("<wrapper>{fragment}</wrapper>");
    let mut reader = quick_xml::NsReader::from_str(&wrapped);
    let mut found = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        let start = match &event {
            Event::Start(start) | Event::Empty(start) => start,
            Event::Eof => break,
            _ => continue,
        };
        let resolver = reader.resolver();
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|e| e.to_string())?;
            if let (ResolveResult::Unknown(prefix), _) = resolver.resolve_attribute(attribute.key) {
                return Err(format!("unbound prefix {prefix:?}"));
            }
        }
        match resolver.resolve_element(start.name()).0 {
            ResolveResult::Unknown(prefix) => return Err(format!("unbound prefix {prefix:?}")),
            ResolveResult::Bound(Namespace(ns)) => found.push(Some(
                quick_xml::escape::unescape(ns)
                    .map_err(|e| e.to_string())?
                    .into_owned(),
            )),
            ResolveResult::Unbound => found.push(None),
        }
    }
    // The wrapper itself.
    found.remove(0);
    Ok(found)
}

#[test]
fn empty_body() {
    for body in [
        "<soap:Body/>",
        "<soap:Body></soap:Body>",
        "<soap:Body>  </soap:Body>",
    ] {
        let xml = format!(r#"<soap:Envelope xmlns:soap="{NS11}">{body}</soap:Envelope>"#);
        let parsed = parse(&xml);
        assert_eq!(parsed.result, None, "{body}");
        assert_eq!(parsed.fault, None, "{body}");
        assert!(parsed.body.is_some_and(|b| b.trim().is_empty()), "{body}");
    }
}

#[test]
fn entities_and_non_ascii_text_are_decoded() {
    let xml = format!(
        r#"<soap:Envelope xmlns:soap="{NS11}"><soap:Body><r xmlns="urn:r"><t>a &amp; b &lt;c&gt; &quot;d&quot; &apos;e&apos; &#233;&#x263A;&#x1F600; Grüße 日本</t><crlf>x&#13;&#10;y</crlf></r></soap:Body></soap:Envelope>"#
    );
    assert_eq!(
        parse(&xml).result,
        Some(json!({ "r": {
            "t": "a & b <c> \"d\" 'e' é☺😀 Grüße 日本",
            "crlf": "x\r\ny",
        }}))
    );
}

#[test]
fn repeated_children_become_arrays_and_attributes_keys() {
    let xml = format!(
        r#"<soap:Envelope xmlns:soap="{NS11}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soap:Body><ns:List xmlns:ns="urn:l" soap:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/" count="3">
  <ns:item id="1" xsi:type="xsd:string">one</ns:item>
  <ns:item id="2"/>
  <ns:item>three</ns:item>
  <ns:single><ns:x>1</ns:x></ns:single>
  <ns:nothing xsi:nil="true" id="9"/>
  <ns:empty></ns:empty>
  <ns:mixed>ignored<ns:k>v</ns:k>ignored too</ns:mixed>
  <ns:spaces>  </ns:spaces>
</ns:List></soap:Body></soap:Envelope>"#
    );
    assert_eq!(
        parse(&xml).result,
        Some(json!({ "List": {
            "@count": "3",
            "item": [ { "@id": "1", "#text": "one" }, { "@id": "2" }, "three" ],
            "single": { "x": "1" },
            "nothing": null,
            "empty": null,
            "mixed": { "k": "v" },
            "spaces": "  ",
        }}))
    );
}

#[test]
fn other_encodings_are_read() {
    let xml = format!(
        r#"<soap:Envelope xmlns:soap="{NS11}"><soap:Body><r>Grüße</r></soap:Body></soap:Envelope>"#
    );
    let expected = Some(json!({ "r": "Grüße" }));
    let mut bom8 = b"\xEF\xBB\xBF".to_vec();
    bom8.extend_from_slice(xml.as_bytes());
    assert_eq!(parse_response(&bom8).expect("utf-8 bom").result, expected);
    let mut le = vec![0xFF, 0xFE];
    let mut be = vec![0xFE, 0xFF];
    for unit in xml.encode_utf16() {
        le.extend_from_slice(&unit.to_le_bytes());
        be.extend_from_slice(&unit.to_be_bytes());
    }
    assert_eq!(parse_response(&le).expect("utf-16le").result, expected);
    assert_eq!(parse_response(&be).expect("utf-16be").result, expected);
    let latin1: Vec<u8> = format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{xml}")
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("latin-1"))
        .collect();
    assert_eq!(parse_response(&latin1).expect("latin-1").result, expected);
    let err = parse_response(&latin1[38..]).expect_err("undeclared latin-1");
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn not_an_envelope() {
    assert!(parse_err("<html><head><title>502</title></head></html>").contains("found <html>"));
    assert!(
        parse_err("<!DOCTYPE html>\n<html><body>Bad Gateway</body></html>").contains("HTML page")
    );
    assert!(parse_err("<!doctype html><html></html>").contains("Envelope"));
    assert!(parse_err(r#"<foo xmlns="urn:x"/>"#).contains("found <foo>"));
    assert!(parse_err("Service Unavailable").contains("found text \"Service Unavailable\""));
    assert!(parse_err("").contains("empty"));
    assert!(parse_err("   \n").contains("empty"));
    assert!(parse_err("<Envelope><Body/></Envelope>").contains("without the SOAP namespace"));
    assert!(parse_err("<s:Envelope><s:Body/></s:Envelope>").contains("undeclared prefix"));
    assert!(matches!(
        parse_response(br#"<s:Envelope xmlns:s="urn:not-soap"><s:Body/></s:Envelope>"#),
        Err(SoapXmlError::VersionMismatch { found }) if found == "urn:not-soap"
    ));
    assert!(parse_err(&format!(r#"<s:Envelope xmlns:s="{NS11}"/>"#)).contains("no Body"));
    assert!(
        parse_err(&format!(
            r#"<s:Envelope xmlns:s="{NS11}"><s:Header/></s:Envelope>"#
        ))
        .contains("no Body")
    );
    assert!(
        parse_err(&format!(
            r#"<s:Envelope xmlns:s="{NS11}"><x/><s:Body/></s:Envelope>"#
        ))
        .contains("found <x>")
    );
    assert!(
        parse_err(&format!(
            r#"<s:Envelope xmlns:s="{NS11}"><s:Body/><s:Body/></s:Envelope>"#
        ))
        .contains("two Bodies")
    );
    assert!(
        parse_err(&format!(
            r#"<s:Envelope xmlns:s="{NS11}"><s:Body/></s:Envelope>trailing"#
        ))
        .contains("after the SOAP Envelope")
    );
    assert!(
        parse_err(&format!(
            r#"<s:Envelope xmlns:s="{NS11}"><s:Body/></s:Envelope><again/>"#
        ))
        .contains("after the SOAP Envelope")
    );
}

#[test]
fn doctype_is_refused() {
    let laughs = format!(
        r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<s:Envelope xmlns:s="{NS11}"><s:Body><r>&lol2;</r></s:Body></s:Envelope>"#
    );
    assert!(matches!(
        parse_response(laughs.as_bytes()),
        Err(SoapXmlError::Doctype)
    ));
    let xxe = format!(
        r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><s:Envelope xmlns:s="{NS11}"><s:Body><r>&x;</r></s:Body></s:Envelope>"#
    );
    assert!(matches!(
        parse_response(xxe.as_bytes()),
        Err(SoapXmlError::Doctype)
    ));
    assert!(matches!(
        check_body_xml("<!DOCTYPE r><r/>"),
        Err(SoapXmlError::Doctype)
    ));
}

#[test]
fn malformed_bodies_are_errors() {
    for body in [
        "<r>",
        "<r></q>",
        "<r>&nbsp;</r>",
        "<r>&#0;</r>",
        "<r>&#1;</r>",
        "<r>& </r>",
        "<r a=\"1\" a=\"2\"/>",
        "<r a=\"&bogus;\"/>",
    ] {
        let xml = format!(r#"<s:Envelope xmlns:s="{NS11}"><s:Body>{body}</s:Body></s:Envelope>"#);
        assert!(parse_response(xml.as_bytes()).is_err(), "{body}");
    }
    assert!(
        parse_err(&format!(
            r#"<s:Envelope xmlns:s="{NS11}"><s:Body><r>&nbsp;</r>"#
        ))
        .contains("&nbsp;")
    );
}

#[test]
fn every_truncation_is_an_error() {
    let body = operation_body(
        "Op",
        Some("urn:x"),
        &params(json!({ "a": "é & ü", "b": [1, 2], "@c": "d" })),
    )
    .expect("body");
    let xml = envelope(SoapVersion::V1_2, &body);
    parse_response(xml.as_bytes()).expect("whole document parses");
    for cut in 0..xml.len() {
        assert!(
            parse_response(&xml.as_bytes()[..cut]).is_err(),
            "cut at {cut}: {}",
            &xml[..cut]
        );
    }
}

#[test]
fn nesting_beyond_the_limit_is_refused() {
    let nest = |depth: usize| {
        let body = format!("{}x{}", "<a>".repeat(depth), "</a>".repeat(depth));
        envelope(SoapVersion::V1_1, &body)
    };
    assert!(parse_response(nest(MAX_DEPTH).as_bytes()).is_ok());
    assert!(matches!(
        parse_response(nest(MAX_DEPTH + 1).as_bytes()),
        Err(SoapXmlError::TooDeep { limit: MAX_DEPTH })
    ));
    let empty_at_limit = envelope(
        SoapVersion::V1_1,
        &format!(
            "{}<b/>{}",
            "<a>".repeat(MAX_DEPTH),
            "</a>".repeat(MAX_DEPTH)
        ),
    );
    assert!(matches!(
        parse_response(empty_at_limit.as_bytes()),
        Err(SoapXmlError::TooDeep { .. })
    ));
    // A deep Header is only skipped, never built.
    let deep_header = format!(
        r#"<s:Envelope xmlns:s="{NS11}"><s:Header>{}{}</s:Header><s:Body><r>1</r></s:Body></s:Envelope>"#,
        "<h>".repeat(5000),
        "</h>".repeat(5000)
    );
    assert_eq!(parse(&deep_header).result, Some(json!({ "r": "1" })));
}

#[test]
fn caller_bodies_are_checked() {
    for ok in [
        "",
        "plain text",
        "<a/><b>text</b> tail",
        "<m:Op xmlns:m=\"urn:m\" m:attr=\"1\"><m:x>&amp;&#233;</m:x></m:Op>",
        "<soap:Header/><x soap:encodingStyle=\"e\"/>",
        "<!-- note --><?pi data?><a><![CDATA[<raw>]]></a>",
        "<x xml:lang=\"en\"/>",
    ] {
        check_body_xml(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, needle) in [
        ("<a>", "not closed"),
        ("</a>", ""),
        ("<a></b>", ""),
        ("</soap:Body><soap:Body>", ""),
        ("<a>&nbsp;</a>", "&nbsp;"),
        ("<a>&#1;</a>", "U+0001"),
        ("<a>\u{1}</a>", "U+0001"),
        ("<a b=\"\u{1}\"/>", "U+0001"),
        ("<a b=\"&x;\"/>", ""),
        ("<a b=\"<\"/>", ""),
        ("<a b=\"1\" b=\"2\"/>", ""),
        ("<x:a/>", "`x`"),
        ("<a x:b=\"1\"/>", "`x`"),
        ("<1a/>", "valid XML name"),
        ("<a 1b=\"1\"/>", ""),
        ("<?xml version=\"1.0\"?><a/>", "declaration"),
        ("a ]]> b", "]]>"),
        ("<a>&</a>", ""),
    ] {
        match check_body_xml(bad) {
            Ok(()) => panic!("{bad} was accepted"),
            Err(e) => assert!(e.to_string().contains(needle), "{bad}: {e}"),
        }
    }
}

/// Strings a parameter might hold: anything, printable text, and XML-ish text.
fn param_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,24}",
        "[ \\t\\r\\n<>&;#x0-9\"'\\]\\[a-z!?-]{0,24}",
    ]
}

/// Noise that looks like XML, to get past the first few bytes more often.
fn xmlish() -> impl Strategy<Value = String> {
    "[<>/:=\"' a-zA-Z&;#!?\\[\\]-]{0,200}"
}

/// A generated element: the prefix of its name (None: unprefixed), the declarations on
/// it (prefix, index into [`URIS`]), the prefix of its one attribute, its children.
#[derive(Debug, Clone)]
struct Node {
    prefix: Option<usize>,
    declare: Vec<(Option<usize>, usize)>,
    attribute: Option<usize>,
    children: Vec<Node>,
}

const PREFIXES: [&str; 3] = ["p0", "tns", "soap11env"];
/// Namespace URIs as written (index 3 single-quoted; index 4, empty, only undeclares
/// the default namespace) and as meant.
const URIS: [(&str, &str); 5] = [
    ("\"urn:n0\"", "urn:n0"),
    ("\"urn:n1\"", "urn:n1"),
    ("\"http://x/?a=1&amp;b\"", "http://x/?a=1&b"),
    ("'urn:\"q\"'", "urn:\"q\""),
    ("\"\"", ""),
];

fn declarations() -> impl Strategy<Value = Vec<(Option<usize>, usize)>> {
    proptest::collection::vec((proptest::option::of(0..3usize), 0..5usize), 0..3)
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = (
        proptest::option::of(0..3usize),
        declarations(),
        proptest::option::of(0..3usize),
    )
        .prop_map(|(prefix, declare, attribute)| Node {
            prefix,
            declare,
            attribute,
            children: Vec::new(),
        });
    leaf.prop_recursive(4, 32, 3, |inner| {
        (
            proptest::option::of(0..3usize),
            declarations(),
            proptest::option::of(0..3usize),
            proptest::collection::vec(inner, 0..3),
        )
            .prop_map(|(prefix, declare, attribute, children)| Node {
                prefix,
                declare,
                attribute,
                children,
            })
    })
}

/// Writes declarations (one per prefix; a named prefix cannot be undeclared in XML
/// 1.0) and applies them to `scope` (prefix → URI index).
fn render_declarations(
    out: &mut String,
    declare: &[(Option<usize>, usize)],
    scope: &mut std::collections::HashMap<Option<usize>, usize>,
) -> Vec<Option<usize>> {
    let mut declared = Vec::new();
    for &(prefix, uri) in declare {
        if declared.contains(&prefix) {
            continue;
        }
        let uri = if prefix.is_some() && uri == 4 { 0 } else { uri };
        declared.push(prefix);
        match prefix {
            Some(p) => out.push_str(&format!(" xmlns:{}={}", PREFIXES[p], URIS[uri].0)),
            None => out.push_str(&format!(" xmlns={}", URIS[uri].0)),
        }
        scope.insert(prefix, uri);
    }
    declared
}

/// Writes `node` and pushes the namespace each element is in, in document order.
fn render(
    out: &mut String,
    node: &Node,
    mut scope: std::collections::HashMap<Option<usize>, usize>,
    expected: &mut Vec<Option<String>>,
) {
    let name = match node.prefix {
        Some(p) => format!("{}:e", PREFIXES[p]),
        None => "e".into(),
    };
    out.push('<');
    out.push_str(&name);
    let mut declare = node.declare.clone();
    if let Some(p) = node.prefix
        && !scope.contains_key(&Some(p))
        && !declare.iter().any(|(d, _)| *d == Some(p))
    {
        declare.push((Some(p), 1));
    }
    render_declarations(out, &declare, &mut scope);
    if let Some(p) = node.attribute.filter(|p| scope.contains_key(&Some(*p))) {
        out.push_str(&format!(" {}:a=\"v\"", PREFIXES[p]));
    }
    expected.push(
        scope
            .get(&node.prefix)
            .map(|&uri| URIS[uri].1.to_string())
            .filter(|uri| !uri.is_empty()),
    );
    if node.children.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for child in &node.children {
        render(out, child, scope.clone(), expected);
        out.push('t');
    }
    out.push_str(&format!("</{name}>"));
}

proptest! {
    /// Whatever the service declared where, an extracted Body (or Fault detail)
    /// re-parses namespace-aware on its own, every element in the namespace it had.
    #[test]
    fn extracted_fragments_declare_every_prefix_they_need(
        on_envelope in declarations(),
        on_body in declarations(),
        top in proptest::collection::vec(node(), 0..3),
        as_fault in any::<bool>(),
    ) {
        let mut scope = std::collections::HashMap::new();
        let mut xml = format!("<env:Envelope xmlns:env=\"{NS11}\"");
        render_declarations(&mut xml, &on_envelope, &mut scope);
        xml.push_str("><env:Body");
        render_declarations(&mut xml, &on_body, &mut scope);
        xml.push('>');
        if as_fault {
            xml.push_str("<env:Fault><faultcode>env:Server</faultcode><faultstring>x</faultstring><detail>");
        }
        let mut expected = Vec::new();
        for node in &top {
            xml.push_str(" t ");
            render(&mut xml, node, scope.clone(), &mut expected);
        }
        if as_fault {
            xml.push_str("</detail></env:Fault>");
        }
        xml.push_str("</env:Body></env:Envelope>");
        let parsed = parse_response(xml.as_bytes());
        prop_assert!(parsed.is_ok(), "{:?} {}", parsed, xml);
        let parsed = parsed.expect("checked");
        let fragment = if as_fault {
            parsed.fault.and_then(|f| f.detail).unwrap_or_default()
        } else {
            parsed.body.unwrap_or_default()
        };
        prop_assert_eq!(namespaces_of(&fragment), Ok(expected), "{} from {}", fragment, xml);
    }

    #[test]
    fn parse_response_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_response(&bytes);
    }

    #[test]
    fn parse_response_never_panics_on_xmlish_bodies(noise in xmlish(), v12 in any::<bool>()) {
        let version = if v12 { SoapVersion::V1_2 } else { SoapVersion::V1_1 };
        let _ = parse_response(envelope(version, &noise).as_bytes());
        let _ = parse_response(noise.as_bytes());
        let _ = check_body_xml(&noise);
    }

    /// The unqualified form reads back as the same JSON, its children in no namespace.
    #[test]
    fn unqualified_params_round_trip(
        values in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_.-]{0,8}", "\\PC{0,12}", 0..5),
    ) {
        let p: Map<String, Value> = values.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        let body = operation_body_in_form("Op", Some("urn:t"), &p, ElementForm::Unqualified);
        prop_assert!(body.is_ok(), "{:?}", body);
        let body = body.expect("checked");
        let mut expected = vec![Some("urn:t".to_string())];
        expected.extend(values.keys().map(|_| None));
        prop_assert_eq!(namespaces_of(&body), Ok(expected));
        let parsed = parse_response(envelope(SoapVersion::V1_1, &body).as_bytes());
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        let qualified = parse_response(
            envelope(SoapVersion::V1_1, &operation_body("Op", Some("urn:t"), &p).expect("body")).as_bytes(),
        );
        prop_assert_eq!(parsed.expect("checked").result, qualified.expect("parses").result);
    }

    #[test]
    fn string_params_round_trip(
        values in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_.-]{0,8}", param_string(), 0..5),
        attribute in proptest::option::of(param_string()),
        v12 in any::<bool>(),
    ) {
        let mut p = Map::new();
        for (k, v) in &values {
            p.insert(k.clone(), Value::String(v.clone()));
        }
        if let Some(a) = &attribute {
            p.insert("@attr".into(), Value::String(a.clone()));
        }
        let all_legal = values.values().chain(attribute.iter()).all(|s| s.chars().all(is_xml_char));
        let built = operation_body("Op", Some("urn:test"), &p);
        prop_assert_eq!(built.is_ok(), all_legal, "{:?}", built);
        let Ok(body) = built else { return Ok(()) };
        prop_assert!(check_body_xml(&body).is_ok());
        let version = if v12 { SoapVersion::V1_2 } else { SoapVersion::V1_1 };
        let parsed = parse_response(envelope(version, &body).as_bytes());
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
        let parsed = parsed.expect("checked");
        // XML cannot tell an empty element from an empty string.
        let mut expected = Map::new();
        for (k, v) in &values {
            expected.insert(k.clone(), if v.is_empty() { Value::Null } else { Value::String(v.clone()) });
        }
        if let Some(a) = attribute {
            expected.insert("@attr".into(), Value::String(a));
        }
        let op = if expected.is_empty() { Value::Null } else { Value::Object(expected) };
        prop_assert_eq!(parsed.version, version);
        prop_assert_eq!(parsed.result, Some(json!({ "Op": op })));
    }
}
