//! Gateway → router → AUDIT_DELIVER against a real nats-server and a real config service:
//! each event reaches exactly the streams Explain names (with the stream's filters), with
//! the right subject, body and headers; configuration changes apply live; config-service
//! outages and missed revisions; two replicas share the work.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use auditstream_bus::headers as h;
use auditstream_proto::v1::{self as pb, AppliesTo::*, EventSelection, NodeKind::*};
use auditstream_testkit::{ConfigClient, RouterHarness, test_router_config};
use common::{config::*, router::*, *};

const ALL_TYPES: [&str; 6] = [
    "job_status",
    "job_details",
    "user_activity",
    "api_platform",
    "log_event",
    "genie_conversation",
];

/// org-acme ─ ws-direct (workspace, own stream)
///          └ p1 (partner: OEM admin workspace with its own stream; a disabled all-customers stream)
///             ├ c1 (customer INI-001: its own filtered, templated stream)
///             ├ c2 (customer without external id, no stream)
///             └ m1 (managed customer: only the partner's streams)
async fn seed(a: &mut ConfigClient) {
    tree(
        a,
        &[
            ("org-acme", "", Organization),
            ("ws-direct", "org-acme", Workspace),
            ("p1", "org-acme", Partner),
        ],
    )
    .await;
    put(
        a,
        pb::Node {
            external_id: "INI-001".into(),
            ..node("c1", "p1", Customer)
        },
    )
    .await;
    put(a, node("c2", "p1", Customer)).await;
    put(
        a,
        pb::Node {
            managed: true,
            ..node("m1", "p1", Customer)
        },
    )
    .await;
    create_connection(a, s3_connection("conn", "org-acme", SECRET)).await;
    let all = |mut s: pb::Stream| {
        s.selection = Some(EventSelection {
            event_types: ALL_TYPES.iter().map(|t| t.to_string()).collect(),
            include_step_details: true,
            ..Default::default()
        });
        s
    };
    create_stream(a, all(s3_stream("s-ws", "ws-direct", SelfOnly, "conn")))
        .await
        .unwrap();
    create_stream(a, all(s3_stream("s-oem", "p1", SelfOnly, "conn")))
        .await
        .unwrap();
    let mut c1 = s3_stream("s-c1", "c1", SelfOnly, "conn");
    c1.selection = Some(EventSelection {
        event_types: vec![
            "job_status".into(),
            "job_details".into(),
            "user_activity".into(),
            "log_event".into(),
        ],
        include_step_details: false,
        log_levels: vec!["error".into()],
        ..Default::default()
    });
    c1.template = r#"{"source":"auditstream","log_message_str":{{{log_message_str}}},"now_utc_micro":{{{now_utc_micro}}}}"#.into();
    create_stream(a, c1).await.unwrap();
    let mut partner = all(s3_stream("s-p1-all", "p1", Descendants, "conn"));
    partner.enabled = false;
    create_stream(a, partner).await.unwrap();
}

