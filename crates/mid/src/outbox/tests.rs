use super::*;
use proptest::prelude::*;

fn result(id: &str, attempt: u32) -> WorkResult {
    WorkResult {
        output_id: id.to_string(),
        attempt,
        payload: serde_json::json!({"status": 200}).into(),
        error: None,
        started_at_ms: 1,
        duration_ms: 2,
    }
}

fn job(id: &str) -> JobRef {
    JobRef {
        output_id: id.into(),
        attempt: 1,
    }
}

fn ids(outbox: &Outbox) -> Vec<String> {
    outbox
        .pending(usize::MAX, u64::MAX)
        .iter()
        .map(|r| r.output_id.clone())
        .collect()
}

/// Names of the files in `log/`, sorted.
fn log_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("log"))
        .expect("log dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn segments(dir: &Path) -> Vec<String> {
    log_files(dir)
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect()
}

fn segment(dir: &Path, seq: u64) -> PathBuf {
    replay::segment_path(&dir.join("log"), seq)
}

/// Bytes of the frame that stores `r`.
fn frame_len(r: &WorkResult) -> u64 {
    result_frame(r).expect("frame").0.len() as u64
}

#[tokio::test]
async fn results_survive_reopen_until_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
    outbox.put(result("a", 1)).await.expect("put");
    outbox
        .put(result("../../etc/passwd", 1))
        .await
        .expect("put");
    drop(outbox);
    std::fs::write(dir.path().join("junk.json"), b"{not json").expect("write");

    let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(outbox.len(), 2);
    assert!(dir.path().join("junk.corrupt").exists());
    outbox.remove(vec![job("a")]).await;
    drop(outbox);
    let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(ids(&outbox), vec!["../../etc/passwd".to_string()]);
}

#[tokio::test]
async fn batches_are_capped_by_bytes_but_never_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
    for id in ["a", "b", "c"] {
        outbox.put(result(id, 1)).await.expect("put");
    }
    assert_eq!(outbox.pending(10, u64::MAX).len(), 3);
    assert_eq!(outbox.pending(2, u64::MAX).len(), 2);
    assert_eq!(
        outbox.pending(10, 1).len(),
        1,
        "one result even when it alone is over"
    );
}

#[tokio::test]
async fn body_files_leave_with_their_result_and_strays_are_cleared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
    let job = job("a");
    std::fs::write(body_path(dir.path(), &job), b"hello").expect("body");
    let mut big = result("a", 1);
    big.payload =
        serde_json::json!({"status": 200, BODY_FILE_KEY: {"size": 5, "sha256": "x"}}).into();
    outbox.put(big).await.expect("put");
    assert_eq!(outbox.held(), vec![job.clone()]);
    let stray = body_path(dir.path(), &self::job("acknowledged"));
    std::fs::write(&stray, b"old").expect("stray");
    let partial = dir.path().join("bodies").join("x.1.part");
    std::fs::write(&partial, b"cut short").expect("partial");
    drop(outbox);

    let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
    assert!(
        body_path(dir.path(), &job).exists(),
        "a pending body survives"
    );
    assert!(!stray.exists() && !partial.exists(), "strays are cleared");
    assert!(outbox.bytes() > 5, "the body counts against the limit");
    outbox.remove(vec![job.clone()]).await;
    assert!(!body_path(dir.path(), &job).exists());
    assert_eq!(outbox.bytes(), 0);
}

#[tokio::test]
async fn limit_applies_back_pressure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 100).expect("open");
    assert!(!outbox.over_limit());
    outbox.put(result("a", 1)).await.expect("put");
    outbox.put(result("b", 1)).await.expect("put");
    assert!(outbox.over_limit());
    outbox.remove(vec![job("a"), job("b")]).await;
    assert!(!outbox.over_limit());
}

