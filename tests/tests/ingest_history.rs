//! Ingest never stops because of delivered events (issue 21, security review M15): AUDIT_INGEST
//! holds only what the router has not routed yet, and what it routed is kept in a bounded
//! AUDIT_HISTORY that drops its oldest events instead of refusing new ones.
//!
//! The shipped defaults, scaled down: AUDIT_INGEST 2 MiB (default 4 GiB), AUDIT_HISTORY
//! 1 MiB (default 16 GiB). Three times AUDIT_INGEST's `max_bytes` flows through gateway →
//! router → sink-http → a local receiver with not one 503, every event arrives (counted by
//! id), and the history still holds the most recent events within its own limit.

mod common;

use std::{collections::HashSet, time::Duration};

use auditstream_bus::topology;
use auditstream_config_service::authz::Role;
use auditstream_model::SinkType;
use auditstream_sink_http::HttpSink;
use auditstream_testkit::{
    ConfigHarness, Database, GatewayHarness, HttpReceiver, NatsServer, RouterHarness, SinkHarness,
    read_stream, small_topology, test_gateway_config, test_router_config, test_sink_config,
};
use common::{sink::*, *};

const INGEST_BYTES: i64 = 2 << 20;
const HISTORY_BYTES: i64 = 1 << 20;

fn topology() -> auditstream_bus::TopologyConfig {
    let mut t = small_topology();
    t.ingest.max_bytes = INGEST_BYTES;
    t.history.max_bytes = HISTORY_BYTES;
    t
}

#[tokio::test]
async fn three_times_the_ingest_stream_flows_through_without_a_503_and_the_history_keeps_the_latest()
 {
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.nats.topology = topology();
        c.http.allow_insecure_http = true;
        c.http.allowed_networks = vec!["127.0.0.0/8".into()];
    })
    .await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    let receiver = HttpReceiver::start().await;
    one_http_stream(&mut admin, &receiver).await;
    let mut gateway_config = test_gateway_config(&nats.url());
    gateway_config.nats.topology = topology();
    let gateway = GatewayHarness::start(gateway_config).await;
    let mut router_config = test_router_config(&nats.url(), &config.url());
    router_config.nats.topology = topology();
    let router = RouterHarness::start(router_config).await;
    let mut sink_config = test_sink_config(SinkType::Http, &nats.url(), &config.url());
    sink_config.sink = loopback_http();
    sink_config.nats.topology = topology();
    let sink = SinkHarness::start(
        HttpSink::new(sink_config.sink.clone()).unwrap(),
        sink_config,
    )
    .await;

    // ~1.2 KiB events with ids of their own (each stored alone), 100 per request, until
    // three times AUDIT_INGEST's limit went through the gateway.
    let padding = "x".repeat(700);
    let (mut sent, mut bytes, mut batch) = (Vec::new(), 0usize, 0usize);
    let mut refused = 0;
    while bytes < 3 * INGEST_BYTES as usize {
        let (body, ids) = events(0, &format!("soak{batch}"), 100, None);
        let body = body.replace(r#""data":{"#, &format!(r#""data":{{"pad":"{padding}","#));
        bytes += body.len();
        let r = post(&gateway, body, &[ndjson()]).await;
        if r.status == 503 {
            refused += 1;
        }
        assert_eq!(r.status, 200, "request {batch}: {}", r.body);
        sent.extend(ids);
        batch += 1;
    }
    assert_eq!(refused, 0, "503s while routed events piled up");

    // Every event arrives, counted by id at the receiver.
    let want: HashSet<String> = sent.iter().cloned().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let got: HashSet<String> = receiver.accepted_ids().into_iter().collect();
        if want.is_subset(&got) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} events arrived",
            want.intersection(&got).count(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // AUDIT_INGEST let go of what was routed; AUDIT_HISTORY kept the most recent events
    // within its limit and dropped the oldest.
    let js = nats.jetstream().await;
    let ingest = js
        .get_stream(topology::INGEST)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state;
    assert_eq!(ingest.messages, 0, "routed events still in AUDIT_INGEST");
    let history = js
        .get_stream(topology::HISTORY)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state;
    assert!(history.bytes <= HISTORY_BYTES as u64, "{history:?}");
    let kept: HashSet<String> = ids(&read_stream(&js, topology::HISTORY).await)
        .into_iter()
        .map(|id| id.trim_start_matches("org.").to_owned())
        .collect();
    assert!(
        kept.contains(sent.last().unwrap()),
        "the newest event is kept"
    );
    assert!(!kept.contains(&sent[0]), "the oldest event was dropped");
    assert!(
        kept.len() > 300,
        "the history holds {} events (about 1 MiB of them)",
        kept.len()
    );

    sink.stop().await.expect("clean shutdown");
    router.stop().await.expect("clean shutdown");
    gateway.stop().await.expect("clean shutdown");
}
