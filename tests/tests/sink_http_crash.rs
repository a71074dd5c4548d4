//! The sink-http binary killed with SIGKILL while a batch is in flight (the receiver holds
//! the request), then restarted: every accepted event reaches the receiver.

mod common;

use std::{process::Child, time::Duration};

use auditstream_testkit::{Behavior, metric};
use common::sink::*;

fn spawn_sink(nats: &str, config: &str, ops: u16, log: &std::path::Path) -> Child {
    common::data_plane("auditstream-sink-http", nats, config, ops)
        // Short, so the killed replica's unacked messages come back quickly.
        .env("AUDITSTREAM_CONSUMER__ACK_WAIT", "3s")
        .env("AUDITSTREAM_BATCHING__MAX_AGE", "100ms")
        .env("AUDITSTREAM_BATCHING__MAX_EVENTS", "50")
        .env("AUDITSTREAM_SINK__ALLOW_INSECURE_HTTP", "true")
        .env("AUDITSTREAM_SINK__ALLOWED_NETWORKS", "127.0.0.0/8")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_killed_mid_batch_loses_nothing() {
    let stack = stack_without_sink(&[GOOD_TOKEN]).await;
    stack.receivers[0].set_behavior(Behavior::Hold);
    let dir = tempfile::tempdir().unwrap();
    let ops = common::free_port();
    let mut first = spawn_sink(
        &stack.nats.url(),
        &stack.config.url(),
        ops,
        &dir.path().join("first.log"),
    );
    wait_sink_ready(ops).await;
    let mut accepted = Vec::new();
    for round in 0..6 {
        accepted.extend(stack.send(0, &format!("k{round}"), 50, None).await);
    }
    // A request is in flight: the receiver holds it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stack.receivers[0].held() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no request arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        metric(
            ([127, 0, 0, 1], ops).into(),
            "auditstream_sink_events_delivered_total"
        )
        .await
            == 0.0
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    stack.receivers[0].set_behavior(Behavior::Accept);
    stack.receivers[0].release();
    let ops = common::free_port();
    let mut second = spawn_sink(
        &stack.nats.url(),
        &stack.config.url(),
        ops,
        &dir.path().join("second.log"),
    );
    wait_sink_ready(ops).await;
    stack
        .wait_delivered(0, &accepted, Duration::from_secs(90))
        .await;
    second.kill().unwrap();
    second.wait().unwrap();
}
