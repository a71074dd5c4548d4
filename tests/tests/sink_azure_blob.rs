//! sink-azure-blob end to end against Azurite: gateway → router → sink-azure-blob (in-process)
//! → Azurite, with the config service (SQLite) and a real SMTP server. What landed is read
//! back with the Blob SDK (list + download + gunzip) by the test kit. Every scenario counts
//! event ids in the container: duplicates are allowed, loss never. Each test has its own
//! Azurite (port, data directory), nats-server, config service and containers.

mod common;

use std::{collections::HashSet, time::Duration};

use auditstream_config_service::authz::Role;
use auditstream_proto::v1::{
    self as pb, AppliesTo, HealthState, NodeKind, azure_blob_credentials::Method, connection,
    destination,
};
use auditstream_sink_azure_blob::{AzureBlobSink, AzureBlobSinkConfig};
use auditstream_sink_core::{Destination as _, Event, Sink as _, SinkConfig, classify::Class};
use auditstream_testkit::{
    Azurite, ConfigClient, ConfigHarness, Database, GatewayHarness, NatsServer, RouterHarness,
    SinkHarness, SmtpServer, TestToken, test_gateway_config, test_router_config, test_sink_config,
};
use common::{
    config::{create_connection, create_stream, node, put},
    ndjson, post,
    sink::{ADMIN_MAIL, events},
};

const MINUTE: Duration = Duration::from_secs(60);
/// A valid base64 key that is not Azurite's: the SAS the sink signs with it is refused.
const WRONG_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The producer example's `occurred_at` (2026-11-21T10:16:40Z) gives this partition.
const PARTITION: &str = "org/ws-0/user_activity/2026/11/21/10/";

fn blob_connection(id: &str, endpoint: &str, key: &str) -> pb::Connection {
    pb::Connection {
        id: id.into(),
        node_id: "org".into(),
        name: format!("blob {id}"),
        credentials: Some(connection::Credentials::AzureBlob(pb::AzureBlobCredentials {
            account: Azurite::ACCOUNT.into(),
            endpoint: endpoint.into(),
            method: Some(Method::SharedKey(pb::AzureSharedKey {
                account_key: key.into(),
            })),
        })),
        ..Default::default()
    }
}

fn insecure() -> AzureBlobSinkConfig {
    AzureBlobSinkConfig {
        allow_insecure_http: true,
        ..Default::default()
    }
}

/// Azurite, SMTP, NATS, config service, gateway, router and the sink; stream `s-0` takes
/// workspace `ws-0`'s `user_activity` events to `target` (in a container created here)
/// through connection `c-0` (shared key `key`).
struct BlobStack {
    azurite: Azurite,
    smtp: SmtpServer,
    _nats: NatsServer,
    config: ConfigHarness,
    gateway: GatewayHarness,
    _router: RouterHarness,
    sink: Option<SinkHarness>,
    admin: ConfigClient,
    container: String,
}

