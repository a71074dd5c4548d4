//! A whole pipeline up to AUDIT_DELIVER: nats-server, config service, gateway and router,
//! plus helpers to publish ingest messages directly and to read deliveries back.

use std::{collections::BTreeMap, time::Duration};

use async_nats::jetstream::{self, consumer::DeliverPolicy};
use auditstream_bus::{headers, headers::EventMeta, pack, publish_durable, subjects, topology};
use auditstream_config_service::authz::{Role, ServiceKind};
use auditstream_proto::v1 as pb;
use auditstream_testkit::{
    ConfigClient, ConfigHarness, Database, GatewayHarness, NatsServer, RouterHarness,
    test_gateway_config, test_router_config,
};
use futures_util::StreamExt;

pub struct Pipeline {
    pub nats: NatsServer,
    pub config: Option<ConfigHarness>,
    pub gateway: GatewayHarness,
    pub router: RouterHarness,
    pub admin: ConfigClient,
    pub service: ConfigClient,
}

/// Starts everything; `setup` builds the configuration before the router starts.
pub async fn pipeline(setup: impl AsyncFnOnce(&mut ConfigClient)) -> Pipeline {
    pipeline_sized(setup, None).await
}

/// [`pipeline`] with AUDIT_INGEST and AUDIT_DELIVER of `stream_bytes` each (the test kit's
/// 64 MiB holds a few ten thousand events), in every service's topology alike.
pub async fn pipeline_sized(
    setup: impl AsyncFnOnce(&mut ConfigClient),
    stream_bytes: Option<i64>,
) -> Pipeline {
    let size = |t: &mut auditstream_bus::TopologyConfig| {
        if let Some(bytes) = stream_bytes {
            t.ingest.max_bytes = bytes;
            t.deliver.max_bytes = bytes;
        }
    };
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        size(&mut c.nats.topology)
    })
    .await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    let service = config.client_service(ServiceKind::Router).await;
    setup(&mut admin).await;
    let mut gateway_config = test_gateway_config(&nats.url());
    size(&mut gateway_config.nats.topology);
    let gateway = GatewayHarness::start(gateway_config).await;
    let mut router_config = test_router_config(&nats.url(), &config.url());
    size(&mut router_config.nats.topology);
    let router = RouterHarness::start(router_config).await;
    Pipeline {
        nats,
        config: Some(config),
        gateway,
        router,
        admin,
        service,
    }
}

impl Pipeline {
    pub async fn revision(&mut self) -> u64 {
        self.service
            .get_routing_snapshot(pb::GetRoutingSnapshotRequest {})
            .await
            .unwrap()
            .into_inner()
            .revision
    }

    /// Waits until the router acked every message now in AUDIT_INGEST (the test's events and
    /// the config service's own self-audit events alike).
    pub async fn wait_all_processed(&self) {
        self.wait_all_processed_within(Duration::from_secs(60))
            .await;
    }

    /// [`Self::wait_all_processed`] with a deadline of `timeout`: until the router's durable
    /// consumer has nothing pending and nothing unacked (the gateway packs events, so the
    /// stream's message count is not an event count).
    pub async fn wait_all_processed_within(&self, timeout: Duration) {
        wait_router_idle(&self.nats, timeout).await;
    }

    /// Waits until the router settled `count` ingested events in all.
    pub async fn wait_processed(&self, count: u64) {
        self.wait_processed_within(count, Duration::from_secs(60))
            .await;
    }

