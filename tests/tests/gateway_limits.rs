//! The gateway's resource limits against a real nats-server (security review M17, M18, L4):
//! a gRPC stream call ends at its event cap, its idle timeout or its maximum duration with
//! the results of what it sent (no longer killed by the unary request timeout); HTTP bodies
//! share one in-flight budget; a token spraying organization ids neither resets a noisy
//! organization's bucket nor escapes its own limit; a malformed `traceparent` is dropped and
//! counted; packs are sized by their real bytes; an event too large for a NATS message is
//! refused on its own while its siblings are stored.

mod common;

use std::{net::SocketAddr, time::Duration};

use auditstream_bus::{headers as h, topology::INGEST};
use auditstream_gateway::auth::ProducerToken;
use auditstream_proto::v1::{
    IngestEvent, IngestRequest, IngestResponse, ItemStatus,
    ingest_service_client::IngestServiceClient,
};
use auditstream_testkit::{
    GatewayHarness, NatsServer, TEST_TOKEN, read_stream, test_gateway_config,
};
use common::*;
use tokio::{io::AsyncWriteExt, net::TcpStream, sync::mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, metadata::MetadataValue, transport::Channel};

const NOISY_TOKEN: &str = "noisy-only-token-0123456789";
const SPRAY_TOKEN: &str = "sprayer-token-0123456789ab";
const GOOD_TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn event(id: &str, org: &str) -> String {
    format!(
        r#"{{"id":"{id}","event_type":"api_platform","occurred_at":"2026-11-21T10:17:00Z","org_id":"{org}","workspace_id":"ws-1","data":{{"method":"GET"}}}}"#
    )
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

fn batch(prefix: &str, from: usize, n: usize) -> IngestRequest {
    IngestRequest {
        events: (from..from + n)
            .map(|i| grpc_event(&format!("{prefix}-{i}"), "acme"))
            .collect(),
    }
}

fn with_token<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    req.metadata_mut().insert("authorization", value);
    req
}

async fn client(gw: &GatewayHarness) -> IngestServiceClient<Channel> {
    IngestServiceClient::connect(gw.grpc_url()).await.unwrap()
}