async fn blob_stack(key: &str, target: pb::AzureBlobTarget) -> BlobStack {
    let smtp = SmtpServer::start();
    let azurite = Azurite::start();
    azurite.create_container(&target.container).await;
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
    put(&mut admin, node("ws-0", "org", NodeKind::Workspace)).await;
    create_connection(&mut admin, blob_connection("c-0", &azurite.endpoint(), key)).await;
    let container = target.container.clone();
    create_stream(
        &mut admin,
        pb::Stream {
            id: "s-0".into(),
            node_id: "ws-0".into(),
            name: "blob archive".into(),
            applies_to: AppliesTo::SelfOnly as i32,
            enabled: true,
            selection: Some(pb::EventSelection {
                event_types: vec!["user_activity".into()],
                ..Default::default()
            }),
            destination: Some(pb::Destination {
                connection_id: "c-0".into(),
                target: Some(destination::Target::AzureBlob(target)),
            }),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let gateway = GatewayHarness::start(test_gateway_config(&nats.url())).await;
    let router = RouterHarness::start(test_router_config(&nats.url(), &config.url())).await;
    let mut sink_config: SinkConfig<AzureBlobSinkConfig> =
        test_sink_config(&nats.url(), &config.url());
    sink_config.sink = insecure();
    let sink = AzureBlobSink::new(sink_config.sink.clone()).unwrap();
    let sink = SinkHarness::start(sink, sink_config).await;
    BlobStack {
        azurite,
        smtp,
        _nats: nats,
        config,
        gateway,
        _router: router,
        sink: Some(sink),
        admin,
        container,
    }
}

fn target(container: &str, prefix: &str, format: pb::ObjectFormat) -> pb::AzureBlobTarget {
    pb::AzureBlobTarget {
        container: container.into(),
        prefix: prefix.into(),
        format: format as i32,
        compression: pb::Compression::Unspecified as i32,
    }
}

impl BlobStack {
    /// Posts `count` user_activity events of ws-0 through the gateway; returns their ids.
    async fn send(&self, tag: &str, count: usize) -> Vec<String> {
        let (body, ids) = events(0, tag, count, None);
        let reply = post(&self.gateway, body, &[ndjson()]).await;
        assert_eq!(reply.status, 200, "gateway accepted all: {:?}", reply.body);
        ids
    }

    /// Waits until every id in `ids` is in the container; returns what is there.
    async fn wait_delivered(&self, ids: &[String], timeout: Duration) -> Vec<String> {
        let want: HashSet<&String> = ids.iter().collect();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.azurite.event_ids(&self.container).await;
            let have: HashSet<&String> = got.iter().collect();
            let missing = want.difference(&have).count();
            if missing == 0 {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{missing} of {} events never reached container {}",
                want.len(),
                self.container
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_status(
        &self,
        what: &str,
        pred: impl Fn(&pb::StreamStatus) -> bool,
    ) -> pb::StreamStatus {
        let deadline = tokio::time::Instant::now() + MINUTE;
        loop {
            let s = self
                .admin
                .clone()
                .get_status(pb::GetStatusRequest {
                    stream_id: "s-0".into(),
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

    async fn set_key(&mut self, key: &str) {
        let mut c = self
            .admin
            .get_connection(pb::GetConnectionRequest { id: "c-0".into() })
            .await
            .unwrap()
            .into_inner();
        c.credentials = blob_connection("c-0", &self.azurite.endpoint(), key).credentials;
        self.admin
            .update_connection(pb::UpdateConnectionRequest {
                connection: Some(c),
            })
            .await
            .unwrap();
    }
}

/// Ids with the given tags; the container also gets the config service's own audit events
/// of ws-0 (the stream's creation), which the stream selects as well.
fn tagged(ids: &[String], tags: &[&str]) -> HashSet<String> {
    ids.iter()
        .filter(|id| tags.iter().any(|t| id.starts_with(&format!("{t}-"))))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_gzip_batches_land_under_partitioned_keys() {
    let stack = blob_stack(
        Azurite::KEY,
        target("archive-ndjson", "audit/", pb::ObjectFormat::Ndjson),
    )
    .await;
    let mut accepted = stack.send("nd", 300).await;
    accepted.extend(stack.send("nd2", 50).await);
    let delivered = stack.wait_delivered(&accepted, MINUTE).await;
    let accepted: HashSet<String> = accepted.into_iter().collect();
    assert_eq!(tagged(&delivered, &["nd", "nd2"]), accepted, "exactly the delivered events");

    let blobs = stack.azurite.blobs(&stack.container).await;
    let ours: Vec<_> = blobs
        .iter()
        .filter(|b| b.event_ids().iter().any(|id| accepted.contains(id)))
        .collect();
    assert!(!ours.is_empty());
    for blob in ours {
        let batch = blob
            .name
            .strip_prefix(&format!("audit/{PARTITION}"))
            .and_then(|rest| rest.strip_suffix(".ndjson.gz"))
            .unwrap_or_else(|| panic!("unexpected key {}", blob.name));
        assert!(
            batch.len() == 32 && batch.chars().all(|c| c.is_ascii_hexdigit()),
            "batch id of {}",
            blob.name
        );
        assert_eq!(blob.content_encoding.as_deref(), Some("gzip"), "{}", blob.name);
        assert_eq!(
            blob.content_type.as_deref(),
            Some("application/x-ndjson"),
            "{}",
            blob.name
        );
        // Stored compressed: the raw body is gzip, one event per line inside.
        assert_eq!(&blob.body[..2], &[0x1f, 0x8b], "{}", blob.name);
        for line in blob.text().lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("one JSON event per line");
            assert_eq!(v["event_type"], "user_activity", "{line}");
        }
    }
    assert!(
        blobs.iter().all(|b| !b.name.contains(".auditstream-probe")),
        "no probe leftovers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_event_blobs_are_named_by_event_id() {
    let stack = blob_stack(
        Azurite::KEY,
        target("archive-per-event", "", pb::ObjectFormat::PerEvent),
    )
    .await;
    let accepted = stack.send("pe", 40).await;
    stack.wait_delivered(&accepted, MINUTE).await;
    let blobs = stack.azurite.blobs(&stack.container).await;
    for id in &accepted {
        let name = format!("{PARTITION}{id}.json");
        let blob = blobs
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no blob {name}"));
        assert_eq!(blob.content_encoding, None, "per_event is uncompressed by default");
        assert_eq!(blob.content_type.as_deref(), Some("application/json"));
        assert_eq!(blob.event_ids(), vec![id.clone()]);
    }
}

/// An event as the router would have put it on the bus.
fn event(id: &str) -> Event {
    let mut e = Event::new(
        id,
        format!(r#"{{"id":"{id}","audit":{{"event_id":"{id}"}}}}"#),
    );
    e.org_id = "org".into();
    e.workspace_id = "ws-0".into();
    e.event_type = "user_activity".into();
    e.occurred_at = "2026-11-21T10:16:40Z".into();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_does_not_create_a_second_blob() {
    let azurite = Azurite::start();
    azurite.create_container("redelivery").await;
    let sink = AzureBlobSink::new(insecure()).unwrap();
    let connection = blob_connection("c", &azurite.endpoint(), Azurite::KEY);
    let batch: Vec<Event> = (0..5).map(|n| event(&format!("rd-{n}"))).collect();
    for (format, prefix) in [
        (pb::ObjectFormat::Ndjson, "nd"),
        (pb::ObjectFormat::PerEvent, "pe"),
    ] {
        let destination = pb::Destination {
            connection_id: "c".into(),
            target: Some(destination::Target::AzureBlob(target(
                "redelivery",
                prefix,
                format,
            ))),
        };
        let d = sink.build(&destination, &connection).unwrap();
        let first = d.send(&batch).await;
        assert_eq!(first.class, Class::Delivered, "{first:?}");
        let names = azurite.blob_names("redelivery").await;
        // The same batch again (a retry after a lost answer, or JetStream redelivery).
        let again = sink.build(&destination, &connection).unwrap().send(&batch).await;
        assert_eq!(again.class, Class::Delivered, "{again:?}");
        assert_eq!(azurite.blob_names("redelivery").await, names, "{format:?}");
    }
    let names = azurite.blob_names("redelivery").await;
    assert_eq!(
        names.iter().filter(|n| n.starts_with("nd/")).count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.starts_with("pe/")).count(),
        5,
        "{names:?}"
    );
    let ids = azurite.event_ids("redelivery").await;
    assert_eq!(ids.len(), 10, "each event once per layout: {ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_breaks_the_stream_until_the_admin_fixes_it() {
    let mut stack = blob_stack(
        WRONG_KEY,
        target("archive-fixed", "audit", pb::ObjectFormat::Ndjson),
    )
    .await;
    let mut accepted = stack.send("first", 50).await;
    let broken = stack
        .wait_status("broken", |s| s.state() == HealthState::Broken)
        .await;
    assert!(broken.last_error.contains("403"), "{broken:?}");
    assert!(
        broken.hint.contains("shared key") && broken.hint.contains("devstoreaccount1"),
        "the hint says what to fix: {broken:?}"
    );

    // More events while broken: they wait in the backlog.
    accepted.extend(stack.send("second", 50).await);
    stack
        .wait_status("backlog of 100", |s| s.backlog_depth >= 100)
        .await;

    // The admins get a mail with the error and the fix.
    let mails = stack.smtp.wait_for(1, MINUTE).await;
    let mail = mails[0].replace("=\r\n", "").replace("\r\n", "\n");
    assert!(mail.contains(ADMIN_MAIL), "{mail}");
    assert!(mail.contains("403"), "the error: {mail}");
    assert!(mail.contains("What to fix"), "the fix: {mail}");
    assert!(mail.contains("shared key"), "the hint: {mail}");

    // Testing the destination says the same, without revealing anything secret.
    let tested = stack
        .admin
        .test_destination(pb::TestDestinationRequest {
            stream_id: "s-0".into(),
            destination: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!tested.ok, "{tested:?}");
    assert_eq!(tested.result, "configuration");
    assert!(!tested.hint.is_empty(), "{tested:?}");
    let shown = format!("{tested:?}{broken:?}{mail}");
    assert!(!shown.contains(WRONG_KEY), "{shown}");
    assert!(
        shown
            .match_indices("sig=")
            .all(|(i, _)| shown[i + 4..].starts_with("REDACTED")),
        "no SAS signature shown: {shown}"
    );
    assert!(
        tagged(&stack.azurite.event_ids(&stack.container).await, &["first", "second"]).is_empty(),
        "nothing got through"
    );

    // The admin fixes the key: the sink probes at once, drains the backlog, recovers.
    stack.set_key(Azurite::KEY).await;
    let delivered = stack.wait_delivered(&accepted, MINUTE).await;
    let recovered = stack
        .wait_status("healthy again", |s| {
            s.state() == HealthState::Healthy && s.backlog_depth == 0
        })
        .await;
    assert!(recovered.replayed_events >= 100, "{recovered:?}");
    let accepted: HashSet<String> = accepted.into_iter().collect();
    assert_eq!(tagged(&delivered, &["first", "second"]), accepted);
    let tested = stack
        .admin
        .test_destination(pb::TestDestinationRequest {
            stream_id: "s-0".into(),
            destination: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(tested.ok, "{tested:?}");
    assert!(
        stack
            .azurite
            .blob_names(&stack.container)
            .await
            .iter()
            .all(|n| !n.contains(".auditstream-probe")),
        "the probes removed their test blobs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_down_for_a_minute_loses_nothing() {
    let mut stack = blob_stack(
        Azurite::KEY,
        target("archive-outage", "audit", pb::ObjectFormat::Ndjson),
    )
    .await;
    let mut accepted = stack.send("before", 100).await;
    stack.wait_delivered(&accepted, MINUTE).await;

    // Azurite's process is stopped; events keep coming for a minute.
    tokio::task::block_in_place(|| stack.azurite.stop());
    let down_since = tokio::time::Instant::now();
    for round in 0..6 {
        accepted.extend(stack.send(&format!("down{round}"), 30).await);
        // The outage's length is the scenario, not a synchronization.
        tokio::time::sleep_until(down_since + Duration::from_secs(10 * (round + 1))).await;
    }
    let during = stack
        .wait_status("failures noticed", |s| s.state() != HealthState::Healthy)
        .await;
    assert!(!during.last_error.is_empty(), "{during:?}");

    // Back on the same port with the same data: everything arrives.
    tokio::task::block_in_place(|| stack.azurite.restart());
    accepted.extend(stack.send("after", 20).await);
    let delivered = stack.wait_delivered(&accepted, 3 * MINUTE).await;
    let accepted: HashSet<String> = accepted.into_iter().collect();
    let mut tags = vec!["before", "after"];
    let rounds: Vec<String> = (0..6).map(|r| format!("down{r}")).collect();
    tags.extend(rounds.iter().map(String::as_str));
    assert_eq!(tagged(&delivered, &tags), accepted, "nothing lost");
    stack
        .wait_status("healthy again", |s| {
            s.state() == HealthState::Healthy && s.backlog_depth == 0
        })
        .await;
}

/// Runs `auditctl --server <url> --token <token> <args...>` in-process.
async fn ctl(stack: &BlobStack, args: &[&str]) -> Result<String, String> {
    let token: &str = TestToken::of(Role::PlatformAdmin, None).token;
    let url = stack.config.url();
    let argv = ["auditctl", "--server", url.as_str(), "--token", token]
        .into_iter()
        .chain(args.iter().copied())
        .map(String::from)
        .collect::<Vec<_>>();
    let mut out = Vec::new();
    auditstream_cli::run_args(argv, &mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_targets_lists_the_accounts_containers() {
    let mut stack = blob_stack(
        Azurite::KEY,
        target("archive-main", "", pb::ObjectFormat::Ndjson),
    )
    .await;
    stack.azurite.create_container("beta-audit").await;
    stack.azurite.create_container("alpha-audit").await;
    let listed = stack
        .admin
        .list_targets(pb::ListTargetsRequest {
            connection_id: "c-0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.targets,
        ["alpha-audit", "archive-main", "beta-audit"],
        "sorted, from Azurite"
    );
    let shown = ctl(&stack, &["connection", "targets", "c-0"]).await.unwrap();
    assert_eq!(
        shown.lines().collect::<Vec<_>>(),
        ["alpha-audit", "archive-main", "beta-audit"],
        "{shown}"
    );

    // Refused credentials: an error that says what to fix.
    create_connection(
        &mut stack.admin,
        blob_connection("c-bad", &stack.azurite.endpoint(), WRONG_KEY),
    )
    .await;
    let err = stack
        .admin
        .list_targets(pb::ListTargetsRequest {
            connection_id: "c-bad".into(),
        })
        .await
        .unwrap_err();
    assert!(
        err.message().contains("403") && err.message().contains("shared key"),
        "{err:?}"
    );
    drop(stack.sink.take());
}

#[tokio::test]
async fn client_credentials_build_offline_and_http_needs_allow_insecure_http() {
    let destination = pb::Destination {
        connection_id: "c".into(),
        target: Some(destination::Target::AzureBlob(target(
            "audit",
            "",
            pb::ObjectFormat::Ndjson,
        ))),
    };
    let client_credentials = pb::Connection {
        credentials: Some(connection::Credentials::AzureBlob(pb::AzureBlobCredentials {
            account: "acmeaudit".into(),
            endpoint: String::new(),
            method: Some(Method::ClientCredentials(pb::AzureClientCredentials {
                tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
                client_id: "00000000-0000-0000-0000-000000000001".into(),
                client_secret: "not-a-real-secret".into(),
                authority_host: String::new(),
            })),
        })),
        ..Default::default()
    };
    let sink = AzureBlobSink::new(AzureBlobSinkConfig::default()).unwrap();
    let d = sink.build(&destination, &client_credentials).unwrap();
    assert_eq!(d.caps().max_events, 100_000);
    assert_eq!(d.caps().max_bytes, 64 * 1024 * 1024);

    let emulator = blob_connection("c", "http://127.0.0.1:10000/devstoreaccount1", Azurite::KEY);
    let err = sink.build(&destination, &emulator).unwrap_err();
    assert_eq!(err.class, Class::Configuration);
    assert!(err.detail.contains("unencrypted http"), "{err:?}");
    assert!(err.hint.contains("allow_insecure_http"), "{err:?}");
    AzureBlobSink::new(insecure())
        .unwrap()
        .build(&destination, &emulator)
        .unwrap();
}
