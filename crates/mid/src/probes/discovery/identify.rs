//! `Identify`: asks each host of a discovery run what it is. For every host, at
//! most `concurrency` at once: its plain web ports are sent a `HEAD /` and their
//! `Server` header read; its TLS ports are shaken hands with — accepting any
//! certificate, since the point is to read the names in it, and nothing secret is
//! sent — the certificate's subject CN and DNS names read, then the same `HEAD /`
//! asked over TLS; with an SNMP credential its agent is asked `sysDescr.0`,
//! `sysObjectID.0` and `sysName.0` through the SNMP probe itself.
//!
//! Each TCP connection is checked under `policy.scan` where it opens (the scan
//! already reached these ports), SNMP under `policy.snmp` by the SNMP probe. A
//! refusal or a silent host is one line in that host's `errors`, never the job's
//! failure: one odd host must not hide the others' answers.

use crate::policy::Protocol;
use crate::probes::ProbeError;
use crate::probes::registry::Call;
use futures::StreamExt;
use openmid_proto::credential::CredentialRef;
use openmid_proto::discovery::{
    HostIdentity, IdentifyHost, IdentifyRequest, IdentifyResponse, IdentifySnmp, MAX_TLS_NAMES,
    SYS_DESCR, SYS_NAME, SYS_OBJECT_ID, SnmpIdentity, WebAnswer, parse_http_head, shown,
};
use openmid_proto::snmp::{SnmpOperation, SnmpRequest};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most bytes of a response head read.
const HEAD_BYTES: usize = 8 * 1024;

/// Runs one `Identify` job.
pub(super) async fn run(
    req: IdentifyRequest,
    call: Call<'_>,
) -> Result<IdentifyResponse, ProbeError> {
    let started = Instant::now();
    req.validate()
        .map_err(|e| ProbeError::InvalidInput(e.to_string()))?;
    let tls = tls_connector()?;
    let refused = AtomicU64::new(0);
    let timeout = Duration::from_millis(req.timeout_ms);
    let call = &call;
    let snmp = req.snmp.as_ref().zip(req.credential.as_ref());
    let (tls, refused_ref) = (&tls, &refused);
    // Futures made in a loop rather than by a closure over the stream: a closure's
    // borrowed arguments make the job's future fail the `Send` bound.
    let mut asks = Vec::with_capacity(req.hosts.len());
    for (i, host) in req.hosts.iter().enumerate() {
        asks.push(async move {
            (
                i,
                identify(host, snmp, timeout, tls, refused_ref, call).await,
            )
        });
    }
    let mut hosts: Vec<(usize, HostIdentity)> = futures::stream::iter(asks)
        .buffer_unordered(req.concurrency as usize)
        .collect()
        .await;
    hosts.sort_by_key(|(i, _)| *i);
    Ok(IdentifyResponse {
        hosts: hosts.into_iter().map(|(_, h)| h).collect(),
        refused: refused.load(Ordering::Relaxed),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// Everything one host answers.
async fn identify(
    host: &IdentifyHost,
    snmp: Option<(&IdentifySnmp, &CredentialRef)>,
    timeout: Duration,
    tls: &tokio_rustls::TlsConnector,
    refused: &AtomicU64,
    call: &Call<'_>,
) -> HostIdentity {
    let mut out = HostIdentity {
        address: host.address.clone(),
        ..HostIdentity::default()
    };
    let Ok(ip) = host.address.parse::<IpAddr>() else {
        out.errors.push("not an IP address".into());
        return out;
    };
    for &port in &host.http_ports {
        match connect(call, ip, port, timeout, refused).await {
            Ok(stream) => match ask_head(stream, &host.address, timeout).await {
                Ok(answer) => out.web.push(web(port, false, answer)),
                Err(e) => out.errors.push(format!("{port}: {e}")),
            },
            Err(e) => out.errors.push(format!("{port}: {e}")),
        }
    }
    for &port in &host.tls_ports {
        let stream = match connect(call, ip, port, timeout, refused).await {
            Ok(stream) => stream,
            Err(e) => {
                out.errors.push(format!("{port}: {e}"));
                continue;
            }
        };
        let name = rustls::pki_types::ServerName::IpAddress(ip.into());
        let shaken = tokio::time::timeout(timeout, tls.connect(name, stream)).await;
        let stream = match shaken {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                out.errors.push(format!("{port}: TLS handshake: {e}"));
                continue;
            }
            Err(_) => {
                out.errors.push(format!(
                    "{port}: TLS handshake timed out after {} ms",
                    timeout.as_millis()
                ));
                continue;
            }
        };
        if let Some(cert) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            for name in certificate_names(cert.as_ref()) {
                if !out.tls_names.contains(&name) && out.tls_names.len() < MAX_TLS_NAMES {
                    out.tls_names.push(name);
                }
            }
        }
        match ask_head(stream, &host.address, timeout).await {
            Ok(answer) => out.web.push(web(port, true, answer)),
            Err(e) => out.errors.push(format!("{port}: {e}")),
        }
    }
    if let Some((snmp, credential)) = snmp {
        match ask_snmp(&host.address, snmp, credential, timeout, call).await {
            Ok(identity) => out.snmp = Some(identity),
            Err(ProbeError::Policy(denial)) => {
                refused.fetch_add(1, Ordering::Relaxed);
                out.errors.push(format!("snmp: {denial}"));
            }
            Err(e) => out.errors.push(format!("snmp: {e}")),
        }
    }
    out
}

fn web(port: u16, tls: bool, answer: Option<(u16, Option<String>)>) -> WebAnswer {
    WebAnswer {
        port,
        tls,
        status: answer.as_ref().map(|(s, _)| *s),
        server: answer.and_then(|(_, s)| s),
    }
}

/// A TCP connection to a checked address.
async fn connect(
    call: &Call<'_>,
    ip: IpAddr,
    port: u16,
    timeout: Duration,
    refused: &AtomicU64,
) -> Result<TcpStream, String> {
    let addr = SocketAddr::new(ip, port);
    if let Err(denial) = call
        .ctx
        .policy
        .check_addr(Protocol::Scan, &ip.to_string(), addr)
    {
        refused.fetch_add(1, Ordering::Relaxed);
        return Err(denial.to_string());
    }
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err(format!(
            "connect timed out after {} ms",
            timeout.as_millis()
        )),
    }
}

