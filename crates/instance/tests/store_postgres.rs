//! The store's conformance suite on PostgreSQL: each case on a database of its own on
//! this machine's server (127.0.0.1:5432), dropped afterwards. Without a server the
//! case says so loudly and passes; CI has one.

use crate::conformance::Fresh;
use openmid_instance::ecc::{PgStore, Store};
use openmid_testkit::databases::Database;
use std::sync::Arc;

/// The suite needs a server: without one, a case is skipped (said loudly).
async fn fresh(case: &str) -> Fresh {
    let Some(db) = Database::create(&format!("store_{case}"), false) else {
        return Fresh::skipped();
    };
    let url = format!("postgres://postgres@127.0.0.1:5432/{}", db.name);
    let store = PgStore::open(&url)
        .await
        .expect("open the PostgreSQL store");
    Fresh {
        store: Some(Arc::new(store) as Arc<dyn Store>),
        _keep: Box::new(db),
    }
}

crate::every_conformance_case!(fresh);
