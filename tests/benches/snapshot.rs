//! The routing snapshot of a large configuration (H5): 100 000 workspaces and 50 000 streams
//! with message templates, loaded by a config-client follower through the paged
//! `StreamRoutingSnapshot` of a real config service (SQLite) on a real nats-server.
//!
//! Measures the snapshot's size (bytes, pages), a follower's cold load (start to a synced
//! view; the first one also pays for the config service reading the tree from its
//! database, the others find it cached) and a resync (a gap on the feed to the fresh view).
//! The tree is seeded with `Store::import` (one transaction) rather than 150 000 RPCs.
//!
//! Run with `make bench` (after the e2e bench, whose `target/bench/report.md` this appends
//! to), or alone: `cargo bench -p auditstream-tests --bench snapshot`. `SNAPSHOT_WORKSPACES`
//! and `SNAPSHOT_STREAMS` change the size.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use auditstream_bus::{headers, subjects};
use auditstream_config_client::{ConfigSource, Follower};
use auditstream_config_service::{
    authz::ServiceKind,
    crypto::Sealed,
    store::{Store, StoredConnection},
};
use auditstream_proto::v1::{
    self as pb, AppliesTo, ConfigChange, Destination, EventSelection, Node, NodeKind, S3Target,
    Stream, config_change::Change, destination::Target,
};
use auditstream_testkit::{ConfigHarness, Database, NatsServer, TestToken};
use futures_util::StreamExt;
use prost::Message;
use tokio_util::sync::CancellationToken;

const RUNS: usize = 3;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A realistic template: the event and some fixed fields, about 1 KiB.
fn template(i: usize) -> String {
    format!(
        r#"{{"event": {{{{{{log_message}}}}}}, "received": "{{{{{{now_utc}}}}}}", "source": "auditstream", "tenant": "tenant-{i}", "labels": {{"team": "platform", "env": "production", "note": "{}"}}}}"#,
        "n".repeat(900)
    )
}

