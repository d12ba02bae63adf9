//! The instance's one registration table of topics. Each line names a topic's
//! [`Contract`] (in proto); through it the instance validates a payload at the door
//! (decoded once, errors naming the field), learns its target for `mid.auto`'s IP
//! ranges and the blob it reads, and shows a finished action's result. No other code
//! on the instance matches on the topic.

use crate::ecc::Record;
use openmid_proto::api::{ActionResult, ActionTimings};
use openmid_proto::command::Command;
use openmid_proto::discovery::{Identify, Ping, Shazzam};
use openmid_proto::ecc::Topic;
use openmid_proto::file_import::FileImport;
use openmid_proto::ldap::Ldap;
use openmid_proto::metrics::MetricScrape;
use openmid_proto::payload::Payload;
use openmid_proto::probe::{Contract, FieldError, field_error};
use openmid_proto::rest::Rest;
use openmid_proto::snmp::Snmp;
use openmid_proto::soap::Soap;
use openmid_proto::sql::Jdbc;
use openmid_proto::ssh::SshCommand;
use std::marker::PhantomData;
use std::net::IpAddr;

/// The topics this instance accepts, one line each.
static TABLE: [&dyn Registered; 12] = [
    &Entry::<Rest>(PhantomData),
    &Entry::<Soap>(PhantomData),
    &Entry::<Command>(PhantomData),
    &Entry::<SshCommand>(PhantomData),
    &Entry::<Jdbc>(PhantomData),
    &Entry::<Ldap>(PhantomData),
    &Entry::<FileImport>(PhantomData),
    &Entry::<Ping>(PhantomData),
    &Entry::<Shazzam>(PhantomData),
    &Entry::<Identify>(PhantomData),
    &Entry::<Snmp>(PhantomData),
    &Entry::<MetricScrape>(PhantomData),
];

/// What the instance needs to know of a valid request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checked {
    /// Its target's IP address, when the request names one literally.
    pub target_ip: Option<IpAddr>,
    /// A blob it reads, which must exist.
    pub body_blob: Option<String>,
}

/// A topic as the instance uses it, its types hidden.
trait Registered: Send + Sync {
    fn topic(&self) -> Topic;
    fn check(&self, payload: &Payload) -> Result<Checked, FieldError>;
    fn show(&self, output: &Record, input: Option<&Record>) -> Vec<u8>;
    fn resumes(&self) -> bool;
    fn resume(
        &self,
        payload: &serde_json::Value,
        last: &[u8],
    ) -> Result<serde_json::Value, FieldError>;
}

struct Entry<C>(PhantomData<fn() -> C>);

impl<C: Contract> Registered for Entry<C> {
    fn topic(&self) -> Topic {
        C::TOPIC
    }

    fn check(&self, payload: &Payload) -> Result<Checked, FieldError> {
        let req = openmid_proto::probe::decode_payload::<C>(payload)?;
        Ok(Checked {
            target_ip: C::target(&req).and_then(|t| t.ip()),
            body_blob: C::body_blob(&req).map(str::to_string),
        })
    }

    fn show(&self, output: &Record, input: Option<&Record>) -> Vec<u8> {
        encoded(&action_result::<C::Response>(output, input))
    }

    fn resumes(&self) -> bool {
        C::RESUMES
    }

    fn resume(
        &self,
        payload: &serde_json::Value,
        last: &[u8],
    ) -> Result<serde_json::Value, FieldError> {
        let mut req = openmid_proto::probe::decode::<C>(payload)?;
        C::resume(&mut req, last)?;
        serde_json::to_value(&req).map_err(|e| field_error("payload", e.to_string()))
    }
}

fn registered(topic: Topic) -> Option<&'static dyn Registered> {
    TABLE.iter().copied().find(|r| r.topic() == topic)
}

/// Checks `payload` for `topic`: decoded as its request and validated.
pub fn check(topic: Topic, payload: &Payload) -> Result<Checked, FieldError> {
    let entry = registered(topic).ok_or_else(|| {
        let supported: Vec<String> = TABLE.iter().map(|r| r.topic().to_string()).collect();
        field_error(
            "topic",
            format!(
                "topic `{topic}` has no probe in this release yet; supported: {}",
                supported.join(", ")
            ),
        )
    })?;
    entry.check(payload)
}

/// Whether a new attempt at `topic` continues from the earlier attempts' streamed
/// output ([`Contract::RESUMES`]).
pub fn resumes(topic: Topic) -> bool {
    registered(topic).is_some_and(|r| r.resumes())
}

/// `payload` set up to continue after `last`, the last chunk earlier attempts streamed.
pub fn resume(
    topic: Topic,
    payload: &serde_json::Value,
    last: &[u8],
) -> Result<serde_json::Value, FieldError> {
    match registered(topic) {
        Some(r) => r.resume(payload, last),
        None => Ok(payload.clone()),
    }
}

/// A finished action as the API shows it, as the JSON text of its answer: the record
/// ids, the MID, the timings and the input decoded as the topic's response (`null`
/// when it is not one). Encoded straight from the typed result, with no tree between.
pub fn show(output: &Record, input: Option<&Record>) -> Vec<u8> {
    match registered(output.topic) {
        Some(entry) => entry.show(output, input),
        None => encoded(&action_result::<serde_json::Value>(output, input)),
    }
}

fn encoded<R: serde::Serialize>(result: &ActionResult<R>) -> Vec<u8> {
    // Types that came from JSON encode back to it.
    serde_json::to_vec(result).unwrap_or_else(|_| b"null".to_vec())
}

