//! The instance's files are its own user's only: the database (with its WAL and
//! shared-memory files), the blobs and their directory, the master key and the TLS
//! key — whatever the umask says.

use crate::support::Raw;
use openmid_instance::config::InstanceConfig;
use openmid_testkit::{TestInstance, loopback_any_port};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn a_fresh_data_dir_is_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let instance = TestInstance::start_with(
        InstanceConfig {
            data_dir: data.clone(),
            listen: loopback_any_port(),
            ..InstanceConfig::default()
        },
        None,
    )
    .await
    .expect("starts");
    let raw = Raw::new(&instance);
    let blob = raw
        .send(
            "POST",
            "/api/v1/blobs",
            Some(""),
            Some("application/octet-stream"),
            vec![7u8; 1000],
        )
        .await;
    assert_eq!(blob.status, 201, "{:?}", blob.body);
    let id = blob.body["id"].as_str().unwrap_or_default().to_string();

    for d in [data.clone(), data.join("blobs"), data.join("tls")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in [
        data.join("openmid.db"),
        data.join("openmid.db-wal"),
        data.join("openmid.db-shm"),
        data.join("master.key"),
        data.join("tls/instance.key"),
        data.join(format!("blobs/{id}.blob")),
        data.join(format!("blobs/{id}.json")),
    ] {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    instance.shutdown().await;
}

#[tokio::test]
async fn files_of_an_older_instance_are_made_private_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let instance = TestInstance::start_with(
        InstanceConfig {
            data_dir: data.clone(),
            listen: loopback_any_port(),
            ..InstanceConfig::default()
        },
        None,
    )
    .await
    .expect("starts");
    let token = instance.token.clone();
    instance.shutdown().await;
    let db = data.join("openmid.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let again = TestInstance::start_with(
        InstanceConfig {
            data_dir: data.clone(),
            listen: loopback_any_port(),
            ..InstanceConfig::default()
        },
        Some(token),
    )
    .await
    .expect("starts again");
    assert_eq!(mode(&db), 0o600);
    again.shutdown().await;
}
