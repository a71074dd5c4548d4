//! Config propagation latency: from a committed change (enable/disable a partner's stream)
//! to the router routing on that revision, through the real config service, its outbox,
//! AUDIT_CONTROL and the router's follower — all in one process, on a real nats-server.
//!
//! Run with `make bench`. Prints p50 / p90 / max over the samples. The router's revision is
//! read from its `/metrics` (polled every millisecond), so figures include up to ~1 ms of
//! polling; they are upper bounds.

use std::time::{Duration, Instant};

use auditstream_config_service::authz::{Role, ServiceKind};
use auditstream_proto::v1::{
    self as pb, AppliesTo, Connection, Destination, EventSelection, Node, NodeKind, S3Credentials,
    S3StaticKeys, S3Target, Stream, connection::Credentials, destination::Target, s3_credentials,
};
use auditstream_testkit::{ConfigHarness, Database, NatsServer, RouterHarness, test_router_config};

const SAMPLES: usize = 40;

#[tokio::main]
async fn main() {
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |_| {}).await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    let mut service = config.client_service(ServiceKind::Router).await;
    for (id, parent, kind) in [
        ("org", "", NodeKind::Organization),
        ("p1", "org", NodeKind::Partner),
    ] {
        let node = Node {
            id: id.into(),
            parent_id: parent.into(),
            kind: kind as i32,
            ..Default::default()
        };
        admin
            .put_node(pb::PutNodeRequest { node: Some(node) })
            .await
            .unwrap();
    }
    let connection = Connection {
        id: "conn".into(),
        node_id: "org".into(),
        credentials: Some(Credentials::S3(S3Credentials {
            method: Some(s3_credentials::Method::StaticKeys(S3StaticKeys {
                access_key_id: "AKIA".into(),
                secret_access_key: "secret-secret-secret".into(),
                session_token: String::new(),
            })),
            ..Default::default()
        })),
        ..Default::default()
    };
    admin
        .create_connection(pb::CreateConnectionRequest {
            connection: Some(connection),
        })
        .await
        .unwrap();
    let stream = Stream {
        id: "s-p1".into(),
        node_id: "p1".into(),
        applies_to: AppliesTo::Descendants as i32,
        enabled: true,
        selection: Some(EventSelection {
            event_types: vec!["job_status".into()],
            ..Default::default()
        }),
        destination: Some(Destination {
            connection_id: "conn".into(),
            target: Some(Target::S3(S3Target {
                bucket: "audit-bucket".into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    admin
        .create_stream(pb::CreateStreamRequest {
            stream: Some(stream),
        })
        .await
        .unwrap();
    let router = RouterHarness::start(test_router_config(&nats.url(), &config.url())).await;

    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let started = Instant::now();
        admin
            .set_stream_enabled(pb::SetStreamEnabledRequest {
                id: "s-p1".into(),
                enabled: i % 2 == 1,
            })
            .await
            .unwrap();
        let committed = started.elapsed();
        let revision = service
            .get_routing_snapshot(pb::GetRoutingSnapshotRequest {})
            .await
            .unwrap()
            .into_inner()
            .revision;
        while (router.metric("auditstream_router_config_revision").await as u64) < revision {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push((started.elapsed(), committed));
    }
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].0;
    let rpc: Duration = samples.iter().map(|s| s.1).sum::<Duration>() / samples.len() as u32;
    println!(
        "config propagation (SetStreamEnabled → router routing on the new revision), {SAMPLES} samples"
    );
    println!("  p50 {:>8.2} ms", pick(0.5).as_secs_f64() * 1e3);
    println!("  p90 {:>8.2} ms", pick(0.9).as_secs_f64() * 1e3);
    println!("  max {:>8.2} ms", pick(1.0).as_secs_f64() * 1e3);
    println!(
        "  (of which the SetStreamEnabled RPC itself: mean {:.2} ms)",
        rpc.as_secs_f64() * 1e3
    );
    router.stop().await.unwrap();
}
