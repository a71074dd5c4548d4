//! The whole delivery path for sink scenarios: nats-server, config service (SQLite, mail to
//! a real SMTP server), gateway, router, sink-http in-process, and one local HTTP receiver
//! per stream. Stream `s-<i>` takes the `user_activity` events of workspace `ws-<i>` and
//! delivers them to receiver `i` with the connection `c-<i>` (bearer token).

use std::{collections::HashSet, time::Duration};

use auditstream_config_service::authz::Role;
use auditstream_proto::v1::{
    self as pb, AppliesTo, NodeKind, connection, destination, http_credentials,
};
use auditstream_sink_core::SinkConfig;
use auditstream_sink_http::{HttpSink, HttpSinkConfig};
use auditstream_testkit::{
    ConfigClient, ConfigHarness, Database, GatewayHarness, HttpReceiver, NatsServer, RouterHarness,
    SinkHarness, SmtpServer, test_gateway_config, test_router_config, test_sink_config,
};

use super::{config::*, ndjson, post};

pub const GOOD_TOKEN: &str = "good-token-0123456789";
pub const BAD_TOKEN: &str = "revoked-token-0123456789";
pub const ADMIN_MAIL: &str = "sre@acme.example";

pub struct SinkStack {
    pub nats: NatsServer,
    pub config: ConfigHarness,
    pub gateway: GatewayHarness,
    pub router: RouterHarness,
    pub sink: Option<SinkHarness>,
    pub receivers: Vec<HttpReceiver>,
    pub smtp: SmtpServer,
    pub admin: ConfigClient,
}

/// The sink-http settings for loopback receivers (the SSRF guard allows 127.0.0.0/8 only
/// because the test says so).
pub fn loopback_http() -> HttpSinkConfig {
    HttpSinkConfig {
        allow_insecure_http: true,
        allowed_networks: vec!["127.0.0.0/8".into()],
        ..Default::default()
    }
}

pub fn http_connection(id: &str, node: &str, token: &str) -> pb::Connection {
    pb::Connection {
        id: id.into(),
        node_id: node.into(),
        name: format!("connection {id}"),
        credentials: Some(connection::Credentials::Http(pb::HttpCredentials {
            auth: Some(http_credentials::Auth::Bearer(pb::HttpBearerAuth {
                token: token.into(),
            })),
        })),
        ..Default::default()
    }
}

