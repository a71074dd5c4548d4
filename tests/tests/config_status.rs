//! Destination status through the real config service: the counters a sink reports are
//! increments (every replica reports; the service adds them up, none lost to concurrent
//! reports), GetStatus reads the backlog and DLQ depths live from JetStream (and falls back
//! to the last report when it cannot), and the "events about to expire" mail goes out once
//! when expiring events appear (a real SMTP server, aiosmtpd).

mod common;

use std::time::Duration;

use auditstream_bus::subjects;
use auditstream_config_service::authz::{Role, ServiceKind};
use auditstream_model::SinkType;
use auditstream_proto::v1::{self as pb, AppliesTo::*, HealthState, NodeKind::*, StreamStatus};
use auditstream_testkit::{ConfigClient, ConfigHarness, Database, NatsServer, SmtpServer};
use common::config::*;

/// org (with admin contacts) → ws; an S3 connection and stream `s1` at ws.
async fn setup(
    tweak: impl FnOnce(&mut auditstream_config_service::ConfigServiceConfig),
) -> (NatsServer, ConfigHarness, ConfigClient, ConfigClient) {
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, tweak).await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
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
    create_stream(&mut admin, s3_stream("s1", "ws", SelfOnly, "conn"))
        .await
        .unwrap();
    let service = config.client_service(ServiceKind::SinkS3).await;
    (nats, config, admin, service)
}

