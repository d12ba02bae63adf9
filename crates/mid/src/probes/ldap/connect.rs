//! Where an LDAP connection opens, under the egress policy, and how it is secured.
//! The host is resolved by [`Endpoint::resolve`] (`PolicyResolver`) (a name whose addresses are all refused
//! is refused, naming the rule) and each address is checked again with its port; the
//! MID opens the TCP connection itself, to a checked address only, and hands the
//! socket to `ldap3` ([`LdapConnSettings::set_std_stream`]). `ldap3` still gets the
//! request's URL, so LDAPS and StartTLS send the host name (SNI) and verify the
//! server's certificate against it — never against the address connected to.
//!
//! TLS is rustls 0.23 on aws-lc-rs, the MID's own: the certificate always chains to
//! `ca_pem` (or the system's roots) and must name the host; there is no switch to
//! turn either check off.

use crate::policy::{EgressPolicy, Protocol};
use crate::probes::ProbeError;
pub(super) use crate::probes::endpoint::Endpoint;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, StdStream};
use openmid_proto::ldap::{LdapRequest, LdapUrl};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Longest a TCP connect to one address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the LDAP setup (TLS handshake, StartTLS) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Resolves the URL's host under `policy.ldap` and checks each address with its port.
pub(super) async fn resolve(
    policy: &Arc<EgressPolicy>,
    url: &LdapUrl,
) -> Result<Endpoint, ProbeError> {
    Endpoint::resolve(policy, Protocol::Ldap, &url.host, url.port).await
}

/// An open LDAP connection: the handle operations go through, and the task driving
/// the socket (aborted when this is dropped).
pub(super) struct Connection {
    pub ldap: Ldap,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connects to the first of `endpoint`'s addresses that answers and sets up LDAP on
/// it (TLS from the start for `ldaps`, StartTLS when asked).
pub(super) async fn open(req: &LdapRequest, endpoint: &Endpoint) -> Result<Connection, ProbeError> {
    let tcp = endpoint.connect_any(CONNECT_TIMEOUT).await?;
    let std = tcp
        .into_std()
        .map_err(|e| ProbeError::Target(format!("preparing the connection: {e}")))?;
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(SETUP_TIMEOUT)
        .set_std_stream(StdStream::Tcp(std));
    if req.is_tls() {
        settings = settings
            .set_config(Arc::new(tls_config(req.ca_pem.as_deref())?))
            .set_starttls(req.start_tls);
    }
    let (conn, ldap) = LdapConnAsync::with_settings(settings, &req.url)
        .await
        .map_err(|e| setup_error(req, endpoint, e))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.drive().await {
            tracing::debug!(error = %e, "the LDAP connection ended with an error");
        }
    });
    Ok(Connection { ldap, driver })
}

/// What went wrong setting the connection up, said for a person: TLS failures name
/// the certificate problem.
fn setup_error(req: &LdapRequest, endpoint: &Endpoint, e: ldap3::LdapError) -> ProbeError {
    let how = if req.start_tls {
        "StartTLS with"
    } else if req.is_tls() {
        "TLS (ldaps) with"
    } else {
        "connecting to"
    };
    let text = e.to_string();
    let hint = if text.contains("certificate") || text.contains("Certificate") {
        " — the server's certificate must chain to ca_pem (or the system's roots) and name the host of the URL"
    } else {
        ""
    };
    ProbeError::Target(format!("{how} {}: {text}{hint}", endpoint.shown()))
}

/// A client configuration trusting `ca_pem`, or the system's roots without one.
fn tls_config(ca_pem: Option<&str>) -> Result<rustls::ClientConfig, ProbeError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| {
                    ProbeError::InvalidInput(format!("ca_pem: not a PEM certificate bundle: {e}"))
                })?;
                roots.add(cert).map_err(|e| {
                    ProbeError::InvalidInput(format!("ca_pem: a certificate is not usable: {e}"))
                })?;
            }
            if roots.is_empty() {
                return Err(ProbeError::InvalidInput(
                    "ca_pem: holds no certificate".into(),
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "a system root certificate could not be read");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ProbeError::Target(
                    "no system root certificates were found: give the directory's CA as ca_pem"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Target(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
