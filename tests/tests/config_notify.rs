//! E-mail notifications through a real SMTP server (aiosmtpd): one mail per stream when its
//! destination breaks (not one per report), naming the destination, the error and the fix; a
//! recovery mail with the replayed count; and a mail that could not be sent is retried.

mod common;

use std::time::Duration;

use auditstream_config_service::authz::{Role, ServiceKind};
use auditstream_proto::v1::{self as pb, AppliesTo::*, HealthState, NodeKind::*};
use auditstream_sink_core::retry::Backoff;
use auditstream_testkit::{ConfigClient, ConfigHarness, Database, NatsServer, SmtpServer};
use common::config::*;

async fn setup(smtp_port: u16) -> (NatsServer, ConfigHarness, ConfigClient) {
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.notifications.smtp_host = "127.0.0.1".into();
        c.notifications.smtp_port = smtp_port;
        c.notifications.from = "auditstream@platform.example".into();
        c.notifications.retry = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
    })
    .await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    put(
        &mut admin,
        pb::Node {
            admin_emails: vec!["sre@acme.example".into(), "ops@acme.example".into()],
            ..node("org", "", Organization)
        },
    )
    .await;
    put(&mut admin, node("ws", "org", Workspace)).await;
    create_connection(&mut admin, s3_connection("conn", "org", SECRET)).await;
    create_stream(&mut admin, s3_stream("s1", "ws", SelfOnly, "conn"))
        .await
        .unwrap();
    let service = config.client_service(ServiceKind::SinkS3).await;
    (nats, config, service)
}

/// A mail as a reader sees it: folded headers unfolded, quoted-printable soft breaks and
/// `=3D` decoded (the bodies here are ASCII).
fn readable(raw: &str) -> String {
    raw.replace("\r\n", "\n")
        .replace("=\n", "")
        .replace("\n ", " ")
        .replace("=3D", "=")
}