#[tokio::test]
async fn replay_returns_unacknowledged_results_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
    for id in ["a", "b", "c", "d"] {
        outbox.put(result(id, 1)).await.expect("put");
    }
    outbox.make_durable().await.expect("durable");
    outbox.remove(vec![job("b"), job("d")]).await;
    let mut replaced = result("c", 1);
    replaced.error = Some("replaced".into());
    outbox.put(replaced).await.expect("put");
    let bytes = outbox.bytes();
    drop(outbox);

    let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(ids(&outbox), vec!["a", "c"]);
    let c = &outbox.pending(10, u64::MAX)[1];
    assert_eq!(
        c.error.as_deref(),
        Some("replaced"),
        "the latest frame wins"
    );
    assert_eq!(outbox.bytes(), bytes, "the same bytes are counted");
    assert_eq!(pending_on_disk(dir.path()).expect("count"), 2);
}

#[tokio::test]
async fn acknowledged_results_never_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..4u32 {
        let outbox = Outbox::open_with(dir.path(), 1 << 20, 600).expect("open");
        let acked: Vec<JobRef> = outbox
            .pending(usize::MAX, u64::MAX)
            .iter()
            .map(|r| JobRef {
                output_id: r.output_id.clone(),
                attempt: r.attempt,
            })
            .collect();
        assert_eq!(acked.len(), if round == 0 { 0 } else { 10 });
        assert!(
            acked.iter().all(|j| j.attempt == round),
            "only the last round's results are left"
        );
        outbox.remove(acked).await;
        for i in 0..10 {
            outbox
                .put(result(&format!("r{i}"), round + 1))
                .await
                .expect("put");
        }
    }
}

#[tokio::test]
async fn a_torn_tail_loses_only_the_torn_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
    outbox.put(result("a", 1)).await.expect("put");
    outbox.put(result("b", 1)).await.expect("put");
    drop(outbox);
    let path = segment(dir.path(), 1);
    let len = std::fs::metadata(&path).expect("meta").len();
    truncate(&path, len - 3).expect("cut");

    let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(ids(&outbox), vec!["a"]);
    assert_eq!(
        std::fs::metadata(&path).expect("meta").len(),
        len - frame_len(&result("b", 1)),
        "cut back to the last whole frame"
    );
    assert!(
        !log_files(dir.path()).iter().any(|n| n.contains("corrupt")),
        "a torn append is not damage"
    );
    outbox.put(result("c", 1)).await.expect("put after reopen");
    drop(outbox);

    let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(ids(&outbox), vec!["a", "c"]);
}

#[tokio::test]
async fn a_flipped_byte_at_the_end_is_caught_and_kept_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
    outbox.put(result("a", 1)).await.expect("put");
    outbox.put(result("b", 1)).await.expect("put");
    drop(outbox);
    let path = segment(dir.path(), 1);
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 4; // inside b's JSON
    bytes[last] ^= 0x20;
    std::fs::write(&path, &bytes).expect("write");

    let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(ids(&outbox), vec!["a"]);
    let b_at = bytes.len() as u64 - frame_len(&result("b", 1));
    let aside = dir
        .path()
        .join("log")
        .join(format!("0000000000000001.seg.{b_at}.corrupt"));
    assert_eq!(
        std::fs::read(&aside).expect("the damaged frame is kept"),
        &bytes[b_at as usize..]
    );
    outbox.put(result("c", 1)).await.expect("put");
    drop(outbox);
    let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(ids(&outbox), vec!["a", "c"]);
}

#[tokio::test]
async fn damage_in_an_older_segment_sets_it_aside_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open_with(dir.path(), 1 << 20, 1).expect("open");
    // A segment of 1 byte rolls over before every append: one frame per segment.
    for id in ["a", "b", "c"] {
        outbox.put(result(id, 1)).await.expect("put");
    }
    drop(outbox);
    // Segment 1 is the empty first one; "a" went to 2, "b" to 3, "c" to 4.
    assert_eq!(segments(dir.path()).len(), 4);
    let path = segment(dir.path(), 3);
    let mut bytes = std::fs::read(&path).expect("read");
    let middle = bytes.len() - 10;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");

    let outbox = Outbox::open_with(dir.path(), 1 << 20, 1 << 20).expect("reopen");
    assert_eq!(
        ids(&outbox),
        vec!["a", "c"],
        "only the damaged frame is lost"
    );
    let files = log_files(dir.path());
    assert!(
        files.contains(&"0000000000000003.seg.corrupt".to_string()),
        "the damaged segment is kept aside: {files:?}"
    );
    assert_eq!(
        segments(dir.path()),
        vec!["0000000000000005.seg"],
        "live results were rewritten; the older segments went"
    );
    drop(outbox);
    let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(ids(&outbox), vec!["a", "c"]);
    assert_eq!(segments(dir.path()).len(), 2);
}

