//! `ensure_topology` against a real JetStream: the streams of DESIGN §2 (one backlog per
//! sink type), idempotent, limits changed in place, and an earlier version's shared backlog
//! moved into the per-type streams without losing an event.

use std::time::Duration;

use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy};
use async_nats::jetstream::{self, consumer::pull};
use auditstream_bus::{Service, StreamChange, ensure_topology, topology};
use auditstream_model::SinkType;
use auditstream_testkit::{NatsServer, small_topology, stream_configs};
use futures_util::StreamExt;

#[tokio::test]
async fn ensure_topology_twice_is_identical_and_a_changed_max_age_is_applied() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let mut config = small_topology();

    let first = ensure_topology(&js, &config).await.unwrap();
    assert!(
        first.iter().all(|(_, c)| *c == StreamChange::Created),
        "{first:?}"
    );
    let before = stream_configs(&js).await;

    let second = ensure_topology(&js, &config).await.unwrap();
    assert!(
        second.iter().all(|(_, c)| *c == StreamChange::Unchanged),
        "{second:?}"
    );
    assert_eq!(
        stream_configs(&js).await,
        before,
        "running twice changes nothing"
    );

    config.ingest.max_age = Duration::from_secs(48 * 3600);
    let third = ensure_topology(&js, &config).await.unwrap();
    for (name, change) in &third {
        let want = if name == topology::INGEST {
            StreamChange::Updated
        } else {
            StreamChange::Unchanged
        };
        assert_eq!(*change, want, "{name}");
    }
    let ingest = js
        .get_stream(topology::INGEST)
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(ingest.config.max_age, Duration::from_secs(48 * 3600));
}

#[tokio::test]
async fn streams_have_the_documented_subjects_retention_and_discard() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let mut config = small_topology();
    config.replicas = 1;
    ensure_topology(&js, &config).await.unwrap();
    let want = [
        (
            // A work queue: the router's ack removes what it routed, so only a router that
            // falls behind fills it; unrouted events never expire.
            topology::INGEST,
            "audit.ingest.>",
            RetentionPolicy::WorkQueue,
            DiscardPolicy::New,
            Duration::ZERO,
        ),
        (
            // What was routed, for backfill: bounded, the oldest dropped, never refusing.
            topology::HISTORY,
            "audit.history.>",
            RetentionPolicy::Limits,
            DiscardPolicy::Old,
            Duration::from_secs(24 * 3600),
        ),
        (
            topology::DELIVER,
            "audit.deliver.>",
            RetentionPolicy::WorkQueue,
            DiscardPolicy::New,
            Duration::ZERO,
        ),
        // One backlog per sink type (each type's NATS user reads only its own).
        (
            "AUDIT_BACKLOG_S3",
            "audit.backlog.s3.>",
            RetentionPolicy::WorkQueue,
            DiscardPolicy::New,
            // A day behind the sinks' 7-day retention, which moves old events to the DLQ.
            Duration::from_secs(8 * 24 * 3600),
        ),
        (
            "AUDIT_BACKLOG_AZURE_BLOB",
            "audit.backlog.azure_blob.>",
            RetentionPolicy::WorkQueue,
            DiscardPolicy::New,
            Duration::from_secs(8 * 24 * 3600),
        ),
        (
            "AUDIT_BACKLOG_AZURE_MONITOR",
            "audit.backlog.azure_monitor.>",
            RetentionPolicy::WorkQueue,
            DiscardPolicy::New,
            Duration::from_secs(8 * 24 * 3600),
        ),
        (
            "AUDIT_BACKLOG_HTTP",
            "audit.backlog.http.>",
            RetentionPolicy::WorkQueue,
            DiscardPolicy::New,
            Duration::from_secs(8 * 24 * 3600),
        ),
        (
            topology::DLQ,
            "audit.dlq.>",
            RetentionPolicy::Limits,
            DiscardPolicy::New,
            Duration::from_secs(7 * 24 * 3600),
        ),
        (
            topology::CONTROL,
            "audit.ctl.>",
            RetentionPolicy::Limits,
            DiscardPolicy::Old,
            Duration::from_secs(7 * 24 * 3600),
        ),
    ];
    for (name, subject, retention, discard, max_age) in want {
        let c = js
            .get_stream(name)
            .await
            .unwrap()
            .get_info()
            .await
            .unwrap()
            .config;
        assert_eq!(c.subjects, vec![subject.to_owned()], "{name}");
        assert_eq!(c.retention, retention, "{name}");
        assert_eq!(c.discard, discard, "{name}");
        assert_eq!(c.max_age, max_age, "{name}");
        assert_eq!(c.max_bytes, 64 * 1024 * 1024, "{name}");
        assert_eq!(c.num_replicas, 1, "{name}");
    }
}

