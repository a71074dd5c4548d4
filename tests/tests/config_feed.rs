//! The config service's outputs to the data plane: the change feed (every revision, in
//! order; a reader that misses one resyncs), connection rotation as the data plane sees it,
//! secrets that never leave except to the service role, self-audit events, ListTargets over
//! NATS request-reply, and the delete rules.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use auditstream_bus::{headers, subjects, topology};
use auditstream_config_client::{ConfigSource, Follower};
use auditstream_config_service::{
    authz::{Role, ServiceKind},
    signing::FeedSigner,
};
use auditstream_proto::v1::{
    self as pb, AppliesTo::*, ConfigChange, EventSelection, ListTargetsRequest,
    ListTargetsResponse, NodeKind::*, config_change::Change, connection::Credentials,
    get_destination_request::Key, s3_credentials,
};
use auditstream_testkit::{TestToken, read_stream};
use common::config::*;
use futures_util::StreamExt;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::Code;

fn service_source(s: &ConfigStack) -> ConfigSource {
    ConfigSource {
        url: s.config.url(),
        token: TestToken::service(ServiceKind::Router).token.to_owned(),
        tls: Default::default(),
    }
}

/// The revisions on AUDIT_CONTROL's config subject, in stream order.
async fn feed_revisions(js: &jetstream::Context) -> Vec<u64> {
    read_stream(js, topology::CONTROL)
        .await
        .iter()
        .filter(|m| m.subject.as_str() == subjects::CONFIG_CHANGES)
        .map(|m| {
            let header: u64 = m
                .headers
                .get(headers::REVISION)
                .unwrap()
                .as_str()
                .parse()
                .unwrap();
            let body = ConfigChange::decode(m.payload.as_ref()).unwrap();
            assert_eq!(header, body.revision);
            body.revision
        })
        .collect()
}

async fn feed_signer(s: &ConfigStack) -> FeedSigner {
    s.config.feed_signer().await
}

fn signed(signature: &str) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::SIGNATURE, signature);
    h
}

