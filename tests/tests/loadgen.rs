//! `auditstream-loadgen` against the whole stack in-process (gateway, config service, router,
//! sink-http): it creates its tenant tree and streams, sends a realistic mix over HTTP and then
//! gRPC at a fixed rate, and its receiver finds every accepted event, with latencies.

mod common;

use std::time::Duration;

use auditstream_config_service::authz::Role;
use auditstream_loadgen::{
    mix::Shape,
    receive::Receiver,
    send::{self, SendPlan, Transport},
    setup::setup,
};
use auditstream_testkit::{TEST_TOKEN, TestToken};
use common::sink::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_sends_a_mix_and_verifies_every_delivery() {
    let mut stack = stack_with(Vec::new()).await;
    stack
        .start_sink(
            loopback_http(),
            |_| {},
            |c| auditstream_sink_http::HttpSink::new(c.clone()).unwrap(),
        )
        .await;
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let shape = Shape {
        orgs: 3,
        workspaces_per_org: 4,
        min_size: 200,
        max_size: 8 * 1024,
        run: "lgtest".into(),
        ..Shape::default()
    };
    let admin = TestToken::of(Role::PlatformAdmin, None).token;
    setup(
        &stack.config.url(),
        admin,
        &shape,
        &format!("http://{}", receiver.addr()),
    )
    .await
    .unwrap();
    // Twice is fine: what exists is kept.
    setup(
        &stack.config.url(),
        admin,
        &shape,
        &format!("http://{}", receiver.addr()),
    )
    .await
    .unwrap();
    // The router and sink follow the new streams through the change feed.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut accepted = Vec::new();
    for (transport, target, run) in [
        (
            Transport::Http,
            format!("http://{}", stack.gateway.http),
            "lg-http",
        ),
        (
            Transport::Grpc,
            format!("http://{}", stack.gateway.grpc),
            "lg-grpc",
        ),
    ] {
        let mut report = send::run(SendPlan {
            transport,
            target,
            token: TEST_TOKEN.into(),
            batch: 50,
            concurrency: 2,
            rate: Some(1000.0),
            duration: Duration::from_secs(2),
            max_events: None,
            shape: Shape {
                run: run.into(),
                ..shape.clone()
            },
            seed: 3,
        })
        .await
        .unwrap();
        assert_eq!(report.failed_requests, 0, "{transport:?}");
        // About 1000/s for 2 s: the rate is held (loosely; this is not a benchmark).
        assert!(
            (1000..=3000).contains(&report.accepted.len()),
            "{transport:?}: {} events",
            report.accepted.len()
        );
        assert!(report.ack.percentile_ms(99.0) > 0.0);
        accepted.extend(report.accepted);
    }
    let tally = receiver.wait_for(&accepted, Duration::from_secs(60)).await;
    assert_eq!(tally.missing, 0, "{tally:?}");
    assert_eq!(tally.delivered, accepted.len());
    // Every arrival of a sent event carries the stamp the generator put in its data (else
    // the router or a sink lost a member of the message). Arrivals without one are the
    // config service's self-audit events for the setup, which reach the org's destination
    // too.
    let sent: std::collections::HashSet<&String> = accepted.iter().collect();
    for (id, stamp) in &tally.unstamped {
        assert!(
            !sent.contains(id),
            "{id} arrived without its stamp ({stamp:?})"
        );
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "{id}: a self-audit event has a UUID"
        );
    }
    let mut latency = receiver.take_latency();
    assert_eq!(
        latency.len() as u64 + tally.unstamped.len() as u64,
        tally.events
    );
    assert!(latency.percentile_ms(50.0) > 0.0);
}