fn action_result<R: serde::de::DeserializeOwned>(
    output: &Record,
    input: Option<&Record>,
) -> ActionResult<R> {
    // A failed call usually has no response (null payload), but a probe may keep what
    // the target answered beside the error (a SOAP call answered with an HTML 401).
    let response = input.and_then(|i| serde_json::from_str::<R>(&i.payload).ok());
    ActionResult {
        state: output.state,
        input_id: input.map(|i| i.id.clone()),
        mid: input
            .map(|i| i.source.clone())
            .or(output.claimed_by.clone()),
        attempt: output.attempt,
        error: output.error.clone(),
        response,
        timings: ActionTimings {
            queued_ms: output.claimed_at.map_or(0, |c| c - output.created_at),
            run_ms: input
                .and_then(|i| i.duration_ms)
                .map_or(0, |d| d.max(0) as u64),
            total_ms: output.processed_at.map_or(0, |p| p - output.created_at),
        },
        output_id: output.id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn rest_payloads() {
        let ok = check(
            Topic::RESTProbe,
            &Payload::from(json!({"url": "http://10.0.0.5:8080/x"})),
        );
        assert_eq!(
            ok.map(|c| c.target_ip),
            Ok("10.0.0.5".parse().ok()),
            "the target's address is known"
        );
        let bad = [
            (json!({}), "payload"),
            (json!({"url": "ftp://x/y"}), "url"),
            (json!({"url": "not a url"}), "url"),
            (json!({"url": "http://x", "method": "GE T"}), "method"),
            (
                json!({"url": "http://x", "headers": {"bad name": "v"}}),
                "headers",
            ),
            (json!({"url": "http://x", "timeout_ms": 0}), "timeout_ms"),
            (json!({"url": "http://x", "surprise": 1}), "payload"),
        ];
        for (payload, field) in bad {
            let got = check(Topic::RESTProbe, &Payload::from(&payload))
                .err()
                .map(|e| e.field);
            assert_eq!(got.as_deref(), Some(field), "{payload}");
        }
        let none = check(Topic::SystemCommand, &Payload::from(json!({})))
            .err()
            .unwrap_or_else(|| field_error("", ""));
        assert_eq!(none.field, "topic");
        assert!(
            none.message
                .contains("RESTProbe, SOAPProbe, Command, SSHCommand, JDBCProbe, LDAPProbe, FileImport, Ping, Shazzam, Identify, SNMPProbe, MetricScrape"),
            "{}",
            none.message
        );
    }

    #[test]
    fn soap_actions_must_fit_in_a_header() {
        let soap = |action: &str| {
            Payload::from(
                json!({"url": "http://10.0.0.5/ws", "operation": "Op", "soap_action": action}),
            )
        };
        for ok in ["urn:x#Op", "\"urn:x#Op\"", "", "http://tempuri.org/Op"] {
            assert!(check(Topic::SOAPProbe, &soap(ok)).is_ok(), "{ok}");
        }
        for bad in ["urn:x\nInjected: 1", "urn:\"x\"", "\u{1}"] {
            let e = check(Topic::SOAPProbe, &soap(bad)).expect_err(bad);
            assert_eq!(e.field, "soap_action", "{bad}");
        }
    }

    #[test]
    fn soap_bodies_must_be_well_formed() {
        let soap = |body: &str| Payload::from(json!({"url": "http://10.0.0.5/ws", "body": body}));
        for ok in [
            "<a/>",
            "<m:Op xmlns:m=\"urn:m\"><m:x>1</m:x></m:Op>",
            "<soap:Header/>",
            "",
        ] {
            assert!(check(Topic::SOAPProbe, &soap(ok)).is_ok(), "{ok}");
        }
        for (bad, needle) in [
            ("<Echo><text>unclosed</Echo>", ""),
            ("<a>", "not closed"),
            ("<x:a/>", "`x`"),
            ("<!DOCTYPE a><a/>", "DOCTYPE"),
        ] {
            let e = check(Topic::SOAPProbe, &soap(bad)).expect_err(bad);
            assert_eq!(e.field, "body", "{bad}");
            assert!(e.message.contains(needle), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn commands_need_an_absolute_program() {
        assert!(
            check(
                Topic::Command,
                &Payload::from(json!({"program": "/bin/true"}))
            )
            .is_ok()
        );
        let e = check(Topic::Command, &Payload::from(json!({"program": "true"})))
            .expect_err("relative");
        assert_eq!(e.field, "program");
    }

    #[test]
    fn a_sql_read_resumes_after_the_last_stored_page() {
        let req = json!({"driver": "postgres", "host": "10.0.0.9", "database": "inv",
            "credential": {"id": "c1", "name": "db"}, "statement": "SELECT id FROM t",
            "keyset": ["id"]});
        assert!(resumes(Topic::JDBCProbe) && !resumes(Topic::Command));
        let last =
            br#"{"page": 3, "first_row": 1500, "rows": [[1501], [1502]], "last_key": [1502]}"#;
        let resumed = resume(Topic::JDBCProbe, &req, last).expect("resumes");
        assert_eq!(
            resumed["resume"],
            json!({"next_page": 4, "rows_done": 1502, "after_key": [1502]})
        );
        let no_key = resume(
            Topic::JDBCProbe,
            &req,
            br#"{"page": 0, "first_row": 0, "rows": []}"#,
        );
        assert_eq!(no_key.err().map(|e| e.field).as_deref(), Some("resume"));
        let garbage = resume(Topic::JDBCProbe, &req, b"not json");
        assert!(garbage.is_err());
    }

    proptest! {
        #[test]
        fn checker_never_panics(url in ".{0,60}", method in "[A-Za-z ]{0,8}") {
            let _ = check(Topic::RESTProbe, &Payload::from(json!({"url": url, "method": method})));
        }
    }
}
