//! A real 3-node JetStream cluster (issue 21): three nats-server processes with routes on
//! loopback, every stream at replicas 3, gateway → router → sink-http under steady load.
//! One node is SIGKILLed and restarted, then the leader of AUDIT_INGEST, then the leader of
//! AUDIT_DELIVER; every event the gateway accepted arrives at the destination (counted by
//! id; duplicates allowed, loss never).

mod common;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use auditstream_bus::topology;
use auditstream_config_service::authz::Role;
use auditstream_model::SinkType;
use auditstream_sink_http::HttpSink;
use auditstream_testkit::{
    ConfigHarness, Database, GatewayHarness, HttpReceiver, NatsCluster, RouterHarness, SinkHarness,
    small_topology, test_gateway_config, test_router_config, test_sink_config,
};
use common::{sink::*, *};

fn topology() -> auditstream_bus::TopologyConfig {
    let mut t = small_topology();
    t.replicas = 3;
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_nothing_when_a_node_and_then_stream_leaders_are_killed() {
    let mut cluster = NatsCluster::start(3, "2GB");
    let js = cluster.jetstream().await;
    cluster.wait_jetstream(&js).await;
    let url = cluster.url();
    let config = ConfigHarness::start(&url, Database::Sqlite, |c| {
        c.nats.topology = topology();
        c.http.allow_insecure_http = true;
        c.http.allowed_networks = vec!["127.0.0.0/8".into()];
    })
    .await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    let receiver = HttpReceiver::start().await;
    one_http_stream(&mut admin, &receiver).await;
    let info = js
        .get_stream(topology::INGEST)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.config.num_replicas, 3, "streams at replicas 3");

    let gateway = Arc::new(GatewayHarness::start(test_gateway_config(&url)).await);
    let router = RouterHarness::start(test_router_config(&url, &config.url())).await;
    let mut sink_config = test_sink_config(SinkType::Http, &url, &config.url());
    sink_config.sink = loopback_http();
    let sink = SinkHarness::start(
        HttpSink::new(sink_config.sink.clone()).unwrap(),
        sink_config,
    )
    .await;

    // Steady load: 20 events per request, one request after the other; a 503 (NATS failing
    // over) is not accepted and not counted.
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(0usize));
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let (gateway, accepted, refused, stop) = (
            gateway.clone(),
            accepted.clone(),
            refused.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut batch = 0;
            while !stop.is_cancelled() {
                let (body, ids) = events(0, &format!("c{batch}"), 20, None);
                let r = post(&gateway, body, &[ndjson()]).await;
                match r.status {
                    200 => accepted.lock().unwrap().extend(ids),
                    503 => *refused.lock().unwrap() += 1,
                    other => panic!("request {batch}: {other} {}", r.body),
                }
                batch += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let accepted_now = || accepted.lock().unwrap().len();
    let grow = async |by: usize| {
        let target = accepted_now() + by;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while accepted_now() < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "accepted {} of {target}",
                accepted_now()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    grow(400).await;

    // 1. A node (not the ingest leader) is killed, and comes back.
    let leader = cluster.leader_of(&js, topology::INGEST).await;
    let other = (leader + 1) % cluster.size();
    cluster.kill(other);
    grow(400).await;
    cluster.restart(other);
    grow(400).await;

    // 2. The leader of AUDIT_INGEST is killed: another node takes over.
    let leader = cluster.leader_of(&js, topology::INGEST).await;
    cluster.kill(leader);
    grow(400).await;
    cluster.restart(leader);
    grow(400).await;

    // 3. The leader of AUDIT_DELIVER.
    let leader = cluster.leader_of(&js, topology::DELIVER).await;
    cluster.kill(leader);
    grow(400).await;
    cluster.restart(leader);
    grow(400).await;
    stop.cancel();
    load.await.unwrap();

    let want: HashSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let got: HashSet<String> = receiver.accepted_ids().into_iter().collect();
        if want.is_subset(&got) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lost {} of {} accepted events",
            want.difference(&got).count(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "cluster: {} events accepted, all delivered; {} requests answered 503 during failovers",
        want.len(),
        refused.lock().unwrap()
    );
    sink.stop().await.expect("clean shutdown");
    router.stop().await.expect("clean shutdown");
}
