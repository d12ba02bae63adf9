//! How a client (MID or `openmid ctl`) decides to trust the instance's TLS certificate:
//! the system roots, a CA certificate, or a pinned SHA-256 fingerprint of the
//! instance's own certificate (what a self-signed instance prints at first start).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// How to verify the instance.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The operating system's root certificates.
    SystemRoots,
    /// Certificates (PEM) that are trusted as roots; the host name is checked.
    CaPem(Vec<u8>),
    /// The SHA-256 digest of the instance's certificate (DER). Host names are not
    /// checked: the pin names the one certificate accepted.
    Fingerprint([u8; 32]),
    /// Accept any certificate. Anyone on the path can read and change the traffic.
    DangerAcceptAnyCertificate,
}

/// Errors building a TLS client configuration.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The CA file held no usable certificate.
    #[error("no certificate found in the CA PEM data")]
    NoCertificate,
    /// A certificate could not be added to the root store.
    #[error("bad CA certificate: {0}")]
    BadCertificate(String),
    /// The fingerprint is not 32 bytes of hex.
    #[error(
        "bad fingerprint `{0}`: expected 64 hex digits (colons and a `sha256:` prefix allowed)"
    )]
    BadFingerprint(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Parses a SHA-256 fingerprint such as `sha256:AB:CD:…` or plain hex.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], TrustError> {
    let trimmed = s.trim();
    let body = trimmed
        .strip_prefix("sha256:")
        .or_else(|| trimmed.strip_prefix("SHA256:"))
        .unwrap_or(trimmed);
    let hex_digits: String = body.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&hex_digits).map_err(|_| TrustError::BadFingerprint(s.to_string()))?;
    bytes
        .try_into()
        .map_err(|_| TrustError::BadFingerprint(s.to_string()))
}

/// Formats a SHA-256 digest as `AB:CD:…`, the way certificate tools print it.
pub fn format_fingerprint(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// SHA-256 fingerprint of a DER certificate.
pub fn fingerprint_of(der: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Builds a rustls client configuration for `trust`, offering HTTP/2 and HTTP/1.1.
/// Returns `None` for [`Trust::SystemRoots`]: the HTTP client's own default applies.
pub fn client_config(trust: &Trust) -> Result<Option<rustls::ClientConfig>, TrustError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = match trust {
        Trust::SystemRoots => return Ok(None),
        Trust::CaPem(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TrustError::BadCertificate(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| TrustError::BadCertificate(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(TrustError::NoCertificate);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Fingerprint(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
                pin: *pin,
                provider,
            }))
            .with_no_client_auth(),
        Trust::DangerAcceptAnyCertificate => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(config))
}

/// Accepts exactly the certificate whose SHA-256 matches the pin, and still checks that
/// the peer holds its private key (handshake signatures are verified).
#[derive(Debug)]
struct PinnedCertificate {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint_of(end_entity.as_ref());
        if aws_lc_rs::constant_time::verify_slices_are_equal(&got, &self.pin).is_ok() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "instance certificate fingerprint {} does not match the pinned {}",
                format_fingerprint(&got),
                format_fingerprint(&self.pin)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Accepts every certificate; only ever built when a config says so in plain words.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fingerprint_formats() {
        let digest = [0xABu8; 32];
        let printed = format_fingerprint(&digest);
        assert_eq!(parse_fingerprint(&printed).ok(), Some(digest));
        assert_eq!(
            parse_fingerprint(&format!("sha256:{printed}")).ok(),
            Some(digest)
        );
        assert_eq!(parse_fingerprint(&"ab".repeat(32)).ok(), Some(digest));
        assert!(parse_fingerprint("ab:cd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn empty_ca_is_refused() {
        assert!(matches!(
            client_config(&Trust::CaPem(b"not a pem".to_vec())),
            Err(TrustError::NoCertificate)
        ));
    }

    proptest! {
        #[test]
        fn fingerprint_parser_never_panics(s in ".{0,120}") {
            let _ = parse_fingerprint(&s);
        }
    }
}
