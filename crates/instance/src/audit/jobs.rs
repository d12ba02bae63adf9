//! What a MID ran, for the audit log: a `Command`, `SSHCommand` or `JDBCProbe` job's
//! command line or statement and how it ended, read from its output and input records
//! when its result is recorded. Only what says what ran is kept: never a credential
//! (the payloads hold only a reference to one), an environment value, standard input,
//! a script's body or a statement's bound parameters.

use super::Actor;
use crate::ecc::{Finished, NewAuditEntry};
use openmid_proto::command::{CommandExit, CommandRequest};
use openmid_proto::ecc::Topic;
use openmid_proto::sql::SqlRequest;
use openmid_proto::ssh::SshRequest;
use serde_json::Value;

/// Longest command line or statement kept; a longer one is cut and says so.
pub const MAX_DETAIL_CHARS: usize = 4000;

fn bounded(text: String) -> String {
    if text.chars().count() <= MAX_DETAIL_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_DETAIL_CHARS).collect();
    cut.push_str(" …(cut)");
    cut
}

/// A word of a command line as a POSIX shell would need it to read it back.
fn quoted(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn exit_of(response: &Value) -> (Option<i64>, Option<String>) {
    match response
        .get("exit")
        .cloned()
        .and_then(|e| serde_json::from_value::<CommandExit>(e).ok())
    {
        Some(CommandExit::Code { code }) => (Some(i64::from(code)), None),
        Some(CommandExit::Signal { name, .. }) => (None, Some(format!("ended by {name}"))),
        None => (None, None),
    }
}

fn command_line(req: &CommandRequest) -> String {
    let mut words = vec![quoted(&req.program)];
    words.extend(req.args.iter().map(|a| quoted(a)));
    if let Some(script) = &req.script {
        words.push(format!("<script of {} bytes>", script.len()));
    }
    words.join(" ")
}

fn ssh_line(req: &SshRequest) -> String {
    let sudo = if req.sudo { "sudo " } else { "" };
    match (&req.command, &req.script) {
        (Some(command), _) => format!("{sudo}{command}"),
        (None, Some(script)) => format!(
            "{sudo}{} <script of {} bytes>",
            req.interpreter.as_deref().unwrap_or("/bin/sh"),
            script.len()
        ),
        (None, None) => String::new(),
    }
}

/// The audit entry of a finished job that ran a command or statement; `None` for
/// other topics (and for a payload that does not read as its topic's, which the
/// instance checked when it was queued).
pub fn entry(mid: &str, finished: &Finished, now: i64) -> Option<NewAuditEntry> {
    let output = &finished.output;
    let input = &finished.input;
    // Asked of every finished job (REST and SOAP calls are most of them), inside the
    // transaction that records it: the topic is looked at before a payload is read.
    if !matches!(
        output.topic,
        Topic::Command | Topic::SystemCommand | Topic::SSHCommand | Topic::JDBCProbe
    ) {
        return None;
    }
    let request: Value = serde_json::from_str(&output.payload).ok()?;
    let response: Value = serde_json::from_str(&input.payload).unwrap_or(Value::Null);
    let (action, target, detail, status, rows, ended) = match output.topic {
        Topic::Command | Topic::SystemCommand => {
            let req: CommandRequest = serde_json::from_value(request).ok()?;
            let (status, ended) = exit_of(&response);
            (
                "command.run",
                mid.to_string(),
                command_line(&req),
                status,
                None,
                ended,
            )
        }
        Topic::SSHCommand => {
            let req: SshRequest = serde_json::from_value(request).ok()?;
            let (status, ended) = exit_of(&response);
            let target = format!("{}:{}", req.host, req.port());
            ("ssh.run", target, ssh_line(&req), status, None, ended)
        }
        Topic::JDBCProbe => {
            let req: SqlRequest = serde_json::from_value(request).ok()?;
            let rows = response
                .get("rows_affected")
                .and_then(Value::as_i64)
                .or_else(|| response.get("rows").and_then(Value::as_i64));
            let driver = serde_json::to_value(req.driver)
                .ok()
                .and_then(|d| d.as_str().map(str::to_string))
                .unwrap_or_default();
            let target = format!("{driver}://{}:{}/{}", req.host, req.port(), req.database);
            ("sql.run", target, req.statement.clone(), None, rows, None)
        }
        _ => return None,
    };
    let failed = input.error.is_some() || status.is_some_and(|s| s != 0) || ended.is_some();
    Some(NewAuditEntry {
        at: now,
        actor: Actor::Mid(mid.to_string()).to_string(),
        action: action.to_string(),
        target: Some(target),
        peer: None,
        outcome: if failed { "failed" } else { "ok" }.to_string(),
        status,
        mid: Some(mid.to_string()),
        output_id: Some(output.id.clone()),
        topic: Some(output.topic.to_string()),
        detail: Some(bounded(detail)),
        rows,
        error: input.error.clone().or(ended),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecc::Record;

    #[test]
    fn command_lines_read_back_as_a_shell_would() {
        let req = CommandRequest {
            program: "/bin/echo".into(),
            args: vec!["hello world".into(), "it's".into(), "-n".into()],
            env: [("TOKEN".to_string(), "s3cret".to_string())].into(),
            stdin: Some("also-secret".into()),
            script: None,
            ..CommandRequest::default()
        };
        let line = command_line(&req);
        assert_eq!(line, r#"/bin/echo 'hello world' 'it'\''s' -n"#);
        assert!(!line.contains("s3cret") && !line.contains("also-secret"));
        let script = CommandRequest {
            program: "/bin/sh".into(),
            script: Some("echo secret-body".into()),
            ..CommandRequest::default()
        };
        assert_eq!(command_line(&script), "/bin/sh <script of 16 bytes>");
    }

    fn finished(topic: Topic, payload: &str, response: &str) -> Finished {
        let output = Record {
            topic,
            payload: payload.into(),
            state: openmid_proto::ecc::State::Processed,
            ..Record::sample("out")
        };
        let input = Record {
            id: "in".into(),
            queue: openmid_proto::ecc::Queue::Input,
            payload: response.into(),
            response_to: Some("out".into()),
            ..output.clone()
        };
        Finished { output, input }
    }

    #[test]
    fn only_commands_and_statements_are_audited() {
        // The same texts either way: only the topic decides.
        let payload = r#"{"program": "/bin/echo", "args": ["x"]}"#;
        let response = r#"{"status": 200}"#;
        let command =
            entry("a", &finished(Topic::Command, payload, response), 1).expect("a command's entry");
        assert_eq!(
            (command.action.as_str(), command.outcome.as_str()),
            ("command.run", "ok")
        );
        assert_eq!(command.detail.as_deref(), Some("/bin/echo x"));
        for topic in [Topic::RESTProbe, Topic::SOAPProbe] {
            assert!(
                entry("a", &finished(topic, payload, response), 1).is_none(),
                "{topic}"
            );
        }
    }

    #[test]
    fn long_statements_are_cut_and_say_so() {
        let long = "x".repeat(MAX_DETAIL_CHARS + 10);
        let cut = bounded(long);
        assert!(cut.ends_with("…(cut)"));
        assert_eq!(
            cut.chars().count(),
            MAX_DETAIL_CHARS + " …(cut)".chars().count()
        );
    }
}