fn tree(workspaces: usize, streams: usize) -> (Vec<Node>, Vec<StoredConnection>, Vec<Stream>) {
    let mut nodes = vec![Node {
        id: "org".into(),
        kind: NodeKind::Organization as i32,
        name: "A large organization".into(),
        admin_emails: vec!["sre@org.example".into()],
        ..Default::default()
    }];
    for i in 0..workspaces {
        nodes.push(Node {
            id: format!("ws-{i:06}"),
            parent_id: "org".into(),
            kind: NodeKind::Workspace as i32,
            name: format!("Workspace {i}"),
            external_id: format!("ext-{i}"),
            ..Default::default()
        });
    }
    let connection = StoredConnection {
        public: pb::Connection {
            id: "conn".into(),
            node_id: "org".into(),
            version: 1,
            ..Default::default()
        },
        // Never opened: the bench asks for no destination.
        sealed: Sealed {
            key_id: "test-key".into(),
            blob: vec![0; 64],
        },
    };
    let streams = (0..streams)
        .map(|i| Stream {
            id: format!("s-{i:06}"),
            uid: format!("{i:032x}"),
            node_id: format!("ws-{:06}", i % workspaces.max(1)),
            name: format!("stream {i}"),
            applies_to: AppliesTo::SelfOnly as i32,
            enabled: true,
            selection: Some(EventSelection {
                event_types: vec!["job_status".into(), "user_activity".into()],
                ..Default::default()
            }),
            template: template(i),
            destination: Some(Destination {
                connection_id: "conn".into(),
                target: Some(Target::S3(S3Target {
                    bucket: format!("audit-{i}"),
                    prefix: "audit/".into(),
                    ..Default::default()
                })),
            }),
            version: 1,
            ..Default::default()
        })
        .collect();
    (nodes, vec![connection], streams)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let (workspaces, streams) = (
        count("SNAPSHOT_WORKSPACES", 100_000),
        count("SNAPSHOT_STREAMS", 50_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    let (nodes, connections, stream_rows) = tree(workspaces, streams);
    let started = Instant::now();
    let store = Store::connect(&url, 1).await.unwrap();
    let revision = store.import(nodes, connections, stream_rows).await.unwrap();
    drop(store);
    let seed = started.elapsed();
    println!("seeded {workspaces} workspaces and {streams} streams in {seed:?}");

    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Shared(url), |_| {}).await;
    let source = ConfigSource {
        url: config.url(),
        token: TestToken::service(ServiceKind::Router).token.to_owned(),
        tls: Default::default(),
    };

    // Cold loads: a new follower each time.
    let mut loads = Vec::new();
    let mut follower = None;
    for _ in 0..RUNS {
        let shutdown = CancellationToken::new();
        let start = Instant::now();
        let f = Follower::start(source.clone(), nats.connect().await, shutdown.clone());
        let view = f.wait_for(revision, Duration::from_secs(600)).await;
        loads.push(start.elapsed());
        assert!(view.synced && view.streams.len() == streams, "not loaded");
        if let Some((old, _)) = follower.replace((shutdown, f)) {
            CancellationToken::cancel(&old);
        }
    }
    let (shutdown, follower) = follower.expect("a follower");

    // The snapshot as the follower got it: its pages and their bytes.
    let mut svc = config.client_service(ServiceKind::Router).await;
    let mut pages = svc
        .stream_routing_snapshot(pb::StreamRoutingSnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let (mut page_count, mut bytes, mut largest) = (0usize, 0usize, 0usize);
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        let len = page.encoded_len();
        (page_count, bytes, largest) = (page_count + 1, bytes + len, largest.max(len));
        if page.last {
            break;
        }
    }

    // Resyncs: a signed change far ahead on the feed makes the follower load a snapshot.
    let signer = config.feed_signer().await;
    let js = nats.jetstream().await;
    let mut resyncs = Vec::new();
    for run in 0..RUNS {
        let before = follower.stats.snapshots.load(Ordering::Relaxed);
        let ahead = ConfigChange {
            revision: revision + 100 + run as u64,
            change: Some(Change::NodeDeleted("org".into())),
        };
        let (payload, signature) = signer.sign(&ahead);
        let mut h = async_nats::HeaderMap::new();
        h.insert(headers::SIGNATURE, signature.as_str());
        let start = Instant::now();
        js.publish_with_headers(subjects::CONFIG_CHANGES, h, payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        while follower.stats.snapshots.load(Ordering::Relaxed) == before {
            assert!(Instant::now() < deadline, "no resync");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        resyncs.push(start.elapsed());
        assert_eq!(follower.view().streams.len(), streams);
    }
    shutdown.cancel();

    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    let rows = [
        format!(
            "| snapshot | {:.1} MiB in {page_count} pages (largest {:.2} MiB) |",
            mib(bytes),
            mib(largest)
        ),
        format!(
            "| cold load, first (config service reads the tree) | {:.0} ms |",
            ms(loads[0])
        ),
        format!(
            "| cold load, median of {RUNS} | {:.0} ms |",
            ms(median(loads.clone()))
        ),
        format!(
            "| resync after a gap, median of {RUNS} | {:.0} ms |",
            ms(median(resyncs.clone()))
        ),
        format!("| seeding with `Store::import` | {:.0} ms |", ms(seed)),
    ];
    for row in &rows {
        println!("{row}");
    }
    let json = serde_json::json!({
        "workspaces": workspaces,
        "streams": streams,
        "snapshot_bytes": bytes,
        "pages": page_count,
        "largest_page_bytes": largest,
        "cold_load_ms": loads.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        "resync_ms": resyncs.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        "seed_ms": ms(seed),
    });
    add_to_report(workspaces, streams, &rows, json);
}

/// Appends to the report `make bench` wrote just before (the e2e bench), so one file holds
/// every figure.
fn add_to_report(workspaces: usize, streams: usize, rows: &[String], json: serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let md = dir.join("report.md");
    let mut text = std::fs::read_to_string(&md).unwrap_or_default();
    text += &format!(
        "\n## Routing snapshot of a large configuration\n\n\
         {workspaces} workspaces and {streams} streams with ~1 KiB templates, through the paged \
         `StreamRoutingSnapshot` of a config service on SQLite into a config-client follower \
         (one process, a real nats-server).\n\n| what | figure |\n|---|---|\n"
    );
    for row in rows {
        text += row;
        text += "\n";
    }
    std::fs::write(&md, text).unwrap();
    let path = dir.join("report.json");
    let mut report: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    report["snapshot"] = json;
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
}
