//! sink-azure-monitor against the test kit's contract-checking Logs Ingestion stand-in (there
//! is no Azure Monitor emulator): a token endpoint that issues expiring tokens for one app and
//! an ingestion endpoint that checks path, api-version, token, content type, JSON array of
//! objects and the 1 MB limit. End-to-end scenarios run gateway → router → sink (in-process) →
//! stand-in with the config service (SQLite) and a real SMTP server, and count event ids at
//! the stand-in: duplicates are allowed, loss never.

mod common;

use std::{collections::HashSet, time::Duration};

use auditstream_proto::v1::{
    self as pb, HealthState, azure_monitor_credentials::Method, connection::Credentials,
    destination::Target,
};
use auditstream_sink_azure_monitor::{AzureMonitorSink, AzureMonitorSinkConfig};
use auditstream_sink_core::{Destination as _, Event, Sink as _, classify::Class};
use auditstream_testkit::{AzureMonitorStandIn, MonitorContract, MonitorFault};
use common::{ndjson, post, sink::*};

const MINUTE: Duration = Duration::from_secs(60);
const WRONG_SECRET: &str = "an-expired-client-secret";

fn loopback_monitor() -> AzureMonitorSinkConfig {
    AzureMonitorSinkConfig {
        allow_insecure_http: true,
        allowed_networks: vec!["127.0.0.0/8".into()],
        ..Default::default()
    }
}

fn credentials(standin: &AzureMonitorStandIn, secret: &str) -> Credentials {
    let contract = standin.contract();
    Credentials::AzureMonitor(pb::AzureMonitorCredentials {
        ingestion_endpoint: standin.ingestion_endpoint(),
        method: Some(Method::ClientCredentials(pb::AzureClientCredentials {
            tenant_id: contract.tenant_id,
            client_id: contract.client_id,
            client_secret: secret.into(),
            authority_host: standin.authority_host(),
        })),
    })
}

fn target(standin: &AzureMonitorStandIn) -> pb::AzureMonitorTarget {
    let contract = standin.contract();
    pb::AzureMonitorTarget {
        ingestion_endpoint: standin.ingestion_endpoint(),
        dcr_immutable_id: contract.dcr_immutable_id,
        stream_name: contract.stream_name,
        log_type: "AuditLogs".into(),
        resource_id: "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/audit/providers/Microsoft.Insights/dataCollectionRules/audit-dcr".into(),
        ..Default::default()
    }
}

/// The stand-in and the whole stack with the sink running: stream `s-0` takes workspace
/// `ws-0`'s `user_activity` events to the stand-in with connection `c-0` (client `secret`).
async fn monitor_stack(
    contract: MonitorContract,
    secret: Option<&str>,
    sink: AzureMonitorSinkConfig,
    tweak: impl FnOnce(&mut auditstream_sink_core::SinkConfig<AzureMonitorSinkConfig>),
) -> (AzureMonitorStandIn, SinkStack) {
    let standin = AzureMonitorStandIn::start(contract).await;
    let secret = secret.map_or_else(|| standin.contract().client_secret, str::to_owned);
    let mut stack = stack_with(vec![(
        credentials(&standin, &secret),
        Target::AzureMonitor(target(&standin)),
    )])
    .await;
    stack
        .start_sink(sink, tweak, |c| AzureMonitorSink::new(c.clone()).unwrap())
        .await;
    (standin, stack)
}

/// Ids with the given tags; the stand-in also gets the config service's own audit events of
/// ws-0 (the stream's creation), which the stream selects as well.
fn tagged(ids: &[String], tags: &[&str]) -> HashSet<String> {
    ids.iter()
        .filter(|id| tags.iter().any(|t| id.starts_with(&format!("{t}-"))))
        .cloned()
        .collect()
}

/// `count` user_activity events for ws-0 with `pad` bytes of padding each; ids `<tag>-0-<n>`.
fn padded(tag: &str, count: usize, pad: usize) -> (String, Vec<String>) {
    let (body, ids) = events(0, tag, count, None);
    let padding = "p".repeat(pad);
    let lines: Vec<String> = body
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["data"]["padding"] = padding.clone().into();
            v.to_string()
        })
        .collect();
    (lines.join("\n"), ids)
}

