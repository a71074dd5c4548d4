//! sink-s3 end to end: gateway → router → sink-s3 → a real S3-compatible server (moto, or
//! s3s-fs where signatures must be checked or the server must keep its objects across a
//! restart). What landed is read back through the S3 API (list + get + gunzip) and counted by
//! event ID: duplicates are allowed, loss never.

mod common;

use std::{collections::HashSet, net::IpAddr, time::Duration};

use auditstream_model::SinkType;
use auditstream_proto::v1::{
    self as pb, HealthState, connection::Credentials, destination::Target, s3_credentials::Method,
};
use auditstream_sink_core::{Destination, Event, Sink, classify::Class};
use auditstream_sink_s3::{S3Sink, S3SinkConfig};
use auditstream_testkit::{
    FaultProxy, REBIND_TARGETS, RebindingDns, S3Server, assert_refused_address,
};
use common::sink::*;

const MINUTE: Duration = Duration::from_secs(60);

fn sink_config() -> S3SinkConfig {
    S3SinkConfig {
        allow_insecure_http: true,
        ..Default::default()
    }
}

fn static_keys(endpoint: &str, key: &str, secret: &str) -> Credentials {
    Credentials::S3(pb::S3Credentials {
        method: Some(Method::StaticKeys(pb::S3StaticKeys {
            access_key_id: key.into(),
            secret_access_key: secret.into(),
            session_token: String::new(),
        })),
        region: "us-east-1".into(),
        endpoint: endpoint.into(),
        force_path_style: true,
    })
}

fn keys_of(server: &S3Server) -> Credentials {
    static_keys(&server.endpoint(), server.access_key(), server.secret_key())
}

fn target(bucket: &str) -> pb::S3Target {
    pb::S3Target {
        bucket: bucket.into(),
        prefix: "audit".into(),
        ..Default::default()
    }
}

