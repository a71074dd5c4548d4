//! The whole delivery path for sink scenarios: nats-server, config service (SQLite, mail to
//! a real SMTP server), gateway, router, sink-http in-process, and one local HTTP receiver
//! per stream. Stream `s-<i>` takes the `user_activity` events of workspace `ws-<i>` and
//! delivers them to receiver `i` with the connection `c-<i>` (bearer token).

use std::{collections::HashSet, time::Duration};

use auditstream_bus::{headers, headers::EventMeta, publish_durable, subjects, topology};
use auditstream_config_service::authz::Role;
use auditstream_model::SinkType;
use auditstream_proto::v1::{
    self as pb, AppliesTo, NodeKind, connection, destination, http_credentials,
};
use auditstream_sink_core::SinkConfig;
use auditstream_sink_http::{HttpSink, HttpSinkConfig};
use auditstream_testkit::{
    ConfigClient, ConfigHarness, Database, GatewayHarness, HttpReceiver, NatsServer, RouterHarness,
    SinkHarness, SmtpServer, stream_messages, test_gateway_config, test_router_config,
    test_sink_config,
};

use super::{config::*, ndjson, post};

pub const GOOD_TOKEN: &str = "good-token-0123456789";
pub const BAD_TOKEN: &str = "revoked-token-0123456789";
pub const ADMIN_MAIL: &str = "sre@acme.example";

