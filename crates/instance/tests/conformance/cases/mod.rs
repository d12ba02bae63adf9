//! The cases of the store's conformance suite, by concern: each gets a fresh, empty
//! store. The builders every concern's cases share are here.

use openmid_instance::ecc::{
    AliasRow, Cancelled, ChunksStored, Claim, CredentialKey, CredentialRow, DeviceRow,
    DiscoveryRunRow, DiscoveryScheduleRow, EnrollError, EnrollmentTokenRow, IdempotencyKey, MidKey,
    MidRow, Record, SessionChange, Store, StoreError,
};
use openmid_proto::api::{ClusterKind, MidHealth};
use openmid_proto::command_output::{ChunkContent, DecodedChunk, OutputStream};
use openmid_proto::ecc::{Priority, Queue, State, Topic};
use openmid_proto::mid::{AckOutcome, Capacity, JobRef, MidProfile, MidStatus, WorkResult};
use std::sync::Arc;

mod audit;
mod connections;
mod coordination;
mod depth;
mod discovery;
mod metrics;
mod queue;
mod registry;
mod sessions;

pub use audit::*;
pub use connections::*;
pub use coordination::*;
pub use depth::*;
pub use discovery::*;
pub use metrics::*;
pub use queue::*;
pub use registry::*;
pub use sessions::*;

const NOW: i64 = 1_700_000_000_000;

fn output(id: &str, to: &str, priority: Priority) -> Record {
    Record {
        id: id.into(),
        queue: Queue::Output,
        agent: format!("mid.server.{to}"),
        topic: Topic::RESTProbe,
        name: format!("job {id}"),
        source: "conformance".into(),
        payload: "{\"n\":1}".into(),
        state: State::Ready,
        priority,
        response_to: None,
        correlator: Some(format!("corr-{id}")),
        attempt: 0,
        max_attempts: 2,
        at_most_once: false,
        error: None,
        claimed_by: None,
        lease_expires_at: None,
        created_at: NOW,
        claimed_at: None,
        processed_at: None,
        duration_ms: None,
        assigned_to: Some(to.into()),
        selection: Some("named".into()),
        application: None,
        // Stored and read back whole by every backend.
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    }
}

fn free(interactive: u32, expedited: u32, standard: u32) -> Capacity {
    Capacity {
        interactive,
        expedited,
        standard,
    }
}

async fn claim(store: &Arc<dyn Store>, mid: &str, capacity: Capacity, now: i64) -> Vec<Record> {
    store
        .claim_ready_outputs(&Claim {
            mid_name: mid,
            capacity,
            now,
            lease_until: now + 30_000,
        })
        .await
        .expect("claim")
}

fn result(id: &str, attempt: u32, error: Option<&str>) -> WorkResult {
    WorkResult {
        output_id: id.into(),
        attempt,
        payload: serde_json::json!({"status": 200, "attempt": attempt}).into(),
        error: error.map(str::to_string),
        started_at_ms: NOW,
        duration_ms: 5,
    }
}

async fn record(store: &Arc<dyn Store>, mid: &str, r: WorkResult, now: i64) -> AckOutcome {
    let mut out = store
        .record_results(mid, &[r], Default::default(), now)
        .await
        .expect("record results");
    assert_eq!(out.len(), 1, "one outcome per result");
    out.remove(0).outcome
}

async fn state(store: &Arc<dyn Store>, id: &str) -> Record {
    store
        .get_record(id)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{id} exists"))
}
