//! TestDestination and the dead-letter queue through the real config service:
//!
//! - TestDestination goes to the sink of the destination's type over NATS request-reply
//!   (`audit.rpc.<type>.test_destination`, answered here by a stand-in responder), always
//!   with the destination filled in; an unsaved destination is validated like a stream's;
//!   without a sink the answer is UNAVAILABLE naming it.
//! - ListDeadLetters reads a stream's messages in the real AUDIT_DLQ; ReplayDeadLetters
//!   republishes them to AUDIT_DELIVER under a replay message id (so JetStream's duplicate
//!   window does not swallow them) and deletes them from the DLQ.

mod common;

use std::time::Duration;

use async_nats::{HeaderMap, jetstream};
use auditstream_bus::{headers, subjects, topology};
use auditstream_config_service::authz::Role;
use auditstream_model::SinkType;
use auditstream_proto::v1::{
    self as pb, AppliesTo::*, Connection, Destination, EventSelection, HttpBearerAuth,
    HttpCredentials, HttpTarget, NodeKind::*, Stream, TestDestinationRequest,
    TestDestinationResponse, connection::Credentials, destination::Target, http_credentials,
};
use auditstream_testkit::{ConfigClient, read_stream};
use common::config::*;
use futures_util::StreamExt;
use prost::Message;
use tokio::sync::mpsc;
use tonic::Code;

const URL: &str = "https://8.8.8.8/ingest";
/// The origin the HTTP connection's token is bound to.
const ORIGIN: &str = "https://8.8.8.8";

