//! The project's NATS permissions (security review H7) against a real nats-server: a client
//! holding one service kind's credentials cannot do another kind's job. That each kind can
//! do its own is shown by every other scenario, which runs each service as its own user.
//!
//! NATS answers a forbidden publish or subscribe with an asynchronous `-ERR 'Permissions
//! Violation …'` and drops the message. Each test waits for that error (from the client's
//! event callback) and, where a message could have got through, checks the order: the
//! server keeps one connection's messages in order, so when a message sent after the
//! forbidden one arrives first, the forbidden one was dropped.

use std::time::Duration;

use async_nats::{
    ConnectOptions, Event,
    jetstream::{self, consumer::pull},
};
use auditstream_bus::{Service, permissions::sink_consumer, topology};
use auditstream_model::SinkType;
use auditstream_testkit::{NatsServer, service_password, small_topology};
use futures_util::StreamExt;
use tokio::sync::mpsc;

/// A client logged in as one service kind, with the server errors it was sent.
struct As {
    client: async_nats::Client,
    errors: mpsc::UnboundedReceiver<String>,
}

async fn connect_as(nats: &NatsServer, service: Service) -> As {
    let (tx, errors) = mpsc::unbounded_channel();
    let client = ConnectOptions::new()
        .user_and_password(service.user(), service_password(service))
        .custom_inbox_prefix(service.inbox_prefix())
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(nats.url())
        .await
        .expect("connect with the service's credentials");
    As { client, errors }
}

impl As {
    /// Waits for the server's permissions violation naming `subject`.
    async fn violation(&mut self, kind: &str, subject: &str) {
        let wanted = format!("permissions violation for {kind} to \"{subject}\"");
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(e) = self.errors.recv().await {
                if e.to_lowercase().contains(&wanted.to_lowercase()) {
                    return e;
                }
            }
            panic!("event channel closed");
        })
        .await;
        assert!(found.is_ok(), "no {wanted:?} from the server");
    }

    fn jetstream(&self) -> jetstream::Context {
        // Short: a forbidden API request is dropped, so it only ends by timing out.
        auditstream_bus::jetstream_context(self.client.clone(), Duration::from_secs(2))
    }
}

/// A superuser subscription on `filter`, in place on the server when this returns.
async fn watch(nats: &NatsServer, filter: &str) -> (async_nats::Client, async_nats::Subscriber) {
    let client = nats.connect().await;
    let sub = client.subscribe(filter.to_owned()).await.unwrap();
    client.flush().await.unwrap();
    (client, sub)
}

async fn next_subject(sub: &mut async_nats::Subscriber) -> String {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("a message within 10 s")
        .expect("subscription open")
        .subject
        .to_string()
}

#[tokio::test]
async fn only_the_config_service_may_publish_the_control_feed() {
    let nats = NatsServer::start();
    let (_watcher, mut seen) = watch(&nats, "audit.>").await;
    for service in Service::ALL {
        if service == Service::ConfigService {
            continue;
        }
        let mut s = connect_as(&nats, service).await;
        s.client
            .publish("audit.ctl.config", "forged revision".into())
            .await
            .unwrap();
        s.violation("publish", "audit.ctl.config").await;
        // Something this kind may publish, sent after the forged change, arrives first.
        let allowed = match service {
            Service::Gateway => "audit.ingest.o.w.user_activity".to_owned(),
            Service::Router => "audit.deliver.http.s1".to_owned(),
            Service::Sink(t) => format!("audit.dlq.{t}.s1"),
            Service::ConfigService => unreachable!(),
        };
        s.client
            .publish(allowed.clone(), "ok".into())
            .await
            .unwrap();
        s.client.flush().await.unwrap();
        assert_eq!(next_subject(&mut seen).await, allowed, "{service:?}");
    }
    // The config service's own change goes through.
    let mut config = connect_as(&nats, Service::ConfigService).await;
    config
        .client
        .publish("audit.ctl.config", "revision".into())
        .await
        .unwrap();
    config.client.flush().await.unwrap();
    assert_eq!(next_subject(&mut seen).await, "audit.ctl.config");
    assert!(config.errors.try_recv().is_err());
}