/// Sends `HEAD /` and reads the answer's head; `None` when it is not HTTP.
async fn ask_head<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    timeout: Duration,
) -> Result<Option<(u16, Option<String>)>, String> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let request = format!(
        "HEAD / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: openmid-discovery\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await?;
        let mut head = Vec::with_capacity(1024);
        let mut buf = [0u8; 2048];
        while head.len() < HEAD_BYTES && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n.min(HEAD_BYTES - head.len())]);
        }
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(head)) => Ok(parse_http_head(&head)),
        Ok(Err(e)) => Err(format!("HTTP: {e}")),
        Err(_) => Err(format!("no HTTP answer within {} ms", timeout.as_millis())),
    }
}

/// The subject's common names, then the DNS subject alternative names; nothing when
/// the certificate does not parse.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(shown)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                let dns = shown(dns);
                if !names.contains(&dns) {
                    names.push(dns);
                }
            }
        }
    }
    names.truncate(MAX_TLS_NAMES);
    names
}

/// The host's SNMP identity, asked by the SNMP probe with the job's credential.
async fn ask_snmp(
    address: &str,
    snmp: &IdentifySnmp,
    credential: &CredentialRef,
    timeout: Duration,
    call: &Call<'_>,
) -> Result<SnmpIdentity, ProbeError> {
    let req = SnmpRequest {
        host: address.to_string(),
        port: snmp.port,
        version: snmp.version,
        credential: credential.clone(),
        operation: SnmpOperation::Get {
            oids: vec![SYS_DESCR.into(), SYS_OBJECT_ID.into(), SYS_NAME.into()],
        },
        timeout_ms: Some(timeout.as_millis() as u64),
        retries: Some(1),
        max_varbinds: None,
        context_name: None,
        job_timeout_ms: None,
    };
    let inner = Call {
        credential: call.credential,
        job: call.job,
        deadline: call.deadline,
        ctx: call.ctx,
    };
    let response = crate::probes::snmp::run(req, inner).await?;
    let mut identity = SnmpIdentity {
        alias: snmp.alias.clone(),
        ..SnmpIdentity::default()
    };
    for vb in response.varbinds {
        let Some(text) = vb.value.as_str().map(shown) else {
            continue;
        };
        match vb.oid.as_str() {
            SYS_DESCR => identity.sys_descr = Some(text),
            SYS_OBJECT_ID => identity.sys_object_id = Some(text),
            SYS_NAME => identity.sys_name = Some(text),
            _ => {}
        }
    }
    if identity.sys_descr.is_none() && identity.sys_object_id.is_none() {
        return Err(ProbeError::Target(format!(
            "the agent at {address} has neither sysDescr.0 nor sysObjectID.0"
        )));
    }
    Ok(identity)
}

