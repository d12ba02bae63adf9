//! The store's conformance suite on SQLite, each case on its own new database file.

use crate::conformance::Fresh;
use openmid_instance::ecc::SqliteStore;
use std::sync::Arc;

async fn fresh(_case: &str) -> Fresh {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("openmid.db"))
        .await
        .expect("open the store");
    Fresh {
        store: Some(Arc::new(store)),
        _keep: Box::new(dir),
    }
}

crate::every_conformance_case!(fresh);