#[tokio::test]
async fn the_gateway_cannot_send_sink_rpcs() {
    let nats = NatsServer::start();
    let (_watcher, mut seen) = watch(&nats, "audit.>").await;
    let mut gw = connect_as(&nats, Service::Gateway).await;
    // What a TestDestination request looks like: it would make the sink fetch secrets and
    // send them to a URL of the caller's choosing.
    let rpc = "audit.rpc.http.test_destination";
    let inbox = gw.client.new_inbox();
    gw.client
        .publish_with_reply(rpc, inbox, "{}".into())
        .await
        .unwrap();
    gw.violation("publish", rpc).await;
    gw.client
        .publish("audit.ingest.o.w.user_activity", "ok".into())
        .await
        .unwrap();
    gw.client.flush().await.unwrap();
    assert_eq!(
        next_subject(&mut seen).await,
        "audit.ingest.o.w.user_activity"
    );
    // A sink may answer requests, not send them.
    let mut sink = connect_as(&nats, Service::Sink(SinkType::Http)).await;
    sink.client
        .publish("audit.rpc.s3.list_targets", "{}".into())
        .await
        .unwrap();
    sink.violation("publish", "audit.rpc.s3.list_targets").await;
}

#[tokio::test]
async fn the_gateway_cannot_read_deliveries() {
    let nats = NatsServer::start();
    nats.apply_topology(&small_topology()).await;
    let mut gw = connect_as(&nats, Service::Gateway).await;

    // Not as a plain subscriber…
    let mut deliveries = gw.client.subscribe("audit.deliver.>").await.unwrap();
    gw.violation("subscription", "audit.deliver.>").await;
    // …nor by reading other services' inboxes, where JetStream hands pulled messages…
    let _inboxes = gw.client.subscribe("_INBOX.>").await.unwrap();
    gw.violation("subscription", "_INBOX.>").await;
    // …nor through a consumer of its own on AUDIT_DELIVER, nor a sink's (it may not even
    // read the stream's info: it only works on AUDIT_INGEST).
    let js = gw.jetstream();
    assert!(js.get_stream(topology::DELIVER).await.is_err());
    gw.violation("publish", "$JS.API.STREAM.INFO.AUDIT_DELIVER")
        .await;
    let stream = js.get_stream_no_info(topology::DELIVER).await.unwrap();
    let created = stream
        .create_consumer(pull::Config {
            durable_name: Some("snoop".into()),
            filter_subject: "audit.deliver.>".into(),
            ..Default::default()
        })
        .await;
    assert!(created.is_err());
    gw.violation(
        "publish",
        "$JS.API.CONSUMER.CREATE.AUDIT_DELIVER.snoop.audit.deliver.>",
    )
    .await;
    let pulled = stream.get_consumer::<pull::Config>("sink-http").await;
    assert!(pulled.is_err());
    gw.violation("publish", "$JS.API.CONSUMER.INFO.AUDIT_DELIVER.sink-http")
        .await;

    // A delivery published now never reaches the refused subscription: the probe sent after
    // it to the gateway's own inbox arrives, the delivery does not.
    let probe = format!("{}.probe", Service::Gateway.inbox_prefix());
    let mut probes = gw.client.subscribe(probe.clone()).await.unwrap();
    gw.client.flush().await.unwrap();
    let admin = nats.connect().await;
    admin
        .publish("audit.deliver.http.s1", "event".into())
        .await
        .unwrap();
    admin.publish(probe, "probe".into()).await.unwrap();
    admin.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), probes.next())
        .await
        .expect("the probe arrives")
        .expect("subscription open");
    assert!(
        futures_util::FutureExt::now_or_never(deliveries.next())
            .flatten()
            .is_none(),
        "the gateway received a delivery"
    );
}

