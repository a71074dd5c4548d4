//! Every ingest message terminates (issue 21, security review M6, M7, H4): events of a
//! workspace the directory does not know yet are parked and routed once it appears, or
//! dead-lettered after the parking window; an unknown pack version, an unreadable pack and a
//! delivery too large for NATS end in the router's dead letters (`audit.dlq.router.<org>`),
//! counted, while the events beside them are delivered once.

mod common;

use std::{collections::BTreeMap, time::Duration};

use async_nats::jetstream;
use auditstream_bus::{headers as h, publish_durable, subjects, topology};
use auditstream_config_service::authz::{Role, ServiceKind};
use auditstream_proto::v1::{self as pb, AppliesTo::*, EventSelection, NodeKind::*};
use auditstream_router::RouterConfig;
use auditstream_testkit::{
    ConfigClient, ConfigHarness, Database, NatsServer, RouterHarness, read_stream,
    test_router_config,
};
use common::{config::*, router::*};

/// nats-server, a config service with `org-p` (an organization-wide stream taking
/// `api_platform`) and `ws-known`, and a router configured by `tune`.
struct Setup {
    nats: NatsServer,
    _config: ConfigHarness,
    admin: ConfigClient,
    router: RouterHarness,
}

async fn setup(tune: impl FnOnce(&mut RouterConfig)) -> Setup {
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |_| {}).await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    tree(
        &mut admin,
        &[
            ("org-p", "", Organization),
            ("ws-known", "org-p", Workspace),
        ],
    )
    .await;
    create_connection(&mut admin, s3_connection("conn", "org-p", SECRET)).await;
    let mut stream = s3_stream("s-org", "org-p", Descendants, "conn");
    stream.selection = Some(EventSelection {
        event_types: vec!["api_platform".into()],
        ..Default::default()
    });
    create_stream(&mut admin, stream).await.unwrap();
    let mut c = test_router_config(&nats.url(), &config.url());
    tune(&mut c);
    let router = RouterHarness::start(c).await;
    Setup {
        nats,
        _config: config,
        admin,
        router,
    }
}

impl Setup {
    async fn wait_metric(&self, name: &str, at_least: f64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.router.metric(name).await;
            if v >= at_least {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} = {v}, waited for {at_least}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn dead_lettered(&self, reason: &str) -> f64 {
        self.router
            .metric(&format!(
                r#"auditstream_router_dead_lettered_total{{reason="{reason}"}}"#
            ))
            .await
    }
}

/// `api_platform` ids delivered, with how often.
async fn delivered(js: &jetstream::Context) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for d in deliveries(js).await {
        if d.header(h::EVENT_TYPE) == "api_platform" {
            *out.entry(d.event_id().to_owned()).or_default() += 1;
        }
    }
    out
}