async fn report(
    service: &mut ConfigClient,
    state: HealthState,
    error: &str,
    hint: &str,
    replayed: u64,
) {
    let status = pb::StreamStatus {
        stream_id: "s1".into(),
        state: state as i32,
        last_error: error.into(),
        hint: hint.into(),
        backlog_depth: 42,
        replayed_events: replayed,
        ..Default::default()
    };
    service
        .report_status(pb::ReportStatusRequest {
            status: Some(status),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn one_mail_when_broken_one_when_recovered() {
    let smtp = SmtpServer::start();
    let (_nats, _config, mut service) = setup(smtp.port()).await;
    let (error, hint) = (
        "403 AccessDenied",
        "the IAM role lacks s3:PutObject on bucket audit-s1",
    );
    // The sink reports a backlog of 42 (`report`), JetStream holds 5: the mail says what
    // JetStream holds when it is sent.
    backlog(&_nats, &_config, 5).await;
    report(&mut service, HealthState::Retrying, "503", "", 0).await;
    // Reported broken three times: one mail.
    for _ in 0..3 {
        report(&mut service, HealthState::Broken, error, hint, 0).await;
    }
    report(&mut service, HealthState::Recovering, "", "", 0).await;
    report(&mut service, HealthState::Healthy, "", "", 42).await;
    // Broken again the same day: within the repeat period, no new mail.
    report(&mut service, HealthState::Broken, error, hint, 0).await;
    report(&mut service, HealthState::Healthy, "", "", 1).await;

    // Mails go out in order; once the second recovery mail is in, every earlier one is too.
    let mails: Vec<String> = smtp
        .wait_for(3, Duration::from_secs(20))
        .await
        .iter()
        .map(|m| readable(m))
        .collect();
    assert_eq!(mails.len(), 3, "{mails:#?}");
    let broken = &mails[0];
    for needle in [
        "To: sre@acme.example, ops@acme.example",
        "Subject: [Auditstream] Audit log streaming to S3 bucket audit-s1 is failing: s1",
        error,
        hint,
        "Stream: stream s1 (s1)",
        "5 so far",
    ] {
        assert!(
            broken.contains(needle),
            "broken mail lacks {needle:?}:\n{broken}"
        );
    }
    assert!(
        mails[1].contains("recovered: s1")
            && mails[1].contains("Events replayed from the backlog: 42"),
        "{}",
        mails[1]
    );
    assert!(
        mails[2].contains("recovered: s1")
            && mails[2].contains("Events replayed from the backlog: 1"),
        "{}",
        mails[2]
    );
}

#[tokio::test]
async fn a_mail_the_smtp_server_could_not_take_is_retried() {
    // The configured port has no server yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_nats, _config, mut service) = setup(port).await;
    report(
        &mut service,
        HealthState::Broken,
        "401 invalid token",
        "rotate the HEC token",
        0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await; // a few failed attempts
    // The backlog grew while the mail waited: it is written with the figure of its sending.
    backlog(&_nats, &_config, 7).await;
    let smtp = SmtpServer::start_on(port);
    let mails: Vec<String> = smtp
        .wait_for(1, Duration::from_secs(20))
        .await
        .iter()
        .map(|m| readable(m))
        .collect();
    assert!(
        mails[0].contains("401 invalid token")
            && mails[0].contains("rotate the HEC token")
            && mails[0].contains("7 so far"),
        "{}",
        mails[0]
    );
}

/// Puts `count` more events into stream s1's backlog (AUDIT_BACKLOG_S3).
async fn backlog(nats: &NatsServer, config: &ConfigHarness, count: usize) {
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    let s1 = admin
        .get_stream(pb::GetStreamRequest { id: "s1".into() })
        .await
        .unwrap()
        .into_inner();
    let subject =
        auditstream_bus::subjects::backlog(auditstream_model::SinkType::S3, s1.key()).unwrap();
    let js = nats.jetstream().await;
    for _ in 0..count {
        js.publish(subject.clone(), "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

/// Two config-service replicas on one Postgres database, each with its mailer on the shared
/// outbox: each mail reaches the SMTP server exactly once (a replica sends only what it
/// claimed), whichever replica took the report.
#[tokio::test]
async fn two_replicas_on_one_database_send_each_mail_once() {
    const STREAMS: usize = 20;
    let smtp = SmtpServer::start();
    let nats = NatsServer::start();
    let port = smtp.port();
    let tweak = move |c: &mut auditstream_config_service::ConfigServiceConfig| {
        c.notifications.smtp_host = "127.0.0.1".into();
        c.notifications.smtp_port = port;
        c.notifications.from = "auditstream@platform.example".into();
    };
    let first = ConfigHarness::start(&nats.url(), Database::Postgres, tweak).await;
    let second = ConfigHarness::start(
        &nats.url(),
        Database::Shared(first.database_url.clone()),
        tweak,
    )
    .await;
    let mut admin = first.client_as(Role::PlatformAdmin, None).await;
    put(
        &mut admin,
        pb::Node {
            admin_emails: vec!["sre@acme.example".into()],
            ..node("org", "", Organization)
        },
    )
    .await;
    put(&mut admin, node("ws", "org", Workspace)).await;
    create_connection(&mut admin, s3_connection("conn", "org", SECRET)).await;
    for i in 0..STREAMS {
        create_stream(
            &mut admin,
            s3_stream(&format!("s{i}"), "ws", SelfOnly, "conn"),
        )
        .await
        .unwrap();
    }
    let mut sinks = [
        first.client_service(ServiceKind::SinkS3).await,
        second.client_service(ServiceKind::SinkS3).await,
    ];
    for i in 0..STREAMS {
        let status = pb::StreamStatus {
            stream_id: format!("s{i}"),
            state: HealthState::Broken as i32,
            last_error: "403 AccessDenied".into(),
            ..Default::default()
        };
        sinks[i % 2]
            .report_status(pb::ReportStatusRequest {
                status: Some(status),
            })
            .await
            .unwrap();
    }
    smtp.wait_for(STREAMS, Duration::from_secs(30)).await;
    // Every mail is marked sent; stopping both replicas lets any send in progress finish, so
    // a duplicate would be in the mailbox by then.
    let store = auditstream_config_service::store::Store::connect(&first.database_url, 1)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !store.due_mails(i64::MAX).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "mails left unsent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.stop().await.unwrap();
    let mails: Vec<String> = smtp.messages().iter().map(|m| readable(m)).collect();
    let mut subjects: Vec<String> = mails
        .iter()
        .filter_map(|m| {
            m.lines()
                .find(|l| l.starts_with("Subject: "))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(subjects.len(), STREAMS, "{subjects:#?}");
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), STREAMS, "a mail was sent twice");
    first.stop().await.unwrap();
    assert_eq!(smtp.messages().len(), STREAMS);
}