#[tokio::test]
async fn segments_roll_over_and_fully_acknowledged_ones_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open_with(dir.path(), 1 << 20, 400).expect("open");
    let all: Vec<String> = (0..12).map(|i| format!("r{i:02}")).collect();
    for id in &all {
        outbox.put(result(id, 1)).await.expect("put");
    }
    outbox.make_durable().await.expect("durable");
    let rolled = segments(dir.path());
    assert!(rolled.len() >= 3, "several segments: {rolled:?}");

    // Acknowledging the newest results frees nothing: older segments hold live ones,
    // and a segment only goes with every older one.
    outbox
        .remove(all[6..].iter().map(|id| job(id)).collect())
        .await;
    assert_eq!(segments(dir.path())[0], rolled[0]);

    outbox
        .remove(all[..6].iter().map(|id| job(id)).collect())
        .await;
    let left = segments(dir.path());
    assert_eq!(left.len(), 1, "only the current segment is left: {left:?}");
    assert!(left[0] >= *rolled.last().expect("current"));
    drop(outbox);
    let outbox = Outbox::open_with(dir.path(), 1 << 20, 400).expect("reopen");
    assert!(outbox.is_empty());
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "the empty old current went too"
    );
}

#[tokio::test]
async fn compaction_moves_a_straggler_so_its_segment_can_go() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Segments of 2,000 bytes hold about 18 results; an eighth of one, one result.
    let outbox = Outbox::open_with(dir.path(), 1 << 20, 2000).expect("open");
    outbox.put(result("straggler", 1)).await.expect("put");
    let fillers: Vec<String> = (0..60).map(|i| format!("f{i:02}")).collect();
    for id in &fillers {
        outbox.put(result(id, 1)).await.expect("put");
    }
    let before = segments(dir.path());
    assert!(before.len() >= 3, "{before:?}");
    outbox
        .remove(fillers.iter().map(|id| job(id)).collect())
        .await;
    let after = segments(dir.path());
    assert!(
        !after.contains(&before[0]),
        "the straggler's segment went: {after:?}"
    );
    assert_eq!(after.len(), 1, "and every empty one behind it: {after:?}");
    drop(outbox);
    let outbox = Outbox::open_with(dir.path(), 1 << 20, 2000).expect("reopen");
    assert_eq!(ids(&outbox), vec!["straggler"]);
}

#[tokio::test]
async fn a_replaced_result_keeps_its_old_segment_until_the_replacement_is_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open_with(dir.path(), 1 << 20, 1).expect("open");
    outbox.put(result("a", 1)).await.expect("put");
    outbox.make_durable().await.expect("durable");
    let mut uploaded = result("a", 1);
    uploaded.payload = serde_json::json!({"body_blob": {"id": "x"}}).into();
    outbox.put(uploaded.clone()).await.expect("put"); // lands in a newer segment
    outbox.remove(vec![job("other")]).await; // a chance to collect garbage
    assert!(
        segment(dir.path(), 2).exists(),
        "the only durable copy of `a` stays until its replacement is durable"
    );
    outbox.make_durable().await.expect("durable");
    assert!(!segment(dir.path(), 2).exists());
    drop(outbox);
    let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(*outbox.pending(1, u64::MAX)[0], uploaded);
}

