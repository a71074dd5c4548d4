//! The conformance suite every sink passes against its real stand-in (DESIGN §6): the
//! mechanics live once in sink-core, and this suite proves a sink's `Destination` plays its
//! part in them. Each check runs on a fresh nats-server and config service, with the sink
//! under test in-process, and publishes delivery messages exactly as the router does.
//!
//! A sink's test file implements [`StandIn`] for its stand-in and calls [`run_all`].

use std::{collections::HashSet, future::Future, time::Duration};

use async_nats::jetstream;
use auditstream_bus::{headers, headers::EventMeta, publish_durable, topology};
use auditstream_config_service::authz::Role;
use auditstream_proto::v1::{self as pb, HealthState, NodeKind};
use auditstream_sink_core::{Sink, SinkConfig};
use serde::{Serialize, de::DeserializeOwned};

use crate::{ConfigClient, ConfigHarness, Database, NatsServer, SinkHarness, test_sink_config};

/// What the suite needs to know about a sink and its stand-in.
pub trait StandIn: Send + Sync {
    type Sink: Sink;
    type Config: Serialize + DeserializeOwned + Default + Clone + Send + 'static;

    /// The sink's own settings for this stand-in (endpoints, allow-lists).
    fn config(&self) -> Self::Config;
    fn build(&self, config: &Self::Config) -> Self::Sink;
    /// Credentials the stand-in accepts (`true`) or refuses as a configuration error.
    fn credentials(&self, valid: bool) -> pb::connection::Credentials;
    /// A target of its own for `stream_id` (bucket, container, path...).
    fn target(&self, stream_id: &str) -> impl Future<Output = pb::destination::Target> + Send;
    /// The event ids that reached `target`, duplicates included.
    fn delivered(
        &self,
        target: &pb::destination::Target,
    ) -> impl Future<Output = Vec<String>> + Send;
    /// Makes the stand-in answer transient errors (`true`) or work again (`false`).
    fn set_unavailable(&self, unavailable: bool) -> impl Future<Output = ()> + Send;
    /// A text that makes the stand-in refuse the one event containing it for good, if the
    /// destination type has such refusals.
    fn poison(&self) -> Option<&'static str>;
}

struct Env {
    _nats: NatsServer,
    js: jetstream::Context,
    /// The stream's key on the bus (`Stream::key`: its uid).
    key: String,
    _config: ConfigHarness,
    admin: ConfigClient,
    sink: Option<SinkHarness>,
}

const STREAM: &str = "conf-s";
const TIMEOUT: Duration = Duration::from_secs(90);

