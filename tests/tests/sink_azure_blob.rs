//! sink-azure-blob end to end against Azurite: gateway → router → sink-azure-blob (in-process)
//! → Azurite, with the config service (SQLite) and a real SMTP server. What landed is read
//! back with the Blob SDK (list + download + gunzip) by the test kit. Every scenario counts
//! event ids in the container: duplicates are allowed, loss never. Each test has its own
//! Azurite (port, data directory), nats-server, config service and containers.

mod common;

use std::{collections::HashSet, net::IpAddr, time::Duration};

use auditstream_model::SinkType;
use auditstream_proto::v1::{
    self as pb, HealthState, azure_blob_credentials::Method, connection::Credentials,
    destination::Target,
};
use auditstream_sink_azure_blob::{AzureBlobSink, AzureBlobSinkConfig};
use auditstream_sink_core::{Destination as _, Event, Sink as _, classify::Class};
use auditstream_testkit::{Azurite, REBIND_TARGETS, RebindingDns, assert_refused_address};
use common::{config::create_connection, sink::*};

const MINUTE: Duration = Duration::from_secs(60);
/// A valid base64 key that is not Azurite's: the SAS the sink signs with it is refused.
const WRONG_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The producer example's `occurred_at` (2026-11-21T10:16:40Z) gives this partition.
const PARTITION: &str = "org/ws-0/user_activity/2026/11/21/10/";

fn shared_key(endpoint: &str, key: &str) -> Credentials {
    Credentials::AzureBlob(pb::AzureBlobCredentials {
        account: Azurite::ACCOUNT.into(),
        endpoint: endpoint.into(),
        method: Some(Method::SharedKey(pb::AzureSharedKey {
            account_key: key.into(),
        })),
    })
}

fn connection(id: &str, credentials: Credentials) -> pb::Connection {
    pb::Connection {
        id: id.into(),
        node_id: "org".into(),
        name: format!("blob {id}"),
        credentials: Some(credentials),
        ..Default::default()
    }
}

