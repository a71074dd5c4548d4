//! Abuse cases at the ingest edge, against a real nats-server: producer tokens scoped to
//! organizations, per-organization rate limits (one noisy organization cannot starve the
//! others), and clients that are slow (slow-loris headers, trickled bodies, idle
//! connections) or oversized (huge headers) being cut off by the configured limits.

mod common;

use std::time::{Duration, Instant};

use auditstream_bus::topology::INGEST;
use auditstream_gateway::auth::ProducerToken;
use auditstream_proto::v1::{
    IngestEvent, IngestRequest, ItemStatus, ingest_service_client::IngestServiceClient,
};
use auditstream_testkit::{
    GatewayHarness, NatsServer, TEST_TOKEN, read_stream, test_gateway_config,
};
use common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tonic::{Code, Request, metadata::MetadataValue};

const ACME_TOKEN: &str = "acme-only-token-0123456789";

fn event(id: &str, org: &str) -> String {
    format!(
        r#"{{"id":"{id}","event_type":"api_platform","occurred_at":"2026-11-21T10:17:00Z","org_id":"{org}","workspace_id":"ws-1","data":{{"method":"GET"}}}}"#
    )
}

fn events(prefix: &str, org: &str, n: usize) -> String {
    (0..n)
        .map(|i| event(&format!("{prefix}-{i}"), org))
        .collect::<Vec<_>>()
        .join("\n")
}

fn grpc_event(id: &str, org: &str) -> IngestEvent {
    IngestEvent {
        id: id.into(),
        event_type: "api_platform".into(),
        occurred_at: "2026-11-21T10:17:00Z".into(),
        org_id: org.into(),
        workspace_id: "ws-1".into(),
        data_json: br#"{"method":"GET"}"#.to_vec(),
    }
}

fn with_token<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    req.metadata_mut().insert("authorization", value);
    req
}

async fn stored_ids(nats: &NatsServer) -> Vec<String> {
    let mut got = ids(&read_stream(&nats.jetstream().await, INGEST).await);
    got.sort();
    got
}