/// The router's dead letters of `org`: (event id or "", error header).
async fn router_dead_letters(js: &jetstream::Context, org: &str) -> Vec<(String, String)> {
    let subject = subjects::router_dlq(org).unwrap();
    read_stream(js, topology::DLQ)
        .await
        .into_iter()
        .filter(|m| m.subject.as_str() == subject)
        .map(|m| {
            let get = |name: &str| {
                m.headers
                    .get(name)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            (get(h::EVENT_ID), get(h::ERROR))
        })
        .collect()
}

#[tokio::test]
async fn a_workspace_registered_30_s_after_its_first_events_gets_every_one_of_them() {
    let mut s = setup(|_| {}).await;
    let js = s.nats.jetstream().await;
    let first = tokio::time::Instant::now();
    for i in 0..5 {
        publish_ingest(
            &js,
            &format!("early-{i}"),
            "api_platform",
            "org-p",
            "ws-late",
            "{}",
        )
        .await;
    }
    s.wait_metric("auditstream_router_events_parked_total", 5.0)
        .await;
    wait_router_idle(&s.nats, Duration::from_secs(30)).await;
    assert!(delivered(&js).await.is_empty(), "nothing delivered yet");
    assert_eq!(
        s.router
            .metric(r#"auditstream_router_events_unroutable_total{reason="unknown_workspace"}"#)
            .await,
        0.0,
        "parked, not dropped"
    );

    // The directory learns of the workspace 30 s after its first events.
    tokio::time::sleep_until(first + Duration::from_secs(30)).await;
    put(&mut s.admin, node("ws-late", "org-p", Workspace)).await;
    s.wait_metric("auditstream_router_events_unparked_total", 5.0)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = delivered(&js).await;
        if got.len() == 5 {
            assert!(got.values().all(|n| *n == 1), "{got:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "delivered {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.wait_metric("auditstream_router_events_unparked_total", 5.0)
        .await;
    // The parked copies are gone once they were routed.
    let parked = js.get_stream(topology::PARKED).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while parked.get_info().await.unwrap().state.messages > 0 {
        assert!(tokio::time::Instant::now() < deadline, "parked copies left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.dead_lettered("unknown_workspace").await, 0.0);
}

#[tokio::test]
async fn events_parked_past_the_window_are_dead_lettered_with_their_reason_and_counted() {
    let mut s = setup(|c| c.park.max_age = Duration::from_secs(1)).await;
    let js = s.nats.jetstream().await;
    publish_ingest(&js, "lost-1", "api_platform", "org-p", "ws-never", "{}").await;
    publish_ingest(&js, "kept-1", "api_platform", "org-p", "ws-known", "{}").await;
    s.wait_metric(
        r#"auditstream_router_dead_lettered_total{reason="unknown_workspace"}"#,
        1.0,
    )
    .await;
    let letters = router_dead_letters(&js, "org-p").await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, "lost-1");
    assert!(
        letters[0]
            .1
            .starts_with("unknown_workspace: workspace ws-never was not in the directory"),
        "{letters:?}"
    );
    assert_eq!(
        delivered(&js).await,
        BTreeMap::from([("kept-1".to_owned(), 1)])
    );
    let parked = js.get_stream(topology::PARKED).await.unwrap();
    assert_eq!(parked.get_info().await.unwrap().state.messages, 0);

    // An operator lists the router's dead letters and, once the workspace exists, replays
    // them: the event is routed and delivered, and the dead letter is gone.
    let dir = tempfile::tempdir().unwrap();
    let listed: serde_json::Value = serde_json::from_str(
        &router_dlq(&s, dir.path(), &["list", "--org", "org-p", "--json"]).await,
    )
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["event_id"], "lost-1");
    assert_eq!(listed[0]["workspace_id"], "ws-never");
    assert!(
        listed[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("unknown_workspace: "),
        "{listed}"
    );
    put(&mut s.admin, node("ws-never", "org-p", Workspace)).await;
    let mut service = s._config.client_service(ServiceKind::Router).await;
    s.router
        .wait_revision(current_revision(&mut service).await)
        .await;
    let replayed = router_dlq(&s, dir.path(), &["replay", "--org", "org-p"]).await;
    assert_eq!(replayed.trim(), "replayed 1 router dead letter(s)");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !delivered(&js).await.contains_key("lost-1") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replayed event was not delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(router_dead_letters(&js, "org-p").await.is_empty());
}

/// `auditctl router-dlq <args>` in-process, as the config service's NATS user.
async fn router_dlq(s: &Setup, dir: &std::path::Path, args: &[&str]) -> String {
    let owner = auditstream_bus::Service::ConfigService;
    let file = dir.join("nats.toml");
    std::fs::write(
        &file,
        format!(
            "[nats]\nuser = \"{}\"\npassword = \"{}\"\n",
            owner.user(),
            auditstream_testkit::service_password(owner)
        ),
    )
    .unwrap();
    let url = s.nats.url();
    let mut argv = vec!["auditctl"];
    let json = args.contains(&"--json");
    if json {
        argv.push("--json");
    }
    argv.extend([
        "router-dlq",
        args[0],
        "--config",
        file.to_str().unwrap(),
        "--nats-url",
        &url,
    ]);
    argv.extend(args[1..].iter().filter(|a| **a != "--json"));
    let mut out = Vec::new();
    auditstream_cli::run_args(argv, &mut out)
        .await
        .unwrap_or_else(|e| panic!("auditctl router-dlq {args:?}: {e}"));
    String::from_utf8(out).unwrap()
}

/// Publishes an ingest message on `audit.ingest.org-p.pack` with `pack_header` and `body`.
async fn publish_pack(js: &jetstream::Context, id: &str, pack_header: &str, body: &'static [u8]) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(auditstream_bus::pack::PACK, pack_header);
    publish_durable(
        js,
        subjects::ingest_pack("org-p").unwrap(),
        id,
        headers,
        bytes::Bytes::from_static(body),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_unknown_pack_version_and_an_unreadable_pack_end_in_dead_letters_and_their_neighbours_arrive_once()
 {
    let s = setup(|c| c.consumer.max_deliver = 3).await;
    let js = s.nats.jetstream().await;
    publish_ingest(&js, "before", "api_platform", "org-p", "ws-known", "{}").await;
    publish_pack(&js, "future-pack", "99", b"from a later version").await;
    publish_pack(
        &js,
        "broken-pack",
        auditstream_bus::pack::VERSION,
        b"\xff\xff garbage",
    )
    .await;
    publish_ingest(&js, "after", "api_platform", "org-p", "ws-known", "{}").await;
    s.wait_metric(
        r#"auditstream_router_dead_lettered_total{reason="unknown_pack_version"}"#,
        1.0,
    )
    .await;
    s.wait_metric(
        r#"auditstream_router_dead_lettered_total{reason="malformed_pack"}"#,
        1.0,
    )
    .await;
    wait_router_idle(&s.nats, Duration::from_secs(30)).await;
    let letters = router_dead_letters(&js, "org-p").await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters.iter().any(|(_, e)| e.starts_with(
            "unknown_pack_version: pack format Some(\"99\") not read after 3 deliveries"
        )),
        "{letters:?}"
    );
    assert!(
        letters
            .iter()
            .any(|(_, e)| e.starts_with("malformed_pack: ")),
        "{letters:?}"
    );
    assert_eq!(
        delivered(&js).await,
        BTreeMap::from([("after".to_owned(), 1), ("before".to_owned(), 1)])
    );
    // Nothing is left holding an ack slot: the consumer is idle (checked above) and the
    // work queue is empty.
    assert_eq!(
        auditstream_testkit::stream_messages(&js, topology::INGEST).await,
        0,
        "AUDIT_INGEST is empty"
    );
}

#[tokio::test]
async fn a_delivery_too_large_for_nats_is_dead_lettered_with_its_event_and_the_other_streams_get_theirs()
 {
    let mut s = setup(|_| {}).await;
    // A second stream whose template copies the event twice (the most a template may): with
    // a 4.5 MiB event (the gateway would refuse it; the router still bounds what it gets) its
    // delivery is ~9 MiB, over the server's 8 MB max_payload.
    let mut big = s3_stream("s-big", "org-p", Descendants, "conn");
    big.selection = Some(EventSelection {
        event_types: vec!["api_platform".into()],
        ..Default::default()
    });
    big.template = "[{{{log_message}}}, {{{log_message}}}]".into();
    create_stream(&mut s.admin, big).await.unwrap();
    let mut service = s._config.client_service(ServiceKind::Router).await;
    s.router
        .wait_revision(current_revision(&mut service).await)
        .await;
    let js = s.nats.jetstream().await;
    let data = format!(r#"{{"blob":"{}"}}"#, "x".repeat(9 << 19));
    publish_ingest(&js, "huge", "api_platform", "org-p", "ws-known", &data).await;
    publish_ingest(&js, "small", "api_platform", "org-p", "ws-known", "{}").await;
    s.wait_metric(
        r#"auditstream_router_dead_lettered_total{reason="delivery_too_large"}"#,
        1.0,
    )
    .await;
    wait_router_idle(&s.nats, Duration::from_secs(30)).await;
    let letters = router_dead_letters(&js, "org-p").await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].0, "huge");
    assert!(
        letters[0]
            .1
            .starts_with("delivery_too_large: the delivery for stream s-big has"),
        "{letters:?}"
    );
    // `huge` reached s-org (its plain delivery fits), `small` both streams: once each.
    let mut per_stream = BTreeMap::new();
    for d in deliveries(&js).await {
        if d.header(h::EVENT_TYPE) == "api_platform" {
            *per_stream
                .entry((d.event_id().to_owned(), d.stream_id().to_owned()))
                .or_insert(0) += 1;
        }
    }
    let want: BTreeMap<(String, String), usize> =
        [("huge", "s-org"), ("small", "s-big"), ("small", "s-org")]
            .into_iter()
            .map(|(e, s)| ((e.to_owned(), s.to_owned()), 1))
            .collect();
    assert_eq!(per_stream, want);
}

async fn current_revision(service: &mut ConfigClient) -> u64 {
    service
        .get_routing_snapshot(pb::GetRoutingSnapshotRequest {})
        .await
        .unwrap()
        .into_inner()
        .revision
}