async fn report(service: &mut ConfigClient, status: StreamStatus) -> StreamStatus {
    service
        .report_status(pb::ReportStatusRequest {
            status: Some(StreamStatus {
                stream_id: "s1".into(),
                ..status
            }),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn status(client: &mut ConfigClient) -> StreamStatus {
    client
        .get_status(pb::GetStatusRequest {
            stream_id: "s1".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn state(s: HealthState) -> i32 {
    s as i32
}

#[tokio::test]
async fn reported_counters_are_increments_added_up_across_replicas() {
    let (_nats, _config, mut admin, mut service) = setup(|_| {}).await;
    // Replica A, then replica B, each with what it counted since its previous report.
    let a = report(
        &mut service,
        StreamStatus {
            state: state(HealthState::Healthy),
            delivered_events: 100,
            failed_requests: 2,
            last_delivery_at: "2026-11-23T10:00:05Z".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(a.delivered_events, 100);
    let b = report(
        &mut service,
        StreamStatus {
            state: state(HealthState::Retrying),
            last_error: "503 Service Unavailable".into(),
            delivered_events: 50,
            dead_lettered_events: 3,
            expired_events: 1,
            failed_requests: 5,
            backlog_depth: 40,
            expiring_events: 7,
            oldest_expires_at: "2026-11-30T10:00:00Z".into(),
            // An older delivery than A's: the newest stays.
            last_delivery_at: "2026-11-23T10:00:01Z".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (
            b.delivered_events,
            b.dead_lettered_events,
            b.expired_events,
            b.failed_requests
        ),
        (150, 3, 1, 7)
    );
    assert_eq!(b.last_delivery_at, "2026-11-23T10:00:05Z");
    let got = status(&mut admin).await;
    assert_eq!(got.state(), HealthState::Retrying);
    assert_eq!(
        (
            got.delivered_events,
            got.dead_lettered_events,
            got.expired_events,
            got.failed_requests,
            got.expiring_events,
            got.oldest_expires_at.as_str(),
            got.last_error.as_str(),
        ),
        (
            150,
            3,
            1,
            7,
            7,
            "2026-11-30T10:00:00Z",
            "503 Service Unavailable"
        )
    );
    assert!(!got.updated_at.is_empty());

    // Many replicas at once: no increment is lost.
    let reports = (0..20).map(|_| {
        let mut service = service.clone();
        async move {
            report(
                &mut service,
                StreamStatus {
                    state: state(HealthState::Healthy),
                    delivered_events: 1,
                    ..Default::default()
                },
            )
            .await
        }
    });
    futures_util::future::join_all(reports).await;
    assert_eq!(status(&mut admin).await.delivered_events, 170);

    // replayed_events restarts when the destination breaks, then adds up.
    for (s, replayed) in [
        (HealthState::Broken, 0),
        (HealthState::Recovering, 30),
        (HealthState::Healthy, 12),
    ] {
        report(
            &mut service,
            StreamStatus {
                state: state(s),
                replayed_events: replayed,
                ..Default::default()
            },
        )
        .await;
    }
    assert_eq!(status(&mut admin).await.replayed_events, 42);
}

#[tokio::test]
async fn get_status_reads_backlog_and_dlq_depths_from_jetstream() {
    let (mut nats, _config, mut admin, mut service) = setup(|_| {}).await;
    report(
        &mut service,
        StreamStatus {
            state: state(HealthState::Broken),
            backlog_depth: 99,
            dlq_depth: 9,
            ..Default::default()
        },
    )
    .await;
    let js = nats.jetstream().await;
    let publish = async |subject: String, n: usize| {
        for i in 0..n {
            js.publish(subject.clone(), format!("{{\"n\": {i}}}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    let key = common::stream_key(&admin, "s1").await;
    publish(subjects::backlog(SinkType::S3, &key).unwrap(), 3).await;
    publish(subjects::dlq(SinkType::S3, &key).unwrap(), 2).await;
    // Other streams' messages do not count: another stream, another sink type, and the
    // stream's reusable id (only its uid names its subjects).
    publish(subjects::backlog(SinkType::S3, "s9").unwrap(), 4).await;
    publish(subjects::dlq(SinkType::Http, &key).unwrap(), 5).await;
    publish(subjects::dlq(SinkType::S3, "s1").unwrap(), 6).await;

    let live = status(&mut admin).await;
    assert_eq!((live.backlog_depth, live.dlq_depth), (3, 2));
    assert_eq!(live.state(), HealthState::Broken);

    // JetStream cannot be asked: the last reported depths, not an error.
    nats.kill();
    let started = tokio::time::Instant::now();
    let stale = status(&mut admin).await;
    assert_eq!((stale.backlog_depth, stale.dlq_depth), (99, 9));
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A mail as a reader sees it (as in config_notify.rs).
fn readable(raw: &str) -> String {
    raw.replace("\r\n", "\n")
        .replace("=\n", "")
        .replace("\n ", " ")
        .replace("=3D", "=")
}

#[tokio::test]
async fn one_mail_when_backlog_events_start_to_expire() {
    // No SMTP server while the reports come in: the mails wait in the outbox and are written
    // when they are sent, with the figures of that moment (the last report's).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_nats, _config, _admin, mut service) = setup(|c| {
        c.notifications.smtp_host = "127.0.0.1".into();
        c.notifications.smtp_port = port;
        c.notifications.from = "auditstream@platform.example".into();
        c.notifications.retry = auditstream_sink_core::retry::Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
    })
    .await;
    let broken = |expiring: u64| StreamStatus {
        state: state(HealthState::Broken),
        last_error: "403 AccessDenied".into(),
        hint: "the IAM role lacks s3:PutObject on bucket audit-s1".into(),
        backlog_depth: 5000,
        expiring_events: expiring,
        oldest_expires_at: if expiring > 0 {
            "2026-11-30T10:00:00Z".into()
        } else {
            String::new()
        },
        ..Default::default()
    };
    report(&mut service, broken(0)).await; // the "broken" mail
    report(&mut service, broken(120)).await; // expiring events appear: one warning
    report(&mut service, broken(300)).await; // more: no new mail
    report(&mut service, broken(0)).await;
    report(&mut service, broken(10)).await; // again, within the repeat period: no mail

    let smtp = SmtpServer::start_on(port);
    let mails: Vec<String> = smtp
        .wait_for(2, Duration::from_secs(20))
        .await
        .iter()
        .map(|m| readable(m))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(smtp.messages().len(), 2, "{mails:#?}");
    let warning = mails
        .iter()
        .find(|m| m.contains("about to expire"))
        .unwrap_or_else(|| panic!("no expiry warning in {mails:#?}"));
    for needle in [
        "To: sre@acme.example",
        "Subject: [Auditstream] Audit events for S3 bucket audit-s1 are about to expire: s1",
        "10 events in the backlog of stream s1 expire at 2026-11-30T10:00:00Z unless the \
         destination is fixed; expired events are moved to the dead-letter queue (replay with \
         `auditctl dlq replay s1`).",
        "Error: 403 AccessDenied",
        "What to fix: the IAM role lacks s3:PutObject on bucket audit-s1",
        "at most one such message per stream per 24h",
    ] {
        assert!(
            warning.contains(needle),
            "warning lacks {needle:?}:\n{warning}"
        );
    }
}
