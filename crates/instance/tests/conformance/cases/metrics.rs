//! Metric collection's cases.

use super::*;

fn metric_batch(seq: u64, t0: i64, values: &[f64]) -> openmid_proto::metrics::SampleBatch {
    use openmid_proto::metrics::{NAME_LABEL, Sample, SeriesSamples};
    openmid_proto::metrics::SampleBatch {
        seq,
        series: vec![SeriesSamples {
            labels: std::collections::BTreeMap::from([
                (NAME_LABEL.to_string(), "up".to_string()),
                ("job".to_string(), "node".to_string()),
            ]),
            samples: values
                .iter()
                .enumerate()
                .map(|(i, v)| Sample {
                    t_ms: t0 + i as i64,
                    value: *v,
                })
                .collect(),
        }],
    }
}

pub async fn a_metric_batch_is_stored_once_and_sample_ids_are_never_reused(store: Arc<dyn Store>) {
    let first = metric_batch(1, 1000, &[1.0, f64::NAN]);
    assert!(!store.store_samples("m1", &first, 5).await.expect("store"));
    assert!(
        store.store_samples("m1", &first, 6).await.expect("again"),
        "a re-sent batch is known"
    );
    assert!(
        !store
            .store_samples("m2", &metric_batch(1, 1000, &[7.0]), 6)
            .await
            .expect("other MID")
    );
    let series = store.find_series(Some("up"), 10).await.expect("series");
    assert_eq!(series.len(), 2, "one series per MID and label set");
    let m1 = series.iter().find(|s| s.mid == "m1").expect("m1");
    let samples = store
        .read_samples(m1.id, 0, 10_000, 100)
        .await
        .expect("read");
    assert_eq!(samples.len(), 2, "stored once: {samples:?}");
    assert!(samples[1].1.is_nan(), "NaN comes back as NaN");
    let all = store.samples_after(0, 100).await.expect("all");
    let last = all.last().map(|s| s.id).expect("some");
    assert_eq!(store.purge_samples(i64::MAX, 100).await.expect("purge"), 3);
    assert!(
        !store
            .store_samples("m1", &metric_batch(2, 2000, &[3.0]), 7)
            .await
            .expect("after purge")
    );
    let next = store.samples_after(0, 100).await.expect("after");
    assert!(
        next[0].id > last,
        "ids go on after the table emptied: {} <= {last}",
        next[0].id
    );
}
