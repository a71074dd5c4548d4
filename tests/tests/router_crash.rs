//! The router binary killed with SIGKILL in the middle of 100 000 events, then restarted:
//! every event ID appears on every stream it should (duplicates allowed and counted), none
//! missing.

mod common;

use std::{process::Child, time::Duration};

use async_nats::jetstream::{self, context::PublishAckFuture};
use auditstream_bus::{headers::EventMeta, subjects, topology};
use auditstream_config_service::authz::Role;
use auditstream_proto::v1::{AppliesTo::*, EventSelection, NodeKind::*};
use auditstream_testkit::{ConfigHarness, Database, NatsServer, metric, small_topology};
use common::{config::*, router::drain_deliveries};

const EVENTS: usize = 100_000;
const STREAMS: [&str; 2] = ["s-a", "s-b"];

fn spawn_router(nats: &str, config: &str, ops: u16, log: &std::path::Path) -> Child {
    common::data_plane("auditstream-router", nats, config, ops)
        .envs(common::topology_env(&crash_topology()))
        // Short, so the killed replica's unacked messages come back quickly.
        .env("AUDITSTREAM_CONSUMER__ACK_WAIT", "3s")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Room for 200 000 deliveries; every service here uses this topology as is.
fn crash_topology() -> auditstream_bus::TopologyConfig {
    let mut topo = small_topology();
    topo.deliver.max_bytes = 1 << 30;
    topo.ingest.max_bytes = 512 << 20;
    topo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_killed_mid_stream_loses_nothing() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    // The test owns the topology; the config service and the router verify it.
    nats.apply_topology(&crash_topology()).await;
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.nats.ensure_topology = false;
        c.nats.topology = crash_topology();
    })
    .await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    tree(
        &mut admin,
        &[("org", "", Organization), ("ws", "org", Workspace)],
    )
    .await;
    create_connection(&mut admin, s3_connection("conn", "org", SECRET)).await;
    for id in STREAMS {
        let mut s = s3_stream(id, "ws", SelfOnly, "conn");
        s.selection = Some(EventSelection {
            event_types: vec!["api_platform".into()],
            ..Default::default()
        });
        // Disabled at creation so that no self-audit event mixes into the count.
        s.enabled = false;
        create_stream(&mut admin, s).await.unwrap();
        set_enabled(&mut admin, id, true).await.unwrap();
    }
    // Those two enables are audited as user_activity events; only api_platform is selected.

    publish_many(&js, EVENTS).await;

    let dir = tempfile::tempdir().unwrap();
    let ops = common::free_port();
    let mut first = spawn_router(&nats.url(), &config.url(), ops, &dir.path().join("r1.log"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let processed_at_kill = loop {
        let done = metric(
            ([127, 0, 0, 1], ops).into(),
            "auditstream_router_events_processed_total",
        )
        .await;
        if done >= (EVENTS / 5) as f64 {
            break done;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "first router processed only {done}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    assert!(
        processed_at_kill < EVENTS as f64,
        "killed mid-stream: {processed_at_kill} of {EVENTS}"
    );

    let ops = common::free_port();
    let mut second = spawn_router(&nats.url(), &config.url(), ops, &dir.path().join("r2.log"));
    // Done when the shared consumer has nothing pending and nothing unacked.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let mut consumer: jetstream::consumer::PullConsumer = js
            .get_stream(topology::INGEST)
            .await
            .unwrap()
            .get_consumer("router")
            .await
            .unwrap();
        let info = consumer.info().await.unwrap();
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still pending: {} + {} unacked",
            info.num_pending,
            info.num_ack_pending
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.kill().unwrap();
    second.wait().unwrap();

    let counts = drain_deliveries(&js).await;
    let mut missing = Vec::new();
    let mut duplicates = 0;
    for i in 0..EVENTS {
        for stream in STREAMS {
            match counts.get(&(format!("e-{i}"), stream.to_owned())) {
                None => missing.push(format!("e-{i}@{stream}")),
                Some(n) => duplicates += n - 1,
            }
        }
    }
    println!(
        "killed after {processed_at_kill} of {EVENTS} events; {} deliveries, {duplicates} duplicates",
        counts.values().sum::<usize>()
    );
    assert!(
        missing.is_empty(),
        "{} deliveries missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Publishes `n` api_platform events for workspace `ws`, pipelined (acks awaited per chunk).
async fn publish_many(js: &jetstream::Context, n: usize) {
    let subject = subjects::ingest("org", "ws", "api_platform".parse().unwrap()).unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(2000) {
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(chunk.len());
        for i in chunk {
            let id = format!("e-{i}");
            let body = format!(
                r#"{{"id":"{id}","event_type":"api_platform","occurred_at":"2026-11-21T10:17:00Z","org_id":"org","workspace_id":"ws","data":{{"endpoint":"GET /employees","status":200,"seq":{i}}}}}"#
            );
            let h = EventMeta {
                event_id: &id,
                org_id: "org",
                workspace_id: "ws",
                event_type: "api_platform",
                occurred_at: "2026-11-21T10:17:00Z",
                received_at: "2026-11-21T10:17:01Z",
                traceparent: None,
            }
            .to_headers();
            let publish = jetstream::message::PublishMessage::build()
                .headers(h)
                .message_id(&id)
                .payload(body.into());
            acks.push(js.send_publish(subject.clone(), publish).await.unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
}