/// A TLS client that accepts any certificate and offers only HTTP/1.1: it reads a
/// certificate's names and one response head, and sends nothing secret.
fn tls_connector() -> Result<tokio_rustls::TlsConnector, ProbeError> {
    let mut config = openmid_proto::trust::client_config(
        &openmid_proto::trust::Trust::DangerAcceptAnyCertificate,
    )
    .map_err(|e| ProbeError::Target(format!("TLS client: {e}")))?
    .ok_or_else(|| ProbeError::Target("TLS client: no configuration".into()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_certificate_gives_its_common_name_then_its_dns_names() {
        let mut params =
            rcgen::CertificateParams::new(vec!["www.corp.test".into(), "corp.test".into()])
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "web01.corp.test");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(
            certificate_names(cert.der()),
            vec!["web01.corp.test", "www.corp.test", "corp.test"]
        );
    }

    /// An HTTP server on loopback answering every request with `server`, over TLS
    /// with a certificate for `names` when given; its port.
    async fn web_server(server: &'static str, names: Option<Vec<String>>) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let acceptor = names.map(|names| {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params = rcgen::CertificateParams::new(names).expect("params");
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "web.corp.test");
            let cert = params.self_signed(&key).expect("cert");
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server config");
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nServer: {server}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, answer: String) {
                        let mut buf = [0u8; 1024];
                        let _ = s.read(&mut buf).await;
                        let _ = s.write_all(answer.as_bytes()).await;
                        let _ = s.shutdown().await;
                    }
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(stream).await {
                                serve(tls, answer).await;
                            }
                        }
                        None => serve(stream, answer).await,
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn hosts_say_their_web_servers_and_tls_names_and_what_failed() {
        let http = web_server("nginx/1.22.1", None).await;
        let https = web_server(
            "Apache/2.4.57",
            Some(vec!["web.corp.test".into(), "www.corp.test".into()]),
        )
        .await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let config: crate::policy::PolicyConfig =
            toml::from_str("[scan]\nallow_cidrs = [\"127.0.0.0/8\"]\n").expect("policy");
        let ctx = crate::probes::ProbeContext::new(
            1 << 20,
            crate::config::LocalSecretPolicy::default(),
            Arc::new(crate::policy::EgressPolicy::new(config).expect("compiles")),
        )
        .expect("context");
        let job = crate::probes::JobContext::new(openmid_proto::mid::JobRef {
            output_id: "identify-1".into(),
            attempt: 1,
        });
        let payload = serde_json::json!({
            "hosts": [
                {"address": "127.0.0.1", "http_ports": [http, closed], "tls_ports": [https]},
                {"address": "198.18.0.99", "http_ports": [80]}
            ],
            "timeout_ms": 1000
        });
        let out = crate::probes::run(
            openmid_proto::ecc::Topic::Identify,
            payload.into(),
            None,
            &job,
            &ctx,
        )
        .await
        .expect("the job runs");
        let out: IdentifyResponse = out.decode().expect("response");
        let local = &out.hosts[0];
        assert_eq!(
            local.web,
            vec![
                WebAnswer {
                    port: http,
                    tls: false,
                    status: Some(200),
                    server: Some("nginx/1.22.1".into())
                },
                WebAnswer {
                    port: https,
                    tls: true,
                    status: Some(200),
                    server: Some("Apache/2.4.57".into())
                },
            ]
        );
        assert_eq!(local.tls_names, vec!["web.corp.test", "www.corp.test"]);
        assert!(
            local.errors.len() == 1 && local.errors[0].starts_with(&format!("{closed}: connect")),
            "{:?}",
            local.errors
        );
        let refused = &out.hosts[1];
        assert!(refused.web.is_empty());
        assert!(
            refused.errors[0].contains("policy.scan"),
            "the refusal names the rule: {:?}",
            refused.errors
        );
        assert_eq!(out.refused, 1);
    }

    proptest! {
        #[test]
        fn any_bytes_as_a_certificate_give_no_names_and_no_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048)
        ) {
            let names = certificate_names(&bytes);
            prop_assert!(names.len() <= MAX_TLS_NAMES);
        }
    }
}