/// Waits until `bucket` holds every id in `ids`; returns the ids it holds with our `tag`.
async fn wait_in_bucket(server: &S3Server, bucket: &str, ids: &[String], tag: &str) -> Vec<String> {
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let deadline = tokio::time::Instant::now() + 2 * MINUTE;
    loop {
        let got: Vec<String> = server
            .event_ids(bucket)
            .await
            .into_iter()
            .filter(|id| id.starts_with(tag))
            .collect();
        let have: HashSet<&str> = got.iter().map(String::as_str).collect();
        let missing = want.difference(&have).count();
        if missing == 0 {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {} events never reached bucket {bucket}",
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_same_ids(got: &[String], sent: &[String]) {
    let got: HashSet<&String> = got.iter().collect();
    let sent: HashSet<&String> = sent.iter().collect();
    assert_eq!(got, sent, "the bucket holds exactly the delivered ids");
}

/// `<prefix>/<org>/<workspace>/<event_type>/YYYY/MM/DD/HH/<name>`: the name, checking the rest.
fn partitioned_name<'a>(key: &'a str, prefix: &str, workspace: &str) -> &'a str {
    let parts: Vec<&str> = key.split('/').collect();
    assert_eq!(parts.len(), 9, "{key}");
    assert_eq!(
        &parts[..4],
        [prefix, "org", workspace, "user_activity"],
        "{key}"
    );
    for (part, len) in parts[4..8].iter().zip([4, 2, 2, 2]) {
        assert!(
            part.len() == len && part.chars().all(|c| c.is_ascii_digit()),
            "{key}"
        );
    }
    parts[8]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_hold_exactly_the_delivered_ids_under_partitioned_keys_with_sse() {
    let server = S3Server::moto();
    server.create_bucket("acme-ndjson").await;
    server.create_bucket("acme-per-event").await;
    let ndjson = pb::S3Target {
        sse: pb::ServerSideEncryption::AwsKms as i32,
        kms_key_id: "alias/auditstream".into(),
        ..target("acme-ndjson")
    };
    let per_event = pb::S3Target {
        format: pb::ObjectFormat::PerEvent as i32,
        sse: pb::ServerSideEncryption::Aes256 as i32,
        ..target("acme-per-event")
    };
    let mut stack = stack_with(vec![
        (keys_of(&server), Target::S3(ndjson)),
        (keys_of(&server), Target::S3(per_event)),
    ])
    .await;
    stack
        .start_sink(sink_config(), |_| {}, |c| S3Sink::new(c.clone()).unwrap())
        .await;

    let batches = stack.send(0, "nd", 700, None).await;
    let singles = stack.send(1, "pe", 40, None).await;

    let got = wait_in_bucket(&server, "acme-ndjson", &batches, "nd-").await;
    assert_same_ids(&got, &batches);
    for o in server.objects("acme-ndjson").await {
        let name = partitioned_name(&o.key, "audit", "ws-0");
        let batch_id = name
            .strip_suffix(".ndjson.gz")
            .expect("an .ndjson.gz object");
        assert!(
            batch_id.len() == 32 && batch_id.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
        assert_eq!(o.content_encoding.as_deref(), Some("gzip"), "{}", o.key);
        assert_eq!(o.content_type.as_deref(), Some("application/x-ndjson"));
        assert!(o.body.starts_with(&[0x1f, 0x8b]), "stored gzip-compressed");
        assert_eq!(o.sse.as_deref(), Some("aws:kms"), "{}", o.key);
        assert_eq!(
            o.kms_key_id.as_deref(),
            Some("alias/auditstream"),
            "{}",
            o.key
        );
    }

    let got = wait_in_bucket(&server, "acme-per-event", &singles, "pe-").await;
    assert_same_ids(&got, &singles);
    let key = common::stream_key(&stack.admin, "s-1").await;
    for o in server.objects("acme-per-event").await {
        let name = partitioned_name(&o.key, "audit", "ws-1");
        let id = name
            .strip_suffix(&format!(".{key}.json"))
            .expect("a .json object of stream s-1 (named by its uid)");
        assert_eq!(
            o.event_ids(),
            [id],
            "per_event keys are event ids and the stream"
        );
        assert_eq!(o.content_encoding, None);
        assert_eq!(o.sse.as_deref(), Some("AES256"), "{}", o.key);
    }
}

fn events(tag: &str, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let id = format!("{tag}-{i}");
            let mut e = Event::new(&id, format!(r#"{{"id":"{id}","n":{i}}}"#));
            e.org_id = "org".into();
            e.workspace_id = format!("ws-{}", i % 2);
            e.event_type = "job_status".into();
            e.occurred_at = "2026-11-23T08:30:00Z".into();
            e
        })
        .collect()
}

fn destination(bucket: &str, format: pb::ObjectFormat) -> pb::Destination {
    pb::Destination {
        connection_id: "c".into(),
        target: Some(Target::S3(pb::S3Target {
            format: format as i32,
            ..target(bucket)
        })),
    }
}

fn connection(credentials: Credentials) -> pb::Connection {
    pb::Connection {
        id: "c".into(),
        credentials: Some(credentials),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_batch_keeps_its_objects() {
    let server = S3Server::moto();
    let sink = S3Sink::new(sink_config()).unwrap();
    for (bucket, format, objects) in [
        // Two workspaces: two partitions, two objects.
        ("redelivery-ndjson", pb::ObjectFormat::Ndjson, 2),
        ("redelivery-per-event", pb::ObjectFormat::PerEvent, 30),
    ] {
        server.create_bucket(bucket).await;
        let d = sink
            .build(&destination(bucket, format), &connection(keys_of(&server)))
            .unwrap();
        let batch = events("again", 30);
        for _ in 0..2 {
            let answer = d.send(&batch).await;
            assert_eq!(answer.class, Class::Delivered, "{answer:?}");
        }
        let stored = server.objects(bucket).await;
        assert_eq!(
            stored.len(),
            objects,
            "{bucket}: {:?}",
            stored.iter().map(|o| &o.key).collect::<Vec<_>>()
        );
        let mut ids = server.event_ids(bucket).await;
        ids.sort();
        let mut want: Vec<String> = batch.iter().map(|e| e.event_id.clone()).collect();
        want.sort();
        assert_eq!(ids, want, "{bucket}: each id once");
        // The probe leaves nothing behind.
        assert_eq!(d.probe().await.class, Class::Delivered);
        assert_eq!(server.objects(bucket).await.len(), objects);
    }
}

/// The same producer event id delivered for two streams (stream keys `s-a` and `s-b`), each
/// with its own rendering, to one bucket and prefix.
fn same_event_of_two_streams() -> Vec<Event> {
    ["s-a", "s-b"]
        .into_iter()
        .map(|stream| {
            let mut e = events("shared", 1).remove(0);
            e.body = format!(r#"{{"id":"shared-0","stream":"{stream}"}}"#).into();
            e.stream_key = stream.into();
            e
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_streams_sharing_a_bucket_and_prefix_keep_their_own_objects() {
    for server in [
        S3Server::moto(),
        S3Server::s3s_fs("AKIAAUDITSTREAM00003", "two-streams-secret"),
    ] {
        let sink = S3Sink::new(sink_config()).unwrap();
        for (bucket, format, suffix) in [
            ("shared-per-event", pb::ObjectFormat::PerEvent, ".json"),
            ("shared-ndjson", pb::ObjectFormat::Ndjson, ".ndjson.gz"),
        ] {
            server.create_bucket(bucket).await;
            let d = sink
                .build(&destination(bucket, format), &connection(keys_of(&server)))
                .unwrap();
            // One request per stream, as their lanes would send them.
            for event in same_event_of_two_streams() {
                let answer = d.send(std::slice::from_ref(&event)).await;
                assert_eq!(answer.class, Class::Delivered, "{bucket}: {answer:?}");
            }
            let stored = server.objects(bucket).await;
            let texts: Vec<String> = stored
                .iter()
                .map(|o| o.text().trim_end().to_owned())
                .collect();
            assert_eq!(
                stored.len(),
                2,
                "{bucket}: one object per stream: {texts:?}"
            );
            for stream in ["s-a", "s-b"] {
                let body = format!(r#"{{"id":"shared-0","stream":"{stream}"}}"#);
                assert!(
                    texts.contains(&body),
                    "{bucket}: {body} is stored: {texts:?}"
                );
            }
            assert!(stored.iter().all(|o| o.key.ends_with(suffix)), "{bucket}");
            if format == pb::ObjectFormat::PerEvent {
                let keys: Vec<&str> = stored.iter().map(|o| o.key.as_str()).collect();
                assert_eq!(
                    keys,
                    [
                        "audit/org/ws-0/job_status/2026/11/23/08/shared-0.s-a.json",
                        "audit/org/ws-0/job_status/2026/11/23/08/shared-0.s-b.json"
                    ]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_event_id_never_replaces_the_stored_object_and_counts_as_delivered() {
    let server = S3Server::moto();
    server.create_bucket("keep").await;
    let per_event = pb::S3Target {
        format: pb::ObjectFormat::PerEvent as i32,
        ..target("keep")
    };
    let mut stack = stack_with(vec![(keys_of(&server), Target::S3(per_event))]).await;
    stack
        .start_sink(sink_config(), |_| {}, |c| S3Sink::new(c.clone()).unwrap())
        .await;
    let sent = stack.send(0, "keep", 1, None).await;
    wait_in_bucket(&server, "keep", &sent, "keep-").await;
    let stored = async || -> Vec<(String, String)> {
        let objects = server.objects("keep").await.into_iter();
        objects
            .filter(|o| o.key.contains(&sent[0]))
            .map(|o| (o.key.clone(), o.text()))
            .collect()
    };
    let first = stored().await;
    assert_eq!(first.len(), 1, "{first:?}");
    let key = common::stream_key(&stack.admin, "s-0").await;
    assert!(
        first[0].0.ends_with(&format!("/{}.{key}.json", sent[0])),
        "{first:?}"
    );

    let delivered = "auditstream_sink_events_delivered_total";
    let before = stack.sink.as_ref().unwrap().metric(delivered).await;
    let forged = format!(r#"{{"id":"{}","forged":true}}"#, sent[0]);
    stack.resend(SinkType::S3, 0, &sent[0], &forged).await;
    stack.wait_all_delivered().await;
    assert!(
        stack.sink.as_ref().unwrap().metric(delivered).await > before,
        "the re-sent event counts as delivered"
    );
    assert_eq!(stored().await, first, "the stored object is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_into_an_object_lock_bucket_with_default_retention_succeed() {
    use aws_sdk_s3::types::{
        DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
        ObjectLockRule,
    };
    let server = S3Server::moto();
    let client = server.client();
    let bucket = "worm";
    client
        .create_bucket()
        .bucket(bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    let retention = DefaultRetention::builder()
        .mode(ObjectLockRetentionMode::Compliance)
        .days(1)
        .build();
    client
        .put_object_lock_configuration()
        .bucket(bucket)
        .object_lock_configuration(
            ObjectLockConfiguration::builder()
                .object_lock_enabled(ObjectLockEnabled::Enabled)
                .rule(
                    ObjectLockRule::builder()
                        .default_retention(retention)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let sink = S3Sink::new(sink_config()).unwrap();
    for format in [pb::ObjectFormat::Ndjson, pb::ObjectFormat::PerEvent] {
        let d = sink
            .build(&destination(bucket, format), &connection(keys_of(&server)))
            .unwrap();
        let answer = d.send(&events("locked", 4)).await;
        assert_eq!(answer.class, Class::Delivered, "{format:?}: {answer:?}");
        assert_eq!(d.probe().await.class, Class::Delivered, "{format:?}");
    }
    let stored = server.objects(bucket).await;
    // 2 NDJSON objects (two workspaces) and 4 per event, besides the probes' test objects.
    let events: Vec<_> = stored
        .iter()
        .filter(|o| !o.key.contains(".auditstream-probe/"))
        .collect();
    assert_eq!(events.len(), 6, "{stored:?}");
    for o in events {
        let head = client
            .head_object()
            .bucket(bucket)
            .key(&o.key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.object_lock_mode(),
            Some(&aws_sdk_s3::types::ObjectLockMode::Compliance),
            "{} is under the bucket's default retention",
            o.key
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assume_role_calls_sts_with_the_external_id_and_signs_with_the_role() {
    let server = S3Server::moto();
    server.create_bucket("assumed").await;
    // Through a proxy that keeps request heads: which key signed the uploads.
    let proxy = FaultProxy::start(server.addr()).await;
    let role = "arn:aws:iam::123456789012:role/auditstream-writer";
    let credentials = Credentials::S3(pb::S3Credentials {
        method: Some(Method::AssumeRole(pb::S3AssumeRole {
            role_arn: role.into(),
            external_id: "acme-ext-42".into(),
            session_name: "auditstream-test".into(),
            source_keys: Some(pb::S3StaticKeys {
                access_key_id: "AKIASOURCEKEY0000000".into(),
                secret_access_key: "source-secret".into(),
                session_token: String::new(),
            }),
        })),
        region: "us-east-1".into(),
        endpoint: proxy.url(),
        force_path_style: true,
    });
    let d = S3Sink::new(sink_config())
        .unwrap()
        .build(
            &destination("assumed", pb::ObjectFormat::Ndjson),
            &connection(credentials),
        )
        .unwrap();
    let batch = events("role", 10);
    let answer = d.send(&batch).await;
    assert_eq!(answer.class, Class::Delivered, "{answer:?}");
    assert_eq!(server.event_ids("assumed").await.len(), 10);

    // moto's STS recorded the AssumeRole call...
    let state = reqwest::get(format!("{}/moto-api/data.json", server.endpoint()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    let assumed = state["sts"]["AssumedRole"]
        .as_array()
        .expect("assumed roles");
    let ours = assumed
        .iter()
        .find(|r| r["role_arn"] == role)
        .unwrap_or_else(|| panic!("no AssumeRole for {role}: {assumed:?}"));
    assert_eq!(ours["external_id"], "acme-ext-42");
    assert_eq!(ours["session_name"], "auditstream-test");
    // ...and the uploads were signed with the temporary key it handed out, not the source key.
    let temp_key = ours["access_key_id"].as_str().unwrap();
    let sent = proxy.sent_text();
    let signed_puts = sent
        .split("\r\n\r\n")
        .filter(|head| {
            head.contains("PUT /assumed/") && head.contains(&format!("Credential={temp_key}/"))
        })
        .count();
    assert!(
        signed_puts >= 2,
        "uploads signed with the role's key: {sent}"
    );
    assert!(
        sent.contains("Action=AssumeRole") && sent.contains("ExternalId=acme-ext-42"),
        "STS was called through the connection's endpoint: {sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_break_the_stream_mail_the_admins_and_fixed_keys_drain_the_backlog() {
    let server = S3Server::s3s_fs("AKIAAUDITSTREAM00001", "the-right-secret");
    server.create_bucket("locked").await;
    let wrong = static_keys(&server.endpoint(), server.access_key(), "a-wrong-secret");
    let mut stack = stack_with(vec![(wrong, Target::S3(target("locked")))]).await;
    stack
        .start_sink(sink_config(), |_| {}, |c| S3Sink::new(c.clone()).unwrap())
        .await;

    let accepted = stack.send(0, "wk", 60, None).await;
    let broken = stack
        .wait_status("s-0", "broken with a backlog", |s| {
            s.state() == HealthState::Broken && s.backlog_depth >= 60
        })
        .await;
    assert!(
        broken.last_error.contains("SignatureDoesNotMatch"),
        "{broken:?}"
    );
    assert!(broken.hint.contains("keys"), "{broken:?}");
    let mails = stack.smtp.wait_for(1, MINUTE).await;
    let mail = mails[0].replace("=\r\n", "").replace("\r\n", "\n");
    assert!(
        mail.contains(ADMIN_MAIL) && mail.contains("SignatureDoesNotMatch"),
        "{mail}"
    );
    assert!(
        server.event_ids("locked").await.is_empty(),
        "nothing got through"
    );

    stack.set_credentials("c-0", keys_of(&server)).await;
    let got = wait_in_bucket(&server, "locked", &accepted, "wk-").await;
    assert_same_ids(&got, &accepted);
    let healthy = stack
        .wait_status("s-0", "healthy again", |s| {
            s.state() == HealthState::Healthy && s.backlog_depth == 0
        })
        .await;
    assert!(healthy.replayed_events >= 60, "{healthy:?}");
}

/// M12: a 4xx of the object store that is not about the size (here a KMS key S3 cannot find,
/// as S3 answers `KMS.NotFoundException`; or Object Lock's `InvalidRequest`) is the bucket's
/// configuration, not the events: the stream is broken, its events wait in the backlog, the
/// admins are mailed, and not one event is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlisted_4xx_breaks_the_stream_and_dead_letters_nothing() {
    use auditstream_bus::topology;
    use auditstream_testkit::{Behavior, HttpReceiver};
    // An S3 stand-in answering every request as S3 does when the destination's KMS key is
    // gone: 400 with an error code sink-s3 does not list.
    let store = HttpReceiver::start().await;
    store.set_behavior(Behavior::Status {
        status: 400,
        retry_after: None,
        body:
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>KMS.NotFoundException</Code>\
               <Message>Invalid keyId arn:aws:kms:us-east-1:123456789012:key/gone</Message>\
               <RequestId>4442587FB7D0A2F9</RequestId></Error>"
                .into(),
    });
    let keys = static_keys(&store.url(""), "AKIAAUDITSTREAM00003", "kms-secret");
    let mut stack = stack_with(vec![(keys, Target::S3(target("kms")))]).await;
    stack
        .start_sink(sink_config(), |_| {}, |c| S3Sink::new(c.clone()).unwrap())
        .await;

    let accepted = stack.send(0, "kms", 60, None).await;
    let broken = stack
        .wait_status("s-0", "broken with a backlog", |s| {
            s.state() == HealthState::Broken && s.backlog_depth >= 60
        })
        .await;
    // (The probes' HEAD answers carry no error code, so the last error may be theirs.)
    assert!(broken.last_error.contains("S3 answered 400"), "{broken:?}");
    assert!(
        broken.hint.contains("not because of the events"),
        "{broken:?}"
    );
    assert_eq!(broken.dead_lettered_events, 0, "{broken:?}");
    let mails = stack.smtp.wait_for(1, MINUTE).await;
    let mail = mails[0].replace("=\r\n", "").replace("\r\n", "\n");
    assert!(
        mail.contains(ADMIN_MAIL) && mail.contains("S3 answered 400"),
        "{mail}"
    );
    let js = stack.nats.jetstream().await;
    assert_eq!(
        auditstream_testkit::stream_messages(&js, topology::DLQ).await,
        0,
        "nothing dead-lettered"
    );
    assert!(
        store
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path_and_query.starts_with("/kms/audit/")),
        "the sink did try to upload"
    );
    assert_eq!(stack.status("s-0").await.dlq_depth, 0);
    assert!(accepted.len() == 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_down_for_60s_then_back_loses_nothing() {
    let mut server = S3Server::s3s_fs("AKIAAUDITSTREAM00002", "outage-secret");
    server.create_bucket("outage").await;
    let mut stack = stack_with(vec![(keys_of(&server), Target::S3(target("outage")))]).await;
    stack
        .start_sink(sink_config(), |_| {}, |c| S3Sink::new(c.clone()).unwrap())
        .await;
    let mut accepted = stack.send(0, "out", 50, None).await;
    wait_in_bucket(&server, "outage", &accepted, "out-").await;

    // The server process is killed; events keep coming for a minute, then it comes back
    // (same port, same directory).
    server.stop();
    for round in 0..4 {
        accepted.extend(stack.send(0, &format!("out{round}"), 50, None).await);
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    let during = stack.status("s-0").await;
    assert_ne!(during.state(), HealthState::Healthy, "{during:?}");
    server.restart();
    let got = wait_in_bucket(&server, "outage", &accepted, "out").await;
    let unique: HashSet<&String> = got.iter().collect();
    println!(
        "outage: {} accepted, {} delivered, {} duplicates",
        accepted.len(),
        unique.len(),
        got.len() - unique.len()
    );
    assert_same_ids(&got, &accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditctl_connection_targets_lists_the_buckets() {
    let server = S3Server::moto();
    for b in ["team-b-audit", "team-a-audit", "archive"] {
        server.create_bucket(b).await;
    }
    let mut stack = stack_with(vec![(keys_of(&server), Target::S3(target("archive")))]).await;
    stack
        .start_sink(sink_config(), |_| {}, |c| S3Sink::new(c.clone()).unwrap())
        .await;
    let shown = ctl(&stack, &["connection", "targets", "c-0"]).await;
    assert_eq!(
        shown.lines().collect::<Vec<_>>(),
        ["archive", "team-a-audit", "team-b-audit"],
        "{shown}"
    );
}

#[test]
fn every_sink_setting_is_in_the_readme() {
    auditstream_telemetry::config::assert_documented::<
        auditstream_sink_core::SinkConfig<S3SinkConfig>,
    >(include_str!("../../README.md"));
}

/// The real binary, configured through its environment only, with a connection that uses
/// the default chain: the keys come from the process's `AWS_*` variables (as on a node or a
/// pod with injected credentials), and s3s-fs checks that requests are signed with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_signs_with_the_default_chain_of_its_environment() {
    let server = S3Server::s3s_fs("AKIAFROMENVIRONMENT0", "secret-from-environment");
    server.create_bucket("from-env").await;
    let chain = Credentials::S3(pb::S3Credentials {
        method: Some(Method::DefaultChain(pb::S3DefaultChain {})),
        region: "us-east-1".into(),
        endpoint: server.endpoint(),
        force_path_style: true,
    });
    let stack = stack_with(vec![(chain, Target::S3(target("from-env")))]).await;
    let dir = tempfile::tempdir().unwrap();
    let ops = common::free_port();
    let mut sink = common::data_plane(
        "auditstream-sink-s3",
        &stack.nats.url(),
        &stack.config.url(),
        ops,
    )
    .env("AUDITSTREAM_SINK__ALLOW_INSECURE_HTTP", "true")
    .env("AWS_ACCESS_KEY_ID", server.access_key())
    .env("AWS_SECRET_ACCESS_KEY", server.secret_key())
    // No instance metadata service on a test machine: do not wait for it.
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(dir.path().join("sink.log")).unwrap())
    .spawn()
    .unwrap();
    wait_sink_ready(ops).await;
    let accepted = stack.send(0, "env", 30, None).await;
    let got = wait_in_bucket(&server, "from-env", &accepted, "env-").await;
    assert_same_ids(&got, &accepted);
    sink.kill().unwrap();
    sink.wait().unwrap();
}

/// M5: the S3 client resolves through the address rule at connect time. The endpoint's name
/// answers with the stand-in's (allow-listed) address first; when its record changes to
/// another loopback address or to the metadata address, the sink refuses to connect and says
/// so as a configuration error, however the name resolved when it was saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_re_resolves_to_an_internal_address_is_refused_at_connect_time() {
    // s3s-fs: path-style requests to any host name (moto reads a bucket out of a name).
    let server = S3Server::s3s_fs("rebind-access-key", "rebind-secret-key-0123456789");
    server.create_bucket("rebind").await;
    let dns = RebindingDns::new(IpAddr::from([127, 0, 0, 1]));
    let resolve = dns.resolver();
    let config = S3SinkConfig {
        allowed_networks: vec!["127.0.0.1/32".into()],
        ..sink_config()
    };
    let sink = S3Sink::with_resolver(config.clone(), resolve.clone()).unwrap();
    let endpoint = format!("http://s3.rebind.test:{}", server.addr().port());
    let mut creds = static_keys(&endpoint, server.access_key(), server.secret_key());
    // Path-style: the name resolved is the endpoint's own, not <bucket>.<endpoint>.
    if let Credentials::S3(s3) = &mut creds {
        s3.force_path_style = true;
    }
    let d = sink
        .build(
            &destination("rebind", pb::ObjectFormat::Ndjson),
            &connection(creds.clone()),
        )
        .unwrap();
    let first = d.send(&events("ok", 3)).await;
    assert_eq!(first.class, Class::Delivered, "{first:?}");
    assert!(
        dns.was_asked("s3.rebind.test"),
        "the SDK resolved through the checked resolver"
    );
    for (ip, class_text) in REBIND_TARGETS {
        let ip = IpAddr::from(ip);
        dns.answer(ip);
        // A new sink (a restart, or the pool's idle timeout): no connection to the old address
        // to reuse.
        let sink = S3Sink::with_resolver(config.clone(), resolve.clone()).unwrap();
        let d = sink
            .build(
                &destination("rebind", pb::ObjectFormat::Ndjson),
                &connection(creds.clone()),
            )
            .unwrap();
        let refused = d.send(&events("no", 3)).await;
        assert_refused_address(&refused, ip, class_text);
    }
    assert_eq!(
        server.event_ids("rebind").await.len(),
        3,
        "only the first batch"
    );
}