#[tokio::test]
async fn results_of_the_old_layout_are_moved_into_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old_name = |id: &str| format!("{}.1.json", hex::encode(id.as_bytes()));
    for id in ["a", "b"] {
        let bytes = serde_json::to_vec(&result(id, 1)).expect("json");
        std::fs::write(dir.path().join(old_name(id)), bytes).expect("write");
    }
    let unfinished = dir.path().join(format!("{}.1.tmp", hex::encode(b"c")));
    std::fs::write(&unfinished, b"{\"output_id\":").expect("write");
    assert_eq!(pending_on_disk(dir.path()).expect("count"), 2);

    let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
    assert_eq!(ids(&outbox), vec!["a", "b"]);
    for id in ["a", "b"] {
        assert!(!dir.path().join(old_name(id)).exists(), "migrated files go");
    }
    assert!(!unfinished.exists(), "an unfinished old write goes");
    outbox.remove(vec![job("a")]).await;
    drop(outbox);

    let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
    assert_eq!(ids(&outbox), vec!["b"], "now read from the log");
    assert_eq!(pending_on_disk(dir.path()).expect("count"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_share_one_sync_and_all_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Arc::new(Outbox::open_with(dir.path(), 1 << 30, 16 * 1024).expect("open"));
    let puts: Vec<_> = (0..200)
        .map(|i| {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.put(result(&format!("job-{i:03}"), 1)).await })
        })
        .collect();
    for put in puts {
        put.await.expect("task").expect("put");
    }
    let syncs: Vec<_> = (0..8)
        .map(|_| {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.make_durable().await })
        })
        .collect();
    for sync in syncs {
        sync.await.expect("task").expect("durable");
    }
    assert_eq!(outbox.syncs(), 1, "eight callers, one group commit");
    outbox.make_durable().await.expect("durable");
    assert_eq!(outbox.syncs(), 1, "nothing new: no sync");

    // Puts and syncs interleaved, as the executor and the sender do.
    let both: Vec<_> = (200..400)
        .map(|i| {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                outbox.put(result(&format!("job-{i:03}"), 1)).await?;
                outbox.make_durable().await
            })
        })
        .collect();
    for task in both {
        task.await.expect("task").expect("put and sync");
    }
    assert!(outbox.syncs() <= 201);
    drop(outbox);

    let outbox = Outbox::open(dir.path(), 1 << 30).expect("reopen");
    assert_eq!(outbox.len(), 400);
    assert_eq!(pending_on_disk(dir.path()).expect("count"), 400);
}

#[tokio::test]
async fn large_results_are_appended_off_the_runtime_and_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), 1 << 30).expect("open");
    let mut big = result("big", 1);
    big.payload = serde_json::json!({"body": "x".repeat(INLINE_APPEND_BYTES * 2)}).into();
    outbox.put(big.clone()).await.expect("put");
    outbox.put(result("small", 1)).await.expect("put");
    drop(outbox);
    let outbox = Outbox::open(dir.path(), 1 << 30).expect("reopen");
    assert_eq!(*outbox.pending(1, u64::MAX)[0], big);
    assert_eq!(outbox.len(), 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn any_old_layout_file_content_is_survived(content in proptest::collection::vec(any::<u8>(), 0..200)) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("x.json"), &content).expect("write");
        let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
        prop_assert!(outbox.len() <= 1);
    }

    #[test]
    fn any_segment_content_is_survived(
        content in proptest::collection::vec(any::<u8>(), 0..300),
        with_header in any::<bool>(),
        older in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        std::fs::create_dir_all(&log).expect("log dir");
        let mut bytes = if with_header { SEGMENT_MAGIC.to_vec() } else { Vec::new() };
        bytes.extend(&content);
        std::fs::write(replay::segment_path(&log, 1), &bytes).expect("write");
        if older {
            // A clean segment after it makes the arbitrary one an older segment.
            std::fs::write(replay::segment_path(&log, 2), SEGMENT_MAGIC).expect("write");
        }
        let outbox = Outbox::open(dir.path(), 1 << 20).expect("open");
        prop_assert!(outbox.is_empty());
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(outbox.put(result("after", 1))).expect("put");
        drop(outbox);
        let outbox = Outbox::open(dir.path(), 1 << 20).expect("reopen");
        prop_assert_eq!(ids(&outbox), vec!["after".to_string()]);
    }
}
