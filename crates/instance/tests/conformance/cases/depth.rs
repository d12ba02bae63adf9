//! Queue depth: waiting and running outputs counted by state and topic, finished
//! ones and inputs left out.

use super::*;
use openmid_instance::ecc::QueueDepth;

pub async fn queue_depth_counts_waiting_and_running_outputs_by_topic(store: Arc<dyn Store>) {
    assert!(
        store.queue_depth().await.expect("depth").is_empty(),
        "an empty queue has no depth rows"
    );
    for id in ["d1", "d2", "d3", "d4"] {
        store
            .insert_output(&output(id, "a", Priority::Standard))
            .await
            .expect("insert");
    }
    let mut command = output("d5", "a", Priority::Standard);
    command.topic = Topic::Command;
    store.insert_output(&command).await.expect("insert");
    // Claims take the oldest first: d1 and d2 run, d3 and d4 wait; d5 waits too.
    let claimed = claim(&store, "a", free(0, 0, 2), NOW).await;
    assert_eq!(claimed.len(), 2);
    // d1 finishes: it leaves the depth, and its input is not counted either.
    assert_eq!(
        record(&store, "a", result("d1", 1, None), NOW + 10).await,
        AckOutcome::Recorded
    );
    let depth = store.queue_depth().await.expect("depth");
    let row = |state, topic, count| QueueDepth {
        state,
        topic,
        count,
    };
    assert_eq!(
        depth,
        vec![
            row(State::Processing, Topic::RESTProbe, 1),
            row(State::Ready, Topic::Command, 1),
            row(State::Ready, Topic::RESTProbe, 2),
        ],
        "sorted by state then topic"
    );
}
