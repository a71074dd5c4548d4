//! Tenant isolation at the seams between organizations and between a stream and the stream
//! that once had its id (issue 19): a producer of one organization cannot write into
//! another's streams, one organization's ids never suppress another's events, a re-created
//! stream id never reaches the deleted stream's destination, backlog or dead letters, and
//! events name the customer account the directory places their workspace under.
//!
//! Everything is real: nats-server, config service (SQLite), gateway, router, sink-http and
//! local HTTP receivers; what arrived is counted by event id at the receivers and in
//! AUDIT_DELIVER.

mod common;

use std::{collections::HashSet, time::Duration};

use auditstream_bus::headers as h;
use auditstream_config_service::authz::Role;
use auditstream_gateway::auth::ProducerToken;
use auditstream_model::SinkType;
use auditstream_proto::v1::{self as pb, NodeKind::*};
use auditstream_sink_http::HttpSink;
use auditstream_testkit::{
    Behavior, ConfigClient, ConfigHarness, Database, GatewayHarness, HttpReceiver, NatsServer,
    RouterHarness, SinkHarness, test_gateway_config, test_router_config, test_sink_config,
};
use common::{config::*, router::*, sink::*, *};
use serde_json::{Value, json};

const SCOPED_TOKEN: &str = "producer-of-org-a-0123456789";
const MINUTE: Duration = Duration::from_secs(60);

/// Two organizations, each with one workspace whose `user_activity` goes to a receiver of
/// its own: `org-a/ws-a` → stream `s-a` → `receivers[0]`, `org-b/ws-b` → `s-b` →
/// `receivers[1]`. The gateway also takes [`SCOPED_TOKEN`], scoped to `org-a`.
struct TwoOrgs {
    nats: NatsServer,
    config: ConfigHarness,
    gateway: GatewayHarness,
    router: RouterHarness,
    sink: Option<SinkHarness>,
    receivers: Vec<HttpReceiver>,
    admin: ConfigClient,
}

async fn two_orgs() -> TwoOrgs {
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.http.allow_insecure_http = true;
        c.http.allowed_networks = vec!["127.0.0.0/8".into()];
    })
    .await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    let mut receivers = Vec::new();
    for org in ["a", "b"] {
        let receiver = HttpReceiver::start().await;
        put(&mut admin, node(&format!("org-{org}"), "", Organization)).await;
        put(
            &mut admin,
            node(&format!("ws-{org}"), &format!("org-{org}"), Workspace),
        )
        .await;
        create_connection(
            &mut admin,
            http_connection(
                &format!("c-{org}"),
                &format!("org-{org}"),
                GOOD_TOKEN,
                &receiver.url("/"),
            ),
        )
        .await;
        create_stream(
            &mut admin,
            http_stream(
                &format!("s-{org}"),
                &format!("ws-{org}"),
                &format!("c-{org}"),
                &receiver.url(&format!("/intake/{org}")),
            ),
        )
        .await
        .unwrap();
        receivers.push(receiver);
    }
    let mut gateway_config = test_gateway_config(&nats.url());
    gateway_config.auth.tokens.push(ProducerToken {
        token: auditstream_telemetry::Secret::new(SCOPED_TOKEN),
        orgs: vec!["org-a".into()],
        name: "producer-a".into(),
    });
    let gateway = GatewayHarness::start(gateway_config).await;
    let router = RouterHarness::start(test_router_config(&nats.url(), &config.url())).await;
    TwoOrgs {
        nats,
        config,
        gateway,
        router,
        sink: None,
        receivers,
        admin,
    }
}

impl TwoOrgs {
    async fn start_sink(&mut self) {
        let mut c = test_sink_config(SinkType::Http, &self.nats.url(), &self.config.url());
        c.sink = loopback_http();
        let sink = HttpSink::new(c.sink.clone()).unwrap();
        self.sink = Some(SinkHarness::start(sink, c).await);
    }

    /// Waits until the router settled everything in AUDIT_INGEST.
    async fn wait_routed(&self) {
        wait_router_idle(&self.nats, MINUTE).await;
    }
}