async fn env<T: StandIn>(standin: &T, valid: bool) -> (Env, pb::destination::Target) {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.http.allow_insecure_http = true;
        c.http.allowed_networks = vec!["127.0.0.0/8".into()];
    })
    .await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    for (id, parent, kind) in [
        ("conf-org", "", NodeKind::Organization),
        ("conf-ws", "conf-org", NodeKind::Workspace),
    ] {
        admin
            .put_node(pb::PutNodeRequest {
                node: Some(pb::Node {
                    id: id.into(),
                    parent_id: parent.into(),
                    kind: kind as i32,
                    name: id.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    admin
        .create_connection(pb::CreateConnectionRequest {
            connection: Some(pb::Connection {
                id: "conf-c".into(),
                node_id: "conf-org".into(),
                name: "conformance".into(),
                credentials: Some(standin.credentials(valid)),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let target = standin.target(STREAM).await;
    let key = admin
        .create_stream(pb::CreateStreamRequest {
            stream: Some(pb::Stream {
                id: STREAM.into(),
                node_id: "conf-ws".into(),
                name: "conformance".into(),
                applies_to: pb::AppliesTo::SelfOnly as i32,
                enabled: true,
                selection: Some(pb::EventSelection {
                    event_types: vec!["user_activity".into()],
                    ..Default::default()
                }),
                destination: Some(pb::Destination {
                    connection_id: "conf-c".into(),
                    target: Some(target.clone()),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .key()
        .to_owned();
    let mut sink_config: SinkConfig<T::Config> =
        test_sink_config(<T::Sink as Sink>::TYPE, &nats.url(), &config.url());
    sink_config.sink = standin.config();
    let sink = SinkHarness::start(standin.build(&sink_config.sink), sink_config).await;
    (
        Env {
            _nats: nats,
            js,
            key,
            _config: config,
            admin,
            sink: Some(sink),
        },
        target,
    )
}

/// Publishes `count` delivery messages for the stream as the router would; returns ids.
async fn publish<T: StandIn>(
    js: &jetstream::Context,
    key: &str,
    tag: &str,
    count: usize,
    poison: Option<(usize, &str)>,
) -> Vec<String> {
    let subject = auditstream_bus::subjects::deliver(<T::Sink as Sink>::TYPE, key).unwrap();
    let mut ids = Vec::new();
    for n in 0..count {
        let id = format!("{tag}-{n}");
        let text = match poison {
            Some((at, p)) if at == n => p.to_owned(),
            _ => "ok".to_owned(),
        };
        let body = format!(
            r#"{{"category":"recipe","action":"{text}","audit":{{"event_id":"{id}","org_id":"conf-org","workspace_id":"conf-ws","event_type":"user_activity"}}}}"#
        );
        let mut h = EventMeta {
            event_id: &id,
            org_id: "conf-org",
            workspace_id: "conf-ws",
            event_type: "user_activity",
            occurred_at: "2026-11-21T10:15:02.120Z",
            received_at: "2026-11-21T10:15:03Z",
            traceparent: None,
        }
        .to_headers();
        h.insert(headers::STREAM_ID, STREAM);
        publish_durable(
            js,
            subject.clone(),
            &format!("{id}.{key}"),
            h,
            body.into(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

async fn wait_delivered<T: StandIn>(standin: &T, target: &pb::destination::Target, ids: &[String]) {
    let want: HashSet<&String> = ids.iter().collect();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let got: HashSet<String> = standin.delivered(target).await.into_iter().collect();
        let missing = want.iter().filter(|id| !got.contains(id.as_str())).count();
        if missing == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} events never reached the stand-in",
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_status(
    admin: &ConfigClient,
    what: &str,
    pred: impl Fn(&pb::StreamStatus) -> bool,
) -> pb::StreamStatus {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let s = admin
            .clone()
            .get_status(pb::GetStatusRequest {
                stream_id: STREAM.into(),
            })
            .await
            .unwrap()
            .into_inner();
        if pred(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened; last status {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Messages of the stream still in AUDIT_DELIVER (unacked or not yet pulled).
async fn in_deliver(js: &jetstream::Context) -> u64 {
    crate::stream_messages(js, topology::DELIVER).await
}

/// Batches of many events arrive whole, and each message is acked only after the
/// destination confirmed it: while the stand-in fails, the messages stay in AUDIT_DELIVER.
pub async fn batching_and_ack_after_confirm<T: StandIn>(standin: &T) {
    let (env, target) = env(standin, true).await;
    let ids = publish::<T>(&env.js, &env.key, "batch", 1200, None).await;
    wait_delivered(standin, &target, &ids).await;
    wait_acked(&env.js).await;

    standin.set_unavailable(true).await;
    let held = publish::<T>(&env.js, &env.key, "held", 30, None).await;
    wait_status(&env.admin, "retrying", |s| {
        s.state() == HealthState::Retrying
    })
    .await;
    assert_eq!(
        in_deliver(&env.js).await,
        30,
        "nothing acked before the destination confirmed"
    );
    standin.set_unavailable(false).await;
    wait_delivered(standin, &target, &held).await;
    wait_acked(&env.js).await;
    drop(env.sink);
}

async fn wait_acked(js: &jetstream::Context) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while in_deliver(js).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "acks never came");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Refused credentials: broken, events wait in the backlog; fixed credentials: probe,
/// drain in order, healthy.
pub async fn broken_backlog_recovery<T: StandIn>(standin: &T) {
    let (mut env, target) = env(standin, false).await;
    let ids = publish::<T>(&env.js, &env.key, "broken", 40, None).await;
    let broken = wait_status(&env.admin, "broken", |s| {
        s.state() == HealthState::Broken && s.backlog_depth == 40
    })
    .await;
    assert!(
        !broken.last_error.is_empty() && !broken.hint.is_empty(),
        "{broken:?}"
    );
    assert!(standin.delivered(&target).await.is_empty());

    let mut connection = env
        .admin
        .get_connection(pb::GetConnectionRequest {
            id: "conf-c".into(),
        })
        .await
        .unwrap()
        .into_inner();
    connection.credentials = Some(standin.credentials(true));
    env.admin
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(connection),
        })
        .await
        .unwrap();
    wait_delivered(standin, &target, &ids).await;
    let healthy = wait_status(&env.admin, "recovered", |s| {
        s.state() == HealthState::Healthy && s.backlog_depth == 0
    })
    .await;
    assert!(healthy.replayed_events >= 40, "{healthy:?}");
    drop(env.sink);
}

/// One event the destination refuses for good goes to the DLQ; the others are delivered.
pub async fn refused_event_to_dlq<T: StandIn>(standin: &T) {
    let Some(poison) = standin.poison() else {
        println!(
            "conformance: {} destinations refuse no single event; the DLQ check does not apply",
            <T::Sink as Sink>::TYPE.as_str()
        );
        return;
    };
    let (env, target) = env(standin, true).await;
    let ids = publish::<T>(&env.js, &env.key, "dlq", 25, Some((11, poison))).await;
    let good: Vec<String> = ids
        .iter()
        .filter(|i| !i.ends_with("-11"))
        .cloned()
        .collect();
    wait_delivered(standin, &target, &good).await;
    let s = wait_status(&env.admin, "dead letter", |s| {
        s.dlq_depth == 1 && s.dead_lettered_events == 1
    })
    .await;
    assert_eq!(s.state(), HealthState::Healthy, "{s:?}");
    assert!(!standin.delivered(&target).await.contains(&ids[11]));
    drop(env.sink);
}

/// The whole suite.
pub async fn run_all<T: StandIn>(standin: &T) {
    batching_and_ack_after_confirm(standin).await;
    broken_backlog_recovery(standin).await;
    refused_event_to_dlq(standin).await;
}