pub struct SinkStack {
    pub nats: NatsServer,
    pub config: ConfigHarness,
    pub gateway: GatewayHarness,
    /// The in-process router; a test may stop it and run the binary instead.
    pub router: Option<RouterHarness>,
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

/// A bearer-token connection bound to the origin of `url` (the receiver it may send to).
pub fn http_connection(id: &str, node: &str, token: &str, url: &str) -> pb::Connection {
    pb::Connection {
        id: id.into(),
        node_id: node.into(),
        name: format!("connection {id}"),
        credentials: Some(connection::Credentials::Http(pb::HttpCredentials {
            auth: Some(http_credentials::Auth::Bearer(pb::HttpBearerAuth {
                token: token.into(),
            })),
            origin: origin_of(url),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// `scheme://host:port` of `url`.
pub fn origin_of(url: &str) -> String {
    let parsed = auditstream_model::destination::parse_http_url("url", url, true).unwrap();
    auditstream_model::binding::origin(&parsed)
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
    stack
        .start_sink(loopback_http(), tweak, |c| {
            HttpSink::new(c.clone()).unwrap()
        })
        .await;
    stack
}

/// Everything but the sink (for scenarios that run the sink binary).
pub async fn stack_without_sink(tokens: &[&str]) -> SinkStack {
    let mut receivers = Vec::new();
    let mut destinations = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let receiver = HttpReceiver::start().await;
        let stream = http_stream("", "", "", &receiver.url(&format!("/intake/s-{i}")));
        destinations.push((
            http_connection("", "", token, &receiver.url("/"))
                .credentials
                .unwrap(),
            stream.destination.unwrap().target.unwrap(),
        ));
        receivers.push(receiver);
    }
    let mut stack = stack_with(destinations).await;
    stack.receivers = receivers;
    stack
}

/// Everything but the sink, with stream `s-<i>` (the `user_activity` events of workspace
/// `ws-<i>`) delivering to `destinations[i]` through connection `c-<i>`.
pub async fn stack_with(
    destinations: Vec<(connection::Credentials, destination::Target)>,
) -> SinkStack {
    let smtp = SmtpServer::start();
    let nats = NatsServer::start();
    let smtp_port = smtp.port();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.http.allow_insecure_http = true;
        c.http.allowed_networks = vec!["127.0.0.0/8".into()];
        // This platform's operator lets `org` use the sink's own AWS identity (the
        // default-chain scenario; tenants elsewhere are refused, see cloud_identity.rs).
        c.connections.platform_identity_nodes = vec!["org".into()];
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
    for (i, (credentials, target)) in destinations.into_iter().enumerate() {
        put(
            &mut admin,
            node(&format!("ws-{i}"), "org", NodeKind::Workspace),
        )
        .await;
        let mut stream = http_stream(&format!("s-{i}"), &format!("ws-{i}"), &format!("c-{i}"), "");
        stream.destination.as_mut().unwrap().target = Some(target);
        create_connection(
            &mut admin,
            pb::Connection {
                id: format!("c-{i}"),
                node_id: "org".into(),
                name: format!("connection c-{i}"),
                credentials: Some(credentials),
                ..Default::default()
            },
        )
        .await;
        create_stream(&mut admin, stream).await.unwrap();
    }
    let gateway = GatewayHarness::start(test_gateway_config(&nats.url())).await;
    let router = RouterHarness::start(test_router_config(&nats.url(), &config.url())).await;
    SinkStack {
        nats,
        config,
        gateway,
        router: Some(router),
        sink: None,
        receivers: Vec::new(),
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

/// Waits until a sink binary's `/readyz` on `127.0.0.1:<ops>` answers 200.
pub async fn wait_sink_ready(ops: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ok = reqwest::get(format!("http://127.0.0.1:{ops}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "sink not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `auditctl --server <url> --token <token> <args...>` in-process, as the platform admin.
pub async fn ctl(stack: &SinkStack, args: &[&str]) -> String {
    let token: &str = auditstream_testkit::TestToken::of(Role::PlatformAdmin, None).token;
    let url = stack.config.url();
    let argv = ["auditctl", "--server", url.as_str(), "--token", token]
        .into_iter()
        .chain(args.iter().copied())
        .map(String::from)
        .collect::<Vec<_>>();
    let mut out = Vec::new();
    auditstream_cli::run_args(argv, &mut out)
        .await
        .unwrap_or_else(|e| panic!("auditctl {args:?}: {e}"));
    String::from_utf8(out).unwrap()
}

impl SinkStack {
    /// Starts a sink in-process with the test runtime settings, `sink` settings and `tweak`.
    pub async fn start_sink<C, S>(
        &mut self,
        sink: C,
        tweak: impl FnOnce(&mut SinkConfig<C>),
        build: impl FnOnce(&C) -> S,
    ) where
        C: Default + Send + 'static,
        S: auditstream_sink_core::Sink,
    {
        let mut sink_config = test_sink_config::<C>(S::TYPE, &self.nats.url(), &self.config.url());
        sink_config.sink = sink;
        tweak(&mut sink_config);
        let sink = build(&sink_config.sink);
        self.sink = Some(SinkHarness::start(sink, sink_config).await);
    }

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

    /// Publishes event `event_id` for stream `s-<i>` once more as the router would (a DLQ
    /// replay comes back the same way), with `body` and a message id of its own, so JetStream
    /// does not drop it as a duplicate: a producer re-sending a known id with another body
    /// after the de-duplication window. `occurred_at` is the example's, as for [`events`].
    pub async fn resend(&self, sink: SinkType, i: usize, event_id: &str, body: &str) {
        let (line, _) = events(i, "x", 1, None);
        let example: serde_json::Value = serde_json::from_str(&line).unwrap();
        let stream = format!("s-{i}");
        let key = super::stream_key(&self.admin, &stream).await;
        let mut h = EventMeta {
            event_id,
            org_id: "org",
            workspace_id: &format!("ws-{i}"),
            event_type: "user_activity",
            occurred_at: example["occurred_at"].as_str().unwrap(),
            received_at: "2026-11-21T10:15:03Z",
            traceparent: None,
        }
        .to_headers();
        h.insert(headers::STREAM_ID, stream.as_str());
        publish_durable(
            &self.nats.jetstream().await,
            subjects::deliver(sink, &key).unwrap(),
            &format!("{event_id}.{key}.resent"),
            h,
            body.to_owned().into(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }

    /// Waits until the sink settled every message (AUDIT_DELIVER is empty), then checks that
    /// none went to the DLQ or the backlog: everything was delivered.
    pub async fn wait_all_delivered(&self) {
        let js = self.nats.jetstream().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while stream_messages(&js, topology::DELIVER).await > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sink never acked its messages"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            stream_messages(&js, topology::DLQ).await,
            0,
            "dead-lettered"
        );
        assert_eq!(
            stream_messages(&js, &topology::backlog(SinkType::Http)).await,
            0,
            "backlogged"
        );
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

    /// Replaces the connection's token, keeping its origin.
    pub async fn set_token(&mut self, connection: &str, token: &str) {
        let Some(connection::Credentials::Http(mut http)) =
            self.connection(connection).await.credentials
        else {
            panic!("{connection} is not an HTTP connection");
        };
        http.auth = Some(http_credentials::Auth::Bearer(pb::HttpBearerAuth {
            token: token.into(),
        }));
        self.set_credentials(connection, connection::Credentials::Http(http))
            .await;
    }

    /// The connection as stored (public fields).
    pub async fn connection(&mut self, id: &str) -> pb::Connection {
        self.admin
            .get_connection(pb::GetConnectionRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner()
    }

    /// Replaces a connection's credentials through the config service.
    pub async fn set_credentials(
        &mut self,
        connection: &str,
        credentials: connection::Credentials,
    ) {
        let mut c = self.connection(connection).await;
        c.credentials = Some(credentials);
        self.admin
            .update_connection(pb::UpdateConnectionRequest {
                connection: Some(c),
            })
            .await
            .unwrap();
    }
}

/// Organization `org` with workspace `ws-0`, connection `c-0` and stream `s-0` (its
/// `user_activity` events, the kind [`events`] makes) to `receiver`'s `/intake/s-0`.
pub async fn one_http_stream(admin: &mut ConfigClient, receiver: &HttpReceiver) {
    use auditstream_proto::v1::NodeKind::*;
    put(admin, node("org", "", Organization)).await;
    put(admin, node("ws-0", "org", Workspace)).await;
    create_connection(
        admin,
        http_connection("c-0", "org", GOOD_TOKEN, &receiver.url("/")),
    )
    .await;
    create_stream(
        admin,
        http_stream("s-0", "ws-0", "c-0", &receiver.url("/intake/s-0")),
    )
    .await
    .unwrap();
}
