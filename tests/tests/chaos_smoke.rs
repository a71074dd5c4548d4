//! The short version of `make chaos` (see `tests/chaos/mod.rs`): the real binaries under a
//! steady load while each service (gateway, config-service, router, four sinks) is SIGKILLed
//! and restarted, nats-server is restarted and paused, the destinations fail (HTTP 503, 403,
//! hang; Azure Monitor 503, 403, 500; S3 and Azurite stopped), and AUDIT_INGEST is full for a
//! while. Every accepted id must arrive at every destination that should have it.

#[path = "../chaos/mod.rs"]
mod chaos;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_accepted_is_lost_through_kills_restarts_pauses_and_outages() {
    // target/<profile>: this test's executable lives in its deps/.
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let mut plan = chaos::Plan::smoke(bin_dir);
    // `CHAOS_CLUSTER=1`: the same on a 3-node cluster (`make chaos-cluster` runs the full plan).
    plan.cluster = std::env::var("CHAOS_CLUSTER").is_ok_and(|v| v == "1");
    let (kills, outages) = (plan.kills_per_service, plan.outages.len());
    let report = chaos::run(plan).await;
    println!("{}", report.markdown());
    assert_eq!(
        report.lost,
        0,
        "lost ids, e.g. {:?}",
        &report.missing[..report.missing.len().min(10)]
    );
    assert!(report.accepted > 1000, "{}", report.accepted);
    assert_eq!(report.delivered, report.accepted);
    // The HTTP receiver (every organization) and the four stores (one organization each:
    // S3, Blob, Azure Monitor, the URL-credential intake) all got something to count, and
    // lost nothing.
    assert_eq!(report.destinations.len(), 5, "{:?}", report.destinations);
    for t in &report.destinations {
        assert!(t.accepted > 100 && t.lost == 0, "{t:?}");
    }
    assert!(
        report.kills.values().all(|n| *n == kills),
        "{:?}",
        report.kills
    );
    assert_eq!(report.kills.len(), 7, "every service was killed");
    assert_eq!(report.outages.len(), outages);
    assert_eq!(report.nats_restarts, 1);
    assert!(report.secret_leaks.is_empty(), "{:?}", report.secret_leaks);
    // The search read the change feed too (URL credentials and sealed headers included).
    assert!(
        report.bus_messages_checked > 0,
        "no AUDIT_CONTROL message was read"
    );
    assert!(report.log_lines_checked > 0 && report.status_answers_checked >= 7);
    assert!(
        report.full_stream_answers.get(&503).is_some_and(|n| *n > 0),
        "the full stream never answered 503: {:?}",
        report.full_stream_answers
    );
}
