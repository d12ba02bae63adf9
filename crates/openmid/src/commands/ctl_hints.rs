//! What to do next when a `ctl` call fails: the error says what went wrong, the hint
//! line under it says which setting to look at. Read from the error's causes (the
//! client's status code, the socket error, the TLS alert), never from its text alone
//! where a type says it.

use openmid_client::ClientError;

/// The hint for `e`, if one applies.
pub fn hint(e: &anyhow::Error) -> Option<&'static str> {
    for cause in e.chain() {
        if let Some(ClientError::Api { status, .. }) = cause.downcast_ref::<ClientError>() {
            return match status {
                401 => Some(
                    "check OPENMID_TOKEN (or --token): the instance refused the admin token; `openmid instance --reset-admin-token` makes a new one",
                ),
                503 => Some("the instance is busy or shutting down: try again shortly"),
                _ => None,
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Some(REFUSED),
                std::io::ErrorKind::TimedOut => return Some(TIMED_OUT),
                _ => {}
            }
        }
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return Some(TLS);
        }
    }
    // Some causes reach us only as text (hyper-util wraps the socket and TLS errors
    // in its own opaque type).
    let text = e
        .chain()
        .map(|c| c.to_string().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" | ");
    if text.contains("connection refused") {
        Some(REFUSED)
    } else if text.contains("certificate")
        || text.contains("tls handshake")
        || text.contains("unknownissuer")
    {
        Some(TLS)
    } else if text.contains("timed out") || text.contains("deadline has elapsed") {
        Some(TIMED_OUT)
    } else if text.contains("dns error") || text.contains("failed to lookup address") {
        Some("the instance's host name does not resolve: check --instance / OPENMID_URL")
    } else {
        None
    }
}

const REFUSED: &str = "nothing answered there: is the instance running at that address, and is --instance / OPENMID_URL right?";
const TIMED_OUT: &str = "the instance did not answer in time: is it running, and does a firewall let this host reach it?";
const TLS: &str = "the instance's certificate is not trusted: set OPENMID_CA to its certificate file (printed at its first start) or OPENMID_FINGERPRINT to its SHA-256 fingerprint";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_token_points_at_openmid_token() {
        let e = anyhow::Error::from(ClientError::Api {
            status: 401,
            code: "unauthorized".into(),
            message: "the admin token is not valid".into(),
        });
        assert!(hint(&e).is_some_and(|h| h.contains("OPENMID_TOKEN")));
    }

    #[test]
    fn a_refused_connection_asks_whether_the_instance_runs() {
        let e = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            .context("request to https://127.0.0.1:1/api/v1/mids failed");
        assert!(hint(&e).is_some_and(|h| h.contains("is the instance running")));
    }

    #[test]
    fn an_untrusted_certificate_points_at_the_trust_variables() {
        let e = anyhow::Error::from(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert!(
            hint(&e).is_some_and(|h| h.contains("OPENMID_CA") && h.contains("OPENMID_FINGERPRINT"))
        );
    }

    #[test]
    fn other_errors_get_no_hint() {
        let e = anyhow::Error::from(ClientError::Api {
            status: 400,
            code: "invalid".into(),
            message: "bad".into(),
        });
        assert_eq!(hint(&e), None);
    }
}
