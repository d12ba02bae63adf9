//! A stand-in for the instance's output endpoint that records the pages a paged probe
//! (LDAP, scan) posts on its `rows` stream, optionally answering slowly (to hold the
//! probe in back-pressure). Included by path by the tests of each such probe.

use axum::extract::{Path, State};
use axum::routing::post;
use openmid_mid::config::MidConfig;
use openmid_mid::session::client::InstanceClient;
use openmid_proto::command_output::{ChunkContent, OutputAck, OutputPost, OutputStream};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A page of a probe's `rows` stream: its number must be its chunk's `seq`.
pub trait Numbered: DeserializeOwned + Clone + Send + 'static {
    /// The page's number.
    fn number(&self) -> u64;
}

impl Numbered for openmid_proto::ldap::LdapPage {
    fn number(&self) -> u64 {
        self.page
    }
}

impl Numbered for openmid_proto::discovery::ScanPage {
    fn number(&self) -> u64 {
        self.page
    }
}

/// What the stand-in saw.
pub struct Seen<P> {
    /// Every page, in order of arrival.
    pub pages: Vec<P>,
    /// The largest page line.
    pub largest: usize,
    /// Chunks whose `seq` did not follow the previous one's, or not in `rows`.
    pub out_of_order: u64,
    /// The pages of each output, in order of arrival.
    pub by_output: HashMap<String, Vec<P>>,
    next_seq: HashMap<String, u64>,
}

impl<P> Default for Seen<P> {
    fn default() -> Self {
        Self {
            pages: Vec::new(),
            largest: 0,
            out_of_order: 0,
            by_output: HashMap::new(),
            next_seq: HashMap::new(),
        }
    }
}

/// The instance's `POST /mid/v1/results/{output}/{attempt}/output`, and nothing else.
pub struct FakeInstance<P> {
    pub url: String,
    pub seen: Arc<Mutex<Seen<P>>>,
    task: tokio::task::JoinHandle<()>,
}

struct FakeState<P> {
    seen: Arc<Mutex<Seen<P>>>,
    delay: Duration,
}

impl<P> Clone for FakeState<P> {
    fn clone(&self) -> Self {
        Self {
            seen: self.seen.clone(),
            delay: self.delay,
        }
    }
}

impl<P: Numbered> FakeInstance<P> {
    /// Listens on loopback, answering each post after `delay`. A resumed attempt's
    /// pages start at `first_seq`.
    pub async fn start(delay: Duration) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = FakeState {
            seen: seen.clone(),
            delay,
        };
        let app = axum::Router::new()
            .route(
                "/mid/v1/results/{output}/{attempt}/output",
                post(receive::<P>),
            )
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}"),
            seen,
            task,
        }
    }

    /// A client of it, as the MID's session has.
    pub fn client(&self) -> InstanceClient {
        let text = format!(
            "name = \"probe-test\"\ninstance_url = \"{}\"\nstate_dir = \"/tmp/openmid-probe-test\"\n",
            self.url
        );
        let config: MidConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        InstanceClient::new(&config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The pages received, in order.
    pub fn pages(&self) -> Vec<P> {
        self.seen
            .lock()
            .map(|s| s.pages.clone())
            .unwrap_or_default()
    }

    /// The pages of one output, in order.
    #[allow(dead_code)] // each probe's test binary includes this file; not all use this
    pub fn pages_of(&self, output: &str) -> Vec<P> {
        self.seen
            .lock()
            .ok()
            .and_then(|s| s.by_output.get(output).cloned())
            .unwrap_or_default()
    }

    /// Chunks out of sequence, and the largest page line.
    pub fn disorder_and_largest(&self) -> (u64, usize) {
        self.seen
            .lock()
            .map(|s| (s.out_of_order, s.largest))
            .unwrap_or_default()
    }

    /// Makes the next chunk of `output` expected at `seq` (a resumed attempt's
    /// first).
    pub fn expect_seq(&self, output: &str, seq: u64) {
        if let Ok(mut s) = self.seen.lock() {
            s.next_seq.insert(output.to_string(), seq);
        }
    }
}

impl<P> Drop for FakeInstance<P> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive<P: Numbered>(
    State(state): State<FakeState<P>>,
    Path((output, _attempt)): Path<(String, u32)>,
    axum::Json(post): axum::Json<OutputPost>,
) -> axum::Json<OutputAck> {
    tokio::time::sleep(state.delay).await;
    let chunks = post.decode().unwrap_or_else(|e| panic!("{e}"));
    let mut seen = state.seen.lock().unwrap_or_else(|e| e.into_inner());
    for chunk in &chunks {
        let next = seen.next_seq.entry(output.clone()).or_insert(0);
        let in_order = chunk.seq == *next && chunk.stream == OutputStream::Rows;
        *next = chunk.seq + 1;
        if !in_order {
            seen.out_of_order += 1;
        }
        let ChunkContent::Data(data) = &chunk.content else {
            seen.out_of_order += 1;
            continue;
        };
        assert!(data.ends_with(b"\n"), "a page is one line");
        seen.largest = seen.largest.max(data.len());
        let page: P = serde_json::from_slice(data).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            page.number(),
            chunk.seq,
            "one page per chunk, numbered as the chunks"
        );
        seen.by_output
            .entry(output.clone())
            .or_default()
            .push(page.clone());
        seen.pages.push(page);
    }
    axum::Json(OutputAck {
        stored: chunks.len() as u64,
        duplicate: 0,
    })
}