#[tokio::test]
async fn sink_s3_credentials_cannot_consume_http_deliveries() {
    let nats = NatsServer::start();
    nats.apply_topology(&small_topology()).await;
    let admin = nats.jetstream().await;
    for subject in ["audit.deliver.http.s1", "audit.deliver.s3.s2"] {
        admin
            .publish(subject, "event".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // The http sink's durable, as sink-http creates it.
    let deliver = admin.get_stream(topology::DELIVER).await.unwrap();
    deliver
        .create_consumer(pull::Config {
            durable_name: Some(sink_consumer(SinkType::Http)),
            filter_subject: "audit.deliver.http.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let mut s3 = connect_as(&nats, Service::Sink(SinkType::S3)).await;
    let _plain = s3.client.subscribe("audit.deliver.http.>").await.unwrap();
    s3.violation("subscription", "audit.deliver.http.>").await;

    let stream = s3.jetstream().get_stream(topology::DELIVER).await.unwrap();
    // Its own durable name with the http filter: the filter is part of the API subject.
    let own_name_http_filter = stream
        .create_consumer(pull::Config {
            durable_name: Some(sink_consumer(SinkType::S3)),
            filter_subject: "audit.deliver.http.>".into(),
            ..Default::default()
        })
        .await;
    assert!(own_name_http_filter.is_err());
    s3.violation(
        "publish",
        "$JS.API.CONSUMER.CREATE.AUDIT_DELIVER.sink-s3.audit.deliver.http.>",
    )
    .await;
    // Pulling from the http sink's durable, as a raw pull request to the consumer's API.
    let inbox = s3.client.new_inbox();
    let _replies = s3.client.subscribe(inbox.clone()).await.unwrap();
    let next = "$JS.API.CONSUMER.MSG.NEXT.AUDIT_DELIVER.sink-http";
    s3.client
        .publish_with_reply(next, inbox, r#"{"batch":1}"#.into())
        .await
        .unwrap();
    s3.violation("publish", next).await;
    let http = deliver
        .clone()
        .get_consumer::<pull::Config>("sink-http")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!((http.num_pending, http.num_ack_pending), (1, 0));

    // Its own deliveries, through its own durable: allowed, and only those.
    let own = stream
        .create_consumer(pull::Config {
            durable_name: Some(sink_consumer(SinkType::S3)),
            filter_subject: "audit.deliver.s3.>".into(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("its own consumer");
    let mut batch = own
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut subjects = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        subjects.push(m.subject.to_string());
        m.double_ack().await.expect("its ack is allowed");
    }
    assert_eq!(subjects, ["audit.deliver.s3.s2"]);
    // The http delivery is still there for the http sink.
    assert_eq!(deliver.clone().get_info().await.unwrap().state.messages, 1);
}

/// The backlog is one stream per sink type, so a sink type's user reaches no other type's
/// backlog: it cannot read the stream's info (which lists the stream keys), direct-get a
/// message, pull from or ack on another type's backlog consumer, or create one there.
#[tokio::test]
async fn sink_s3_credentials_cannot_read_the_http_backlog() {
    let nats = NatsServer::start();
    nats.apply_topology(&small_topology()).await;
    let admin = nats.jetstream().await;
    for subject in ["audit.backlog.http.s1", "audit.backlog.s3.s2"] {
        admin
            .publish(subject, "event".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let http_backlog = topology::backlog(SinkType::Http);
    // The http sink's backlog consumer of stream s1, as sink-http names it.
    admin
        .get_stream(&http_backlog)
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("backlog-http-s1".into()),
            filter_subject: "audit.backlog.http.s1".into(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();

    let mut s3 = connect_as(&nats, Service::Sink(SinkType::S3)).await;
    let js = s3.jetstream();
    assert!(js.get_stream(&http_backlog).await.is_err());
    s3.violation("publish", &format!("$JS.API.STREAM.INFO.{http_backlog}"))
        .await;
    // Raw API requests, as a client that skips stream info would send them.
    let inbox = s3.client.new_inbox();
    let _replies = s3.client.subscribe(inbox.clone()).await.unwrap();
    for (subject, body) in [
        (
            format!("$JS.API.CONSUMER.MSG.NEXT.{http_backlog}.backlog-http-s1"),
            r#"{"batch":1}"#,
        ),
        (format!("$JS.API.DIRECT.GET.{http_backlog}"), r#"{"seq":1}"#),
        (
            format!("$JS.API.CONSUMER.CREATE.{http_backlog}.mine.audit.backlog.http.>"),
            r#"{"stream_name":"AUDIT_BACKLOG_HTTP","config":{"name":"mine","filter_subject":"audit.backlog.http.>"}}"#,
        ),
        (
            format!("$JS.ACK.{http_backlog}.backlog-http-s1.1.1.1.1.0"),
            "",
        ),
    ] {
        s3.client
            .publish_with_reply(subject.clone(), inbox.clone(), body.into())
            .await
            .unwrap();
        s3.violation("publish", &subject).await;
    }
    let pending = admin
        .get_stream(&http_backlog)
        .await
        .unwrap()
        .get_consumer::<pull::Config>("backlog-http-s1")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(
        (pending.num_pending, pending.num_ack_pending),
        (1, 0),
        "the http backlog event was handed out"
    );

    // Its own backlog, as sink-s3's lanes read it: allowed.
    let own = js
        .get_stream(topology::backlog(SinkType::S3))
        .await
        .expect("its own backlog's info")
        .create_consumer(pull::Config {
            durable_name: Some("backlog-s3-s2".into()),
            filter_subject: "audit.backlog.s3.s2".into(),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("its own backlog consumer");
    let mut batch = own
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let m = batch.next().await.expect("its backlog event").unwrap();
    assert_eq!(m.subject.as_str(), "audit.backlog.s3.s2");
    m.double_ack().await.expect("its ack is allowed");
}
