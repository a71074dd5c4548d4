//! `ensure_topology` against a real JetStream: the five streams of DESIGN §2, idempotent,
//! and limits changed in place.

use std::time::Duration;

use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy};
use auditstream_bus::{StreamChange, ensure_topology, topology};
use auditstream_testkit::{NatsServer, small_topology, stream_configs};

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
            topology::INGEST,
            "audit.ingest.>",
            RetentionPolicy::Limits,
            DiscardPolicy::New,
            Duration::from_secs(24 * 3600),
        ),
        (
            topology::DELIVER,
            "audit.deliver.>",
            RetentionPolicy::WorkQueue,
            DiscardPolicy::New,
            Duration::ZERO,
        ),
        (
            topology::BACKLOG,
            "audit.backlog.>",
            RetentionPolicy::WorkQueue,
            DiscardPolicy::New,
            // A day behind the sinks' 7-day retention, which moves old events to the DLQ.
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