async fn wait_until<F: AsyncFn() -> bool>(what: &str, f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn revision(s: &mut ConfigStack) -> u64 {
    let mut svc = s.config.client_service(ServiceKind::Router).await;
    svc.get_routing_snapshot(pb::GetRoutingSnapshotRequest {})
        .await
        .unwrap()
        .into_inner()
        .revision
}

#[tokio::test]
async fn the_feed_carries_every_revision_in_order_and_a_follower_mirrors_the_snapshot() {
    let mut s = config_stack().await;
    let js = s.nats.jetstream().await;
    let shutdown = CancellationToken::new();
    let follower = Follower::start(service_source(&s), s.nats.connect().await, shutdown.clone());

    let a = &mut s.admin;
    tree(a, &[("org", "", Organization), ("p1", "org", Partner)]).await;
    create_connection(a, s3_connection("conn", "org", SECRET)).await;
    for i in 0..8 {
        put(a, node(&format!("c{i}"), "p1", Customer)).await;
        create_stream(
            a,
            s3_stream(&format!("s{i}"), &format!("c{i}"), SelfOnly, "conn"),
        )
        .await
        .unwrap();
    }
    set_enabled(a, "s3", false).await.unwrap();
    a.delete_stream(pb::DeleteStreamRequest {
        id: "s4".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let last = revision(&mut s).await;
    assert_eq!(last, 3 + 16 + 2);

    wait_until("every revision on AUDIT_CONTROL", async || {
        feed_revisions(&js).await.len() as u64 == last
    })
    .await;
    assert_eq!(feed_revisions(&js).await, (1..=last).collect::<Vec<_>>());

    let view = follower.wait_for(last, Duration::from_secs(15)).await;
    assert_eq!(view.revision, last);
    let mut svc = s.config.client_service(ServiceKind::Router).await;
    let snap = svc
        .get_routing_snapshot(pb::GetRoutingSnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.nodes.values().cloned().collect::<Vec<_>>(), snap.nodes);
    assert_eq!(
        view.streams.values().cloned().collect::<Vec<_>>(),
        snap.streams
    );
    assert!(!view.streams["s3"].enabled);
    assert!(!view.streams.contains_key("s4"));
    shutdown.cancel();
}

#[tokio::test]
async fn a_follower_that_sees_a_gap_resyncs_from_a_snapshot() {
    let mut s = config_stack().await;
    let js = s.nats.jetstream().await;
    let shutdown = CancellationToken::new();
    let follower = Follower::start(service_source(&s), s.nats.connect().await, shutdown.clone());
    tree(&mut s.admin, &[("org", "", Organization)]).await;
    let view = follower.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(view.revision, 1);
    let snapshots = follower
        .stats
        .snapshots
        .load(std::sync::atomic::Ordering::Relaxed);

    // A revision far ahead of the follower, signed with the config service's own key (as
    // if the follower had missed some): something was missed.
    let ahead = ConfigChange {
        revision: 9,
        change: Some(Change::NodeDeleted("org".into())),
    };
    let (payload, signature) = feed_signer(&s).await.sign(&ahead);
    js.publish_with_headers(subjects::CONFIG_CHANGES, signed(&signature), payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
    wait_until("a resync", async || {
        follower
            .stats
            .snapshots
            .load(std::sync::atomic::Ordering::Relaxed)
            > snapshots
    })
    .await;
    // The snapshot is the truth: the uncommitted deletion was not applied...
    assert!(follower.view().nodes.contains_key("org"));
    // ...and real changes keep flowing afterwards.
    put(&mut s.admin, node("w1", "org", Workspace)).await;
    let view = follower.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(view.revision, 2);
    assert!(view.nodes.contains_key("w1"));
    shutdown.cancel();
}

/// Any NATS client that may publish on the feed could send the next revision (H7): a change
/// that the config service did not sign is ignored and counted, and the genuine change of
/// that revision is still applied after it.
#[tokio::test]
async fn a_forged_next_revision_is_ignored_and_counted() {
    let mut s = config_stack().await;
    let js = s.nats.jetstream().await;
    let shutdown = CancellationToken::new();
    let follower = Follower::start(service_source(&s), s.nats.connect().await, shutdown.clone());
    tree(&mut s.admin, &[("org", "", Organization)]).await;
    put(&mut s.admin, node("w1", "org", Workspace)).await;
    let view = follower.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(view.revision, 2);
    assert_eq!(view.feed_public_key, feed_signer(&s).await.public_key());
    let snapshots = follower
        .stats
        .snapshots
        .load(std::sync::atomic::Ordering::Relaxed);

    // Revision 3 deletes w1: unsigned, signed by another key, and with the signature of
    // another (genuine) change.
    let forged = ConfigChange {
        revision: 3,
        change: Some(Change::NodeDeleted("w1".into())),
    };
    let stranger = FeedSigner::from_seed(&[9; 32]).unwrap();
    let (_, strangers) = stranger.sign(&forged);
    let (_, borrowed) = feed_signer(&s).await.sign(&ConfigChange {
        revision: 3,
        change: Some(Change::NodeDeleted("other".into())),
    });
    let mut revision_header = async_nats::HeaderMap::new();
    revision_header.insert(headers::REVISION, "3");
    for h in [revision_header, signed(&strangers), signed(&borrowed)] {
        js.publish_with_headers(subjects::CONFIG_CHANGES, h, forged.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    wait_until("three forgeries counted", async || {
        follower.stats.forged.get() == 3
    })
    .await;
    let view = follower.view();
    assert_eq!(view.revision, 2, "no forged revision applied");
    assert!(view.nodes.contains_key("w1"));
    assert_eq!(
        follower
            .stats
            .snapshots
            .load(std::sync::atomic::Ordering::Relaxed),
        snapshots,
        "a forgery does not make the follower resync"
    );

    // The genuine revision 3 comes and is applied.
    put(&mut s.admin, node("w2", "org", Workspace)).await;
    let view = follower.wait_for(3, Duration::from_secs(15)).await;
    assert_eq!(view.revision, 3);
    assert!(view.nodes.contains_key("w1") && view.nodes.contains_key("w2"));
    assert_eq!(follower.stats.forged.get(), 3);
    shutdown.cancel();
}

#[tokio::test]
async fn a_rotated_connection_reaches_every_stream_that_uses_it() {
    let mut s = config_stack().await;
    let a = &mut s.admin;
    tree(
        a,
        &[
            ("org", "", Organization),
            ("c1", "org", Workspace),
            ("c2", "org", Workspace),
        ],
    )
    .await;
    let created = create_connection(a, s3_connection("conn", "org", SECRET)).await;
    assert_eq!(created.version, 1);
    for (id, node) in [("s1", "c1"), ("s2", "c2")] {
        create_stream(a, s3_stream(id, node, SelfOnly, "conn"))
            .await
            .unwrap();
    }
    let secret_of = |d: pb::DestinationDetails| {
        let c = d.connection.unwrap();
        match c.credentials {
            Some(Credentials::S3(pb::S3Credentials {
                method: Some(s3_credentials::Method::StaticKeys(k)),
                ..
            })) => (c.version, k.secret_access_key),
            other => panic!("unexpected credentials {other:?}"),
        }
    };
    let mut svc = s.config.client_service(ServiceKind::SinkS3).await;
    let destination = async |svc: &mut auditstream_testkit::ConfigClient, stream: &str| {
        secret_of(
            svc.get_destination(pb::GetDestinationRequest {
                key: Some(Key::StreamId(stream.into())),
            })
            .await
            .unwrap()
            .into_inner(),
        )
    };
    assert_eq!(destination(&mut svc, "s1").await, (1, SECRET.to_owned()));

    let rotated = "n3w-s3cr3t-after-rotation-0123456789";
    let updated = s
        .admin
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(s3_connection("conn", "org", rotated)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version, 2);
    for stream in ["s1", "s2"] {
        assert_eq!(
            destination(&mut svc, stream).await,
            (2, rotated.to_owned()),
            "{stream}"
        );
    }
    let snap = svc
        .get_routing_snapshot(pb::GetRoutingSnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(snap.streams.iter().all(|s| s.connection_version == 2));

    // An update with the secret left empty keeps the stored one (write-only secrets).
    let fingerprint = updated.secret_fingerprints.clone();
    let renamed = s
        .admin
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(pb::Connection {
                name: "renamed".into(),
                ..s3_connection("conn", "org", "")
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.secret_fingerprints, fingerprint);
    assert_eq!(destination(&mut svc, "s1").await, (3, rotated.to_owned()));
}

#[tokio::test]
async fn a_connection_from_another_subtree_cannot_be_referenced() {
    let mut s = config_stack().await;
    let a = &mut s.admin;
    tree(
        a,
        &[
            ("org", "", Organization),
            ("p1", "org", Partner),
            ("p2", "org", Partner),
        ],
    )
    .await;
    create_connection(a, s3_connection("p2-conn", "p2", SECRET)).await;
    // Not even a platform admin can point p1's stream at p2's credentials.
    let err = create_stream(a, s3_stream("s", "p1", Descendants, "p2-conn"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("belongs to node p2"),
        "{}",
        err.message()
    );
    // Nor a partner admin of p1 (who cannot even read p2).
    let mut p1 = s.config.client_as(Role::PartnerAdmin, Some("p1")).await;
    let err = create_stream(&mut p1, s3_stream("s", "p1", Descendants, "p2-conn"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn secrets_are_write_only_and_absent_from_the_database_and_the_bus() {
    let mut s = config_stack().await;
    let js = s.nats.jetstream().await;
    let a = &mut s.admin;
    tree(a, &[("org", "", Organization), ("w1", "org", Workspace)]).await;
    let created = create_connection(a, s3_connection("conn", "org", SECRET)).await;
    create_stream(a, s3_stream("s1", "w1", SelfOnly, "conn"))
        .await
        .unwrap();
    assert!(!format!("{created:?}").contains(SECRET));
    assert!(
        created.secret_fingerprints["s3.static_keys.secret_access_key"].starts_with("hmac-sha256:")
    );

    // No caller but the sink of the connection's type gets it back: not an admin, not the
    // router, not another sink type.
    for token in [
        TestToken::of(Role::PlatformAdmin, None),
        TestToken::of(Role::Auditor, None),
        TestToken::service(ServiceKind::Router),
        TestToken::service(ServiceKind::SinkAzureBlob),
        TestToken::service(ServiceKind::SinkS3),
    ] {
        let mut c = s.config.client(token.token).await;
        let role = token.name;
        let got = c
            .get_connection(pb::GetConnectionRequest { id: "conn".into() })
            .await
            .unwrap()
            .into_inner();
        assert!(!format!("{got:?}").contains(SECRET), "{role:?}");
        let listed = c
            .list_connections(pb::ListConnectionsRequest {
                node_id: "org".into(),
                include_inherited: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!format!("{listed:?}").contains(SECRET), "{role:?}");
        let destination = c
            .get_destination(pb::GetDestinationRequest {
                key: Some(Key::ConnectionId("conn".into())),
            })
            .await;
        match token.service {
            Some(ServiceKind::SinkS3) => {
                assert!(format!("{:?}", destination.unwrap()).contains(SECRET))
            }
            _ => assert_eq!(
                destination.unwrap_err().code(),
                Code::PermissionDenied,
                "{role}"
            ),
        }
    }

    // The database, read raw: every file of the SQLite database.
    let path = s
        .config
        .database_url
        .trim_start_matches("sqlite://")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let dir = std::path::Path::new(&path).parent().unwrap();
    let mut scanned = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        scanned += bytes.len();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "plaintext secret in the database files"
        );
    }
    assert!(scanned > 0);

    // Nothing on the bus carries it either (change feed, self-audit events).
    wait_until("the feed to be published", async || {
        !feed_revisions(&js).await.is_empty()
    })
    .await;
    for stream in [topology::CONTROL, topology::INGEST] {
        for m in read_stream(&js, stream).await {
            assert!(
                !m.payload
                    .windows(SECRET.len())
                    .any(|w| w == SECRET.as_bytes()),
                "{stream}"
            );
        }
    }
}

#[tokio::test]
async fn streaming_changes_are_audited_as_user_activity_events() {
    let mut s = config_stack().await;
    let js = s.nats.jetstream().await;
    let a = &mut s.admin;
    tree(a, &[("org", "", Organization), ("w1", "org", Workspace)]).await;
    create_connection(a, s3_connection("conn", "org", SECRET)).await;
    create_stream(a, s3_stream("s1", "w1", SelfOnly, "conn"))
        .await
        .unwrap();
    let mut changed = s3_stream("s1", "w1", SelfOnly, "conn");
    changed.selection = Some(EventSelection {
        event_types: vec!["log_event".into()],
        log_levels: vec!["error".into()],
        ..Default::default()
    });
    if let Some(pb::destination::Target::S3(t)) =
        changed.destination.as_mut().and_then(|d| d.target.as_mut())
    {
        t.bucket = "another-bucket".into();
    }
    a.update_stream(pb::UpdateStreamRequest {
        stream: Some(changed),
        update_mask: vec!["selection".into(), "destination".into()],
    })
    .await
    .unwrap();
    set_enabled(a, "s1", false).await.unwrap();

    let expected = [
        ("audit_log_streaming", Some(true)),
        ("audit_log_streaming_data_inclusion", None),
        ("audit_log_streaming_destination_updated", None),
        ("audit_log_streaming", Some(false)),
    ];
    wait_until("the self-audit events", async || {
        read_stream(&js, topology::INGEST).await.len() == expected.len()
    })
    .await;
    let events = read_stream(&js, topology::INGEST).await;
    for (m, (action, enabled)) in events.iter().zip(expected) {
        assert_eq!(m.subject.as_str(), "audit.ingest.org.w1.user_activity");
        let e: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(e["data"]["category"], "account");
        assert_eq!(e["data"]["action"], action);
        assert_eq!(e["data"]["user"]["id"], "root@platform");
        assert_eq!(e["data"]["resource"]["id"], "s1");
        if let Some(enabled) = enabled {
            assert_eq!(e["data"]["details"]["enabled"], enabled);
        }
        assert_eq!(
            m.headers.get(headers::EVENT_ID).unwrap().as_str(),
            e["id"].as_str().unwrap()
        );
    }
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&events[1].payload).unwrap()["data"]["details"]
            ["selection"]["log_levels"],
        serde_json::json!(["error"])
    );
}

/// Fills `stream` until JetStream refuses more: 1 KiB messages, then 16-byte ones, so that
/// no self-audit event (some hundred bytes) fits in what is left.
async fn fill(js: &jetstream::Context, subject: &str) -> usize {
    let mut stored = 0;
    for size in [1024, 16] {
        loop {
            let acked = match js
                .publish(subject.to_owned(), vec![b'x'; size].into())
                .await
            {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            if !acked {
                break;
            }
            stored += 1;
        }
    }
    stored
}

/// The user_activity events (self-audit) in AUDIT_INGEST, as JSON, in stream order.
async fn self_audit_events(js: &jetstream::Context) -> Vec<serde_json::Value> {
    read_stream(js, topology::INGEST)
        .await
        .iter()
        .filter(|m| m.subject.ends_with(".user_activity"))
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect()
}

/// M14: a full AUDIT_INGEST (the router down past the lag budget) used to stop the change
/// feed, because each change's self-audit event was published first. Now config changes
/// reach the data plane regardless, and the self-audit events follow, each once, as soon as
/// AUDIT_INGEST has room.
#[tokio::test]
async fn a_full_audit_ingest_delays_only_the_self_audit_events() {
    let nats = auditstream_testkit::NatsServer::start();
    let config = auditstream_testkit::ConfigHarness::start(
        &nats.url(),
        auditstream_testkit::Database::Sqlite,
        |c| c.nats.topology.ingest.max_bytes = 32 * 1024,
    )
    .await;
    let mut s = ConfigStack {
        admin: config.client_as(Role::PlatformAdmin, None).await,
        nats,
        config,
    };
    let js = s.nats.jetstream().await;
    let filler = fill(&js, "audit.ingest.filler.w.log_event").await;
    assert!(filler > 0);
    let shutdown = CancellationToken::new();
    let follower = Follower::start(service_source(&s), s.nats.connect().await, shutdown.clone());

    let a = &mut s.admin;
    tree(a, &[("org", "", Organization), ("w1", "org", Workspace)]).await;
    create_connection(a, s3_connection("conn", "org", SECRET)).await;
    create_stream(a, s3_stream("s1", "w1", SelfOnly, "conn"))
        .await
        .unwrap();
    set_enabled(a, "s1", false).await.unwrap();
    set_enabled(a, "s1", true).await.unwrap();
    let last = revision(&mut s).await;

    // The data plane gets every change while AUDIT_INGEST refuses everything.
    let view = follower.wait_for(last, Duration::from_secs(15)).await;
    assert_eq!(view.revision, last);
    assert!(view.streams["s1"].enabled);
    assert!(
        self_audit_events(&js).await.is_empty(),
        "AUDIT_INGEST had room after all"
    );

    // Room again: the three self-audit events arrive, in order...
    js.get_stream(topology::INGEST)
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
    wait_until("the delayed self-audit events", async || {
        self_audit_events(&js).await.len() >= 3
    })
    .await;
    // ...and a later change's event comes after them, with nothing published twice on the
    // way (the publisher keeps order, so once it is in, every earlier retry is done).
    set_enabled(&mut s.admin, "s1", false).await.unwrap();
    wait_until("the next self-audit event", async || {
        self_audit_events(&js).await.len() >= 4
    })
    .await;
    let events = self_audit_events(&js).await;
    let enabled: Vec<_> = events
        .iter()
        .map(|e| e["data"]["details"]["enabled"].as_bool().unwrap())
        .collect();
    assert_eq!(enabled, [true, false, true, false], "{events:#?}");
    let mut ids: Vec<_> = events.iter().map(|e| e["id"].to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "a self-audit event was published twice");
    shutdown.cancel();
}

#[tokio::test]
async fn list_targets_is_answered_by_the_sink_over_nats_or_unavailable_without_one() {
    let mut s = config_stack().await;
    tree(&mut s.admin, &[("org", "", Organization)]).await;
    create_connection(&mut s.admin, s3_connection("conn", "org", SECRET)).await;
    let ask = async |s: &mut ConfigStack| {
        s.admin
            .list_targets(pb::ListTargetsRequest {
                connection_id: "conn".into(),
            })
            .await
    };
    let err = ask(&mut s).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message().contains("no auditstream-sink-s3 is running"),
        "{}",
        err.message()
    );

    // A stand-in for the S3 sink's responder: the request names only the connection.
    let nats = s.nats.connect().await;
    let mut requests = nats
        .subscribe(subjects::rpc(
            auditstream_model::SinkType::S3,
            "list_targets",
        ))
        .await
        .unwrap();
    let responder = tokio::spawn(async move {
        let req = requests.next().await.unwrap();
        let asked = ListTargetsRequest::decode(req.payload.as_ref()).unwrap();
        assert!(
            !req.payload
                .windows(SECRET.len())
                .any(|w| w == SECRET.as_bytes())
        );
        let answer = ListTargetsResponse {
            targets: vec![format!("bucket-for-{}", asked.connection_id)],
        };
        nats.publish(req.reply.unwrap(), answer.encode_to_vec().into())
            .await
            .unwrap();
        nats.flush().await.unwrap();
    });
    let answer = ask(&mut s).await.unwrap().into_inner();
    assert_eq!(answer.targets, vec!["bucket-for-conn"]);
    responder.await.unwrap();
}

#[tokio::test]
async fn deletes_are_refused_while_in_use_unless_cascading() {
    let mut s = config_stack().await;
    let a = &mut s.admin;
    tree(
        a,
        &[
            ("org", "", Organization),
            ("p1", "org", Partner),
            ("c1", "p1", Customer),
        ],
    )
    .await;
    create_connection(a, s3_connection("conn", "p1", SECRET)).await;
    create_stream(a, s3_stream("s1", "c1", SelfOnly, "conn"))
        .await
        .unwrap();

    let err = a
        .delete_connection(pb::DeleteConnectionRequest { id: "conn".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("used by stream(s) s1"),
        "{}",
        err.message()
    );

    let err = a
        .delete_node(pb::DeleteNodeRequest {
            id: "p1".into(),
            cascade: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message()
            .contains("1 child node(s), 1 stream(s) and 1 connection(s)"),
        "{}",
        err.message()
    );

    let deleted = a
        .delete_node(pb::DeleteNodeRequest {
            id: "p1".into(),
            cascade: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted_nodes, vec!["c1", "p1"]);
    assert_eq!(deleted.deleted_streams, vec!["s1"]);
    assert_eq!(deleted.deleted_connections, vec!["conn"]);
    let err = a
        .get_node(pb::GetNodeRequest { id: "c1".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn grpc_health_and_reflection_are_served() {
    let s = config_stack().await;
    let channel = tonic::transport::Channel::from_shared(s.config.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "auditstream.v1.ConfigService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("unexpected reflection answer {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"auditstream.v1.ConfigService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
}