/// A `user_activity` envelope from the examples, re-addressed.
fn activity(id: &str, org: &str, workspace: &str) -> Value {
    let mut v: Value = example_lines()
        .into_iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["event_type"] == "user_activity")
        .unwrap();
    v["id"] = id.into();
    v["org_id"] = org.into();
    v["workspace_id"] = workspace.into();
    v
}

/// The ids a receiver accepted, without the config service's self-audit events (also
/// `user_activity`, with UUIDv7 ids the config service gives them).
fn ours(receiver: &HttpReceiver) -> Vec<String> {
    receiver
        .accepted_ids()
        .into_iter()
        .filter(|id| uuid::Uuid::parse_str(id).is_err())
        .collect()
}

fn ndjson_body(events: &[Value]) -> String {
    events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `(stream id, event id)` of every delivery in AUDIT_DELIVER (but the config service's
/// self-audit events, see [`ours`]).
async fn delivered(p: &TwoOrgs) -> Vec<(String, String)> {
    let js = p.nats.jetstream().await;
    deliveries(&js)
        .await
        .iter()
        .filter(|d| uuid::Uuid::parse_str(d.event_id()).is_err())
        .map(|d| (d.stream_id().to_owned(), d.event_id().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_producer_of_one_organization_cannot_write_into_another() {
    let mut p = two_orgs().await;
    // One request: A's own event, then A's organization with B's workspace (the forgery),
    // then B's organization outright (refused by the token's scope at the gateway).
    let body = ndjson_body(&[
        activity("own-1", "org-a", "ws-a"),
        activity("forged-1", "org-a", "ws-b"),
        activity("foreign-1", "org-b", "ws-b"),
        activity("own-2", "org-a", "ws-a"),
    ]);
    let r = post_as(&p.gateway, Some(SCOPED_TOKEN), body, &[ndjson()]).await;
    let statuses: Vec<&str> = r.body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", r.body))
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses[2], "rejected", "{:?}", r.body);
    assert_eq!(
        (statuses[0], statuses[3]),
        ("accepted", "accepted"),
        "{:?}",
        r.body
    );
    p.wait_routed().await;
    // Nothing for B in AUDIT_DELIVER; A's events are there.
    let got = delivered(&p).await;
    assert!(
        got.iter().all(|(stream, _)| stream != "s-b"),
        "B's stream got {got:?}"
    );
    assert!(got.iter().all(|(_, id)| id != "forged-1"), "{got:?}");
    for id in ["own-1", "own-2"] {
        assert!(got.contains(&("s-a".into(), id.into())), "{id}: {got:?}");
    }
    // The refusal is counted: once, by the router, if the gateway let it through.
    let refused_at_gateway = statuses[1] == "rejected";
    let refused_by_router = p
        .router
        .metric(r#"auditstream_router_events_unroutable_total{reason="org_mismatch"}"#)
        .await;
    assert_eq!(
        refused_by_router,
        if refused_at_gateway { 0.0 } else { 1.0 },
        "{:?}",
        r.body
    );

    // And at the destinations: A's receiver gets A's events, B's receiver nothing.
    p.start_sink().await;
    let want: HashSet<String> = ["own-1", "own-2"].map(String::from).into();
    p.receivers[0].wait_for_ids(&want, MINUTE).await;
    assert_eq!(
        ours(&p.receivers[0]).into_iter().collect::<HashSet<_>>(),
        want
    );
    assert!(
        ours(&p.receivers[1]).is_empty(),
        "{:?}",
        ours(&p.receivers[1])
    );
}

#[tokio::test]
async fn the_same_producer_id_in_two_organizations_is_two_events() {
    let p = two_orgs().await;
    // `evt-0001` is what two unrelated producers both send.
    for (org, ws) in [("org-a", "ws-a"), ("org-b", "ws-b")] {
        let r = post(
            &p.gateway,
            ndjson_body(&[activity("evt-0001", org, ws)]),
            &[ndjson()],
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(
            r.body["results"][0]["status"], "accepted",
            "{org}: {:?}",
            r.body
        );
    }
    // Twice from one organization: stored once, answered duplicate.
    let r = post(
        &p.gateway,
        ndjson_body(&[activity("evt-0001", "org-a", "ws-a")]),
        &[ndjson()],
    )
    .await;
    assert_eq!(r.body["results"][0]["status"], "duplicate", "{:?}", r.body);
    p.wait_routed().await;
    let mine: Vec<(String, String)> = delivered(&p)
        .await
        .into_iter()
        .filter(|(_, id)| id == "evt-0001")
        .collect();
    assert_eq!(
        mine,
        vec![
            ("s-a".to_owned(), "evt-0001".to_owned()),
            ("s-b".to_owned(), "evt-0001".to_owned())
        ]
    );
}

/// Stream `s-a` re-created under the same id with another connection and destination.
async fn recreate_s_a(p: &mut TwoOrgs, connection: &str, url: &str) -> pb::Stream {
    create_connection(
        &mut p.admin,
        http_connection(connection, "org-a", GOOD_TOKEN, url),
    )
    .await;
    create_stream(&mut p.admin, http_stream("s-a", "ws-a", connection, url))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_re_created_stream_id_never_reaches_the_old_stream() {
    let mut p = two_orgs().await;
    p.start_sink().await;
    let old_uid = p
        .admin
        .get_stream(pb::GetStreamRequest { id: "s-a".into() })
        .await
        .unwrap()
        .into_inner()
        .uid;
    assert!(!old_uid.is_empty());

    // 1. Healthy: the old stream's destination has been built and cached by the sink.
    let r = post(
        &p.gateway,
        ndjson_body(&[activity("old-1", "org-a", "ws-a")]),
        &[ndjson()],
    )
    .await;
    assert_eq!(r.status, 200);
    p.receivers[0]
        .wait_for_ids(&["old-1".to_owned()].into(), MINUTE)
        .await;
    p.admin
        .delete_stream(pb::DeleteStreamRequest {
            id: "s-a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let second = HttpReceiver::start().await;
    let new = recreate_s_a(&mut p, "c-a2", &second.url("/intake/a2")).await;
    assert_ne!(new.uid, old_uid, "a new stream gets a new uid");
    let revision = new.revision;
    p.router.wait_revision(revision).await;
    let r = post(
        &p.gateway,
        ndjson_body(&[activity("new-1", "org-a", "ws-a")]),
        &[ndjson()],
    )
    .await;
    assert_eq!(r.status, 200);
    second
        .wait_for_ids(&["new-1".to_owned()].into(), MINUTE)
        .await;
    assert_eq!(ours(&p.receivers[0]), vec!["old-1".to_owned()]);

    // 2. The (re-created) stream's destination breaks: its events wait in its backlog, and
    // one is refused for good (DLQ). Deleting it now would strand them: refused.
    second.set_behavior(Behavior::RejectContaining {
        needle: "poison-1".into(),
        status: 400,
    });
    let r = post(
        &p.gateway,
        ndjson_body(&[activity("poison-1", "org-a", "ws-a")]),
        &[ndjson()],
    )
    .await;
    assert_eq!(r.status, 200);
    let deadline = tokio::time::Instant::now() + MINUTE;
    loop {
        let s = p
            .admin
            .get_status(pb::GetStatusRequest {
                stream_id: "s-a".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if s.dlq_depth == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = p
        .admin
        .delete_stream(pb::DeleteStreamRequest {
            id: "s-a".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("1 dead letter(s)") && err.message().contains("discard_pending"),
        "{}",
        err.message()
    );
    // With discard_pending it goes, and says what it purged.
    let deleted = p
        .admin
        .delete_stream(pb::DeleteStreamRequest {
            id: "s-a".into(),
            discard_pending: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (deleted.discarded_backlog, deleted.discarded_dead_letters),
        (0, 1)
    );

    // 3. Created once more: it starts empty and never sees the old dead letter.
    let third = HttpReceiver::start().await;
    let newest = recreate_s_a(&mut p, "c-a3", &third.url("/intake/a3")).await;
    p.router.wait_revision(newest.revision).await;
    let dead = p
        .admin
        .list_dead_letters(pb::ListDeadLettersRequest {
            stream_id: "s-a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dead.total, 0, "{dead:?}");
    let r = post(
        &p.gateway,
        ndjson_body(&[activity("newest-1", "org-a", "ws-a")]),
        &[ndjson()],
    )
    .await;
    assert_eq!(r.status, 200);
    third
        .wait_for_ids(&["newest-1".to_owned()].into(), MINUTE)
        .await;
    assert_eq!(ours(&third), vec!["newest-1".to_owned()]);
    assert_eq!(ours(&second), vec!["new-1".to_owned()]);
    assert_eq!(ours(&p.receivers[0]), vec!["old-1".to_owned()]);
}

/// The identification a delivery carries, per event type, for workspace `ws`.
fn identification(v: &Value) -> Value {
    match v["audit"]["event_type"].as_str().unwrap() {
        "user_activity" => {
            json!({"team": v["team"], "user": {"id": v["user"]["id"], "external_id": v["user"]["external_id"]}})
        }
        _ => {
            json!({"user_id": v["context"]["user_id"], "user_external_id": v["context"]["user_external_id"]})
        }
    }
}

#[tokio::test]
async fn events_name_the_customer_account_the_directory_places_them_under() {
    // organization → partner → customer (external id) → workspace; a customer that is its
    // own workspace; a customer without an external id; a workspace directly under the
    // organization; the partner's own admin workspace.
    let p = pipeline(async |a: &mut ConfigClient| {
        put(a, node("org", "", Organization)).await;
        put(a, node("p1", "org", Partner)).await;
        put(
            a,
            pb::Node {
                external_id: "INI-001".into(),
                ..node("c1", "p1", Customer)
            },
        )
        .await;
        put(a, node("c1-ws", "c1", Workspace)).await;
        put(a, node("c2", "p1", Customer)).await;
        put(a, node("ws-hq", "org", Workspace)).await;
        create_connection(a, s3_connection("conn", "org", SECRET)).await;
        let mut s = s3_stream("s-all", "org", pb::AppliesTo::Descendants, "conn");
        s.selection = Some(pb::EventSelection {
            event_types: vec!["user_activity".into(), "job_status".into()],
            ..Default::default()
        });
        create_stream(a, s).await.unwrap();
    })
    .await;
    let job: Value = example_lines()
        .into_iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["event_type"] == "job_status")
        .unwrap();
    let mut lines = Vec::new();
    for ws in ["c1-ws", "c1", "c2", "ws-hq", "p1"] {
        let mut a = activity(&format!("ua-{ws}"), "org", ws);
        // The producer claims another account: the directory decides.
        a["data"]["team"] = json!({"id": "forged-team", "external_id": "FORGED"});
        lines.push(a);
        let mut j = job.clone();
        j["id"] = format!("job-{ws}").into();
        j["org_id"] = "org".into();
        j["workspace_id"] = ws.into();
        j["data"]["context"]["user_id"] = "forged-account".into();
        lines.push(j);
    }
    let r = post(&p.gateway, ndjson_body(&lines), &[ndjson()]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    p.wait_all_processed().await;
    let js = p.nats.jetstream().await;
    let got: std::collections::BTreeMap<String, Value> = deliveries(&js)
        .await
        .into_iter()
        .filter(|d| {
            d.header(h::EVENT_ID).starts_with("ua-") || d.header(h::EVENT_ID).starts_with("job-")
        })
        .map(|d| (d.event_id().to_owned(), identification(&d.body)))
        .collect();
    let user = activity("x", "org", "x")["data"]["user"].clone();
    let member = json!({"id": user["id"], "external_id": user.get("external_id").cloned().unwrap_or(Value::Null)});
    let cases = [
        ("c1-ws", "c1", json!("INI-001")),
        ("c1", "c1", json!("INI-001")),
        ("c2", "c2", Value::Null),
        // No customer above: the workspace is the account.
        ("ws-hq", "ws-hq", Value::Null),
        ("p1", "p1", Value::Null),
    ];
    for (ws, account, external) in cases {
        assert_eq!(
            got[&format!("ua-{ws}")],
            json!({"team": {"id": account, "external_id": external}, "user": member}),
            "user_activity from {ws}"
        );
        assert_eq!(
            got[&format!("job-{ws}")],
            json!({"user_id": account, "user_external_id": external}),
            "job_status from {ws}"
        );
    }
}
