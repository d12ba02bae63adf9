//! The instance's TLS identity: a certificate given by the operator, or a self-signed
//! one made at first start and kept in the data directory.

use openmid_proto::trust::{fingerprint_of, format_fingerprint};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors loading or making the certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The PEM data held no usable certificate or key.
    #[error("{path}: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Making the self-signed certificate failed.
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate and key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate the instance serves.
pub struct TlsIdentity {
    /// rustls server configuration (HTTP/2 and HTTP/1.1).
    pub server_config: Arc<rustls::ServerConfig>,
    /// PEM file of the certificate (what clients give as their CA file).
    pub cert_path: PathBuf,
    /// SHA-256 fingerprint of the leaf certificate, `AB:CD:…`.
    pub fingerprint: String,
    /// Whether it was made just now.
    pub generated: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the operator's certificate and key, or the self-signed pair in `data_dir/tls`,
/// making that pair first if it does not exist. `hostnames` (the configured names and
/// the listen address when it is not a wildcard) go into a new certificate's subject
/// alternative names, with `localhost`, 127.0.0.1, ::1 and the machine's name.
///
/// A self-signed certificate that lacks one of `hostnames` (the config gained a name,
/// or the instance listens on another address) is made again, with a log line: a
/// client checking the name would otherwise refuse the instance. An operator's
/// certificate is never replaced; a missing name is only logged.
pub fn load_or_create(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    hostnames: &[String],
) -> Result<TlsIdentity, TlsError> {
    let (cert_path, key_path, generated) = match (cert, key) {
        (Some(c), Some(k)) => {
            let missing = missing_names(&std::fs::read(c).map_err(io(c))?, hostnames);
            if !missing.is_empty() {
                tracing::warn!(
                    cert = %c.display(),
                    missing = %missing.join(", "),
                    "the configured TLS certificate does not name these hosts: clients using them will refuse it"
                );
            }
            (c.to_path_buf(), k.to_path_buf(), false)
        }
        _ => {
            let dir = data_dir.join("tls");
            let cert_path = dir.join("instance.crt");
            let key_path = dir.join("instance.key");
            let mut generated = !cert_path.exists();
            if !generated {
                let pem = std::fs::read(&cert_path).map_err(io(&cert_path))?;
                let missing = missing_names(&pem, hostnames);
                if !missing.is_empty() {
                    tracing::warn!(
                        cert = %cert_path.display(),
                        missing = %missing.join(", "),
                        "the self-signed certificate does not name these hosts: making a new one (its fingerprint changes; MIDs and clients pinned to the old one need the new fingerprint or certificate)"
                    );
                    generated = true;
                }
            }
            if generated {
                generate(&dir, &cert_path, &key_path, hostnames)?;
            }
            (cert_path, key_path, generated)
        }
    };
    let cert_pem = std::fs::read(&cert_path).map_err(io(&cert_path))?;
    let key_pem = std::fs::read(&key_path).map_err(io(&key_path))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert_path.clone(),
            detail: e.to_string(),
        })?;
    let leaf = chain.first().ok_or_else(|| TlsError::Pem {
        path: cert_path.clone(),
        detail: "no certificate in file".into(),
    })?;
    let fingerprint = format_fingerprint(&fingerprint_of(leaf.as_ref()));
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: key_path.clone(),
        detail: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsIdentity {
        server_config: Arc::new(config),
        cert_path,
        fingerprint,
        generated,
    })
}

/// The entries of `wanted` that the first certificate in `pem` does not name (as a
/// DNS name, case-insensitively, or an IP address). An unreadable certificate names
/// nothing, so everything is missing.
fn missing_names(pem: &[u8], wanted: &[String]) -> Vec<String> {
    let sans = CertificateDer::pem_slice_iter(pem)
        .next()
        .and_then(Result::ok)
        .map(|der| subject_alt_names(der.as_ref()))
        .unwrap_or_default();
    wanted
        .iter()
        .filter(|name| {
            let ip = name.parse::<std::net::IpAddr>().ok();
            !sans.iter().any(|san| match (san, ip) {
                (SanName::Ip(a), Some(b)) => *a == b,
                (SanName::Dns(d), None) => d.eq_ignore_ascii_case(name),
                _ => false,
            })
        })
        .cloned()
        .collect()
}

enum SanName {
    Dns(String),
    Ip(std::net::IpAddr),
}

fn subject_alt_names(der: &[u8]) -> Vec<SanName> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(d) => Some(SanName::Dns((*d).to_string())),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| SanName::Ip(std::net::IpAddr::from(b))),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| SanName::Ip(std::net::IpAddr::from(b))),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn generate(
    dir: &Path,
    cert_path: &Path,
    key_path: &Path,
    hostnames: &[String],
) -> Result<(), TlsError> {
    crate::private_fs::create_dir_all(dir).map_err(io(dir))?;
    crate::private_fs::restrict(dir, crate::private_fs::DIR_MODE).map_err(io(dir))?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    // The machine's own name, so MIDs that trust the certificate as a CA can use it.
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    names.extend(hostnames.iter().cloned());
    names.sort();
    names.dedup();
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "openmid instance");
    // A self-signed leaf that clients pin or trust as its own CA.
    params.is_ca = rcgen::IsCa::NoCa;
    let cert = params.self_signed(&key)?;
    write_private(key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, cert.pem()).map_err(io(cert_path))?;
    Ok(())
}

/// Writes a file readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}