pub fn http_stream(id: &str, node: &str, connection: &str, url: &str) -> pb::Stream {
    pb::Stream {
        id: id.into(),
        node_id: node.into(),
        name: format!("stream {id}"),
        applies_to: AppliesTo::SelfOnly as i32,
        enabled: true,
        selection: Some(pb::EventSelection {
            event_types: vec!["user_activity".into()],
            ..Default::default()
        }),
        destination: Some(pb::Destination {
            connection_id: connection.into(),
            target: Some(destination::Target::Http(pb::HttpTarget {
                url: url.into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

/// `streams` streams with their receivers; `tokens[i]` is the token connection `c-<i>`
/// starts with (the receivers accept only [`GOOD_TOKEN`] once told to).
pub async fn sink_stack(
    tokens: &[&str],
    tweak: impl FnOnce(&mut SinkConfig<HttpSinkConfig>),
) -> SinkStack {
    let mut stack = stack_without_sink(tokens).await;
    let mut sink_config =
        test_sink_config::<HttpSinkConfig>(&stack.nats.url(), &stack.config.url());
    sink_config.sink = loopback_http();
    tweak(&mut sink_config);
    let sink = HttpSink::new(sink_config.sink.clone()).unwrap();
    stack.sink = Some(SinkHarness::start(sink, sink_config).await);
    stack
}

/// Everything but the sink (for scenarios that run the sink binary).
pub async fn stack_without_sink(tokens: &[&str]) -> SinkStack {
    let smtp = SmtpServer::start();
    let nats = NatsServer::start();
    let smtp_port = smtp.port();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.http.allow_insecure_http = true;
        c.http.allowed_networks = vec!["127.0.0.0/8".into()];
        c.notifications.smtp_host = "127.0.0.1".into();
        c.notifications.smtp_port = smtp_port;
        c.notifications.retry = auditstream_sink_core::retry::Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
    })
    .await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    put(
        &mut admin,
        pb::Node {
            admin_emails: vec![ADMIN_MAIL.into()],
            name: "Acme".into(),
            ..node("org", "", NodeKind::Organization)
        },
    )
    .await;
    let mut receivers = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let receiver = HttpReceiver::start().await;
        put(
            &mut admin,
            node(&format!("ws-{i}"), "org", NodeKind::Workspace),
        )
        .await;
        create_connection(&mut admin, http_connection(&format!("c-{i}"), "org", token)).await;
        create_stream(
            &mut admin,
            http_stream(
                &format!("s-{i}"),
                &format!("ws-{i}"),
                &format!("c-{i}"),
                &receiver.url(&format!("/intake/s-{i}")),
            ),
        )
        .await
        .unwrap();
        receivers.push(receiver);
    }
    let gateway = GatewayHarness::start(test_gateway_config(&nats.url())).await;
    let router = RouterHarness::start(test_router_config(&nats.url(), &config.url())).await;
    SinkStack {
        nats,
        config,
        gateway,
        router,
        sink: None,
        receivers,
        smtp,
        admin,
    }
}

/// `count` user_activity events for workspace `ws-<i>`, ids `<tag>-<i>-<n>`; the event
/// with number `poison` (if any) carries the text "poison-pill".
pub fn events(i: usize, tag: &str, count: usize, poison: Option<usize>) -> (String, Vec<String>) {
    let example: serde_json::Value = super::example_lines()
        .into_iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event_type"] == "user_activity")
        .unwrap();
    let mut ids = Vec::new();
    let mut lines = Vec::new();
    for n in 0..count {
        let mut v = example.clone();
        let id = format!("{tag}-{i}-{n}");
        v["id"] = id.clone().into();
        v["workspace_id"] = format!("ws-{i}").into();
        v["org_id"] = "org".into();
        if poison == Some(n) {
            v["data"]["user"]["name"] = "poison-pill".into();
        }
        ids.push(id);
        lines.push(v.to_string());
    }
    (lines.join("\n"), ids)
}

impl SinkStack {
    /// Posts `count` events for stream `i` through the gateway; returns the accepted ids.
    pub async fn send(
        &self,
        i: usize,
        tag: &str,
        count: usize,
        poison: Option<usize>,
    ) -> Vec<String> {
        let (body, ids) = events(i, tag, count, poison);
        let reply = post(&self.gateway, body, &[ndjson()]).await;
        assert_eq!(reply.status, 200, "gateway accepted all: {:?}", reply.body);
        ids
    }

    /// Waits until receiver `i` accepted every id in `ids`.
    pub async fn wait_delivered(&self, i: usize, ids: &[String], timeout: Duration) {
        let want: HashSet<String> = ids.iter().cloned().collect();
        self.receivers[i].wait_for_ids(&want, timeout).await;
    }

    pub async fn status(&self, stream: &str) -> pb::StreamStatus {
        self.admin
            .clone()
            .get_status(pb::GetStatusRequest {
                stream_id: stream.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Polls the stream's status until `pred` holds.
    pub async fn wait_status(
        &self,
        stream: &str,
        what: &str,
        pred: impl Fn(&pb::StreamStatus) -> bool,
    ) -> pb::StreamStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status(stream).await;
            if pred(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "stream {stream}: {what} never happened; last status {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn set_token(&mut self, connection: &str, token: &str) {
        let mut c = self
            .admin
            .get_connection(pb::GetConnectionRequest {
                id: connection.into(),
            })
            .await
            .unwrap()
            .into_inner();
        c.credentials = http_connection(connection, &c.node_id, token).credentials;
        self.admin
            .update_connection(pb::UpdateConnectionRequest {
                connection: Some(c),
            })
            .await
            .unwrap();
    }
}
