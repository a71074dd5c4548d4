//! H5: a configuration larger than a gRPC message. The unary `GetRoutingSnapshot` of a tree
//! far above 4 MiB is refused by a client with tonic's default decode limit, which is what
//! every follower (router, sinks) used to be: none could start or resync. The follower now
//! loads `StreamRoutingSnapshot`, pages of at most `snapshot_page_bytes` at one revision,
//! and resyncs from it after a gap; changes made through the RPCs keep flowing afterwards.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use auditstream_bus::{headers, subjects};
use auditstream_config_client::{ConfigSource, Follower};
use auditstream_config_service::{
    authz::ServiceKind,
    crypto::Sealed,
    store::{Store, StoredConnection},
};
use auditstream_proto::v1::{
    self as pb, AppliesTo::*, ConfigChange, NodeKind::*, config_change::Change,
};
use auditstream_testkit::{ConfigHarness, Database, NatsServer, TestToken};
use common::config::*;
use futures_util::StreamExt;
use prost::Message;
use tokio_util::sync::CancellationToken;

const WORKSPACES: usize = 3_000;
const STREAMS: usize = 90;
/// Close to the 64 KiB template limit.
const TEMPLATE_PAD: usize = 60 * 1024;

fn large_template(i: usize) -> String {
    format!(
        r#"{{"event": {{{{{{log_message}}}}}}, "at": "{{{{{{now_utc}}}}}}", "stream": {i}, "pad": "{}"}}"#,
        "x".repeat(TEMPLATE_PAD)
    )
}

async fn wait_until<F: AsyncFn() -> bool>(what: &str, f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The tree: an organization with `WORKSPACES` workspaces (with names and contacts) and
/// `STREAMS` streams with templates near the 64 KiB limit, with a connection.
fn large_tree() -> (Vec<pb::Node>, Vec<StoredConnection>, Vec<pb::Stream>) {
    let mut nodes = vec![node("org", "", Organization)];
    for i in 0..WORKSPACES {
        nodes.push(pb::Node {
            name: format!("Workspace {i} of a large organization"),
            admin_emails: vec![format!("admin-{i}@org.example")],
            ..node(&format!("ws-{i:05}"), "org", Workspace)
        });
    }
    let connection = StoredConnection {
        public: pb::Connection {
            id: "conn".into(),
            node_id: "org".into(),
            version: 1,
            ..Default::default()
        },
        // Never opened here: nothing asks for the destination.
        sealed: Sealed {
            key_id: "test-key".into(),
            blob: vec![0; 64],
        },
    };
    let streams = (0..STREAMS)
        .map(|i| pb::Stream {
            uid: format!("{i:032x}"),
            template: large_template(i),
            version: 1,
            ..s3_stream(
                &format!("s-{i:03}"),
                &format!("ws-{i:05}"),
                SelfOnly,
                "conn",
            )
        })
        .collect();
    (nodes, vec![connection], streams)
}

#[tokio::test]
async fn a_tree_far_above_4_mib_loads_in_a_follower_and_resyncs_after_a_gap() {
    // Seeded in one transaction (thousands of RPCs would take minutes in a debug build);
    // the service then serves it as any stored tree.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let (nodes, connections, streams) = large_tree();
    Store::connect(&url, 1)
        .await
        .unwrap()
        .import(nodes, connections, streams)
        .await
        .unwrap();
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Shared(url), |_| {}).await;
    let mut admin = config
        .client_as(auditstream_config_service::authz::Role::PlatformAdmin, None)
        .await;
    let mut svc = config.client_service(ServiceKind::Router).await;

    // What followers used to do: one message, decoded with tonic's default 4 MiB limit.
    let refused = svc
        .get_routing_snapshot(pb::GetRoutingSnapshotRequest {})
        .await
        .unwrap_err();
    assert!(refused.message().contains("too large"), "{refused:?}");
    // The whole snapshot, for comparison, through a client that accepts it (as auditctl
    // now does).
    let mut big = svc
        .clone()
        .max_decoding_message_size(auditstream_config_client::MAX_DECODING_MESSAGE_BYTES);
    let whole = big
        .get_routing_snapshot(pb::GetRoutingSnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let bytes = whole.encoded_len();
    assert!(bytes > 5 * 1024 * 1024, "snapshot is only {bytes} bytes");
    assert_eq!(
        (whole.nodes.len(), whole.streams.len()),
        (WORKSPACES + 1, STREAMS)
    );

    // auditctl reads the one-message snapshot too: it decodes up to 64 MiB.
    let token = TestToken::service(ServiceKind::Router).token;
    let mut printed = Vec::new();
    auditstream_cli::run_args(
        [
            "auditctl",
            "--server",
            &config.url(),
            "--token",
            token,
            "snapshot",
        ],
        &mut printed,
    )
    .await
    .unwrap_or_else(|e| panic!("auditctl snapshot: {e}"));
    let printed = String::from_utf8(printed).unwrap();
    assert!(
        printed.contains("s-089") && printed.contains("ws-02999"),
        "{}",
        &printed[..200]
    );

    // Pages: each within 1 MiB (the default), all at the snapshot's revision.
    let mut pages = svc
        .stream_routing_snapshot(pb::StreamRoutingSnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut count = 0;
    let (mut nodes, mut streams) = (0, 0);
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        assert!(page.encoded_len() <= 1024 * 1024, "{}", page.encoded_len());
        assert_eq!(page.revision, whole.revision);
        (nodes, streams) = (nodes + page.nodes.len(), streams + page.streams.len());
        count += 1;
        if page.last {
            break;
        }
    }
    assert!(count >= 6, "{count} pages");
    assert_eq!((nodes, streams), (WORKSPACES + 1, STREAMS));

    // A follower loads it...
    let shutdown = CancellationToken::new();
    let follower = Follower::start(
        ConfigSource {
            url: config.url(),
            token: TestToken::service(ServiceKind::Router).token.to_owned(),
            tls: Default::default(),
        },
        nats.connect().await,
        shutdown.clone(),
    );
    let view = follower
        .wait_for(whole.revision, Duration::from_secs(60))
        .await;
    assert!(view.synced);
    assert_eq!(view.revision, whole.revision);
    assert_eq!(
        view.nodes.values().cloned().collect::<Vec<_>>(),
        whole.nodes
    );
    assert_eq!(
        view.streams.values().cloned().collect::<Vec<_>>(),
        whole.streams
    );
    assert_eq!(view.feed_public_key, whole.feed_public_key);

    // ...and, after a gap in the feed, loads it again.
    let snapshots = follower.stats.snapshots.load(Ordering::Relaxed);
    let ahead = ConfigChange {
        revision: whole.revision + 10,
        change: Some(Change::NodeDeleted("org".into())),
    };
    let (payload, signature) = config.feed_signer().await.sign(&ahead);
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::SIGNATURE, signature.as_str());
    nats.jetstream()
        .await
        .publish_with_headers(subjects::CONFIG_CHANGES, h, payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
    wait_until("a resync", async || {
        follower.stats.snapshots.load(Ordering::Relaxed) > snapshots
    })
    .await;
    let view = follower.view();
    assert_eq!(view.revision, whole.revision);
    assert_eq!(view.streams.len(), STREAMS);
    assert_eq!(view.nodes.len(), WORKSPACES + 1);
    // Changes keep flowing after the resync.
    set_enabled(&mut admin, "s-007", false).await.unwrap();
    let view = follower
        .wait_for(whole.revision + 1, Duration::from_secs(30))
        .await;
    assert!(!view.streams["s-007"].enabled);
    shutdown.cancel();
}