async fn stored_ids(nats: &NatsServer) -> Vec<String> {
    let mut got = ids(&read_stream(&nats.jetstream().await, INGEST).await);
    got.sort();
    got
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn scrape(ops: SocketAddr) -> String {
    reqwest::get(format!("http://{ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the sample `name` (with its labels, as written) in a scrape.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Polls the gateway's metrics until `name` satisfies `ok`.
async fn wait_metric(gw: &GatewayHarness, name: &str, ok: impl Fn(f64) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = scrape(gw.ops).await;
        if sample(&text, name).is_some_and(&ok) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never got there:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The reason a stream call was ended by a limit, if one did.
fn incomplete<T>(response: &tonic::Response<T>) -> Option<String> {
    response
        .metadata()
        .get("auditstream-ingest-incomplete")
        .map(|v| v.to_str().unwrap().to_owned())
}

fn result_ids(reply: &IngestResponse) -> Vec<String> {
    reply.results.iter().map(|r| r.id.clone()).collect()
}

// ---------------------------------------------------------------------------------------
// M17: gRPC stream calls.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stream_call_ends_at_max_stream_events_and_keeps_the_results_before() {
    let nats = NatsServer::start();
    let mut config = test_gateway_config(&nats.url());
    config.limits.max_events_per_request = 10;
    config.server.max_stream_events = 25;
    let gw = GatewayHarness::start(config).await;

    // Four batches of ten: the third would pass 25, so it and the fourth are not read.
    let batches = tokio_stream::iter((0..4).map(|b| batch("cap", b * 10, 10)).collect::<Vec<_>>());
    let response = client(&gw)
        .await
        .ingest_stream(with_token(TEST_TOKEN, batches))
        .await
        .expect("the call ends gracefully");
    let why = incomplete(&response).expect("the response says the call was cut short");
    assert!(why.contains("server.max_stream_events (25)"), "{why}");
    assert!(why.contains("from index 20 on"), "{why}");
    let reply = response.into_inner();
    assert_eq!(reply.accepted, 20);
    assert_eq!(reply.results.len(), 20);
    assert!(
        reply
            .results
            .iter()
            .enumerate()
            .all(|(i, r)| r.index == i as u32 && r.status() == ItemStatus::Accepted)
    );
    // What the response lists is exactly what was stored.
    assert_eq!(stored_ids(&nats).await, sorted(result_ids(&reply)));

    // A call within the cap is answered in full, without the marker.
    let batches = tokio_stream::iter(vec![batch("small", 0, 10), batch("small", 10, 10)]);
    let response = client(&gw)
        .await
        .ingest_stream(with_token(TEST_TOKEN, batches))
        .await
        .unwrap();
    assert_eq!(incomplete(&response), None);
    assert_eq!(response.into_inner().accepted, 20);
}

#[tokio::test]
async fn a_stream_outlives_the_request_timeout_and_an_idle_one_keeps_its_results() {
    let nats = NatsServer::start();
    let mut config = test_gateway_config(&nats.url());
    config.server.request_timeout = Duration::from_millis(500);
    config.server.stream_idle_timeout = Duration::from_secs(2);
    let gw = GatewayHarness::start(config).await;
    let mut c = client(&gw).await;

    // A producer that pauses longer than request_timeout between batches (but under the
    // idle timeout) is served to the end: the unary deadline no longer applies to streams.
    let (tx, rx) = mpsc::channel(4);
    let call = tokio::spawn({
        let mut c = c.clone();
        async move {
            c.ingest_stream(with_token(TEST_TOKEN, ReceiverStream::new(rx)))
                .await
        }
    });
    tx.send(batch("slow", 0, 3)).await.unwrap();
    // The producer's own pace, not a wait for the system under test.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    tx.send(batch("slow", 3, 3)).await.unwrap();
    drop(tx);
    let response = call.await.unwrap().expect("a slow stream is not cut off");
    assert_eq!(incomplete(&response), None);
    assert_eq!(response.into_inner().accepted, 6);

    // A producer that sends one batch and then goes silent without closing the call: after
    // the idle timeout the call ends, and the response still has that batch's results.
    let (tx, rx) = mpsc::channel(4);
    tx.send(batch("idle", 0, 4)).await.unwrap();
    let started = tokio::time::Instant::now();
    let response = c
        .ingest_stream(with_token(TEST_TOKEN, ReceiverStream::new(rx)))
        .await
        .expect("an idle stream ends gracefully");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let why = incomplete(&response).expect("marked as cut short");
    assert!(why.contains("server.stream_idle_timeout"), "{why}");
    assert!(why.contains("from index 4 on"), "{why}");
    let reply = response.into_inner();
    assert_eq!(reply.accepted, 4);
    assert_eq!(result_ids(&reply), ["idle-0", "idle-1", "idle-2", "idle-3"]);
    drop(tx);
    let stored = stored_ids(&nats).await;
    assert_eq!(stored.iter().filter(|i| i.starts_with("idle-")).count(), 4);
    assert_eq!(stored.iter().filter(|i| i.starts_with("slow-")).count(), 6);
    let text = scrape(gw.ops).await;
    assert_eq!(
        sample(
            &text,
            r#"auditstream_gateway_requests_rejected_total{transport="grpc",reason="stream_idle_timeout"}"#
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_stream_ends_at_its_maximum_duration_with_the_results_so_far() {
    let nats = NatsServer::start();
    let mut config = test_gateway_config(&nats.url());
    config.server.max_stream_duration = Duration::from_secs(2);
    let gw = GatewayHarness::start(config).await;

    // A producer that keeps sending a batch every 100 ms (its own pace), never closing.
    let (tx, rx) = mpsc::channel(1);
    let producer = tokio::spawn(async move {
        let mut sent = 0;
        while tx.send(batch("long", sent, 2)).await.is_ok() {
            sent += 2;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    });
    let started = tokio::time::Instant::now();
    let response = client(&gw)
        .await
        .ingest_stream(with_token(TEST_TOKEN, ReceiverStream::new(rx)))
        .await
        .expect("ends gracefully");
    let took = started.elapsed();
    assert!(
        (Duration::from_secs(2)..Duration::from_secs(4)).contains(&took),
        "{took:?}"
    );
    let why = incomplete(&response).expect("marked as cut short");
    assert!(why.contains("server.max_stream_duration (2 s)"), "{why}");
    let reply = response.into_inner();
    assert!(reply.accepted >= 4, "{}", reply.accepted);
    assert_eq!(reply.accepted as usize, reply.results.len());
    // Everything listed was stored, and nothing else.
    producer.abort();
    assert_eq!(stored_ids(&nats).await, sorted(result_ids(&reply)));
}

// ---------------------------------------------------------------------------------------
// M17: the HTTP in-flight body budget.
// ---------------------------------------------------------------------------------------

/// Opens a request that announces `total` body bytes of NDJSON and sends all but its last
/// line (`sent` newlines, which NDJSON skips); the gateway holds what arrived.
async fn open_request(gw: &GatewayHarness, id: &str, sent: usize) -> (TcpStream, String) {
    let line = event(id, "acme");
    let total = sent + line.len();
    let mut stream = TcpStream::connect(gw.http).await.unwrap();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_TOKEN}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {total}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'\n'; sent]).await.unwrap();
    (stream, line)
}

#[tokio::test]
async fn the_inflight_body_budget_answers_503_overloaded_then_recovers() {
    let nats = NatsServer::start();
    let mut config = test_gateway_config(&nats.url());
    config.limits.max_event_bytes = 16 * 1024;
    config.limits.max_request_bytes = 64 * 1024;
    config.server.max_inflight_body_bytes = 128 * 1024;
    let gw = GatewayHarness::start(config).await;
    const HELD: &str = "auditstream_gateway_inflight_body_bytes";
    wait_metric(&gw, HELD, |v| v == 0.0).await;

    // Two slow clients hold 2 × 60 000 bytes of unfinished bodies.
    let (mut first, first_line) = open_request(&gw, "slow-1", 60_000).await;
    let (second, _) = open_request(&gw, "slow-2", 60_000).await;
    wait_metric(&gw, HELD, |v| v >= 120_000.0).await;

    // A 20 000-byte request does not fit in what is left: 503 overloaded, at once.
    let padded = format!("{}{}", "\n".repeat(20_000), event("later", "acme"));
    let r = post(&gw, padded.clone(), &[ndjson()]).await;
    assert_eq!(request_error(&r), (503, Some("overloaded")), "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server.max_inflight_body_bytes"),
        "{}",
        r.body
    );
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    // A small one still fits.
    let r = post(&gw, event("small", "acme"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The first slow client finishes: its request is stored and its bytes are given back.
    first.write_all(first_line.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        let n = tokio::io::AsyncReadExt::read(&mut first, &mut buf)
            .await
            .unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    wait_metric(&gw, HELD, |v| v < 120_000.0).await;
    let r = post(&gw, padded, &[ndjson()]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A client that gives up mid-body frees its bytes too.
    drop(second);
    wait_metric(&gw, HELD, |v| v == 0.0).await;
    assert_eq!(stored_ids(&nats).await, ["later", "slow-1", "small"]);
    let text = scrape(gw.ops).await;
    assert_eq!(
        sample(
            &text,
            r#"auditstream_gateway_requests_rejected_total{transport="http",reason="overloaded"}"#
        ),
        Some(1.0),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// M18: rate limits under organization-id spraying, and per token.
// ---------------------------------------------------------------------------------------

fn scoped(token: &str, orgs: &[&str]) -> ProducerToken {
    serde_json::from_value(serde_json::json!({"token": token, "orgs": orgs})).unwrap()
}

#[tokio::test]
async fn a_token_spraying_org_ids_cannot_reset_a_noisy_organizations_bucket() {
    let nats = NatsServer::start();
    let mut config = test_gateway_config(&nats.url());
    // Slow refill, so the drained bucket stays far from idle for the whole test, while the
    // sprayed ones (190 of 200 left) are idle again after a second.
    config.rate_limit.events_per_second = 10;
    config.rate_limit.burst = 200;
    config.rate_limit.max_tracked_orgs = 20;
    // Only the organizations' limits here; the token limit has its own test.
    config.rate_limit.token_events_per_second = 0;
    config.auth.tokens.push(scoped(NOISY_TOKEN, &["noisy"]));
    config.auth.tokens.push(ProducerToken::any_org(SPRAY_TOKEN));
    let gw = GatewayHarness::start(config).await;

    // The noisy organization drains its bucket.
    let started = tokio::time::Instant::now();
    let noisy = |prefix: &str, n: usize| {
        (0..n)
            .map(|i| event(&format!("{prefix}-{i}"), "noisy"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let r = post_as(&gw, Some(NOISY_TOKEN), noisy("n1", 1000), &[ndjson()]).await;
    assert_eq!(r.status, 429, "{}", r.body);
    let first = r.body["accepted"].as_u64().unwrap();
    assert!(first >= 200, "{first}");

    // Another token sprays 500 random organizations (ten events each, so none of their
    // buckets is idle), far beyond the 20 buckets the table keeps.
    for round in 0..5 {
        let body = (0..100)
            .flat_map(|o| {
                (0..10).map(move |i| {
                    event(&format!("s{round}-{o}-{i}"), &format!("spray-{round}-{o}"))
                })
            })
            .collect::<Vec<_>>()
            .join("\n");
        let r = post_as(&gw, Some(SPRAY_TOKEN), body, &[ndjson()]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // The noisy organization is still limited: it gets only what refilled since it was
    // drained, not a fresh burst of 200.
    let r = post_as(&gw, Some(NOISY_TOKEN), noisy("n2", 1000), &[ndjson()]).await;
    let refill = (started.elapsed().as_secs_f64() * 10.0).ceil() as u64;
    assert_eq!(r.status, 429, "{}", r.body);
    let second = r.body["accepted"].as_u64().unwrap();
    assert!(
        second <= refill && second < 200,
        "the noisy organization's bucket was reset: {second} accepted (refill ≤ {refill})"
    );
    let text = scrape(gw.ops).await;
    let refused = sample(
        &text,
        r#"auditstream_gateway_events_rejected_total{transport="http",reason="rate_limited"}"#,
    )
    .unwrap();
    assert_eq!(refused as u64, 2000 - first - second, "{text}");
}

#[tokio::test]
async fn a_token_over_its_own_limit_is_refused_whatever_organizations_it_names() {
    let nats = NatsServer::start();
    let mut config = test_gateway_config(&nats.url());
    // No per-organization limit: only the token's.
    config.rate_limit.events_per_second = 0;
    config.rate_limit.token_events_per_second = 50;
    config.rate_limit.token_burst = 100;
    config.auth.tokens.push(ProducerToken::any_org(SPRAY_TOKEN));
    let gw = GatewayHarness::start(config).await;

    // 300 events for 300 different organizations: the token's burst of 100 gets through.
    let body = (0..300)
        .map(|i| event(&format!("t-{i}"), &format!("org-{i}")))
        .collect::<Vec<_>>()
        .join("\n");
    let started = tokio::time::Instant::now();
    let r = post_as(&gw, Some(SPRAY_TOKEN), body, &[ndjson()]).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.retry_after.is_some());
    let accepted = r.body["accepted"].as_u64().unwrap();
    let refill = (started.elapsed().as_secs_f64() * 50.0).ceil() as u64;
    assert!((100..=100 + refill).contains(&accepted), "{accepted}");
    let limited = &r.body["results"][299];
    assert_eq!(limited["status"], "rate_limited", "{limited}");
    assert!(
        limited["reason"].as_str().unwrap().contains("this token"),
        "{limited}"
    );

    // Over gRPC too; another token is not affected.
    let err = client(&gw)
        .await
        .ingest(with_token(
            SPRAY_TOKEN,
            IngestRequest {
                events: (0..200)
                    .map(|i| grpc_event(&format!("g-{i}"), &format!("org-g{i}")))
                    .collect(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    let r = post(&gw, event("other-token", "org-1"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let text = scrape(gw.ops).await;
    let refused = sample(
        &text,
        r#"auditstream_gateway_events_rejected_total{transport="http",reason="token_rate_limited"}"#,
    )
    .unwrap();
    assert_eq!(refused as u64, 300 - accepted, "{text}");
    let stored = stored_ids(&nats).await;
    assert_eq!(
        stored.iter().filter(|i| i.starts_with("t-")).count() as u64,
        accepted
    );
}

// ---------------------------------------------------------------------------------------
// L4: traceparent, pack sizes, events too large for NATS.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_malformed_traceparent_is_dropped_and_counted_a_w3c_one_is_kept() {
    let s = stack().await;
    const DROPPED: &str = "auditstream_gateway_traceparent_dropped_total";
    assert_eq!(sample(&scrape(s.gateway.ops).await, DROPPED), Some(0.0));

    let r = post(
        &s.gateway,
        event("tp-good", "acme"),
        &[("traceparent", GOOD_TRACEPARENT)],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // 40 KiB of "traceparent", and a value with the right length but upper case.
    let huge = format!("00-{}", "a".repeat(40 * 1024));
    let upper = GOOD_TRACEPARENT.to_uppercase();
    for (id, value) in [("tp-huge", huge.as_str()), ("tp-upper", upper.as_str())] {
        let r = post(&s.gateway, event(id, "acme"), &[("traceparent", value)]).await;
        // The events are stored all the same.
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Over gRPC: all-zero trace id.
    let mut request = with_token(
        TEST_TOKEN,
        IngestRequest {
            events: vec![grpc_event("tp-grpc", "acme")],
        },
    );
    request.metadata_mut().insert(
        "traceparent",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01"
            .parse()
            .unwrap(),
    );
    let reply = client(&s.gateway).await.ingest(request).await.unwrap();
    assert_eq!(reply.into_inner().accepted, 1);

    assert_eq!(sample(&scrape(s.gateway.ops).await, DROPPED), Some(3.0));
    let stored = read_stream(&s.nats.jetstream().await, INGEST).await;
    for msg in &stored {
        let id = header(msg, h::EVENT_ID).unwrap();
        let tp = header(msg, h::TRACEPARENT);
        if id == "tp-good" {
            assert_eq!(tp, Some(GOOD_TRACEPARENT));
        } else {
            assert_eq!(tp, None, "{id} kept a malformed traceparent");
        }
    }
    assert_eq!(stored.len(), 4);
}

#[tokio::test]
async fn packs_stay_within_max_bytes_counting_every_header() {
    let nats = NatsServer::start();
    let mut config = test_gateway_config(&nats.url());
    config.pack.max_bytes = 4096;
    let gw = GatewayHarness::start(config).await;

    // Events without ids are packed; with a producer traceparent and a long organization id
    // each entry's headers are well over the 256 bytes once reckoned per entry.
    let org = "o".repeat(64);
    let line = format!(
        r#"{{"event_type":"api_platform","occurred_at":"2026-11-21T10:17:00Z","org_id":"{org}","workspace_id":"{}","data":{{"method":"GET","path":"{}"}}}}"#,
        "w".repeat(64),
        "p".repeat(200)
    );
    let body = vec![line; 60].join("\n");
    let r = post(&gw, body, &[ndjson(), ("traceparent", GOOD_TRACEPARENT)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let stored = read_stream(&nats.jetstream().await, INGEST).await;
    let mut events = 0;
    let mut packs = 0;
    for msg in &stored {
        if auditstream_bus::pack::is_pack(Some(&msg.headers)).unwrap() {
            packs += 1;
            assert!(
                msg.payload.len() <= 4096,
                "a pack of {} bytes passed pack.max_bytes",
                msg.payload.len()
            );
            events += auditstream_bus::pack::unpack(&msg.payload).unwrap().len();
        } else {
            events += 1;
        }
    }
    assert_eq!(events, 60);
    assert!(packs > 1, "{packs}");
}

#[tokio::test]
async fn an_event_too_large_for_nats_is_refused_alone_while_its_siblings_are_stored() {
    let nats = NatsServer::start();
    let mut config = test_gateway_config(&nats.url());
    // Validation lets through what the test server's max_payload (8 MB) cannot carry: a
    // misconfiguration the gateway warns about at start, answered per event.
    config.limits.max_event_bytes = 9 * 1024 * 1024;
    config.limits.max_request_bytes = 20 * 1024 * 1024;
    config.server.max_inflight_body_bytes = 64 * 1024 * 1024;
    let gw = GatewayHarness::start(config).await;

    let data = format!(r#"{{"method":"GET","blob":"{}"}}"#, "x".repeat(8_500_000));
    let big = event("big", "acme").replace(r#"{"method":"GET"}"#, &data);
    let body = [event("before", "acme"), big.clone(), event("after", "acme")].join("\n");
    let r = post(&gw, body, &[ndjson()]).await;
    assert_eq!(r.status, 207, "{}", r.body);
    let results = r.body["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "accepted");
    assert_eq!(results[2]["status"], "accepted");
    assert_eq!(results[1]["status"], "rejected", "{}", results[1]);
    assert_eq!(results[1]["error"]["code"], "event_too_large");
    assert!(
        results[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_payload"),
        "{}",
        results[1]
    );

    // Alone: 413, not a 503 that a client would retry for ever.
    let r = post(&gw, big, &[]).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.body["results"][0]["error"]["code"], "event_too_large");
    assert!(r.retry_after.is_none());

    // gRPC: a per-item result.
    let mut huge = grpc_event("big-grpc", "acme");
    huge.data_json = data.into_bytes();
    let reply = client(&gw)
        .await
        .ingest(with_token(
            TEST_TOKEN,
            IngestRequest {
                events: vec![grpc_event("grpc-ok", "acme"), huge],
            },
        ))
        .await
        .expect("per-item, not a failed call")
        .into_inner();
    assert_eq!(reply.accepted, 1);
    assert_eq!(reply.results[1].status(), ItemStatus::Rejected);
    assert_eq!(
        reply.results[1].error.as_ref().unwrap().code,
        "event_too_large"
    );

    assert_eq!(stored_ids(&nats).await, ["after", "before", "grpc-ok"]);
    let text = scrape(gw.ops).await;
    assert_eq!(
        sample(
            &text,
            r#"auditstream_gateway_events_rejected_total{transport="http",reason="event_too_large"}"#
        ),
        Some(2.0),
        "{text}"
    );
}