fn insecure() -> AzureBlobSinkConfig {
    AzureBlobSinkConfig {
        allow_insecure_http: true,
        ..Default::default()
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

fn destination(target: pb::AzureBlobTarget) -> pb::Destination {
    pb::Destination {
        connection_id: "c".into(),
        target: Some(Target::AzureBlob(target)),
    }
}

/// Azurite with `target`'s container, and the whole stack with the sink running: stream
/// `s-0` takes workspace `ws-0`'s `user_activity` events to `target` through connection
/// `c-0` (shared key `key`).
async fn blob_stack(key: &str, target: pb::AzureBlobTarget) -> (Azurite, SinkStack) {
    let azurite = Azurite::start();
    azurite.create_container(&target.container).await;
    let mut stack = stack_with(vec![(
        shared_key(&azurite.endpoint(), key),
        Target::AzureBlob(target),
    )])
    .await;
    stack
        .start_sink(
            insecure(),
            |_| {},
            |c| AzureBlobSink::new(c.clone()).unwrap(),
        )
        .await;
    (azurite, stack)
}

/// Waits until every id in `ids` is in `container`; returns what is there.
async fn wait_delivered(
    azurite: &Azurite,
    container: &str,
    ids: &[String],
    timeout: Duration,
) -> Vec<String> {
    let want: HashSet<&String> = ids.iter().collect();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let got = azurite.event_ids(container).await;
        let have: HashSet<&String> = got.iter().collect();
        let missing = want.difference(&have).count();
        if missing == 0 {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} events never reached container {container}",
            want.len(),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
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
    let (azurite, stack) = blob_stack(
        Azurite::KEY,
        target("archive-ndjson", "audit/", pb::ObjectFormat::Ndjson),
    )
    .await;
    let mut accepted = stack.send(0, "nd", 300, None).await;
    accepted.extend(stack.send(0, "nd2", 50, None).await);
    let delivered = wait_delivered(&azurite, "archive-ndjson", &accepted, MINUTE).await;
    let accepted: HashSet<String> = accepted.into_iter().collect();
    assert_eq!(
        tagged(&delivered, &["nd", "nd2"]),
        accepted,
        "exactly the delivered events"
    );

    let blobs = azurite.blobs("archive-ndjson").await;
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
        assert_eq!(
            blob.content_encoding.as_deref(),
            Some("gzip"),
            "{}",
            blob.name
        );
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
            assert_eq!(v["audit"]["event_type"], "user_activity", "{line}");
        }
    }
    assert!(
        blobs.iter().all(|b| !b.name.contains(".auditstream-probe")),
        "no probe leftovers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_event_blobs_are_named_by_event_id_and_stream() {
    let (azurite, stack) = blob_stack(
        Azurite::KEY,
        target("archive-per-event", "", pb::ObjectFormat::PerEvent),
    )
    .await;
    let accepted = stack.send(0, "pe", 40, None).await;
    wait_delivered(&azurite, "archive-per-event", &accepted, MINUTE).await;
    let blobs = azurite.blobs("archive-per-event").await;
    // Named by the stream's uid, which a re-created id never shares.
    let key = common::stream_key(&stack.admin, "s-0").await;
    for id in &accepted {
        let name = format!("{PARTITION}{id}.{key}.json");
        let blob = blobs
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no blob {name}"));
        assert_eq!(
            blob.content_encoding, None,
            "per_event is uncompressed by default"
        );
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
    let connection = connection("c", shared_key(&azurite.endpoint(), Azurite::KEY));
    let batch: Vec<Event> = (0..5).map(|n| event(&format!("rd-{n}"))).collect();
    for (format, prefix) in [
        (pb::ObjectFormat::Ndjson, "nd"),
        (pb::ObjectFormat::PerEvent, "pe"),
    ] {
        let destination = destination(target("redelivery", prefix, format));
        let d = sink.build(&destination, &connection).unwrap();
        let first = d.send(&batch).await;
        assert_eq!(first.class, Class::Delivered, "{first:?}");
        let names = azurite.blob_names("redelivery").await;
        // The same batch again (a retry after a lost answer, or JetStream redelivery).
        let again = sink
            .build(&destination, &connection)
            .unwrap()
            .send(&batch)
            .await;
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
async fn two_streams_sharing_a_container_and_prefix_keep_their_own_blobs() {
    let azurite = Azurite::start();
    azurite.create_container("shared").await;
    let sink = AzureBlobSink::new(insecure()).unwrap();
    let connection = connection("c", shared_key(&azurite.endpoint(), Azurite::KEY));
    for (format, prefix, suffix) in [
        (pb::ObjectFormat::PerEvent, "pe", ".json"),
        (pb::ObjectFormat::Ndjson, "nd", ".ndjson.gz"),
    ] {
        let d = sink
            .build(&destination(target("shared", prefix, format)), &connection)
            .unwrap();
        // The same producer event for two streams, each with its own rendering, one request
        // per stream as their lanes would send them.
        for stream in ["s-a", "s-b"] {
            let mut e = event("shared-1");
            e.body = format!(r#"{{"id":"shared-1","stream":"{stream}"}}"#).into();
            e.stream_key = stream.into();
            let answer = d.send(&[e]).await;
            assert_eq!(answer.class, Class::Delivered, "{answer:?}");
        }
        let blobs: Vec<_> = azurite
            .blobs("shared")
            .await
            .into_iter()
            .filter(|b| b.name.starts_with(&format!("{prefix}/")))
            .collect();
        let texts: Vec<String> = blobs
            .iter()
            .map(|b| b.text().trim_end().to_owned())
            .collect();
        assert_eq!(blobs.len(), 2, "{format:?}: one blob per stream: {texts:?}");
        for stream in ["s-a", "s-b"] {
            let body = format!(r#"{{"id":"shared-1","stream":"{stream}"}}"#);
            assert!(
                texts.contains(&body),
                "{format:?}: {body} is stored: {texts:?}"
            );
        }
        assert!(blobs.iter().all(|b| b.name.ends_with(suffix)), "{format:?}");
        if format == pb::ObjectFormat::PerEvent {
            let names: Vec<&str> = blobs.iter().map(|b| b.name.as_str()).collect();
            assert_eq!(
                names,
                [
                    format!("pe/{PARTITION}shared-1.s-a.json"),
                    format!("pe/{PARTITION}shared-1.s-b.json")
                ]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_event_id_never_replaces_the_stored_blob_and_counts_as_delivered() {
    let (azurite, stack) =
        blob_stack(Azurite::KEY, target("keep", "", pb::ObjectFormat::PerEvent)).await;
    let sent = stack.send(0, "keep", 1, None).await;
    wait_delivered(&azurite, "keep", &sent, MINUTE).await;
    let stored = async || -> Vec<(String, String)> {
        let blobs = azurite.blobs("keep").await.into_iter();
        blobs
            .filter(|b| b.name.contains(&sent[0]))
            .map(|b| (b.name.clone(), b.text()))
            .collect()
    };
    let first = stored().await;
    assert_eq!(
        first.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
        [format!(
            "{PARTITION}{}.{}.json",
            sent[0],
            common::stream_key(&stack.admin, "s-0").await
        )]
    );

    let delivered = "auditstream_sink_events_delivered_total";
    let before = stack.sink.as_ref().unwrap().metric(delivered).await;
    let forged = format!(r#"{{"id":"{}","forged":true}}"#, sent[0]);
    stack
        .resend(SinkType::AzureBlob, 0, &sent[0], &forged)
        .await;
    stack.wait_all_delivered().await;
    assert!(
        stack.sink.as_ref().unwrap().metric(delivered).await > before,
        "the re-sent event counts as delivered"
    );
    assert_eq!(stored().await, first, "the stored blob is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sas_token_connection_delivers_probes_and_lists() {
    let azurite = Azurite::start();
    azurite.create_container("sas-target").await;
    let sink = AzureBlobSink::new(insecure()).unwrap();
    // An account SAS as an admin would paste it (leading `?` included).
    let now = time::OffsetDateTime::now_utc();
    let token = auditstream_sink_azure_blob::sas::AccountKey::new(Azurite::ACCOUNT, Azurite::KEY)
        .unwrap()
        .sign(
            now - time::Duration::minutes(5),
            now + time::Duration::hours(1),
            false,
        );
    let connection = connection(
        "c",
        Credentials::AzureBlob(pb::AzureBlobCredentials {
            account: String::new(),
            endpoint: azurite.endpoint(),
            method: Some(Method::Sas(pb::AzureSasToken {
                sas_token: format!("?{token}"),
            })),
        }),
    );
    let to = |container: &str| destination(target(container, "audit", pb::ObjectFormat::Ndjson));
    let d = sink.build(&to("sas-target"), &connection).unwrap();
    let probe = d.probe().await;
    assert_eq!(probe.class, Class::Delivered, "{probe:?}");
    let batch: Vec<Event> = (0..3).map(|n| event(&format!("sas-{n}"))).collect();
    assert_eq!(d.send(&batch).await.class, Class::Delivered);
    assert_eq!(
        azurite.event_ids("sas-target").await,
        ["sas-0", "sas-1", "sas-2"]
    );
    assert_eq!(
        azurite.blob_names("sas-target").await.len(),
        1,
        "the probe removed its test blob"
    );
    assert_eq!(
        sink.list_targets(&connection).await.unwrap(),
        ["sas-target"]
    );

    // A container that does not exist: a configuration error that says so, for the probe
    // and for delivery.
    let missing = sink.build(&to("no-such-container"), &connection).unwrap();
    for answer in [missing.probe().await, missing.send(&batch).await] {
        assert_eq!(answer.class, Class::Configuration, "{answer:?}");
        assert!(answer.detail.contains("404"), "{answer:?}");
        assert!(
            answer.hint.contains(
                "container no-such-container does not exist in storage account devstoreaccount1"
            ),
            "{answer:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_breaks_the_stream_until_the_admin_fixes_it() {
    let (azurite, mut stack) = blob_stack(
        WRONG_KEY,
        target("archive-fixed", "audit", pb::ObjectFormat::Ndjson),
    )
    .await;
    let mut accepted = stack.send(0, "first", 50, None).await;
    let broken = stack
        .wait_status("s-0", "broken", |s| s.state() == HealthState::Broken)
        .await;
    assert!(broken.last_error.contains("403"), "{broken:?}");
    assert!(
        broken.hint.contains("shared key") && broken.hint.contains("devstoreaccount1"),
        "the hint says what to fix: {broken:?}"
    );

    // More events while broken: they wait in the backlog.
    accepted.extend(stack.send(0, "second", 50, None).await);
    stack
        .wait_status("s-0", "backlog of 100", |s| s.backlog_depth >= 100)
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
        tagged(
            &azurite.event_ids("archive-fixed").await,
            &["first", "second"]
        )
        .is_empty(),
        "nothing got through"
    );

    // The admin fixes the key: the sink probes at once, drains the backlog, recovers.
    stack
        .set_credentials("c-0", shared_key(&azurite.endpoint(), Azurite::KEY))
        .await;
    let delivered = wait_delivered(&azurite, "archive-fixed", &accepted, MINUTE).await;
    let recovered = stack
        .wait_status("s-0", "healthy again", |s| {
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
        azurite
            .blob_names("archive-fixed")
            .await
            .iter()
            .all(|n| !n.contains(".auditstream-probe")),
        "the probes removed their test blobs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_down_for_a_minute_loses_nothing() {
    let (mut azurite, stack) = blob_stack(
        Azurite::KEY,
        target("archive-outage", "audit", pb::ObjectFormat::Ndjson),
    )
    .await;
    let mut accepted = stack.send(0, "before", 100, None).await;
    wait_delivered(&azurite, "archive-outage", &accepted, MINUTE).await;

    // Azurite's process is stopped; events keep coming for a minute.
    tokio::task::block_in_place(|| azurite.stop());
    let down_since = tokio::time::Instant::now();
    for round in 0..6 {
        accepted.extend(stack.send(0, &format!("down{round}"), 30, None).await);
        // The outage's length is the scenario, not a synchronization.
        tokio::time::sleep_until(down_since + Duration::from_secs(10 * (round + 1))).await;
    }
    let during = stack
        .wait_status("s-0", "failures noticed", |s| {
            s.state() != HealthState::Healthy
        })
        .await;
    assert!(!during.last_error.is_empty(), "{during:?}");

    // Back on the same port with the same data: everything arrives.
    tokio::task::block_in_place(|| azurite.restart());
    accepted.extend(stack.send(0, "after", 20, None).await);
    let delivered = wait_delivered(&azurite, "archive-outage", &accepted, 3 * MINUTE).await;
    let accepted: HashSet<String> = accepted.into_iter().collect();
    let mut tags = vec!["before", "after"];
    let rounds: Vec<String> = (0..6).map(|r| format!("down{r}")).collect();
    tags.extend(rounds.iter().map(String::as_str));
    assert_eq!(tagged(&delivered, &tags), accepted, "nothing lost");
    stack
        .wait_status("s-0", "healthy again", |s| {
            s.state() == HealthState::Healthy && s.backlog_depth == 0
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_targets_lists_the_accounts_containers() {
    let (azurite, mut stack) = blob_stack(
        Azurite::KEY,
        target("archive-main", "", pb::ObjectFormat::Ndjson),
    )
    .await;
    azurite.create_container("beta-audit").await;
    azurite.create_container("alpha-audit").await;
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
    let shown = ctl(&stack, &["connection", "targets", "c-0"]).await;
    assert_eq!(
        shown.lines().collect::<Vec<_>>(),
        ["alpha-audit", "archive-main", "beta-audit"],
        "{shown}"
    );

    // Refused credentials: an error that says what to fix.
    create_connection(
        &mut stack.admin,
        connection("c-bad", shared_key(&azurite.endpoint(), WRONG_KEY)),
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
    let destination = destination(target("audit", "", pb::ObjectFormat::Ndjson));
    let client_credentials = connection(
        "c",
        Credentials::AzureBlob(pb::AzureBlobCredentials {
            account: "acmeaudit".into(),
            endpoint: String::new(),
            method: Some(Method::ClientCredentials(pb::AzureClientCredentials {
                tenant_id: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
                client_id: "00000000-0000-0000-0000-000000000001".into(),
                client_secret: "not-a-real-secret".into(),
                authority_host: String::new(),
            })),
        }),
    );
    let sink = AzureBlobSink::new(AzureBlobSinkConfig::default()).unwrap();
    let d = sink.build(&destination, &client_credentials).unwrap();
    assert_eq!(d.caps().max_events, 100_000);
    assert_eq!(d.caps().max_bytes, 64 * 1024 * 1024);

    let emulator = connection(
        "c",
        shared_key("http://127.0.0.1:10000/devstoreaccount1", Azurite::KEY),
    );
    let err = sink.build(&destination, &emulator).unwrap_err();
    assert_eq!(err.class, Class::Configuration);
    assert!(err.detail.contains("unencrypted http"), "{err:?}");
    assert!(err.hint.contains("allow_insecure_http"), "{err:?}");
    AzureBlobSink::new(insecure())
        .unwrap()
        .build(&destination, &emulator)
        .unwrap();
}

#[test]
fn every_sink_setting_is_in_the_readme() {
    auditstream_telemetry::config::assert_documented::<
        auditstream_sink_core::SinkConfig<auditstream_sink_azure_blob::AzureBlobSinkConfig>,
    >(include_str!("../../README.md"));
}

/// M5: the Blob client resolves through the address rule at connect time. The endpoint's
/// name answers with Azurite's (allow-listed) address first; when its record changes to
/// another loopback address or to the metadata address, the sink refuses to connect and says
/// so as a configuration error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_re_resolves_to_an_internal_address_is_refused_at_connect_time() {
    let azurite = Azurite::start();
    azurite.create_container("rebind").await;
    let dns = RebindingDns::new(IpAddr::from([127, 0, 0, 1]));
    let resolve = dns.resolver();
    let config = AzureBlobSinkConfig {
        allowed_networks: vec!["127.0.0.1/32".into()],
        ..insecure()
    };
    // Host-style, as Azurite reads a name: the account is the first label.
    let host = format!("{}.blob.rebind.test", Azurite::ACCOUNT);
    let endpoint = format!("http://{host}:{}", azurite.port());
    let connection = connection("c", shared_key(&endpoint, Azurite::KEY));
    let destination = destination(target("rebind", "", pb::ObjectFormat::Ndjson));
    let sink = AzureBlobSink::with_resolver(config.clone(), resolve.clone()).unwrap();
    let batch: Vec<Event> = (0..3).map(|n| event(&format!("rb-{n}"))).collect();
    let first = sink
        .build(&destination, &connection)
        .unwrap()
        .send(&batch)
        .await;
    assert_eq!(first.class, Class::Delivered, "{first:?}");
    assert!(
        dns.was_asked(&host),
        "the SDK resolved through the checked resolver"
    );
    for (ip, class_text) in REBIND_TARGETS {
        let ip = IpAddr::from(ip);
        dns.answer(ip);
        // A new sink (a restart, or the pool's idle timeout): no connection to reuse.
        let sink = AzureBlobSink::with_resolver(config.clone(), resolve.clone()).unwrap();
        let more: Vec<Event> = (0..3).map(|n| event(&format!("no-{n}"))).collect();
        let refused = sink
            .build(&destination, &connection)
            .unwrap()
            .send(&more)
            .await;
        assert_refused_address(&refused, ip, class_text);
    }
    assert_eq!(
        azurite.event_ids("rebind").await.len(),
        3,
        "only the first batch"
    );
}
