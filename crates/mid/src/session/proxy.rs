//! The outbound HTTP proxy between the MID and the instance: its URL, the password
//! given as a secret reference (an environment variable or a file) rather than in
//! plain text in `mid.toml`, and a diagnosis when the proxy refuses the tunnel —
//! reqwest only says "unsuccessful tunnel", while an operator needs the proxy's own
//! answer (`407 Proxy Authentication Required`, `403 Forbidden` …).

use openmid_proto::credential::LocalSecret;
use openmid_proto::secret::Secret;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the diagnosis may take.
const DIAGNOSIS_TIMEOUT: Duration = Duration::from_secs(5);

/// A proxy setting that cannot be used; `key` names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ProxyError {
    /// `proxy` or `proxy_password`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn error(key: &'static str, message: impl Into<String>) -> ProxyError {
    ProxyError {
        key,
        message: message.into(),
    }
}

/// The proxy as configured.
#[derive(Clone)]
pub struct ProxySettings {
    url: reqwest::Url,
    auth: Option<(String, Secret)>,
}

impl ProxySettings {
    /// From `proxy` and `proxy_password`. A password must be given once: in the URL or
    /// as a reference, and a reference needs the user name in the URL.
    pub fn new(proxy: &str, password: Option<&LocalSecret>) -> Result<Self, ProxyError> {
        let mut url = reqwest::Url::parse(proxy)
            .map_err(|e| error("proxy", format!("`{}`: {e}", shown(proxy))))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(error(
                "proxy",
                format!(
                    "scheme `{}` is not supported (use http:// or https://)",
                    url.scheme()
                ),
            ));
        }
        let user = percent_decoded(url.username());
        let inline = url.password().map(percent_decoded);
        let auth = match (password, inline) {
            (Some(_), Some(_)) => {
                return Err(error(
                    "proxy_password",
                    "the proxy URL carries a password too; give it only once",
                ));
            }
            (Some(_), None) if user.is_empty() => {
                return Err(error(
                    "proxy_password",
                    "put the user name in the proxy URL (http://USER@host:port)",
                ));
            }
            (Some(reference), None) => Some((user, read(reference)?)),
            (None, Some(inline)) => Some((user, Secret::new(inline))),
            (None, None) if !user.is_empty() => Some((user, Secret::new(String::new()))),
            (None, None) => None,
        };
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(Self { url, auth })
    }

    /// The reqwest proxy for every request to the instance.
    pub fn proxy(&self) -> Result<reqwest::Proxy, ProxyError> {
        let proxy =
            reqwest::Proxy::all(self.url.as_str()).map_err(|e| error("proxy", e.to_string()))?;
        Ok(match &self.auth {
            Some((user, password)) => proxy.basic_auth(user, password.expose()),
            None => proxy,
        })
    }

    /// Asks the proxy for a tunnel to `target` (host:port) the way reqwest does, and
    /// returns its status line when it refuses — or `None` when it cannot tell (the
    /// proxy is unreachable itself, speaks TLS, or grants the tunnel).
    pub async fn diagnose(&self, target: &str) -> Option<String> {
        if self.url.scheme() != "http" {
            return None;
        }
        let host = self.url.host_str()?;
        let port = self.url.port_or_known_default()?;
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
            let auth = self.auth.as_ref().map(|(user, password)| {
                use base64::Engine as _;
                let pair = Secret::new(format!("{user}:{}", password.expose()));
                Secret::new(base64::engine::general_purpose::STANDARD.encode(pair.expose()))
            });
            // Held as a secret (wiped when dropped): it carries the proxy password.
            let request = Secret::new(match &auth {
                Some(encoded) => format!(
                    "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {}\r\n\r\n",
                    encoded.expose()
                ),
                None => format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
            });
            stream.write_all(request.expose().as_bytes()).await.ok()?;
            let mut answer = vec![0u8; 512];
            let n = stream.read(&mut answer).await.ok()?;
            status_line(&answer[..n])
        };
        tokio::time::timeout(DIAGNOSIS_TIMEOUT, attempt)
            .await
            .ok()
            .flatten()
    }
}

/// The status of a proxy's answer when it is a refusal (not 2xx).
fn status_line(answer: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(answer);
    let line = text.lines().next()?.trim();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code: u16 = parts.next()?.parse().ok()?;
    if !version.starts_with("HTTP/") || (200..300).contains(&code) {
        return None;
    }
    let reason: String = parts
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    Some(format!("{code} {reason}").trim_end().to_string())
}

fn read(reference: &LocalSecret) -> Result<Secret, ProxyError> {
    match reference {
        LocalSecret::Env(name) => std::env::var(name).map(Secret::new).map_err(|_| {
            error(
                "proxy_password",
                format!("environment variable `{name}` is not set"),
            )
        }),
        LocalSecret::File(path) => std::fs::read_to_string(path)
            .map(|text| Secret::new(text.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| error("proxy_password", format!("file `{path}`: {e}"))),
    }
}

/// The proxy URL without its password, for messages.
fn shown(proxy: &str) -> String {
    match reqwest::Url::parse(proxy) {
        Ok(mut url) => {
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

fn percent_decoded(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_given_once() {
        let env = LocalSecret::Env("OPENMID_TEST_PROXY_PW_UNSET".into());
        assert!(ProxySettings::new("http://u:p@proxy:3128", Some(&env)).is_err());
        assert!(
            ProxySettings::new("http://proxy:3128", Some(&env))
                .err()
                .is_some_and(|e| e.key == "proxy_password" && e.message.contains("user name"))
        );
        let err = ProxySettings::new("http://u@proxy:3128", Some(&env))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not set"), "{err}");
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cr%t\n").expect("write");
        let from_file = LocalSecret::File(file.display().to_string());
        let p = ProxySettings::new("http://u%40corp@proxy:3128", Some(&from_file)).expect("ok");
        let (user, password) = p.auth.clone().expect("auth");
        assert_eq!((user.as_str(), password.expose()), ("u@corp", "s3cr%t"));
        assert_eq!(p.url.as_str(), "http://proxy:3128/");
        assert!(ProxySettings::new("socks5://proxy:1080", None).is_err());
        let err = ProxySettings::new("http://u:hunter2@[bad", None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn refusals_are_read_from_the_status_line() {
        assert_eq!(
            status_line(b"HTTP/1.1 407 Proxy Authentication Required\r\nX: y\r\n\r\n"),
            Some("407 Proxy Authentication Required".into())
        );
        assert_eq!(status_line(b"HTTP/1.0 403\r\n\r\n"), Some("403".into()));
        assert_eq!(
            status_line(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            None
        );
        assert_eq!(status_line(b"garbage"), None);
        assert_eq!(status_line(b""), None);
    }

    proptest::proptest! {
        #[test]
        fn any_answer_is_read_without_panic(answer in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = status_line(&answer);
        }
    }
}
