//! The command line sent to the server, and the markers it prints. The server hands an
//! exec request to the user's login shell as one string, so the MID wraps the job's
//! command in a few words of POSIX shell that first print, on stderr, a line with a
//! per-job nonce and the shell's pid — the remote process group, since sshd starts
//! every session in a new one — which lets the MID stop the whole group with `kill`
//! over a second channel when a server ignores the SSH `signal` request.
//!
//! Under `sudo` the wrapper also makes sudo prompt with a nonce marker (answered with
//! the credential's password, never echoed) and prints a `ready` marker once sudo let
//! the command start: only then is the job's standard input sent, so the password can
//! never reach the command (and its output) when sudo did not ask for it.
//!
//! A script goes to its interpreter on standard input: no file is left on the target
//! when a job is killed, no 128 KiB argument limit applies, and any interpreter that
//! reads its program from stdin (sh, bash, python3, perl) works. The cost: the script
//! itself cannot read the job's stdin, which is why `stdin` and `script` exclude each
//! other.

use openmid_proto::ssh::{DEFAULT_INTERPRETER, SshRequest};

/// The per-job markers.
#[derive(Debug, Clone)]
pub struct Markers {
    nonce: String,
}

impl Markers {
    /// Markers with a fresh random nonce.
    pub fn new() -> Self {
        let mut bytes = [0u8; 12];
        // A fixed nonce only makes markers guessable, not wrong.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        Self {
            nonce: hex::encode(bytes),
        }
    }

    /// Printed first on stderr, with the pid after it and `>>\n` to end.
    pub fn pid_prefix(&self) -> String {
        format!("<<openmid:{}:pid:", self.nonce)
    }

    /// What sudo prints when it wants the password.
    pub fn prompt(&self) -> String {
        format!("<<openmid:{}:sudo>>", self.nonce)
    }

    /// Printed on stderr once sudo let the command start.
    pub fn ready(&self) -> String {
        format!("<<openmid:{}:ready>>\n", self.nonce)
    }
}

/// `text` as one POSIX shell word.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The exec request's command line. `exported` are the variables to set in the
/// command line itself (the server refused them as `env` requests, or `sudo` would
/// drop them); their values become visible to `ps` on the target.
pub fn command_line(req: &SshRequest, markers: &Markers, exported: &[(&str, &str)]) -> String {
    let body = match (&req.command, &req.script) {
        (Some(command), _) => command.as_str(),
        (None, _) => req.interpreter.as_deref().unwrap_or(DEFAULT_INTERPRETER),
    };
    let announce = format!(
        "printf '%s%s>>\\n' {} \"$$\" >&2",
        quote(&markers.pid_prefix())
    );
    if !req.sudo {
        let exports: String = exported
            .iter()
            .map(|(name, value)| format!("{name}={}; export {name}; ", quote(value)))
            .collect();
        return format!("{announce}; {exports}eval {}", quote(body));
    }
    // Values travel as positional parameters of the inner shell, so the inner
    // script needs no second level of quoting: $1 is the command, $2… the values.
    let mut inner = format!("printf '%s' {} >&2; ", quote(&markers.ready()));
    let mut args = vec![quote(body)];
    for (i, (name, value)) in exported.iter().enumerate() {
        inner.push_str(&format!("{name}=\"${{{}}}\"; export {name}; ", i + 2));
        args.push(quote(value));
    }
    inner.push_str("eval \"$1\"");
    format!(
        "{announce}; exec sudo -S -p {} -- /bin/sh -c {} openmid {}",
        quote(&markers.prompt()),
        quote(&inner),
        args.join(" ")
    )
}

/// The command line that kills the remote process group `pgid` — for servers that
/// ignore the SSH signal request, and always under sudo: there the group's processes
/// are root's, which neither the user's signal nor sudo (it relays a signal to its
/// child only, not to the child's children) reaches. Run as root through
/// `sudo -S -p ''` (fed the password; `sudo -n` when the login has none), it gives
/// TERM a second, then KILLs what is left.
pub fn kill_line(pgid: u32, sudo: bool, has_password: bool) -> String {
    if !sudo {
        return format!("kill -s KILL -- -{pgid} 2>/dev/null || kill -s KILL {pgid}");
    }
    let script = format!(
        "kill -s TERM -- -{pgid} 2>/dev/null; sleep 1; kill -s KILL -- -{pgid} 2>/dev/null; true"
    );
    let how = if has_password { "-S -p ''" } else { "-n" };
    format!("sudo {how} -- /bin/sh -c {}", quote(&script))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmid_proto::credential::CredentialRef;

    fn sh(line: &str) -> (String, String, i32) {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(line)
            .output()
            .expect("sh");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code().unwrap_or(-1),
        )
    }

    fn request(command: &str) -> SshRequest {
        SshRequest::new(
            "h",
            CredentialRef {
                id: "c".into(),
                name: "n".into(),
            },
            command,
        )
    }

    #[test]
    fn the_wrapper_announces_the_pid_and_runs_the_command_verbatim() {
        let m = Markers::new();
        let command = r#"printf '%s|' "it's" "$HOME_X" 'a"b' \\; exit 3"#;
        let line = command_line(&request(command), &m, &[("HOME_X", "v'1 $x")]);
        let (out, err, code) = sh(&line);
        assert_eq!(out, r#"it's|v'1 $x|a"b|\|"#);
        assert!(
            err.starts_with(&m.pid_prefix()) && err.ends_with(">>\n"),
            "{err}"
        );
        assert_eq!(code, 3);
    }

    #[test]
    fn scripts_read_from_stdin() {
        let m = Markers::new();
        let mut req = request("x");
        req.command = None;
        req.script = Some("echo from-script".into());
        let line = command_line(&req, &m, &[]);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("echo 'echo from-script' | {{ {line}; }}"))
            .output()
            .expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from-script\n");
    }

    #[test]
    fn quoting_survives_any_text() {
        for text in [
            "", "'", "''", "a'b'c", "$(id)", "`id`", "\\", "\n", "\"", "%s",
        ] {
            let (out, _, _) = sh(&format!("printf '%s' {}", quote(text)));
            assert_eq!(out, text);
        }
    }
}
