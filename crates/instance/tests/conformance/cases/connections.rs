//! Credentials' and aliases' cases.

use super::*;

fn credential(name: &str) -> CredentialRow {
    CredentialRow {
        id: format!("cred-{name}"),
        name: name.into(),
        description: None,
        kind: "basic".into(),
        shown: "{\"username\":\"svc\"}".into(),
        sealed: vec![1, 2, 3, 4],
        key_id: "k1".into(),
        created_at: NOW,
        updated_at: NOW,
    }
}

fn alias(name: &str, credential: Option<&str>) -> AliasRow {
    AliasRow {
        id: format!("alias-{name}"),
        name: name.into(),
        credential: credential.map(str::to_string),
        spec: "{\"base_url\":\"https://svc.internal\"}".into(),
        created_at: NOW,
        updated_at: NOW,
    }
}

pub async fn credentials_in_use_and_aliases_without_credentials(store: Arc<dyn Store>) {
    let first = store.put_credential(&credential("svc")).await.expect("put");
    let mut changed = credential("svc");
    changed.id = "another-id".into();
    changed.sealed = vec![9, 9];
    changed.created_at = NOW + 5;
    let replaced = store.put_credential(&changed).await.expect("replace");
    assert_eq!(
        (replaced.id.as_str(), replaced.created_at),
        (first.id.as_str(), NOW),
        "id and creation kept"
    );
    let read = store
        .get_credential(CredentialKey::Name("svc"))
        .await
        .expect("read")
        .expect("svc");
    assert_eq!(read.sealed, [9, 9]);
    assert!(
        store
            .get_credential(CredentialKey::Id(&first.id))
            .await
            .expect("read")
            .is_some()
    );
    assert!(matches!(
        store.put_alias(&alias("api", Some("nope"))).await,
        Err(StoreError::MissingCredential(n)) if n == "nope"
    ));
    store
        .put_alias(&alias("api", Some("svc")))
        .await
        .expect("alias");
    assert!(matches!(
        store.delete_credential("svc").await,
        Err(StoreError::InUse(_))
    ));
    assert_eq!(
        store
            .get_alias("api")
            .await
            .expect("read")
            .and_then(|a| a.credential),
        Some("svc".into())
    );
    assert!(store.delete_alias("api").await.expect("delete"));
    assert!(store.delete_credential("svc").await.expect("delete"));
    assert!(store.list_credentials().await.expect("list").is_empty());
    assert!(store.list_aliases().await.expect("list").is_empty());
}
