//! Credentials on the MID: the sealed credential of a job opened into memory, its
//! local references resolved under the MID's own policy, and applied to a request.
//! OAuth 2.0 client-credentials tokens are fetched from the token endpoint inside the
//! private network and cached until shortly before they expire.
//!
//! Secrets stay in [`Secret`]s (`***` in `Debug`, wiped on drop) and request headers
//! carrying them are marked sensitive; no error message here quotes one.

use super::{ProbeContext, ProbeError};
use crate::config::LocalSecretPolicy;
use crate::policy::{EgressPolicy, Protocol, find_denial};
use base64::Engine;
use openmid_proto::credential::{
    ClientAuth, CredentialSpec, KeyPlacement, LocalSecret, SecretValue,
};
use openmid_proto::secret::Secret;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A credential ready to use: every secret resolved.
#[derive(Debug)]
pub enum Credential {
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// An API key.
    ApiKey {
        /// Header or parameter name.
        name: String,
        /// Where it goes.
        placement: KeyPlacement,
        /// The key.
        key: Secret,
    },
    /// A bearer token.
    Bearer(Secret),
    /// OAuth 2.0 client credentials.
    OAuth2(OAuthClient),
    /// Client certificate and key, PEM, for mutual TLS.
    ClientCertificate {
        /// Certificate chain and private key, PEM, concatenated.
        identity_pem: Secret,
    },
    /// A database login (the SQL probe's).
    Database {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// An SSH login with a password (also what `sudo` is fed).
    SshPassword {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// An LDAP simple bind (the LDAP probe's).
    LdapBind {
        /// The DN bound as.
        bind_dn: String,
        /// Password.
        password: Secret,
    },
    /// An SNMP v1/v2c community (the SNMP probe's).
    SnmpCommunity {
        /// The community string.
        community: Secret,
    },
    /// An SNMPv3 USM user (the SNMP probe's).
    SnmpV3 {
        /// User name.
        username: String,
        /// Authentication protocol name and password.
        auth: Option<(String, Secret)>,
        /// Privacy protocol name and password.
        privacy: Option<(String, Secret)>,
    },
    /// An SSH login with a private key.
    SshKey {
        /// User name.
        username: String,
        /// The private key, OpenSSH or PEM.
        private_key: Secret,
        /// Its passphrase, when it is encrypted.
        passphrase: Option<Secret>,
    },
}

/// An OAuth 2.0 client (client-credentials grant).
#[derive(Debug)]
pub struct OAuthClient {
    token_url: String,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
    audience: Option<String>,
    client_auth: ClientAuth,
}

impl OAuthClient {
    /// Tokens are cached per client, secret and scope: a changed secret never reuses a
    /// token fetched with the old one.
    fn cache_key(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in [
            self.token_url.as_str(),
            self.client_id.as_str(),
            self.client_secret.expose(),
            self.scope.as_deref().unwrap_or(""),
            self.audience.as_deref().unwrap_or(""),
        ] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        hex::encode(ctx.finish().as_ref())
    }
}

/// Reads one secret: a stored value as is, a local one from where the policy allows.
fn resolve_value(
    field: &str,
    value: SecretValue,
    policy: &LocalSecretPolicy,
) -> Result<Secret, ProbeError> {
    match value {
        SecretValue::Stored(s) => Ok(s),
        SecretValue::Local(local) => read_local(&local, policy).map_err(|why| {
            // The job's error says only that it could not be had: telling "no such
            // file" from "not allowed" would let whoever sends jobs probe the MID
            // host's files and environment. The MID's own log has the reason.
            tracing::warn!(field, secret = %local, reason = %why, "a credential's local secret could not be used");
            ProbeError::Credential(format!(
                "{field}: {local} cannot be used on this MID: it is not allowed by the local_secrets policy, missing or unreadable (the MID's log says which)"
            ))
        }),
    }
}

/// Reads a local secret the policy allows; the error is for the MID's log only.
fn read_local(local: &LocalSecret, policy: &LocalSecretPolicy) -> Result<Secret, String> {
    match local {
        LocalSecret::Env(name) => {
            if !policy
                .env_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
            {
                return Err(format!(
                    "not an allowed variable (allowed prefixes: {})",
                    policy.env_prefixes.join(", ")
                ));
            }
            std::env::var(name)
                .map(Secret::new)
                .map_err(|_| "not set".to_string())
        }
        LocalSecret::File(path) => {
            let path = Path::new(path);
            // Canonicalize first so `..` and symlinks cannot step outside.
            let real = path.canonicalize().map_err(|e| e.to_string())?;
            let inside = policy.dirs.iter().any(|dir| {
                dir.canonicalize()
                    .map(|d| real.starts_with(d))
                    .unwrap_or(false)
            });
            if !inside {
                return Err("not inside local_secrets.dirs".into());
            }
            let text = std::fs::read_to_string(&real).map_err(|e| e.to_string())?;
            Ok(Secret::new(text.trim_end_matches(['\n', '\r']).to_string()))
        }
    }
}

/// Resolves a job's credential: HTTP, SOAP, SSH, database, LDAP and SNMP types (the
/// probe checks it fits).
pub fn resolve(spec: CredentialSpec, policy: &LocalSecretPolicy) -> Result<Credential, ProbeError> {
    Ok(match spec {
        CredentialSpec::Basic { username, password } => Credential::Basic {
            username,
            password: resolve_value("password", password, policy)?,
        },
        CredentialSpec::ApiKey {
            key_name: name,
            placement,
            key,
        } => Credential::ApiKey {
            name,
            placement,
            key: resolve_value("key", key, policy)?,
        },
        CredentialSpec::Bearer { token } => {
            Credential::Bearer(resolve_value("token", token, policy)?)
        }
        CredentialSpec::Oauth2ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
            audience,
            client_auth,
        } => Credential::OAuth2(OAuthClient {
            token_url,
            client_id,
            client_secret: resolve_value("client_secret", client_secret, policy)?,
            scope,
            audience,
            client_auth,
        }),
        CredentialSpec::ClientCertificate {
            certificate_pem,
            private_key_pem,
        } => {
            let key = resolve_value("private_key_pem", private_key_pem, policy)?;
            Credential::ClientCertificate {
                identity_pem: Secret::new(format!("{}\n{}\n", key.expose(), certificate_pem)),
            }
        }
        CredentialSpec::Database { username, password } => Credential::Database {
            username,
            password: resolve_value("password", password, policy)?,
        },
        CredentialSpec::LdapBind { bind_dn, password } => Credential::LdapBind {
            bind_dn,
            password: resolve_value("password", password, policy)?,
        },
        CredentialSpec::SnmpCommunity { community } => Credential::SnmpCommunity {
            community: resolve_value("community", community, policy)?,
        },
        CredentialSpec::SnmpV3 {
            username,
            auth_protocol,
            auth_password,
            priv_protocol,
            priv_password,
        } => {
            let auth = match (auth_protocol, auth_password) {
                (Some(p), Some(pw)) => Some((p, resolve_value("auth_password", pw, policy)?)),
                (None, None) => None,
                _ => {
                    return Err(ProbeError::Credential(
                        "an snmp_v3 credential needs both auth_protocol and auth_password, or neither".into(),
                    ));
                }
            };
            let privacy = match (priv_protocol, priv_password) {
                (Some(p), Some(pw)) => Some((p, resolve_value("priv_password", pw, policy)?)),
                (None, None) => None,
                _ => {
                    return Err(ProbeError::Credential(
                        "an snmp_v3 credential needs both priv_protocol and priv_password, or neither".into(),
                    ));
                }
            };
            Credential::SnmpV3 {
                username,
                auth,
                privacy,
            }
        }
        CredentialSpec::SshPassword { username, password } => Credential::SshPassword {
            username,
            password: resolve_value("password", password, policy)?,
        },
        CredentialSpec::SshKey {
            username,
            private_key,
            passphrase,
        } => Credential::SshKey {
            username,
            private_key: resolve_value("private_key", private_key, policy)?,
            passphrase: passphrase
                .map(|p| resolve_value("passphrase", p, policy))
                .transpose()?,
        },
    })
}

fn sensitive(value: &str) -> Result<reqwest::header::HeaderValue, ProbeError> {
    let mut v = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        ProbeError::Credential("the credential holds characters a header cannot carry".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Adds the credential to a request (the query-parameter API key is added to the URL
/// by the caller, before the request is built). An OAuth token is fetched with `http`,
/// the call's own client, so a token endpoint under the same internal CA is trusted.
pub async fn authenticate(
    ctx: &ProbeContext,
    http: &reqwest::Client,
    builder: reqwest::RequestBuilder,
    credential: Option<&Credential>,
) -> Result<reqwest::RequestBuilder, ProbeError> {
    let Some(credential) = credential else {
        return Ok(builder);
    };
    Ok(match credential {
        Credential::Basic { username, password } => {
            builder.basic_auth(username, Some(password.expose()))
        }
        Credential::ApiKey {
            name,
            placement: KeyPlacement::Header,
            key,
        } => builder.header(name.as_str(), sensitive(key.expose())?),
        Credential::ApiKey { .. } | Credential::ClientCertificate { .. } => builder,
        Credential::Database { .. } => {
            return Err(ProbeError::Credential(
                "a `database` credential cannot authenticate an HTTP call".into(),
            ));
        }
        Credential::SshPassword { .. } | Credential::SshKey { .. } => {
            return Err(ProbeError::Credential(
                "an SSH credential cannot authenticate an HTTP call".into(),
            ));
        }
        Credential::SnmpCommunity { .. } | Credential::SnmpV3 { .. } => {
            return Err(ProbeError::Credential(
                "an SNMP credential cannot authenticate an HTTP call".into(),
            ));
        }
        Credential::LdapBind { .. } => {
            return Err(ProbeError::Credential(
                "an `ldap_bind` credential cannot authenticate an HTTP call".into(),
            ));
        }
        Credential::Bearer(token) => builder.header(
            reqwest::header::AUTHORIZATION,
            sensitive(&format!("Bearer {}", token.expose()))?,
        ),
        Credential::OAuth2(client) => {
            let token = ctx.tokens.token(http, client, &ctx.policy).await?;
            builder.header(
                reqwest::header::AUTHORIZATION,
                sensitive(&format!("Bearer {}", token.expose()))?,
            )
        }
    })
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
}

/// OAuth tokens by client. One fetch at a time per client, so a burst of calls fetches
/// one token, not one each.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
    fetched: std::sync::atomic::AtomicU64,
}

/// Lifetime assumed when the token endpoint does not say (`expires_in` is optional).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

impl TokenCache {
    fn slot(&self, key: String) -> Arc<tokio::sync::Mutex<Option<Cached>>> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone()
    }

    /// Tokens fetched from token endpoints since start.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops a client's cached token (the target refused it).
    pub async fn forget(&self, client: &OAuthClient) {
        *self.slot(client.cache_key()).lock().await = None;
    }

    /// A valid token for `client`: the cached one, or a new one from its endpoint.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        client: &OAuthClient,
        policy: &EgressPolicy,
    ) -> Result<Secret, ProbeError> {
        let slot = self.slot(client.cache_key());
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = fetch_token(http, client, policy).await?;
        self.fetched
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Refresh a little early (a tenth of the lifetime, at most 30 s) so a call
        // never leaves with a token about to lapse.
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
        });
        Ok(token)
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: Secret,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct TokenRefusal {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The token request's form body and, for `basic` client authentication, its
/// `Authorization` header.
fn token_request(client: &OAuthClient) -> (Secret, Option<Secret>) {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = &client.scope {
        form.append_pair("scope", scope);
    }
    if let Some(audience) = &client.audience {
        form.append_pair("audience", audience);
    }
    let authorization = match client.client_auth {
        ClientAuth::Basic => {
            // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = Secret::new(format!(
                "{}:{}",
                enc(&client.client_id),
                enc(client.client_secret.expose())
            ));
            Some(Secret::new(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair.expose())
            )))
        }
        ClientAuth::Body => {
            form.append_pair("client_id", &client.client_id);
            form.append_pair("client_secret", client.client_secret.expose());
            None
        }
    };
    (Secret::new(form.finish()), authorization)
}