fn http_connection(id: &str, node: &str) -> Connection {
    Connection {
        id: id.into(),
        node_id: node.into(),
        name: format!("HTTP {id}"),
        credentials: Some(Credentials::Http(HttpCredentials {
            auth: Some(http_credentials::Auth::Bearer(HttpBearerAuth {
                token: SECRET.into(),
            })),
            origin: ORIGIN.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn http_destination(connection: &str, url: &str) -> Destination {
    Destination {
        connection_id: connection.into(),
        target: Some(Target::Http(HttpTarget {
            url: url.into(),
            ..Default::default()
        })),
    }
}

fn http_stream(id: &str, node: &str, connection: &str) -> Stream {
    Stream {
        id: id.into(),
        node_id: node.into(),
        name: format!("stream {id}"),
        applies_to: SelfOnly as i32,
        enabled: true,
        selection: Some(EventSelection {
            event_types: vec!["job_status".into()],
            ..Default::default()
        }),
        destination: Some(http_destination(connection, URL)),
        ..Default::default()
    }
}

/// org → p1 (partner) → c1 (customer), org → p2; an HTTP connection at p1 and streams
/// `s1` and `s2` at c1 using it.
async fn setup() -> ConfigStack {
    let mut s = config_stack().await;
    let a = &mut s.admin;
    tree(
        a,
        &[
            ("org", "", Organization),
            ("p1", "org", Partner),
            ("c1", "p1", Customer),
            ("p2", "org", Partner),
        ],
    )
    .await;
    create_connection(a, http_connection("p1-http", "p1")).await;
    for id in ["s1", "s2"] {
        create_stream(a, http_stream(id, "c1", "p1-http"))
            .await
            .unwrap();
    }
    s
}

fn url_of(d: Option<&Destination>) -> &str {
    match d.and_then(|d| d.target.as_ref()) {
        Some(Target::Http(t)) => t.url.as_str(),
        _ => "",
    }
}

/// A stand-in for the HTTP sink's test responder: it passes on every request it gets and
/// answers `ok` with the URL in `detail`; a URL containing `forbidden` is "not ok", one
/// containing `refuse` gets an error header instead of an answer.
async fn http_responder(s: &ConfigStack) -> mpsc::UnboundedReceiver<TestDestinationRequest> {
    let nats = s.nats.connect().await;
    let mut requests = nats
        .subscribe(subjects::rpc(SinkType::Http, "test_destination"))
        .await
        .unwrap();
    nats.flush().await.unwrap(); // subscribed before anyone asks
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(msg) = requests.next().await {
            let asked = TestDestinationRequest::decode(msg.payload.as_ref()).unwrap();
            assert!(
                !msg.payload
                    .windows(SECRET.len())
                    .any(|w| w == SECRET.as_bytes()),
                "no secret on the bus"
            );
            let url = url_of(asked.destination.as_ref()).to_owned();
            let reply = msg.reply.unwrap();
            if url.contains("refuse") {
                let mut h = HeaderMap::new();
                h.insert(headers::ERROR, "the HTTP sink cannot test this preset yet");
                nats.publish_with_headers(reply, h, Default::default())
                    .await
                    .unwrap();
            } else {
                let ok = !url.contains("forbidden");
                let answer = TestDestinationResponse {
                    ok,
                    result: if ok { "delivered" } else { "configuration" }.into(),
                    detail: format!("POST {url}: {}", if ok { 200 } else { 403 }),
                    hint: if ok { "" } else { "rotate the token" }.into(),
                    latency_ms: 12,
                };
                nats.publish(reply, answer.encode_to_vec().into())
                    .await
                    .unwrap();
            }
            nats.flush().await.unwrap();
            let _ = tx.send(asked);
        }
    });
    rx
}

async fn test(
    client: &mut ConfigClient,
    stream_id: &str,
    destination: Option<Destination>,
) -> Result<TestDestinationResponse, tonic::Status> {
    client
        .test_destination(TestDestinationRequest {
            stream_id: stream_id.into(),
            destination,
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn test_destination_asks_the_sink_with_the_destination_filled_in() {
    let mut s = setup().await;
    let mut asked = http_responder(&s).await;

    // A saved stream, asked by id: the sink gets the stream's destination.
    let answer = test(&mut s.admin, "s1", None).await.unwrap();
    assert_eq!(
        answer,
        TestDestinationResponse {
            ok: true,
            result: "delivered".into(),
            detail: format!("POST {URL}: 200"),
            hint: String::new(),
            latency_ms: 12,
        }
    );
    let got = asked.recv().await.unwrap();
    assert_eq!(got.stream_id, "s1");
    assert_eq!(got.destination, Some(http_destination("p1-http", URL)));

    // An unsaved destination on a saved connection, by the partner admin who may change it.
    let mut partner = s.config.client_as(Role::PartnerAdmin, Some("p1")).await;
    let forbidden = "https://8.8.8.8/forbidden";
    let answer = test(
        &mut partner,
        "",
        Some(http_destination("p1-http", forbidden)),
    )
    .await
    .unwrap();
    assert!(!answer.ok);
    assert_eq!(
        (answer.result.as_str(), answer.hint.as_str()),
        ("configuration", "rotate the token")
    );
    let got = asked.recv().await.unwrap();
    assert_eq!(got.stream_id, "");
    assert_eq!(
        got.destination,
        Some(http_destination("p1-http", forbidden))
    );

    // The sink's error header is FAILED_PRECONDITION with its text.
    let err = test(
        &mut s.admin,
        "",
        Some(http_destination("p1-http", "https://8.8.8.8/refuse")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(err.message(), "the HTTP sink cannot test this preset yet");
    assert_eq!(
        url_of(asked.recv().await.unwrap().destination.as_ref()),
        "https://8.8.8.8/refuse"
    );

    // A saved stream may be tested with read access (auditor); an unsaved destination sends
    // the connection's secret somewhere new, so it needs write access on the connection (H2).
    let mut auditor = s.config.client_as(Role::Auditor, None).await;
    assert!(test(&mut auditor, "s2", None).await.unwrap().ok);
    assert_eq!(asked.recv().await.unwrap().stream_id, "s2");
    let err = test(&mut auditor, "", Some(http_destination("p1-http", URL)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    // Not even a writer can send the connection's token to another origin.
    let err = test(
        &mut partner,
        "",
        Some(http_destination("p1-http", "https://8.8.4.4/ingest")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().starts_with(
            "destination.http.url: https://8.8.4.4 is not the connection's origin https://8.8.8.8"
        ),
        "{}",
        err.message()
    );
    // Other subtrees are refused before anything is sent.
    let mut other = s.config.client_as(Role::PartnerAdmin, Some("p2")).await;
    for (stream, destination) in [("s1", None), ("", Some(http_destination("p1-http", URL)))] {
        let err = test(&mut other, stream, destination).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    }
    assert!(asked.try_recv().is_err(), "nothing else reached the sink");
}

#[tokio::test]
async fn test_destination_validates_an_unsaved_destination_like_a_stream() {
    let mut s = setup().await;
    let mut asked = http_responder(&s).await;
    create_connection(&mut s.admin, s3_connection("p1-s3", "p1", SECRET)).await;
    let cases: Vec<(Destination, &str, &str)> = vec![
        (
            http_destination("p1-http", "ftp://8.8.8.8/x"),
            "destination.http.url: ",
            "",
        ),
        (
            http_destination("p1-http", "http://8.8.8.8/x"),
            "destination.http.url: ",
            "unencrypted",
        ),
        // The SSRF rule: a private address is refused unless allowed by the operator.
        (
            http_destination("p1-http", "https://10.1.2.3/x"),
            "destination.http.url: ",
            "",
        ),
        (
            Destination {
                connection_id: "p1-http".into(),
                target: None,
            },
            "destination: ",
            "a target is required",
        ),
        (
            http_destination("p1-s3", URL),
            "destination: ",
            "connection p1-s3 is of type s3 but the target is of type http",
        ),
        (
            http_destination("", URL),
            "destination.connection_id: ",
            "required",
        ),
    ];
    for (destination, prefix, needle) in cases {
        let err = test(&mut s.admin, "", Some(destination.clone()))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{destination:?}: {err:?}"
        );
        assert!(
            err.message().starts_with(prefix) && err.message().contains(needle),
            "{destination:?}: {}",
            err.message()
        );
    }
    let err = test(&mut s.admin, "s1", Some(http_destination("p1-http", URL)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("not both"), "{}", err.message());
    let err = test(&mut s.admin, "", None).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("stream_id: "),
        "{}",
        err.message()
    );
    let err = test(&mut s.admin, "nope", None).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = test(&mut s.admin, "", Some(http_destination("nope", URL)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        asked.try_recv().is_err(),
        "nothing invalid reached the sink"
    );
}

#[tokio::test]
async fn test_destination_is_unavailable_without_a_sink_or_an_answer() {
    let mut s = setup().await;
    let err = test(&mut s.admin, "s1", None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        err.message(),
        "no auditstream-sink-http is running to test http destinations; TestDestination is \
         answered by the sink of the destination's type"
    );

    // A sink that takes the request but never answers: the request timeout (2 s in tests).
    let nats = s.nats.connect().await;
    let _silent = nats
        .subscribe(subjects::rpc(SinkType::Http, "test_destination"))
        .await
        .unwrap();
    nats.flush().await.unwrap();
    // Once the server counts the subscriber (seen once under load in CI: a "no responders"
    // right after the flush), the request waits for an answer that never comes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let err = loop {
        let err = test(&mut s.admin, "s1", None).await.unwrap_err();
        if !err
            .message()
            .starts_with("no auditstream-sink-http is running")
            || tokio::time::Instant::now() > deadline
        {
            break err;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        err.message(),
        "auditstream-sink-http did not answer TestDestination within 2s"
    );
}

// ---------------------------------------------------------------- dead letters

async fn list(
    client: &mut ConfigClient,
    stream_id: &str,
    after_sequence: u64,
    limit: u32,
) -> Result<pb::ListDeadLettersResponse, tonic::Status> {
    client
        .list_dead_letters(pb::ListDeadLettersRequest {
            stream_id: stream_id.into(),
            after_sequence,
            limit,
        })
        .await
        .map(|r| r.into_inner())
}

async fn replay(
    client: &mut ConfigClient,
    stream_id: &str,
    sequences: &[u64],
) -> Result<u64, tonic::Status> {
    client
        .replay_dead_letters(pb::ReplayDeadLettersRequest {
            stream_id: stream_id.into(),
            sequences: sequences.to_vec(),
        })
        .await
        .map(|r| r.into_inner().replayed)
}

/// The delivery messages of the stream with key `stream_key` in AUDIT_DELIVER.
async fn delivered(
    js: &jetstream::Context,
    stream_key: &str,
) -> Vec<jetstream::message::StreamMessage> {
    let subject = subjects::deliver(SinkType::Http, stream_key).unwrap();
    read_stream(js, topology::DELIVER)
        .await
        .into_iter()
        .filter(|m| m.subject.as_str() == subject)
        .collect()
}

fn header<'a>(m: &'a jetstream::message::StreamMessage, name: &str) -> Option<&'a str> {
    m.headers.get(name).map(|v| v.as_str())
}

#[tokio::test]
async fn dead_letters_are_listed_in_order_with_paging() {
    let mut s = setup().await;
    let js = s.nats.jetstream().await;
    let (k1, k2) = (
        common::stream_key(&s.admin, "s1").await,
        common::stream_key(&s.admin, "s2").await,
    );
    let mut seqs = Vec::new();
    for i in 0..5 {
        let body = format!(r#"{{"event": {i}}}"#);
        seqs.push(
            common::dead_letter(
                &js,
                ("s1", &k1),
                &format!("e{i}"),
                &format!("400 bad field {i}"),
                &body,
            )
            .await,
        );
        // Another stream's dead letters in between are not s1's.
        common::dead_letter(&js, ("s2", &k2), &format!("x{i}"), "413", "{}").await;
    }

    let all = list(&mut s.admin, "s1", 0, 0).await.unwrap();
    assert_eq!(all.total, 5);
    let got: Vec<(u64, String, String)> = all
        .dead_letters
        .iter()
        .map(|d| (d.sequence, d.event_id.clone(), d.reason.clone()))
        .collect();
    let want: Vec<(u64, String, String)> = (0..5)
        .map(|i| (seqs[i], format!("e{i}"), format!("400 bad field {i}")))
        .collect();
    assert_eq!(got, want);
    let first = &all.dead_letters[0];
    assert_eq!(
        (
            first.event_type.as_str(),
            first.workspace_id.as_str(),
            first.size_bytes
        ),
        ("job_status", "c1", r#"{"event": 0}"#.len() as u64)
    );
    let at = time::OffsetDateTime::parse(
        &first.dead_lettered_at,
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    assert!((time::OffsetDateTime::now_utc() - at).whole_seconds().abs() < 60);

    // Pages: two at a time, each after the last sequence seen.
    let page = list(&mut s.admin, "s1", 0, 2).await.unwrap();
    assert_eq!(
        page.dead_letters
            .iter()
            .map(|d| d.sequence)
            .collect::<Vec<_>>(),
        seqs[..2]
    );
    assert_eq!(page.total, 5);
    let page = list(&mut s.admin, "s1", seqs[1], 2).await.unwrap();
    assert_eq!(
        page.dead_letters
            .iter()
            .map(|d| d.sequence)
            .collect::<Vec<_>>(),
        seqs[2..4]
    );
    let page = list(&mut s.admin, "s1", seqs[4], 2).await.unwrap();
    assert!(page.dead_letters.is_empty());
    assert_eq!(page.total, 5);

    // Read access: the auditor may list; another partner's admin may not.
    let mut auditor = s.config.client_as(Role::Auditor, None).await;
    assert_eq!(list(&mut auditor, "s2", 0, 0).await.unwrap().total, 5);
    let mut other = s.config.client_as(Role::PartnerAdmin, Some("p2")).await;
    let err = list(&mut other, "s1", 0, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn replayed_dead_letters_go_back_to_delivery_and_leave_the_dlq() {
    let mut s = setup().await;
    let js = s.nats.jetstream().await;
    let (k1, k2) = (
        common::stream_key(&s.admin, "s1").await,
        common::stream_key(&s.admin, "s2").await,
    );

    // e0 was delivered a moment ago under the router's id `e0.<s1's key>` (the sink took it off the
    // work queue), then refused for good: a replay under the same id would be dropped as a
    // duplicate within JetStream's 2-minute window.
    let deliver = subjects::deliver(SinkType::Http, &k1).unwrap();
    let mut h = HeaderMap::new();
    h.insert(headers::EVENT_ID, "e0");
    let original = auditstream_bus::publish_durable(
        &js,
        deliver.clone(),
        &format!("e0.{k1}"),
        h,
        r#"{"event": 0}"#.into(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    js.get_stream(topology::DELIVER)
        .await
        .unwrap()
        .delete_message(original.sequence)
        .await
        .unwrap();

    let mut seqs = Vec::new();
    for i in 0..4 {
        let body = format!(r#"{{"event": {i}}}"#);
        seqs.push(
            common::dead_letter(&js, ("s1", &k1), &format!("e{i}"), "400 rejected", &body).await,
        );
    }
    let other = common::dead_letter(&js, ("s2", &k2), "x0", "413", "{}").await;

    // Write access is needed: the auditor may not, nor may another partner's admin.
    for (role, node) in [(Role::Auditor, None), (Role::PartnerAdmin, Some("p2"))] {
        let mut c = s.config.client_as(role, node).await;
        let err = replay(&mut c, "s1", &[]).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{role:?}");
    }
    // A sequence that is not one of s1's dead letters: refused, naming it; nothing replayed.
    for bad in [other, 0, 999_999] {
        let err = replay(&mut s.admin, "s1", &[seqs[0], bad])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
        assert_eq!(
            err.message(),
            format!("sequences[1]: {bad} is not a dead letter of stream s1")
        );
    }
    assert_eq!(list(&mut s.admin, "s1", 0, 0).await.unwrap().total, 4);
    assert!(delivered(&js, &k1).await.is_empty());

    // Two by sequence (named twice: replayed once), by the partner admin of p1.
    let mut partner = s.config.client_as(Role::PartnerAdmin, Some("p1")).await;
    assert_eq!(
        replay(&mut partner, "s1", &[seqs[0], seqs[2], seqs[0]])
            .await
            .unwrap(),
        2
    );
    let left = list(&mut s.admin, "s1", 0, 0).await.unwrap();
    assert_eq!(
        left.dead_letters
            .iter()
            .map(|d| d.sequence)
            .collect::<Vec<_>>(),
        [seqs[1], seqs[3]]
    );
    assert_eq!(left.total, 2);
    let out = delivered(&js, &k1).await;
    assert_eq!(out.len(), 2);
    for (m, (i, seq)) in out.iter().zip([(0, seqs[0]), (2, seqs[2])]) {
        let event_id = format!("e{i}");
        assert_eq!(m.payload, format!(r#"{{"event": {i}}}"#).as_bytes());
        assert_eq!(
            header(m, headers::MSG_ID),
            Some(format!("{event_id}.{k1}.replay.{seq}").as_str())
        );
        for (name, value) in [
            (headers::EVENT_ID, event_id.as_str()),
            (headers::ORG_ID, "org"),
            (headers::WORKSPACE_ID, "c1"),
            (headers::EVENT_TYPE, "job_status"),
            (headers::OCCURRED_AT, "2026-11-21T10:15:02.120Z"),
            (headers::RECEIVED_AT, "2026-11-21T10:15:02.500Z"),
            (headers::STREAM_ID, "s1"),
            (
                headers::TRACEPARENT,
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ] {
            assert_eq!(header(m, name), Some(value), "{name}");
        }
        assert_eq!(header(m, headers::ERROR), None, "the reason stays behind");
    }

    // The rest, all at once; s2's dead letter stays.
    assert_eq!(replay(&mut s.admin, "s1", &[]).await.unwrap(), 2);
    let left = list(&mut s.admin, "s1", 0, 0).await.unwrap();
    assert!(left.dead_letters.is_empty() && left.total == 0, "{left:?}");
    assert_eq!(delivered(&js, &k1).await.len(), 4);
    assert_eq!(list(&mut s.admin, "s2", 0, 0).await.unwrap().total, 1);
    assert_eq!(replay(&mut s.admin, "s1", &[]).await.unwrap(), 0);
}
