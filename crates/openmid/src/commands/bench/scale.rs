//! `bench scale`: many simulated MIDs (light clients speaking the real protocol)
//! long-poll one instance: its CPU and memory at idle, and how fast work reaches one.

use super::*;

#[derive(clap::Args)]
pub(super) struct ScaleArgs {
    /// Simulated MIDs.
    #[arg(long, default_value_t = 1000)]
    mids: usize,
    /// Seconds of idle measurement.
    #[arg(long, default_value_t = 10.0)]
    idle_seconds: f64,
    /// Outputs sent to random MIDs for the pickup figures.
    #[arg(long, default_value_t = 200)]
    pickups: usize,
    /// Print the figures as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// The simulated MIDs speak the long-poll protocol (1) instead of the session
    /// stream, to compare the two in the same build.
    #[arg(long)]
    long_poll: bool,
}

/// One simulated MID: enrolls, keeps a long-poll open, heartbeats, answers work at once,
/// and reports when each output reached it.
async fn simulated_mid(
    client: openmid_mid::session::client::InstanceClient,
    received: tokio::sync::mpsc::UnboundedSender<(String, Instant)>,
    stop: tokio_util::sync::CancellationToken,
    heartbeat: Duration,
) {
    use openmid_proto::mid::{Capacity, HeartbeatRequest, PollRequest, ResultsRequest, WorkResult};
    let client = std::sync::Arc::new(client);
    let beats = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                tokio::select! {
                    _ = tokio::time::sleep(heartbeat) => {}
                    _ = stop.cancelled() => return,
                }
                let _ = client.heartbeat(&HeartbeatRequest::default()).await;
            }
        })
    };
    let mut known = Some(MidStatus::Up);
    while !stop.is_cancelled() {
        let req = PollRequest {
            capacity: Capacity {
                interactive: 8,
                expedited: 1,
                standard: 1,
            },
            wait_ms: 25_000,
            known_status: known,
        };
        let answer = tokio::select! {
            a = client.poll(&req) => a,
            _ = stop.cancelled() => break,
        };
        match answer {
            Ok(resp) => {
                known = Some(resp.status);
                let now = Instant::now();
                let results: Vec<WorkResult> = resp
                    .work
                    .into_iter()
                    .map(|w| {
                        let _ = received.send((w.output_id.clone(), now));
                        WorkResult {
                            output_id: w.output_id,
                            attempt: w.attempt,
                            payload: serde_json::json!({"status": 200, "headers": {}, "timings": {"headers_ms": 0.0, "total_ms": 0.0}}).into(),
                            error: None,
                            started_at_ms: now_ms(),
                            duration_ms: 0,
                        }
                    })
                    .collect();
                if !results.is_empty() {
                    let _ = client.post_results(&ResultsRequest { results }).await;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let _ = beats.await;
}

pub(super) async fn scale(args: ScaleArgs) -> Result<ExitCode> {
    if args.mids == 0 || args.pickups == 0 {
        bail!("--mids and --pickups must be at least 1");
    }
    if !(args.idle_seconds.is_finite() && args.idle_seconds > 0.0 && args.idle_seconds <= 3600.0) {
        bail!("--idle-seconds must be more than 0 and at most 3600");
    }
    let Setup {
        mid_bin: _,
        dir,
        instance,
        api,
    } = setup()?;
    let heartbeat =
        Duration::from_millis(openmid_instance::config::InstanceConfig::default().heartbeat_ms);
    eprintln!("enrolling {} simulated MIDs …", args.mids);
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut sims = Vec::with_capacity(args.mids);
    let enrolling = Instant::now();
    for i in 0..args.mids {
        let name = format!("sim-{i}");
        let token = openmid_local::auto_validating_token(&api).await?;
        let mut config = instance.mid_config(&name, &dir.path().join("unused"), None);
        if args.long_poll {
            config.transport = openmid_mid::config::Transport::LongPoll;
        }
        let client = openmid_local::enroll_protocol_client(&config, token, Default::default())
            .await
            .with_context(|| format!("enrolling {name}"))?;
        sims.push(tokio::spawn(simulated_mid(
            client,
            tx.clone(),
            stop.clone(),
            heartbeat,
        )));
    }
    eprintln!(
        "enrolled in {:.1} s; letting them settle …",
        enrolling.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    let pid = instance.pid();
    let cpu_before = openmid_local::process::cpu_time(pid).unwrap_or_default();
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.idle_seconds)).await;
    let cpu_used = openmid_local::process::cpu_time(pid)
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    let idle_cpu_percent = cpu_used.as_secs_f64() / wall.elapsed().as_secs_f64() * 100.0;
    let idle_rss = mb(openmid_local::process::rss_bytes(pid));
    eprintln!("idle: {idle_cpu_percent:.1}% of one core, {idle_rss:.1} MB");

    let mut pickups = Vec::with_capacity(args.pickups);
    let mut seed = now_ms() as u64 | 1;
    for _ in 0..args.pickups {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let target_mid = (seed % args.mids as u64) as usize;
        let sent = Instant::now();
        let out = api
            .insert_output(&NewOutput {
                durability: Default::default(),
                source: Some("bench".into()),
                ..rest_output(
                    &format!("mid.server.sim-{target_mid}"),
                    "http://127.0.0.1:9/",
                    "scale",
                )
            })
            .await?;
        let arrived = loop {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some((id, at))) if id == out.id => break at,
                Ok(Some(_)) => continue,
                _ => bail!("output {} never reached its MID", out.id),
            }
        };
        pickups.push(arrived.duration_since(sent).as_secs_f64() * 1e3);
    }
    pickups.sort_by(|a, b| a.total_cmp(b));
    let (p50, p90, p99) = (
        percentile(&pickups, 0.5),
        percentile(&pickups, 0.9),
        percentile(&pickups, 0.99),
    );
    stop.cancel();
    for sim in sims {
        let _ = sim.await;
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_header(vec!["figure", "value", "target"]);
    t.add_row(vec![
        "simulated MIDs".to_string(),
        args.mids.to_string(),
        String::new(),
    ]);
    t.add_row(vec![
        "instance CPU, idle".to_string(),
        format!("{idle_cpu_percent:.1}% of one core"),
        "< 10%".into(),
    ]);
    t.add_row(vec![
        "instance RSS, idle".to_string(),
        format!("{idle_rss:.1} MB"),
        String::new(),
    ]);
    t.add_row(vec![
        "pickup p50 / p90 / p99 (API insert → MID has it)".to_string(),
        format!("{p50:.2} / {p90:.2} / {p99:.2} ms"),
        "< 50 ms".into(),
    ]);
    println!("{t}");
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "mids": args.mids,
                "idle_cpu_percent": idle_cpu_percent,
                "idle_rss_mb": idle_rss,
                "pickup_p50_ms": p50,
                "pickup_p90_ms": p90,
                "pickup_p99_ms": p99,
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}