async fn fetch_token(
    http: &reqwest::Client,
    client: &OAuthClient,
    policy: &EgressPolicy,
) -> Result<(Secret, Duration), ProbeError> {
    let url = super::urls::parse_url(&client.token_url)
        .map_err(|e| ProbeError::Credential(format!("token_url: {e}")))?;
    // The token endpoint is a target like any other: the client's resolver checks the
    // addresses a name resolves to, this the URL itself (an IP literal is never resolved).
    policy.check_url(Protocol::Http, &url)?;
    let shown = super::urls::shown_url(&url);
    let (form, authorization) = token_request(client);
    let mut builder = http
        .post(url)
        .timeout(Duration::from_secs(30))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(header) = authorization {
        builder = builder.header(reqwest::header::AUTHORIZATION, sensitive(header.expose())?);
    }
    let resp = builder
        .body(form.expose().to_string())
        .send()
        .await
        .map_err(|e| match find_denial(&e) {
            Some(denial) => ProbeError::Policy(denial.clone()),
            None => ProbeError::Credential(format!(
                "OAuth token endpoint: {}",
                super::urls::describe(&reqwest::Method::POST, &shown, &e)
            )),
        })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| {
        ProbeError::Credential(format!(
            "OAuth token endpoint: {}",
            super::urls::describe(&reqwest::Method::POST, &shown, &e)
        ))
    })?;
    if !status.is_success() {
        let why = serde_json::from_slice::<TokenRefusal>(&body)
            .map(|r| match r.error_description {
                Some(d) => format!("{}: {d}", r.error),
                None => r.error,
            })
            .unwrap_or_else(|_| "no OAuth error in the answer".into());
        return Err(ProbeError::Credential(format!(
            "OAuth token endpoint {shown} refused the client credentials: HTTP {}: {why}",
            status.as_u16()
        )));
    }
    let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
        ProbeError::Credential(format!(
            "OAuth token endpoint {shown} answered without a usable access_token"
        ))
    })?;
    if let Some(t) = &answer.token_type
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(ProbeError::Credential(format!(
            "OAuth token endpoint {shown} issued a `{t}` token; only Bearer tokens are supported"
        )));
    }
    let lifetime = match &answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64().map(Duration::from_secs),
        Some(serde_json::Value::String(s)) => s.parse().ok().map(Duration::from_secs),
        _ => None,
    }
    .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    Ok((answer.access_token, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_secrets_follow_the_policy() {
        let dir = tempfile::tempdir().expect("dir");
        let allowed = dir.path().join("ok");
        std::fs::create_dir(&allowed).expect("mkdir");
        std::fs::write(allowed.join("pw"), "s3cret\n").expect("write");
        std::fs::write(dir.path().join("outside"), "no").expect("write");
        let policy = LocalSecretPolicy {
            env_prefixes: vec!["OPENMID_SECRET_".into()],
            dirs: vec![allowed.clone()],
        };
        let file = |p: &Path| SecretValue::Local(LocalSecret::File(p.display().to_string()));
        let got = resolve_value("password", file(&allowed.join("pw")), &policy).expect("read");
        assert_eq!(got.expose(), "s3cret");
        let escape = allowed.join("..").join("outside");
        let err = resolve_value("password", file(&escape), &policy)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("not allowed"), "{err}");
        let err = resolve_value(
            "token",
            SecretValue::Local(LocalSecret::Env("HOME".into())),
            &policy,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("not allowed"), "{err}");
    }

    #[test]
    fn every_local_secret_refusal_reads_the_same() {
        let dir = tempfile::tempdir().expect("dir");
        let allowed = dir.path().join("ok");
        std::fs::create_dir(&allowed).expect("mkdir");
        std::fs::write(dir.path().join("outside"), "no").expect("write");
        let policy = LocalSecretPolicy {
            env_prefixes: vec!["OPENMID_SECRET_".into()],
            dirs: vec![allowed.clone()],
        };
        let refusal = |value: SecretValue| {
            resolve_value("password", value, &policy)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let file = |p: &Path| LocalSecret::File(p.display().to_string());
        let env = |n: &str| LocalSecret::Env(n.into());
        // Strip the named secret: what remains must not tell the cases apart.
        let shapes: Vec<String> = [
            file(&allowed.join("missing")),
            file(&dir.path().join("outside")),
            file(&dir.path().join("nowhere")),
            env("HOME"),
            env("OPENMID_SECRET_NOT_SET_ANYWHERE"),
        ]
        .into_iter()
        .map(|local| {
            let shown = local.to_string();
            refusal(SecretValue::Local(local)).replace(&shown, "<secret>")
        })
        .collect();
        let mut shapes = shapes;
        for s in &shapes {
            assert!(!s.contains("No such file"), "{s}");
            assert!(!s.contains("not set"), "{s}");
        }
        shapes.dedup();
        assert_eq!(shapes.len(), 1, "{shapes:?}");
    }
}