/// The example events, re-addressed to `workspace` with ids unique to `tag`.
fn examples_for(workspace: &str, tag: &str) -> String {
    example_lines()
        .iter()
        .map(|line| {
            let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["id"] = format!("{tag}-{workspace}-{}", v["event_type"].as_str().unwrap()).into();
            v["workspace_id"] = workspace.into();
            // The workspace's own organization: naming another one gets the event refused
            // (tenant_isolation.rs).
            v["org_id"] = "org-acme".into();
            v.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What Explain says applies, narrowed by each stream's selection.
async fn expected_streams(
    admin: &mut ConfigClient,
    workspace: &str,
    event_type: &str,
    level: &str,
) -> BTreeSet<String> {
    let e = admin
        .explain(pb::ExplainRequest {
            workspace_id: workspace.into(),
        })
        .await
        .unwrap()
        .into_inner();
    e.effective
        .into_iter()
        .filter(|s| selects(s, event_type, level))
        .map(|s| s.id)
        .collect()
}

#[tokio::test]
async fn each_event_reaches_exactly_the_streams_explain_names() {
    let mut p = pipeline(async |a: &mut ConfigClient| seed(a).await).await;
    let js = p.nats.jetstream().await;
    let mut workspaces = vec!["ws-direct", "p1", "c1", "c2", "m1"];
    for phase in ["before", "governed", "after", "org-wide"] {
        match phase {
            "governed" | "after" => {
                set_enabled(&mut p.admin, "s-p1-all", phase == "governed")
                    .await
                    .unwrap();
            }
            // Automation HQ: an organization stream, then a workspace created after it.
            "org-wide" => {
                let mut org = s3_stream("s-org", "org-acme", Descendants, "conn");
                org.selection = Some(EventSelection {
                    event_types: ALL_TYPES.iter().map(|t| t.to_string()).collect(),
                    include_step_details: true,
                    ..Default::default()
                });
                create_stream(&mut p.admin, org).await.unwrap();
                put(&mut p.admin, node("ws-late", "org-acme", Workspace)).await;
                workspaces.push("ws-late");
            }
            _ => {}
        }
        // Events sent after the router reports the revision are routed by it.
        let revision = p.revision().await;
        p.router.wait_revision(revision).await;
        for &ws in &workspaces {
            let r = post(
                &p.gateway,
                examples_for(ws, phase),
                &[
                    ndjson(),
                    (
                        "traceparent",
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    ),
                ],
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
        p.wait_all_processed().await;

        let delivered = deliveries(&js).await;
        for &ws in &workspaces {
            for line in example_lines() {
                let example: serde_json::Value = serde_json::from_str(line).unwrap();
                let event_type = example["event_type"].as_str().unwrap();
                let id = format!("{phase}-{ws}-{event_type}");
                let level = example["data"]["level"].as_str().unwrap_or_default();
                let want = expected_streams(&mut p.admin, ws, event_type, level).await;
                let got: Vec<&Delivered> =
                    delivered.iter().filter(|d| d.event_id() == id).collect();
                let got_streams: BTreeSet<String> =
                    got.iter().map(|d| d.stream_id().to_owned()).collect();
                assert_eq!(got_streams, want, "{id}");
                assert_eq!(got.len(), want.len(), "{id}: one delivery per stream");
                for d in got {
                    check_delivery(d, &id, ws, event_type, &example);
                }
            }
        }
    }
    // The phases really routed differently.
    let delivered = deliveries(&js).await;
    let to = |stream: &str| delivered.iter().filter(|d| d.stream_id() == stream).count();
    assert!(to("s-p1-all") > 0 && to("s-c1") > 0 && to("s-oem") > 0 && to("s-ws") > 0);
    // The managed workspace only ever streamed through a governing ancestor.
    let managed: BTreeSet<&str> = delivered
        .iter()
        .filter(|d| d.header(h::WORKSPACE_ID) == "m1")
        .map(|d| d.stream_id())
        .collect();
    assert_eq!(managed, BTreeSet::from(["s-org", "s-p1-all"]));
    assert!(
        delivered
            .iter()
            .any(|d| d.header(h::WORKSPACE_ID) == "ws-late" && d.stream_id() == "s-org")
    );
}

fn check_delivery(
    d: &Delivered,
    id: &str,
    ws: &str,
    event_type: &str,
    example: &serde_json::Value,
) {
    let stream = d.stream_id();
    // The subject and the de-duplication key name the stream by its uid, never by its
    // reusable id.
    let key = d
        .subject
        .strip_prefix("audit.deliver.s3.")
        .unwrap_or_else(|| panic!("{}", d.subject));
    assert!(
        key.len() == 32 && key.chars().all(|c| c.is_ascii_hexdigit()),
        "{key}"
    );
    assert_eq!(d.header(h::MSG_ID), format!("{id}.{key}"));
    assert_eq!(d.header(h::WORKSPACE_ID), ws);
    assert_eq!(
        d.header(h::ORG_ID),
        "org-acme",
        "from the directory, not the envelope"
    );
    assert_eq!(d.header(h::EVENT_TYPE), event_type);
    assert_eq!(
        d.header(h::OCCURRED_AT),
        example["occurred_at"].as_str().unwrap()
    );
    assert_eq!(
        d.header(h::TRACEPARENT),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    // The log message: the event's data, enriched, plus `audit`.
    let message = if stream == "s-c1" {
        assert_eq!(d.body["source"], "auditstream");
        assert!(d.body["now_utc_micro"].as_u64().is_some());
        serde_json::from_str(d.body["log_message_str"].as_str().unwrap()).unwrap()
    } else {
        d.body.clone()
    };
    assert_eq!(message["audit"]["event_id"], id);
    assert_eq!(message["audit"]["org_id"], "org-acme");
    assert_eq!(message["audit"]["workspace_id"], ws);
    assert_eq!(message["audit"]["event_type"], event_type);
    let external = if ws == "c1" {
        serde_json::json!("INI-001")
    } else {
        serde_json::Value::Null
    };
    match event_type {
        "job_status" | "job_details" => {
            // Every workspace of this tree is its own account (a customer node, the
            // partner's admin workspace, a workspace under the organization): the directory
            // names it, whatever the producer sent (1234 in the example).
            assert_eq!(message["context"]["user_id"], ws, "the directory's account");
            assert_eq!(message["context"]["user_external_id"], external);
        }
        "user_activity" => {
            assert_eq!(message["team"]["id"], ws);
            assert_eq!(message["team"]["external_id"], external);
            assert_eq!(message["user"]["id"], 991);
            assert_eq!(message["user"]["external_id"], serde_json::Value::Null);
        }
        _ => {}
    }
    if event_type == "job_details" {
        // s-c1 excludes step details; the others include them.
        assert_eq!(message.get("lines").is_some(), stream != "s-c1", "{stream}");
    }
    for (k, v) in example["data"].as_object().unwrap() {
        if !["context", "team", "user", "lines"].contains(&k.as_str()) {
            assert_eq!(&message[k], v, "{k} carried unchanged");
        }
    }
}

#[tokio::test]
async fn unknown_workspaces_are_parked_not_delivered() {
    let p = pipeline(async |a: &mut ConfigClient| seed(a).await).await;
    let js = p.nats.jetstream().await;
    publish_ingest(
        &js,
        "lost-1",
        "api_platform",
        "org-acme",
        "ws-nowhere",
        "{}",
    )
    .await;
    publish_ingest(
        &js,
        "found-1",
        "api_platform",
        "org-acme",
        "ws-direct",
        "{}",
    )
    .await;
    p.wait_all_processed().await;
    // Parked until the directory knows the workspace (router_dead_letters.rs), not dropped.
    assert_eq!(
        p.router
            .metric("auditstream_router_events_parked_total")
            .await,
        1.0
    );
    // (The config service's own self-audit events are routed too; look at ours only.)
    let ids: Vec<String> = deliveries(&js)
        .await
        .iter()
        .filter(|d| d.header(h::EVENT_TYPE) == "api_platform")
        .map(|d| d.event_id().to_owned())
        .collect();
    assert_eq!(ids, vec!["found-1"]);
}

#[tokio::test]
async fn routing_survives_a_config_service_outage_and_resyncs_after_a_missed_revision() {
    let mut p = pipeline(async |a: &mut ConfigClient| seed(a).await).await;
    let js = p.nats.jetstream().await;
    let revision = p.revision().await;
    p.router.wait_revision(revision).await;
    let snapshots = p.router.metric("auditstream_router_config_snapshots").await;

    // A revision far ahead, signed with the config service's own feed key (as if the router
    // had missed some): it notices the gap and loads a fresh snapshot.
    let ahead = pb::ConfigChange {
        revision: revision + 10,
        change: Some(pb::config_change::Change::StreamDeleted("s-ws".into())),
    };
    let signer = p.config.as_ref().unwrap().feed_signer().await;
    let (payload, signature) = signer.sign(&ahead);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(auditstream_bus::headers::SIGNATURE, signature.as_str());
    js.publish_with_headers(
        auditstream_bus::subjects::CONFIG_CHANGES,
        headers,
        payload.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while p.router.metric("auditstream_router_config_snapshots").await <= snapshots {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no resync after a gap"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

    // Config service gone: routing goes on with the last configuration.
    p.config.take().unwrap().stop().await.unwrap();
    publish_ingest(
        &js,
        "during-outage",
        "api_platform",
        "org-acme",
        "ws-direct",
        "{}",
    )
    .await;
    p.wait_all_processed().await;
    let delivered: Vec<Delivered> = deliveries(&js)
        .await
        .into_iter()
        .filter(|d| d.event_id() == "during-outage")
        .collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].stream_id(),
        "s-ws",
        "the forged deletion was not applied"
    );
}

#[tokio::test]
async fn two_replicas_share_the_work_without_loss() {
    let p = pipeline(async |a: &mut ConfigClient| seed(a).await).await;
    let js = p.nats.jetstream().await;
    let config_url = p.config.as_ref().unwrap().url();
    let mut second_config = test_router_config(&p.nats.url(), &config_url);
    second_config.consumer.batch = 20;
    let second = RouterHarness::start(second_config).await;
    let n = 3000;
    for i in 0..n {
        publish_ingest(
            &js,
            &format!("r-{i}"),
            "api_platform",
            "org-acme",
            "ws-direct",
            "{}",
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let (a, b) = loop {
        let a = p
            .router
            .metric("auditstream_router_events_processed_total")
            .await;
        let b = second
            .metric("auditstream_router_events_processed_total")
            .await;
        if a + b >= n as f64 {
            break (a, b);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processed {a} + {b} of {n}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(a > 0.0 && b > 0.0, "both replicas worked: {a} and {b}");
    let mut per_event: BTreeMap<String, usize> = BTreeMap::new();
    for d in deliveries(&js)
        .await
        .iter()
        .filter(|d| d.event_id().starts_with("r-"))
    {
        *per_event.entry(d.event_id().to_owned()).or_default() += 1;
    }
    assert_eq!(per_event.len(), n, "every event delivered");
}

/// Deliveries of one stream that are routed together travel as one pack; `pack.max_events
/// = 1` turns that off. Either way every event reaches its stream with its own headers
/// (`Nats-Msg-Id = <event>.<stream>`), so sinks unpack and settle events one by one.
#[tokio::test]
async fn deliveries_routed_together_are_packed_per_stream() {
    let Pipeline {
        nats,
        config,
        router,
        ..
    } = pipeline(async |a: &mut ConfigClient| seed(a).await).await;
    router.stop().await.unwrap();
    let js = nats.jetstream().await;
    let config_url = config.as_ref().unwrap().url();
    let admin = config
        .as_ref()
        .unwrap()
        .client_as(auditstream_config_service::authz::Role::PlatformAdmin, None)
        .await;
    let key = common::stream_key(&admin, "s-ws").await;
    let subject = format!("audit.deliver.s3.{key}");
    let n = 400;
    for (round, max_events) in [(0, 1usize), (1, 100)] {
        // Published before the router runs, so it finds them ready together.
        for i in 0..n {
            let id = format!("pk{round}-{i}");
            publish_ingest(&js, &id, "api_platform", "org-acme", "ws-direct", "{}").await;
        }
        let mut cfg = test_router_config(&nats.url(), &config_url);
        cfg.pack.max_events = max_events;
        let r = RouterHarness::start(cfg).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let prefix = format!("pk{round}-");
        let delivered = loop {
            let delivered: Vec<Delivered> = deliveries(&js)
                .await
                .into_iter()
                .filter(|d| d.event_id().starts_with(&prefix))
                .collect();
            if delivered.len() >= n {
                break delivered;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: {} of {n} delivered",
                delivered.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let ids: BTreeSet<&str> = delivered.iter().map(|d| d.event_id()).collect();
        assert_eq!(ids.len(), n, "round {round}: each event once");
        for d in &delivered {
            assert_eq!(d.subject, subject);
            assert_eq!(d.stream_id(), "s-ws");
            assert_eq!(d.header(h::MSG_ID), format!("{}.{key}", d.event_id()));
            assert_eq!(d.body["audit"]["event_id"], d.event_id());
        }
        // The messages that carry this round's events.
        let this_round = auditstream_testkit::read_stream(&js, auditstream_bus::topology::DELIVER)
            .await
            .iter()
            .filter(|m| {
                opened(Some(&m.headers), &m.payload).iter().any(|(h, _)| {
                    h.get(h::EVENT_ID)
                        .is_some_and(|v| v.as_str().starts_with(&prefix))
                })
            })
            .count();
        if max_events == 1 {
            assert_eq!(this_round, n, "one message per delivery");
        } else {
            assert!(
                this_round <= n / 4,
                "{n} deliveries ready together took {this_round} messages"
            );
            assert!(
                r.metric("auditstream_router_deliver_messages_total").await
                    < r.metric("auditstream_router_deliveries_total").await
            );
        }
        r.stop().await.unwrap();
    }
}

/// The gateway packs the events of a request whose ids it assigned; the router takes each
/// event of a pack on its own: routed, or parked, and the pack acked once.
#[tokio::test]
async fn packed_ingest_events_are_routed_one_by_one() {
    let p = pipeline(async |a: &mut ConfigClient| seed(a).await).await;
    let js = p.nats.jetstream().await;
    let body: Vec<String> = (0..10)
        .map(|n| {
            let ws = if n % 5 == 4 { "ws-nowhere" } else { "ws-direct" };
            format!(
                r#"{{"event_type":"api_platform","occurred_at":"2026-11-21T10:17:00Z","org_id":"org-acme","workspace_id":"{ws}","data":{{"n":{n}}}}}"#
            )
        })
        .collect();
    let r = post(&p.gateway, body.join("\n"), &[ndjson()]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ids: Vec<String> = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    p.wait_all_processed().await;
    // Routed and acked, the pack left AUDIT_INGEST and is kept in AUDIT_HISTORY.
    let packs = auditstream_testkit::read_stream(&js, auditstream_bus::topology::HISTORY)
        .await
        .into_iter()
        .filter(|m| m.subject.as_str() == "audit.history.org-acme.pack")
        .count();
    assert_eq!(packs, 1, "the request's ten events in one message");
    // The pack's two events of an unknown workspace are parked one by one.
    assert_eq!(
        p.router
            .metric("auditstream_router_events_parked_total")
            .await,
        2.0
    );
    let mut delivered: Vec<String> = deliveries(&js)
        .await
        .iter()
        .filter(|d| d.header(h::EVENT_TYPE) == "api_platform")
        .map(|d| d.event_id().to_owned())
        .collect();
    delivered.sort();
    let mut want: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(n, _)| n % 5 != 4)
        .map(|(_, id)| id.clone())
        .collect();
    want.sort();
    assert_eq!(delivered, want);
}