async fn send_padded(stack: &SinkStack, tag: &str, count: usize, pad: usize) -> Vec<String> {
    let (body, ids) = padded(tag, count, pad);
    let reply = post(&stack.gateway, body, &[ndjson()]).await;
    assert_eq!(reply.status, 200, "gateway accepted all: {:?}", reply.body);
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_1_mb_are_split_and_an_event_over_it_goes_to_the_dlq() {
    // Batches of up to 4 MiB, so every one must be cut into requests of at most 1 MB.
    let (standin, stack) =
        monitor_stack(MonitorContract::default(), None, loopback_monitor(), |c| {
            c.batching.max_bytes = 4 * 1024 * 1024;
            c.batching.max_events = 5000;
            c.batching.max_age = Duration::from_secs(1);
        })
        .await;
    let mut accepted = Vec::new();
    for round in 0..3 {
        accepted.extend(send_padded(&stack, &format!("big{round}"), 1000, 2000).await);
    }
    // One event of about 1.04 MB (the gateway takes up to 1 MiB): too large for any request.
    let (oversized, oversized_id) = padded("huge", 1, 1_040_000);
    let reply = post(&stack.gateway, oversized, &[ndjson()]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    accepted.extend(send_padded(&stack, "after", 50, 100).await);

    let want: HashSet<String> = accepted.iter().cloned().collect();
    standin.wait_for_ids(&want, 2 * MINUTE).await;
    let status = stack
        .wait_status("s-0", "the oversized event dead-lettered", |s| {
            s.dead_lettered_events == 1 && s.dlq_depth == 1
        })
        .await;
    assert_eq!(status.state(), HealthState::Healthy, "{status:?}");

    let requests = standin.requests();
    let largest = requests.iter().filter_map(|r| r.body_len).max().unwrap();
    assert!(
        requests.iter().all(|r| r.raw_len <= 1_000_000),
        "no request over the sink's 1 MB cap: largest {largest}"
    );
    assert!(
        requests.iter().all(|r| r.status == 204),
        "nothing refused: {:?}",
        requests
            .iter()
            .map(|r| (r.status, r.error_code.clone()))
            .collect::<Vec<_>>()
    );
    let total: usize = requests.iter().filter_map(|r| r.body_len).sum();
    assert!(total > 6_000_000, "{total} bytes of events arrived");
    assert!(
        largest > 900_000,
        "requests are filled up to the cap, not cut small: largest {largest}"
    );
    let delivered = standin.accepted_ids();
    assert!(!delivered.contains(&oversized_id[0]));

    let listed = ctl(&stack, &["dlq", "list", "s-0"]).await;
    assert!(listed.contains(&oversized_id[0]), "{listed}");
    assert!(
        listed.contains("bytes, more than the 1000000 bytes this sink sends to the Logs Ingestion API in one request"),
        "the reason says why: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_splits_requests_again_until_they_fit() {
    let (standin, stack) =
        monitor_stack(MonitorContract::default(), None, loopback_monitor(), |c| {
            c.batching.max_age = Duration::from_millis(500)
        })
        .await;
    // The service's limit is lower than the sink's cap (as if Azure lowered it).
    standin.set_max_body_bytes(200_000);
    let accepted = send_padded(&stack, "split", 400, 2000).await;
    let want: HashSet<String> = accepted.iter().cloned().collect();
    standin.wait_for_ids(&want, MINUTE).await;
    let requests = standin.requests();
    assert!(
        requests.iter().any(|r| r.status == 413),
        "the stand-in refused a request as too large"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.status == 204)
            .all(|r| r.raw_len <= 200_000)
    );
    let status = stack.status("s-0").await;
    assert_eq!(status.dead_lettered_events, 0, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_mid_run_loses_and_duplicates_nothing() {
    // Tokens live 4 s: the sink renews each in the background after 2 s.
    let contract = MonitorContract {
        token_lifetime: Duration::from_secs(4),
        ..Default::default()
    };
    let (standin, stack) = monitor_stack(contract, None, loopback_monitor(), |_| {}).await;
    let mut accepted = Vec::new();
    let mut expired_at = None;
    for round in 0..20 {
        if round == 12 {
            // Every token issued so far stops working at once (revoked, or a clock jump).
            standin.expire_tokens();
            expired_at = Some(std::time::Instant::now());
        }
        accepted.extend(stack.send(0, &format!("t{round}"), 20, None).await);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let want: HashSet<String> = accepted.iter().cloned().collect();
    standin.wait_for_ids(&want, MINUTE).await;

    let delivered = standin.accepted_ids();
    let ours: Vec<&String> = delivered.iter().filter(|id| want.contains(*id)).collect();
    assert_eq!(ours.len(), want.len(), "each event delivered exactly once");

    let expired_at = expired_at.unwrap();
    let requests = standin.requests();
    let refused_before = requests
        .iter()
        .filter(|r| r.status == 401 && r.at < expired_at)
        .count();
    assert_eq!(
        refused_before, 0,
        "tokens were renewed before they expired, no request used an expired one"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.status == 401 && r.at >= expired_at),
        "the expired token was refused once"
    );
    let issued = standin
        .token_requests()
        .iter()
        .filter(|t| t.status == 200)
        .count();
    assert!(issued >= 3, "renewed in the background: {issued} tokens");
    let status = stack.status("s-0").await;
    assert_eq!(status.state(), HealthState::Healthy, "{status:?}");
    assert_eq!(status.dead_lettered_events, 0);
    assert_eq!(status.backlog_depth, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_breaks_the_stream_until_the_admin_fixes_it() {
    let (standin, mut stack) = monitor_stack(
        MonitorContract::default(),
        Some(WRONG_SECRET),
        loopback_monitor(),
        |_| {},
    )
    .await;
    let mut accepted = stack.send(0, "first", 50, None).await;
    let broken = stack
        .wait_status("s-0", "broken", |s| s.state() == HealthState::Broken)
        .await;
    assert!(
        broken.last_error.contains("invalid_client") && broken.last_error.contains("AADSTS7000215"),
        "{broken:?}"
    );
    assert!(
        broken.hint.contains("client secret") && broken.hint.contains("Value"),
        "the hint says what to fix: {broken:?}"
    );
    accepted.extend(stack.send(0, "second", 50, None).await);
    stack
        .wait_status("s-0", "backlog of 100", |s| s.backlog_depth >= 100)
        .await;

    let mails = stack.smtp.wait_for(1, MINUTE).await;
    let mail = mails[0].replace("\r\n", "\n").replace("=\n", "");
    assert!(mail.contains(ADMIN_MAIL), "{mail}");
    assert!(mail.contains("invalid_client"), "the error: {mail}");
    assert!(mail.contains("client secret"), "the hint: {mail}");
    let shown = format!("{broken:?}{mail}");
    assert!(!shown.contains(WRONG_SECRET), "the secret is never shown");
    assert!(
        standin.requests().is_empty(),
        "no request without a token reached the ingestion endpoint"
    );

    // The admin puts in the right secret: the sink probes, drains the backlog, recovers.
    let right = standin.contract().client_secret;
    stack
        .set_credentials("c-0", credentials(&standin, &right))
        .await;
    let want: HashSet<String> = accepted.iter().cloned().collect();
    standin.wait_for_ids(&want, MINUTE).await;
    let recovered = stack
        .wait_status("s-0", "healthy again", |s| {
            s.state() == HealthState::Healthy && s.backlog_depth == 0
        })
        .await;
    assert!(recovered.replayed_events >= 100, "{recovered:?}");
    assert_eq!(
        tagged(&standin.accepted_ids(), &["first", "second"]),
        want,
        "every accepted event, nothing else of ours"
    );
}

/// A destination for the stand-in, built by the sink as the runtime would.
fn destination(
    sink: &AzureMonitorSink,
    standin: &AzureMonitorStandIn,
    secret: &str,
    change: impl FnOnce(&mut pb::AzureMonitorTarget),
) -> auditstream_sink_azure_monitor::AzureMonitorDestination {
    let mut t = target(standin);
    change(&mut t);
    sink.build(
        &pb::Destination {
            connection_id: "c".into(),
            target: Some(Target::AzureMonitor(t)),
        },
        &pb::Connection {
            id: "c".into(),
            credentials: Some(credentials(standin, secret)),
            ..Default::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_follow_the_contract_and_answers_name_the_fix() {
    let standin = AzureMonitorStandIn::start(MonitorContract::default()).await;
    let contract = standin.contract();
    let sink = AzureMonitorSink::new(loopback_monitor()).unwrap();
    let good = destination(&sink, &standin, &contract.client_secret, |_| {});
    let batch = vec![
        Event::new("m-1", r#"{"id":"m-1","n":1}"#),
        Event::new("m-2", r#"{"id":"m-2","n":2}"#),
    ];

    // The probe and a delivery, as the API expects them.
    let probed = good.probe().await;
    assert_eq!(probed.class, Class::Delivered, "{probed:?}");
    let sent = good.send(&batch).await;
    assert_eq!(sent.class, Class::Delivered, "{sent:?}");
    let requests = standin.requests();
    assert_eq!(requests.len(), 2);
    let path = format!(
        "/dataCollectionRules/{}/streams/{}?api-version=2023-01-01",
        contract.dcr_immutable_id, contract.stream_name
    );
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.path_and_query.as_str()),
            ("POST", path.as_str())
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("authorization").unwrap().starts_with("Bearer "));
        assert_eq!(r.client_id.as_deref(), Some(contract.client_id.as_str()));
        assert_eq!(r.status, 204);
    }
    assert_eq!(requests[0].body_text(), "[]");
    assert_eq!(
        requests[1].body_text(),
        r#"[{"id":"m-1","n":1},{"id":"m-2","n":2}]"#
    );
    let tokens = standin.token_requests();
    assert_eq!(tokens.len(), 1, "one token for both requests: {tokens:?}");
    assert_eq!(tokens[0].scope, "https://monitor.azure.com//.default");
    assert_eq!(tokens[0].grant_type, "client_credentials");

    // gzip on request.
    let gzipped = destination(&sink, &standin, &contract.client_secret, |t| {
        t.compression = pb::Compression::Gzip as i32;
    });
    assert_eq!(gzipped.send(&batch).await.class, Class::Delivered);
    let last = standin.requests().pop().unwrap();
    assert_eq!(last.header("content-encoding"), Some("gzip"));
    assert!(last.raw_len != last.body_len.unwrap());
    assert_eq!(
        last.body_text(),
        r#"[{"id":"m-1","n":1},{"id":"m-2","n":2}]"#
    );

    // Throttled: transient, with the service's Retry-After.
    standin.set_fault_for(
        MonitorFault::Throttle {
            retry_after_secs: 7,
        },
        1,
    );
    assert_eq!(
        good.send(&batch).await.class,
        Class::Transient {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    standin.set_fault_for(MonitorFault::Status(500), 1);
    assert!(matches!(
        good.send(&batch).await.class,
        Class::Transient { .. }
    ));

    // The role is missing: broken, and the hint names the role and the rule.
    standin.set_role_assigned(false);
    let answer = good.send(&batch).await;
    assert_eq!(answer.class, Class::Configuration, "{answer:?}");
    assert!(answer.detail.contains("403"), "{answer:?}");
    for part in [
        "Monitoring Metrics Publisher",
        contract.client_id.as_str(),
        contract.dcr_immutable_id.as_str(),
        "dataCollectionRules/audit-dcr",
    ] {
        assert!(answer.hint.contains(part), "{part}: {answer:?}");
    }
    standin.set_role_assigned(true);

    // A wrong rule or stream: 404, broken, the hint says what to check and names the role.
    for change in [
        (|t: &mut pb::AzureMonitorTarget| {
            t.dcr_immutable_id = "dcr-ffffffffffffffffffffffffffffffff".into()
        }) as fn(&mut pb::AzureMonitorTarget),
        |t| t.stream_name = "Custom-Other_CL".into(),
    ] {
        let wrong = destination(&sink, &standin, &contract.client_secret, change);
        let answer = wrong.probe().await;
        assert_eq!(answer.class, Class::Configuration, "{answer:?}");
        assert!(answer.detail.contains("404"), "{answer:?}");
        assert!(
            answer.hint.contains("has no data collection rule"),
            "{answer:?}"
        );
        assert!(
            answer.hint.contains("Monitoring Metrics Publisher"),
            "{answer:?}"
        );
    }

    // Entra ID refuses: a wrong secret, an unknown tenant.
    let answer = destination(&sink, &standin, WRONG_SECRET, |_| {})
        .probe()
        .await;
    assert_eq!(answer.class, Class::Configuration, "{answer:?}");
    assert!(answer.detail.contains("AADSTS7000215"), "{answer:?}");
    assert!(!format!("{answer:?}").contains(WRONG_SECRET));
    let mut other_tenant = credentials(&standin, &contract.client_secret);
    if let Credentials::AzureMonitor(m) = &mut other_tenant
        && let Some(Method::ClientCredentials(c)) = &mut m.method
    {
        c.tenant_id = "11111111-2222-3333-4444-555555555555".into();
    }
    let answer = sink
        .build(
            &pb::Destination {
                connection_id: "c".into(),
                target: Some(Target::AzureMonitor(target(&standin))),
            },
            &pb::Connection {
                credentials: Some(other_tenant),
                ..Default::default()
            },
        )
        .unwrap()
        .probe()
        .await;
    assert_eq!(answer.class, Class::Configuration, "{answer:?}");
    assert!(
        answer
            .hint
            .contains("tenant 11111111-2222-3333-4444-555555555555 was not found"),
        "{answer:?}"
    );

    // The token endpoint is down: transient, deliveries are retried.
    standin.set_token_endpoint_status(Some(503));
    let fresh = AzureMonitorSink::new(loopback_monitor()).unwrap();
    let answer = destination(&fresh, &standin, &contract.client_secret, |_| {})
        .probe()
        .await;
    assert!(
        matches!(answer.class, Class::Transient { .. }),
        "{answer:?}"
    );
    standin.set_token_endpoint_status(None);

    // Without the operator's allow-list the loopback stand-in is refused before connecting.
    let guarded = AzureMonitorSink::new(AzureMonitorSinkConfig {
        allow_insecure_http: true,
        ..Default::default()
    })
    .unwrap();
    let before = standin.token_requests().len();
    let answer = destination(&guarded, &standin, &contract.client_secret, |_| {})
        .probe()
        .await;
    assert_eq!(answer.class, Class::Configuration, "{answer:?}");
    assert!(answer.detail.contains("loopback"), "{answer:?}");
    assert!(
        answer
            .hint
            .contains("the Azure Monitor sink's setting sink.allowed_networks"),
        "{answer:?}"
    );
    assert_eq!(standin.token_requests().len(), before, "never contacted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_alone_over_the_limit_is_refused_without_being_sent() {
    let standin = AzureMonitorStandIn::start(MonitorContract::default()).await;
    let sink = AzureMonitorSink::new(loopback_monitor()).unwrap();
    let d = destination(&sink, &standin, &standin.contract().client_secret, |_| {});
    let big = format!(r#"{{"id":"big","pad":"{}"}}"#, "x".repeat(1_000_000));
    let batch = vec![
        Event::new("small-1", r#"{"id":"small-1"}"#),
        Event::new("big", big),
        Event::new("small-2", r#"{"id":"small-2"}"#),
    ];
    let outcome = auditstream_sink_core::deliver::deliver(&d, &batch).await;
    assert_eq!(outcome.delivered, vec![0, 2]);
    assert_eq!(outcome.rejected.len(), 1);
    let (index, reason) = &outcome.rejected[0];
    assert_eq!(*index, 1);
    assert!(
        reason.starts_with("event big is 1000021 bytes, more than the 1000000 bytes"),
        "{reason}"
    );
    assert!(
        standin.requests().iter().all(|r| r.raw_len <= 1_000_000),
        "the big event was never sent"
    );
}

#[test]
fn every_sink_setting_is_in_the_readme() {
    auditstream_telemetry::config::assert_documented::<
        auditstream_sink_core::SinkConfig<AzureMonitorSinkConfig>,
    >(include_str!("../../README.md"));
}