/// A deployment of an earlier version holds its backlog in one `AUDIT_BACKLOG` stream for
/// every sink type. The owner's first `ensure_topology` moves each event, with its headers,
/// to its type's stream and deletes the shared one; the next run finds nothing to move.
#[tokio::test]
async fn the_shared_backlog_of_an_earlier_version_is_moved_into_the_per_type_streams() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    js.create_stream(jetstream::stream::Config {
        name: topology::SHARED_BACKLOG.into(),
        subjects: vec!["audit.backlog.>".into()],
        retention: RetentionPolicy::WorkQueue,
        max_bytes: 64 << 20,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut sent = Vec::new();
    for (i, t) in SinkType::ALL.iter().cycle().take(40).enumerate() {
        let subject = format!("audit.backlog.{t}.s{}", i % 3);
        let mut h = async_nats::HeaderMap::new();
        h.insert("Auditstream-Event-Id", format!("e{i}").as_str());
        js.publish_with_headers(subject.clone(), h, format!("body {i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
        sent.push((subject, format!("e{i}"), format!("body {i}")));
    }
    // One event already taken by an old sink (a work queue removes it on ack): not moved.
    let old = js.get_stream(topology::SHARED_BACKLOG).await.unwrap();
    let consumer = old
        .create_consumer(pull::Config {
            durable_name: Some("backlog-s3-s0".into()),
            filter_subject: "audit.backlog.s3.s0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let first = consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap();
    first.double_ack().await.unwrap();
    let taken = first.subject.to_string();
    sent.remove(sent.iter().position(|(s, ..)| *s == taken).unwrap());

    // As the owner does it: with the config service's NATS user and permissions.
    let owner = auditstream_bus::jetstream_context(
        auditstream_bus::connect(
            &nats.service_config(Service::ConfigService),
            Service::ConfigService,
        )
        .await
        .unwrap(),
        Duration::from_secs(5),
    );
    let changes = ensure_topology(&owner, &small_topology()).await.unwrap();
    assert_eq!(
        changes.last(),
        Some(&(
            topology::SHARED_BACKLOG.to_owned(),
            StreamChange::Migrated { moved: 39 }
        )),
        "{changes:?}"
    );
    assert!(
        js.get_stream(topology::SHARED_BACKLOG).await.is_err(),
        "the shared backlog is gone"
    );

    let mut moved = Vec::new();
    for t in SinkType::ALL {
        let stream = js.get_stream(topology::backlog(t)).await.unwrap();
        let state = stream.clone().get_info().await.unwrap().state;
        for seq in state.first_sequence..=state.last_sequence {
            let m = stream.get_raw_message(seq).await.unwrap();
            assert!(
                m.subject.starts_with(&format!("audit.backlog.{t}.")),
                "{} in {t}",
                m.subject
            );
            let id = m.headers.get("Auditstream-Event-Id").unwrap().to_string();
            moved.push((
                m.subject.to_string(),
                id,
                String::from_utf8(m.payload.to_vec()).unwrap(),
            ));
        }
    }
    moved.sort();
    sent.sort();
    assert_eq!(moved, sent, "every event, once, with its headers and body");

    let again = ensure_topology(&owner, &small_topology()).await.unwrap();
    assert!(
        again.iter().all(|(_, c)| *c == StreamChange::Unchanged),
        "{again:?}"
    );
}
