//! Helpers shared by the scenario files (each file is its own test binary).
#![allow(dead_code)]

pub mod config;
pub mod router;
pub mod sink;

use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use auditstream_testkit::{GatewayHarness, NatsServer, TEST_TOKEN, test_gateway_config};

/// The producer examples from `shared/examples/ingest-events.ndjson`, one per event type
/// (copied into the repo so a plain clone can run the tests).
pub const EXAMPLES: &str = include_str!("../../data/ingest-events.ndjson");

pub fn example_lines() -> Vec<&'static str> {
    EXAMPLES.lines().filter(|l| !l.trim().is_empty()).collect()
}

pub struct Stack {
    pub nats: NatsServer,
    pub gateway: GatewayHarness,
}

/// A fresh nats-server and a gateway on it, ready.
pub async fn stack() -> Stack {
    let nats = NatsServer::start();
    let gateway = GatewayHarness::start(test_gateway_config(&nats.url())).await;
    Stack { nats, gateway }
}

pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: serde_json::Value,
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POSTs `body` to `/v1/events` with the test token and the given extra headers.
pub async fn post(
    gw: &GatewayHarness,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> Reply {
    post_as(gw, Some(TEST_TOKEN), body, headers).await
}

/// POSTs with the given bearer token, or none.
pub async fn post_as(
    gw: &GatewayHarness,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = http().post(gw.events_url()).body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    reply(req.send().await.expect("request sent")).await
}

pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    Reply {
        status,
        retry_after,
        body,
    }
}

/// `(status, error code)` of a whole-request error.
pub fn request_error(r: &Reply) -> (u16, Option<&str>) {
    (r.status, r.body["error"]["code"].as_str())
}

pub fn ndjson() -> (&'static str, &'static str) {
    ("content-type", "application/x-ndjson")
}

pub fn header<'a>(msg: &'a StreamMessage, name: &str) -> Option<&'a str> {
    msg.headers.get(name).map(|v| v.as_str())
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The ids of the messages in a stream.
pub fn ids(messages: &[StreamMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            header(m, auditstream_bus::headers::EVENT_ID)
                .expect("event id header")
                .to_owned()
        })
        .collect()
}

/// An envelope of the given type with a fresh id.
pub fn event(id: &str, event_type: &str, data: &str) -> String {
    format!(
        r#"{{"id":"{id}","event_type":"{event_type}","occurred_at":"2026-11-21T10:15:02.120Z","org_id":"org-acme","workspace_id":"ws-1","data":{data}}}"#
    )
}

/// The key (`Stream::key`, its uid) stream `id` has on the bus: the last token of its
/// delivery, backlog and DLQ subjects.
pub async fn stream_key(client: &auditstream_testkit::ConfigClient, id: &str) -> String {
    client
        .clone()
        .get_stream(auditstream_proto::v1::GetStreamRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .key()
        .to_owned()
}

/// Dead-letters an event of stream `stream_id` (bus key `stream_key`) as a sink would: the
/// rendered body, the event's headers, the reason, and the sink's own message id. Returns
/// the DLQ sequence.
pub async fn dead_letter(
    js: &async_nats::jetstream::Context,
    (stream_id, stream_key): (&str, &str),
    event_id: &str,
    reason: &str,
    body: &str,
) -> u64 {
    use auditstream_bus::headers;
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::EVENT_ID, event_id);
    h.insert(headers::ORG_ID, "org");
    h.insert(headers::WORKSPACE_ID, "c1");
    h.insert(headers::EVENT_TYPE, "job_status");
    h.insert(headers::OCCURRED_AT, "2026-11-21T10:15:02.120Z");
    h.insert(headers::RECEIVED_AT, "2026-11-21T10:15:02.500Z");
    h.insert(headers::STREAM_ID, stream_id);
    h.insert(
        headers::TRACEPARENT,
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    h.insert(headers::ERROR, reason);
    h.insert(
        headers::MSG_ID,
        format!("{event_id}.{stream_key}.dlq").as_str(),
    );
    js.publish_with_headers(
        auditstream_bus::subjects::dlq(auditstream_model::SinkType::Http, stream_key).unwrap(),
        h,
        body.to_owned().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap()
    .sequence
}

/// A free loopback port (for processes that take a port number, not a listener).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A workspace binary that `make test` builds next to this test's executable.
pub fn built_bin(name: &str) -> std::path::PathBuf {
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join(name);
    assert!(
        bin.exists(),
        "{} is not built: run `make test` (or `cargo build --workspace --bins`) first",
        bin.display()
    );
    bin
}

/// `topology` as the `AUDITSTREAM_NATS__TOPOLOGY__*` variables a service binary reads.
pub fn topology_env(topology: &auditstream_bus::TopologyConfig) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    walk(&format!("{prefix}__{}", k.to_ascii_uppercase()), v, out);
                }
            }
            serde_json::Value::String(s) => out.push((prefix.to_owned(), s.clone())),
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    walk(
        "AUDITSTREAM_NATS__TOPOLOGY",
        &serde_json::to_value(topology).unwrap(),
        &mut out,
    );
    out
}

/// The config-service token of the data-plane binary `bin` (each kind presents its own).
pub fn data_plane_token(bin: &str) -> &'static str {
    use auditstream_config_service::authz::ServiceKind;
    let kind = match bin.strip_prefix("auditstream-") {
        Some("router") => ServiceKind::Router,
        Some("sink-s3") => ServiceKind::SinkS3,
        Some("sink-azure-blob") => ServiceKind::SinkAzureBlob,
        Some("sink-azure-monitor") => ServiceKind::SinkAzureMonitor,
        Some("sink-http") => ServiceKind::SinkHttp,
        _ => panic!("{bin} is not a data-plane binary"),
    };
    auditstream_testkit::TestToken::service(kind).token
}

/// A router or sink binary (`make test` builds it) with the settings every data-plane
/// service needs: its ops port, NATS (topology already applied by the config service or the
/// test: the service only verifies it) and the config service with its kind's `service`
/// token; no inherited environment. Callers add their own settings and spawn it.
pub fn data_plane(bin: &str, nats: &str, config: &str, ops: u16) -> std::process::Command {
    let mut cmd = std::process::Command::new(built_bin(bin));
    cmd.env_clear()
        .env("AUDITSTREAM_OPS_ADDR", format!("127.0.0.1:{ops}"))
        .env("AUDITSTREAM_NATS__URL", nats)
        // The config service's test topology: a service refuses streams weaker than its own.
        .envs(topology_env(&auditstream_testkit::small_topology()))
        .envs(auditstream_testkit::login_env(
            auditstream_testkit::binary_service(bin),
        ))
        .env("AUDITSTREAM_CONFIG_SERVICE__URL", config)
        .env("AUDITSTREAM_CONFIG_SERVICE__TOKEN", data_plane_token(bin))
        .stdout(std::process::Stdio::null());
    cmd
}
