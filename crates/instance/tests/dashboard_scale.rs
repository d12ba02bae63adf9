//! The dashboard's ECC queue over 100,000 records: the page holds one page of them
//! and links the next, because it reads by keyset on indexed columns. Prints how long
//! the pages took (no assertion on time: this machine's speed is not the product's).

use crate::dashboard::{Browserless, Page};
use crate::support::instance_with;
use openmid_instance::ecc::{Record, SqliteStore, Store};
use openmid_proto::ecc::{Priority, Queue, State, Topic};
use std::sync::Arc;
use std::time::Instant;

const RECORDS: usize = 100_000;

fn record(i: usize, now: i64) -> Record {
    Record {
        id: uuid::Uuid::now_v7().to_string(),
        queue: if i.is_multiple_of(2) {
            Queue::Output
        } else {
            Queue::Input
        },
        agent: format!("mid.server.scale-{}", i % 10),
        topic: Topic::ALL[i % Topic::ALL.len()],
        name: format!("record {i}"),
        source: "scale".into(),
        payload: format!("{{\"n\":{i}}}"),
        state: State::Processed,
        priority: Priority::Standard,
        response_to: None,
        correlator: None,
        attempt: 1,
        max_attempts: 3,
        at_most_once: false,
        error: None,
        claimed_by: Some(format!("scale-{}", i % 10)),
        lease_expires_at: None,
        created_at: now - (RECORDS - i) as i64,
        claimed_at: Some(now - (RECORDS - i) as i64),
        processed_at: Some(now),
        duration_ms: Some(3),
        assigned_to: None,
        selection: None,
        application: None,
        traceparent: None,
    }
}

/// Rows of the queue table in a page.
fn rows(body: &str) -> usize {
    body.matches("<tr class=\"record\">").count()
}

/// The "next" link of a page.
fn next(body: &str) -> Option<String> {
    let at = body.find("id=\"next-page\"")?;
    let start = body[..at].rfind("href=\"")? + 6;
    let end = body[start..].find('"')? + start;
    Some(body[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

/// A page, with how long it took printed.
async fn timed(web: &Browserless, cookie: &str, path: String) -> Page {
    let started = Instant::now();
    let page = web.get(&path, Some(cookie)).await;
    let took = started.elapsed();
    assert_eq!(page.status, 200, "{path}: {}", page.body);
    eprintln!("GET {path}: {took:?}");
    page
}

#[tokio::test]
async fn the_queue_page_over_100_000_records_is_one_page_with_a_next_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("openmid.db"))
            .await
            .expect("open the store"),
    );
    let now = openmid_proto::time::now_ms();
    let started = Instant::now();
    for batch in (0..RECORDS).collect::<Vec<_>>().chunks(1_000) {
        let writes = batch.iter().map(|&i| {
            let store = store.clone();
            async move { store.insert_output(&record(i, now)).await }
        });
        for written in futures::future::join_all(writes).await {
            written.expect("insert");
        }
    }
    eprintln!("inserted {RECORDS} records in {:?}", started.elapsed());
    store.close().await;
    drop(store);

    let data_dir = dir.path().to_path_buf();
    let (instance, _unused) = instance_with(move |c| c.data_dir = data_dir).await;
    let web = Browserless::new(&instance);
    let (cookie, _) = web.login().await;

    let first = timed(&web, &cookie, "/ui/ecc".into()).await;
    assert_eq!(rows(&first.body), 50, "one page of 50");
    let link = next(&first.body).expect("a next link");
    assert!(link.starts_with("/ui/ecc?before="), "{link}");
    let second = timed(&web, &cookie, link).await;
    assert_eq!(rows(&second.body), 50);
    assert_ne!(first.body, second.body, "the next page holds other records");

    // Filtered: by topic, by agent, by state and queue (each on an index).
    for filter in [
        "topic=SSHCommand",
        "agent=mid.server.scale-3",
        "state=processed&queue=input",
        "topic=RESTProbe&agent=mid.server.scale-0",
    ] {
        let page = timed(&web, &cookie, format!("/ui/ecc?{filter}")).await;
        assert_eq!(rows(&page.body), 50, "{filter}");
        let link = next(&page.body).expect("a next link");
        for part in filter.split('&') {
            assert!(link.contains(part), "{link} keeps {part}");
        }
        assert_eq!(
            rows(&timed(&web, &cookie, link).await.body),
            50,
            "{filter}, page 2"
        );
    }
    // The last page: no next link.
    let few = timed(&web, &cookie, "/ui/ecc?state=error".into()).await;
    assert_eq!(rows(&few.body), 0);
    assert!(next(&few.body).is_none());
    instance.shutdown().await;
}
