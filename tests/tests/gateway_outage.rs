//! JetStream unavailable or full: the gateway answers 503 with `Retry-After`, never a 2xx
//! for an event that is not stored, and recovers by itself when nats-server comes back.

mod common;

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use auditstream_bus::topology::INGEST;
use auditstream_testkit::{GatewayHarness, NatsServer, read_stream, test_gateway_config};
use common::*;

#[derive(Default)]
struct Ledger {
    /// Ids a response reported as stored (accepted or duplicate).
    stored: HashSet<String>,
    statuses: Vec<u16>,
}

impl Ledger {
    fn record(&mut self, r: &Reply) {
        self.statuses.push(r.status);
        if r.status == 503 {
            assert!(
                r.retry_after.is_some(),
                "503 without Retry-After: {}",
                r.body
            );
        }
        for item in r.body["results"].as_array().into_iter().flatten() {
            if item["status"] == "accepted" || item["status"] == "duplicate" {
                self.stored.insert(item["id"].as_str().unwrap().to_owned());
            }
        }
        if (200..300).contains(&r.status) {
            assert_eq!(r.body["rejected"], 0, "{}", r.body);
        }
    }
}

fn batch(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| event(&format!("{prefix}-{i}"), "job_status", "{}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn nats_killed_mid_traffic_gives_503_never_a_false_2xx_and_gateway_recovers() {
    let mut s = stack().await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn({
        let (ledger, stop) = (ledger.clone(), stop.clone());
        let url = s.gateway.events_url();
        async move {
            let client = http();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 5_000 {
                let resp = client
                    .post(&url)
                    .bearer_auth(auditstream_testkit::TEST_TOKEN)
                    .header("content-type", "application/x-ndjson")
                    .body(batch(&format!("p{n}"), 5))
                    .send()
                    .await
                    .expect("gateway reachable");
                let r = reply(resp).await;
                ledger.lock().unwrap().record(&r);
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });

    tokio::time::sleep(Duration::from_millis(500)).await;
    s.nats.kill();
    // Not ready while NATS is unreachable, and a fresh request gets 503 + Retry-After.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.gateway.readyz().await == 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway still ready with NATS down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = post(&s.gateway, batch("down", 3), &[ndjson()]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    assert_eq!(r.body["error"]["code"], "unavailable");
    assert!(
        r.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "not_stored")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Same port, same store: the gateway reconnects on its own.
    s.nats.restart();
    s.gateway.wait_ready(Duration::from_secs(30)).await;
    let r = post(&s.gateway, batch("after", 3), &[ndjson()]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    ledger.lock().unwrap().record(&r);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    producer.await.unwrap();

    let stored: HashSet<String> = ids(&read_stream(&s.nats.jetstream().await, INGEST).await)
        .into_iter()
        .collect();
    let ledger = ledger.lock().unwrap();
    let lost: Vec<_> = ledger.stored.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not in the stream: {lost:?}"
    );
    assert!(
        ledger.statuses.contains(&503),
        "the producer saw the outage"
    );
    assert!(
        ledger.statuses.iter().filter(|s| **s == 200).count() >= 2,
        "the producer saw success before and after"
    );
    assert!(stored.contains("after-0"));
}

#[tokio::test]
async fn gateway_started_before_nats_becomes_ready_when_nats_arrives() {
    let mut nats = NatsServer::start();
    nats.kill();
    let gw = GatewayHarness::start_unready(test_gateway_config(&nats.url())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.readyz().await, 503);
    let r = post(&gw, batch("early", 2), &[ndjson()]).await;
    assert_eq!(
        (r.status, r.retry_after.as_deref()),
        (503, Some("1")),
        "{}",
        r.body
    );

    nats.restart();
    // The streams come from their owner, the config service (the gateway's NATS user may
    // only check them); the gateway finds them after its late connect.
    nats.apply_topology(&auditstream_testkit::small_topology())
        .await;
    gw.wait_ready(Duration::from_secs(30)).await;
    let r = post(&gw, batch("late", 2), &[ndjson()]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stored = ids(&read_stream(&nats.jetstream().await, INGEST).await);
    assert_eq!(stored, vec!["late-0", "late-1"]);
    gw.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_does_not_hang_while_nats_is_down() {
    let mut s = stack().await;
    assert_eq!(
        post(&s.gateway, batch("before", 1), &[ndjson()])
            .await
            .status,
        200
    );
    s.nats.kill();
    // Let the client notice and enter its reconnect loop, as in a long outage.
    while s.gateway.readyz().await == 200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), s.gateway.stop()).await;
    stopped
        .expect("gateway stopped within 10s")
        .expect("clean shutdown");
}

#[tokio::test]
async fn a_full_ingest_stream_answers_503_and_drops_nothing_acknowledged() {
    let nats = NatsServer::start();
    let mut config = test_gateway_config(&nats.url());
    config.nats.topology.ingest.max_bytes = 32 * 1024;
    let gw = GatewayHarness::start(config).await;
    let mut ledger = Ledger::default();
    let payload = format!(r#"{{"pad":"{}"}}"#, "x".repeat(900));
    let mut full = None;
    for n in 0..200 {
        let body = (0..4)
            .map(|i| event(&format!("f{n}-{i}"), "job_status", &payload))
            .collect::<Vec<_>>()
            .join("\n");
        let r = post(&gw, body, &[ndjson()]).await;
        ledger.record(&r);
        if r.status == 503 {
            full = Some(r);
            break;
        }
    }
    let full = full.expect("the stream filled up within 200 requests");
    assert_eq!(full.retry_after.as_deref(), Some("1"));
    let message = full.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("full"), "{message}");
    let stored: HashSet<String> = ids(&read_stream(&nats.jetstream().await, INGEST).await)
        .into_iter()
        .collect();
    assert!(!stored.is_empty());
    assert!(
        ledger.stored.is_subset(&stored),
        "every acknowledged event is in the stream"
    );
    // The metric names the reason.
    let text = http()
        .get(gw.ops_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(r#"reason="stream_full""#), "{text}");
}