    /// [`Self::wait_processed`] with a deadline of `timeout`.
    pub async fn wait_processed_within(&self, count: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let done = self
                .router
                .metric("auditstream_router_events_processed_total")
                .await as u64;
            if done >= count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "router processed {done} of {count}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Waits until the router's durable consumer has nothing pending and nothing unacked.
pub async fn wait_router_idle(nats: &NatsServer, timeout: Duration) {
    let js = nats.jetstream().await;
    let stream = js.get_stream(topology::INGEST).await.unwrap();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // The router creates its consumer as it starts.
        let state = match stream
            .get_consumer::<jetstream::consumer::pull::Config>("router")
            .await
        {
            Ok(mut c) => {
                let info = c.info().await.unwrap();
                Some((info.num_pending, info.num_ack_pending))
            }
            Err(_) => None,
        };
        if state == Some((0, 0)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "router: (pending, unacked) = {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether `stream`'s selection takes an event of `event_type` (with `level` for log events).
pub fn selects(stream: &pb::Stream, event_type: &str, level: &str) -> bool {
    let Some(sel) = stream.selection.as_ref() else {
        return false;
    };
    sel.event_types.iter().any(|t| t == event_type)
        && (event_type != "log_event"
            || sel.log_levels.is_empty()
            || sel.log_levels.iter().any(|l| l == level))
}

/// Publishes one ingest message as the gateway would (headers + envelope body).
pub async fn publish_ingest(
    js: &jetstream::Context,
    id: &str,
    event_type: &str,
    org: &str,
    workspace: &str,
    data: &str,
) {
    let body = format!(
        r#"{{"id":"{id}","event_type":"{event_type}","occurred_at":"2026-11-21T10:15:02.120Z","org_id":"{org}","workspace_id":"{workspace}","data":{data}}}"#
    );
    let h = EventMeta {
        event_id: id,
        org_id: org,
        workspace_id: workspace,
        event_type,
        occurred_at: "2026-11-21T10:15:02.120Z",
        received_at: "2026-11-21T10:15:03Z",
        traceparent: None,
    }
    .to_headers();
    let subject = subjects::ingest(org, workspace, event_type.parse().unwrap()).unwrap();
    let msg_id = auditstream_bus::headers::ingest_msg_id(org, id);
    publish_durable(
        js,
        subject,
        &msg_id,
        h,
        body.into(),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
}

/// One delivery message as read back.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub subject: String,
    pub headers: BTreeMap<String, String>,
    pub body: serde_json::Value,
}

/// Every delivery on AUDIT_DELIVER (packs opened), read by sequence without consuming them
/// (a work-queue stream allows no second consumer beside the sinks').
pub async fn deliveries(js: &jetstream::Context) -> Vec<Delivered> {
    let mut out = Vec::new();
    for m in auditstream_testkit::read_stream(js, topology::DELIVER).await {
        for (h, body) in opened(Some(&m.headers), &m.payload) {
            out.push(Delivered {
                subject: m.subject.to_string(),
                headers: h
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            v.first().map(|v| v.as_str().to_owned()).unwrap_or_default(),
                        )
                    })
                    .collect(),
                body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            });
        }
    }
    out
}

/// The deliveries one message holds: itself, or the events of a pack.
pub fn opened(
    headers: Option<&async_nats::HeaderMap>,
    payload: &bytes::Bytes,
) -> Vec<(async_nats::HeaderMap, bytes::Bytes)> {
    if pack::is_pack(headers).expect("a pack this build reads") {
        pack::unpack(payload).expect("a well-formed pack")
    } else {
        vec![(headers.cloned().unwrap_or_default(), payload.clone())]
    }
}

/// Consumes every message of AUDIT_DELIVER (fast, for large counts) and returns, per
/// `(event id, stream id)`, how many times it was delivered.
pub async fn drain_deliveries(js: &jetstream::Context) -> BTreeMap<(String, String), usize> {
    let stream = js.get_stream(topology::DELIVER).await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("test-drain".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut counts = BTreeMap::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(2000)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        let mut got = 0;
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            for (h, _) in opened(m.headers.as_ref(), &m.payload) {
                let get = |name: &str| {
                    h.get(name)
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default()
                };
                *counts
                    .entry((get(headers::EVENT_ID), get(headers::STREAM_ID)))
                    .or_default() += 1;
            }
            m.ack().await.unwrap();
            got += 1;
        }
        if got == 0 {
            return counts;
        }
    }
}

impl Delivered {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_default()
    }
    pub fn event_id(&self) -> &str {
        self.header(headers::EVENT_ID)
    }
    pub fn stream_id(&self) -> &str {
        self.header(headers::STREAM_ID)
    }
}
