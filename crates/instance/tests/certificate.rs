//! The self-signed certificate names the hosts clients use: the configured host names
//! and the address the instance listens on, made again (self-signed only) when a name
//! is added later.

use openmid_instance::config::InstanceConfig;
use openmid_proto::trust::{Trust, client_config};
use openmid_testkit::TestInstance;
use std::net::SocketAddr;
use std::path::Path;

fn config(data: &Path, listen: SocketAddr, hostnames: &[&str]) -> InstanceConfig {
    InstanceConfig {
        data_dir: data.to_path_buf(),
        listen,
        hostnames: hostnames.iter().map(|h| h.to_string()).collect(),
        ..InstanceConfig::default()
    }
}

/// GET /healthz at `https://{host}:{port}` (resolved to the instance), trusting only
/// the instance's certificate as CA, so the name is checked.
async fn healthz_as(instance: &TestInstance, host: &str) -> Result<u16, reqwest::Error> {
    let ca = std::fs::read(&instance.running.cert_path).expect("cert");
    let tls = client_config(&Trust::CaPem(ca))
        .expect("tls")
        .expect("custom trust");
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .resolve(host, instance.running.addr)
        .build()
        .expect("client");
    let url = format!("https://{host}:{}/healthz", instance.running.addr.port());
    Ok(http.get(url).send().await?.status().as_u16())
}

#[tokio::test]
async fn an_instance_on_one_address_is_reachable_by_that_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_with(
        config(dir.path(), SocketAddr::from(([127, 0, 0, 2], 0)), &[]),
        None,
    )
    .await
    .expect("starts");
    assert!(instance.running.url.starts_with("https://127.0.0.2:"));
    // The admin client checks the certificate against the URL's address.
    instance
        .api
        .list_mids()
        .await
        .expect("the certificate is valid for 127.0.0.2");
    instance.shutdown().await;
}

#[tokio::test]
async fn a_self_signed_certificate_lacking_a_name_is_made_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let first = TestInstance::start_with(config(dir.path(), listen, &[]), None)
        .await
        .expect("starts");
    let token = first.token.clone();
    let old = first.running.fingerprint.clone();
    assert!(healthz_as(&first, "openmid.test").await.is_err());
    first.shutdown().await;

    let second = TestInstance::start_with(
        config(dir.path(), listen, &["openmid.test"]),
        Some(token.clone()),
    )
    .await
    .expect("starts with a new name");
    assert_ne!(second.running.fingerprint, old, "a new certificate");
    assert_eq!(healthz_as(&second, "openmid.test").await.ok(), Some(200));
    let kept = second.running.fingerprint.clone();
    second.shutdown().await;

    // Nothing missing: the certificate stays (MIDs pinned to it keep working).
    let third =
        TestInstance::start_with(config(dir.path(), listen, &["OPENMID.test"]), Some(token))
            .await
            .expect("starts again");
    assert_eq!(third.running.fingerprint, kept);
    third.shutdown().await;
}

#[tokio::test]
async fn an_operator_certificate_is_never_replaced() {
    let made = tempfile::tempdir().expect("tempdir");
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let maker = TestInstance::start_with(config(made.path(), listen, &[]), None)
        .await
        .expect("starts");
    let fingerprint = maker.running.fingerprint.clone();
    maker.shutdown().await;
    let own = tempfile::tempdir().expect("tempdir");
    let cert = own.path().join("own.crt");
    let key = own.path().join("own.key");
    std::fs::copy(made.path().join("tls/instance.crt"), &cert).expect("copy");
    std::fs::copy(made.path().join("tls/instance.key"), &key).expect("copy");
    let before = std::fs::read(&cert).expect("read");

    let data = tempfile::tempdir().expect("tempdir");
    let instance = TestInstance::start_with(
        InstanceConfig {
            tls_cert: Some(cert.clone()),
            tls_key: Some(key),
            ..config(data.path(), listen, &["not-in-it.test"])
        },
        None,
    )
    .await
    .expect("starts with the operator's certificate");
    assert_eq!(instance.running.fingerprint, fingerprint);
    assert_eq!(std::fs::read(&cert).expect("read"), before);
    instance.shutdown().await;
}
