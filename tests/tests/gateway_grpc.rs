//! gRPC ingest against a real nats-server: unary and client-streaming calls, per-item
//! results, authentication, de-duplication.

mod common;

use auditstream_bus::{headers as h, topology::INGEST};
use auditstream_proto::v1::{
    IngestEvent, IngestRequest, ItemStatus, ingest_service_client::IngestServiceClient,
};
use auditstream_testkit::{TEST_TOKEN, read_stream};
use common::*;
use serde_json::value::RawValue;
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};

/// Turns an example envelope into the typed gRPC event, keeping `data`'s bytes.
fn to_grpc(line: &str) -> IngestEvent {
    let env: std::collections::HashMap<String, &RawValue> = serde_json::from_str(line).unwrap();
    let s = |k: &str| serde_json::from_str::<String>(env[k].get()).unwrap();
    IngestEvent {
        id: s("id"),
        event_type: s("event_type"),
        occurred_at: s("occurred_at"),
        org_id: s("org_id"),
        workspace_id: s("workspace_id"),
        data_json: env["data"].get().as_bytes().to_vec(),
    }
}

async fn client(addr: String) -> IngestServiceClient<Channel> {
    IngestServiceClient::connect(addr)
        .await
        .expect("grpc connect")
}

fn authed<T>(msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    let value: MetadataValue<_> = format!("Bearer {TEST_TOKEN}").parse().unwrap();
    req.metadata_mut().insert("authorization", value);
    req
}

#[tokio::test]
async fn every_example_lands_over_unary_grpc_with_headers_and_data_bytes_unchanged() {
    let s = stack().await;
    let js = s.nats.jetstream().await;
    let lines = example_lines();
    let events: Vec<_> = lines.iter().map(|l| to_grpc(l)).collect();
    let mut c = client(s.gateway.grpc_url()).await;

    let resp = c
        .ingest(authed(IngestRequest {
            events: events.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((resp.accepted, resp.duplicates), (6, 0));
    assert!(
        resp.results
            .iter()
            .all(|r| r.status == ItemStatus::Accepted as i32)
    );

    let stored = read_stream(&js, INGEST).await;
    assert_eq!(stored.len(), 6);
    for ((line, ev), msg) in lines.iter().zip(&events).zip(&stored) {
        assert_eq!(
            msg.subject.as_str(),
            format!(
                "audit.ingest.{}.{}.{}",
                ev.org_id, ev.workspace_id, ev.event_type
            )
        );
        // The body is the same envelope; `data` is byte-for-byte what the producer sent.
        let body: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        let sent: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(body, sent);
        let raw: std::collections::HashMap<String, &RawValue> =
            serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(raw["data"].get().as_bytes(), ev.data_json.as_slice());
        // De-duplicated within the organization: `<org>.<id>`.
        assert_eq!(
            header(msg, h::MSG_ID),
            Some(h::ingest_msg_id(&ev.org_id, &ev.id).as_str())
        );
        assert_eq!(header(msg, h::EVENT_ID), Some(ev.id.as_str()));
        assert_eq!(header(msg, h::ORG_ID), Some(ev.org_id.as_str()));
        assert_eq!(header(msg, h::WORKSPACE_ID), Some(ev.workspace_id.as_str()));
        assert_eq!(header(msg, h::EVENT_TYPE), Some(ev.event_type.as_str()));
        assert_eq!(header(msg, h::OCCURRED_AT), Some(ev.occurred_at.as_str()));
        assert!(header(msg, h::RECEIVED_AT).is_some());
    }

    // Same ids again → acknowledged as duplicates, stored once.
    let again = c
        .ingest(authed(IngestRequest { events }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.accepted, again.duplicates), (6, 6));
    assert_eq!(read_stream(&js, INGEST).await.len(), 6);
}

#[tokio::test]
async fn client_streaming_indexes_across_batches_and_keeps_valid_siblings() {
    let s = stack().await;
    let js = s.nats.jetstream().await;
    let lines = example_lines();
    let first: Vec<_> = lines[..3].iter().map(|l| to_grpc(l)).collect();
    let mut second: Vec<_> = lines[3..].iter().map(|l| to_grpc(l)).collect();
    second[1].workspace_id = "ws>all".into(); // index 4 overall
    second.push(IngestEvent {
        data_json: b"{\"unterminated\":".to_vec(),
        ..to_grpc(lines[0])
    });

    let batches = tokio_stream::iter(vec![
        IngestRequest { events: first },
        IngestRequest { events: second },
    ]);
    let mut c = client(s.gateway.grpc_url()).await;
    let resp = c.ingest_stream(authed(batches)).await.unwrap().into_inner();
    assert_eq!(resp.accepted, 5);
    assert_eq!(resp.results.len(), 7);
    for (i, r) in resp.results.iter().enumerate() {
        assert_eq!(r.index as usize, i);
    }
    let bad = &resp.results[4];
    assert_eq!(bad.status, ItemStatus::Rejected as i32);
    let err = bad.error.as_ref().unwrap();
    assert_eq!(
        (err.field.as_str(), err.code.as_str()),
        ("workspace_id", "invalid_id")
    );
    let bad = resp.results[6].error.as_ref().unwrap();
    assert_eq!(
        (bad.field.as_str(), bad.code.as_str()),
        ("data", "malformed_json")
    );

    let mut stored = ids(&read_stream(&js, INGEST).await);
    stored.sort();
    let mut want: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 4)
        .map(|(_, l)| to_grpc(l).id)
        .collect();
    want.sort();
    assert_eq!(stored, want);
}

#[tokio::test]
async fn grpc_requires_a_valid_token_and_reports_health() {
    let s = stack().await;
    let mut c = client(s.gateway.grpc_url()).await;
    let events = vec![to_grpc(example_lines()[0])];
    let err = c
        .ingest(IngestRequest {
            events: events.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut req = Request::new(IngestRequest { events });
    req.metadata_mut().insert(
        "authorization",
        "Bearer nope-nope-nope-nope".parse().unwrap(),
    );
    assert_eq!(
        c.ingest(req).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert!(
        read_stream(&s.nats.jetstream().await, INGEST)
            .await
            .is_empty()
    );

    let channel = Channel::from_shared(s.gateway.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = |service: &str| tonic_health::pb::HealthCheckRequest {
        service: service.into(),
    };
    for service in ["", "auditstream.v1.IngestService"] {
        let status = health
            .check(check(service))
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
}
