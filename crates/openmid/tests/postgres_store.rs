//! The instance on PostgreSQL (`database = "postgres://…"`), end to end: a REST call
//! through a MID recorded in PostgreSQL, the records and the admin token still there
//! after a restart, and nothing in the data directory's SQLite file. Several nodes on
//! one database: `scale_out.rs`.

use crate::support::{MID, get, run};
use openmid_instance::config::InstanceConfig;
use openmid_proto::ecc::State;
use openmid_proto::secret::Secret;
use openmid_testkit::databases::Database;
use openmid_testkit::{TargetService, TestInstance, loopback_any_port};

fn config(dir: &std::path::Path, url: &str) -> InstanceConfig {
    InstanceConfig {
        data_dir: dir.to_path_buf(),
        listen: loopback_any_port(),
        database: Some(Secret::new(url)),
        ..InstanceConfig::default()
    }
}

#[tokio::test]
async fn the_instance_runs_on_postgres_and_keeps_its_records_there() {
    let Some(db) = Database::create("instance_store", false) else {
        return;
    };
    let url = format!("postgres://postgres@127.0.0.1:5432/{}", db.name);
    let dir = tempfile::tempdir().expect("tempdir");
    let target = TargetService::start().await.expect("target");
    let instance = TestInstance::start_with(config(&dir.path().join("instance"), &url), None)
        .await
        .expect("instance on PostgreSQL");
    let mid = instance
        .start_mid(MID, &dir.path().join("mid"), true)
        .await
        .expect("MID enrolls and is validated");
    let result = run(&instance, &get(target.url("/hello"))).await;
    assert_eq!(result.state, State::Processed);
    assert_eq!(result.response.map(|r| r.status), Some(200));
    assert!(
        !dir.path().join("instance/openmid.db").exists(),
        "no SQLite file when the store is PostgreSQL"
    );
    // The rows are in PostgreSQL, where another tool sees them.
    let rows = db.query(&format!(
        "SELECT state FROM ecc WHERE id = '{}'",
        result.output_id
    ));
    assert_eq!(rows.trim(), "processed");

    let token = instance.token.clone();
    mid.shutdown().await.expect("MID stops");
    instance.shutdown().await;
    let again = TestInstance::start_with(config(&dir.path().join("instance"), &url), Some(token))
        .await
        .expect("restarts on the same database");
    let output = again
        .api
        .get_record(&result.output_id)
        .await
        .expect("the output is still there, and the old admin token works");
    assert_eq!(output.state, State::Processed);
    again.shutdown().await;
}