#[tokio::test]
async fn a_token_scoped_to_an_organization_cannot_publish_for_another() {
    let nats = NatsServer::start();
    let mut config = test_gateway_config(&nats.url());
    config.auth.tokens.push(
        serde_json::from_value::<ProducerToken>(serde_json::json!({
            "token": ACME_TOKEN, "orgs": ["acme"], "name": "acme-shipper"
        }))
        .unwrap(),
    );
    let gw = GatewayHarness::start(config).await;

    // Mixed request: acme's events are stored, globex's are refused one by one.
    let body = format!(
        "{}\n{}\n{}",
        event("a-1", "acme"),
        event("g-1", "globex"),
        event("a-2", "acme")
    );
    let r = post_as(&gw, Some(ACME_TOKEN), body, &[ndjson()]).await;
    assert_eq!(r.status, 207, "{}", r.body);
    assert_eq!(
        (r.body["accepted"].as_u64(), r.body["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    let refused = &r.body["results"][1];
    assert_eq!(refused["status"], "rejected");
    assert_eq!(refused["error"]["code"], "org_not_allowed");
    assert_eq!(refused["error"]["field"], "org_id");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"globex\"")
    );

    // Only other organizations: 403, nothing stored.
    let r = post_as(&gw, Some(ACME_TOKEN), event("g-2", "globex"), &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["results"][0]["error"]["code"], "org_not_allowed");

    // The same over gRPC.
    let mut c = IngestServiceClient::connect(gw.grpc_url()).await.unwrap();
    let reply = c
        .ingest(with_token(
            ACME_TOKEN,
            IngestRequest {
                events: vec![grpc_event("a-3", "acme"), grpc_event("g-3", "globex")],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.accepted, 1);
    assert_eq!(reply.results[0].status, ItemStatus::Accepted as i32);
    assert_eq!(reply.results[1].status, ItemStatus::Rejected as i32);
    assert_eq!(
        reply.results[1].error.as_ref().unwrap().code,
        "org_not_allowed"
    );

    // An unscoped token still sends for anyone.
    let r = post(&gw, event("g-4", "globex"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    assert_eq!(stored_ids(&nats).await, ["a-1", "a-2", "a-3", "g-4"]);
}

#[tokio::test]
async fn a_noisy_organization_is_rate_limited_while_others_get_through() {
    let nats = NatsServer::start();
    let mut config = test_gateway_config(&nats.url());
    config.rate_limit.events_per_second = 100;
    config.rate_limit.burst = 200;
    let gw = GatewayHarness::start(config).await;

    let started = Instant::now();
    let r = post(&gw, events("noisy", "noisy", 1000), &[ndjson()]).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "rate_limited");
    let retry_after: u64 = r
        .retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let accepted = r.body["accepted"].as_u64().unwrap();
    // The burst, plus what refilled at 100/s while the request was handled.
    let refill = (started.elapsed().as_secs_f64() * 100.0).ceil() as u64;
    assert!(
        (200..=200 + refill).contains(&accepted),
        "{accepted} (refill ≤ {refill})"
    );
    assert_eq!(r.body["rate_limited"].as_u64(), Some(1000 - accepted));
    // The first events of the request got the grant, in order.
    let results = r.body["results"].as_array().unwrap();
    assert!(
        results[..accepted as usize]
            .iter()
            .all(|i| i["status"] == "accepted")
    );
    assert!(
        results[accepted as usize..]
            .iter()
            .all(|i| i["status"] == "rate_limited")
    );

    // Another organization is not affected, over HTTP or gRPC, while the noisy one is
    // still refused.
    let r = post(&gw, events("quiet", "quiet", 150), &[ndjson()]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut c = IngestServiceClient::connect(gw.grpc_url()).await.unwrap();
    let reply = c
        .ingest(with_token(
            TEST_TOKEN,
            IngestRequest {
                events: vec![grpc_event("quiet-grpc", "quiet")],
            },
        ))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().accepted, 1);
    let err = c
        .ingest(with_token(
            TEST_TOKEN,
            IngestRequest {
                events: (0..300)
                    .map(|i| grpc_event(&format!("noisy-grpc-{i}"), "noisy"))
                    .collect(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert!(err.metadata().get("retry-after").is_some(), "{err:?}");

    // What was answered accepted is exactly what JetStream holds.
    let stored = stored_ids(&nats).await;
    let noisy_http = stored
        .iter()
        .filter(|id| id.starts_with("noisy-") && !id.starts_with("noisy-grpc"))
        .count();
    assert_eq!(noisy_http as u64, accepted);
    assert_eq!(
        stored.iter().filter(|id| id.starts_with("quiet")).count(),
        151
    );

    // After the Retry-After delay the noisy organization may send again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let r = post(&gw, event("noisy-later", "noisy"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A gateway with short connection limits.
async fn strict_gateway(nats: &NatsServer) -> GatewayHarness {
    let mut config = test_gateway_config(&nats.url());
    config.server.header_read_timeout = Duration::from_secs(1);
    config.server.request_timeout = Duration::from_secs(1);
    config.server.max_header_bytes = 16 * 1024;
    GatewayHarness::start(config).await
}

/// Reads until the server closes the connection; what it said before, and when it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection is still open after {limit:?}"),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn slow_loris_and_idle_connections_are_cut_off() {
    let nats = NatsServer::start();
    let gw = strict_gateway(&nats).await;

    // Headers trickled a byte every 100 ms would take ~6 s; the server hangs up after ~1 s.
    let mut stream = TcpStream::connect(gw.http).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nX-Padding: slow\r\n\r\n"
    );
    let started = Instant::now();
    let mut cut_off = false;
    for byte in head.as_bytes() {
        if stream.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A closed connection shows up as a read of 0 (or an error) once the server is gone.
        let mut probe = [0u8; 1024];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut probe)).await
        {
            let _ = n;
            cut_off = true;
            break;
        }
    }
    assert!(
        cut_off,
        "the gateway read slow headers for {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // A connection that never sends anything is closed too.
    let mut idle = TcpStream::connect(gw.http).await.unwrap();
    let (_, after) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(after >= Duration::from_millis(900), "{after:?}");

    // The gateway still serves well-behaved clients.
    let r = post(&gw, event("after-loris", "acme"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn a_trickled_body_gets_408_and_oversized_headers_get_431() {
    let nats = NatsServer::start();
    let gw = strict_gateway(&nats).await;

    // Headers promise 1000 bytes of body; 10 arrive and the rest never does.
    let mut stream = TcpStream::connect(gw.http).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"id\":\"x\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, after) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(after >= Duration::from_millis(900), "{after:?}");

    // 20 KiB of headers against a 16 KiB limit.
    let mut stream = TcpStream::connect(gw.http).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nX-Padding: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        "p".repeat(20 * 1024)
    );
    // The server may answer and hang up before it has read everything we write.
    let _ = stream.write_all(head.as_bytes()).await;
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // Nothing from either client was stored; a normal request still works.
    assert!(stored_ids(&nats).await.is_empty());
    let r = post(&gw, event("after-abuse", "acme"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A gateway that serves two connections per port and gives each 2 s to start talking.
async fn capped_gateway(nats: &NatsServer) -> GatewayHarness {
    let mut config = test_gateway_config(&nats.url());
    config.server.header_read_timeout = Duration::from_secs(2);
    config.server.max_connections = 2;
    GatewayHarness::start(config).await
}

#[tokio::test]
async fn http_connections_are_capped_and_silent_ones_free_their_slots() {
    let nats = NatsServer::start();
    let gw = capped_gateway(&nats).await;

    // Two silent clients take both slots: a third client is not served meanwhile…
    let silent: Vec<TcpStream> =
        futures_util::future::join_all((0..2).map(|_| TcpStream::connect(gw.http)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let started = Instant::now();
    let third = tokio::spawn({
        let url = gw.events_url();
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(TEST_TOKEN)
                .body(event("after-cap", "acme"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served beside two"
    );
    // …until the silent ones are cut off after `header_read_timeout`; then it is.
    let status = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("the third client was never served")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
    assert!(stored_ids(&nats).await.contains(&"after-cap".to_string()));
}

#[tokio::test]
async fn grpc_connections_are_capped_and_silent_ones_are_closed() {
    let nats = NatsServer::start();
    let gw = capped_gateway(&nats).await;
    let call = |id: &'static str| {
        let url = gw.grpc_url();
        async move {
            let mut c = IngestServiceClient::connect(url).await.unwrap();
            let r = c
                .ingest(with_token(
                    TEST_TOKEN,
                    IngestRequest {
                        events: vec![grpc_event(id, "acme")],
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.results[0].status(), ItemStatus::Accepted, "{r:?}");
            c
        }
    };

    // A connection that never sends anything is closed after `header_read_timeout`.
    let mut idle = TcpStream::connect(gw.grpc).await.unwrap();
    let (_, after) = read_until_closed(&mut idle, Duration::from_secs(6)).await;
    assert!(after >= Duration::from_millis(1800), "{after:?}");

    // Two live channels hold both slots: a third client waits…
    let first = call("grpc-cap-1").await;
    let second = call("grpc-cap-2").await;
    let third = tokio::spawn(call("grpc-cap-3"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !third.is_finished(),
        "a third gRPC connection was served beside two"
    );
    // …until one of them closes.
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("the third gRPC client was never served")
        .unwrap();
    drop((second, third));
    let ids = stored_ids(&nats).await;
    for id in ["grpc-cap-1", "grpc-cap-2", "grpc-cap-3"] {
        assert!(ids.contains(&id.to_string()), "{id} not stored");
    }
}
