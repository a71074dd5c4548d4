//! Tenant isolation under load: a random tenant tree with random streams (seeded, so a
//! failure can be replayed), 100 000 events through the gateway and router, and every event
//! is found at exactly the streams `Explain` names for its workspace (narrowed by each
//! stream's selection) — at no other organization's, no disabled one, no sibling's — and at
//! each of them once.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use auditstream_bus::headers as h;
use auditstream_proto::v1::{self as pb, AppliesTo, EventSelection, NodeKind};
use auditstream_testkit::ConfigClient;
use common::{config::*, router::*, *};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng, seq::IndexedRandom as _};

const EVENTS: usize = 100_000;
const SEED: u64 = 20261123;
const TYPES: [&str; 6] = [
    "job_status",
    "job_details",
    "user_activity",
    "api_platform",
    "log_event",
    "genie_conversation",
];
const LEVELS: [&str; 4] = ["debug", "info", "warn", "error"];

/// A random forest: organizations with direct workspaces and partners, partners with
/// customers, some of them managed. Returns the nodes events can be sent for (everything
/// but the organizations) and the organization of each.
async fn random_tree(admin: &mut ConfigClient, rng: &mut StdRng) -> BTreeMap<String, String> {
    let mut workspaces = BTreeMap::new();
    let mut streams = 0;
    for o in 0..4 {
        let org = format!("org-{o}");
        put(admin, node(&org, "", NodeKind::Organization)).await;
        create_connection(admin, s3_connection(&format!("conn-{o}"), &org, SECRET)).await;
        let mut nodes = vec![org.clone()];
        for w in 0..rng.random_range(1..4) {
            let ws = format!("{org}-ws-{w}");
            put(admin, node(&ws, &org, NodeKind::Workspace)).await;
            nodes.push(ws);
        }
        for p in 0..rng.random_range(1..4) {
            let partner = format!("{org}-p{p}");
            put(admin, node(&partner, &org, NodeKind::Partner)).await;
            nodes.push(partner.clone());
            for c in 0..rng.random_range(0..4) {
                let customer = format!("{partner}-c{c}");
                put(admin, node(&customer, &partner, NodeKind::Customer)).await;
                nodes.push(customer);
            }
            if rng.random_bool(0.5) {
                let managed = format!("{partner}-m");
                put(
                    admin,
                    pb::Node {
                        managed: true,
                        ..node(&managed, &partner, NodeKind::Customer)
                    },
                )
                .await;
                nodes.push(managed);
            }
        }
        // Streams on most nodes, the organization included, with random scope,
        // selection and state; children first, because a node an ancestor governs (an
        // enabled stream for its descendants) takes no new stream of its own.
        for n in nodes.iter().rev() {
            if !rng.random_bool(0.8) {
                continue;
            }
            let applies_to = if rng.random_bool(0.5) {
                AppliesTo::Descendants
            } else {
                AppliesTo::SelfOnly
            };
            let mut stream = s3_stream(&format!("s-{n}"), n, applies_to, &format!("conn-{o}"));
            let mut types: Vec<String> = TYPES
                .iter()
                .filter(|_| rng.random_bool(0.75))
                .map(|t| t.to_string())
                .collect();
            if types.is_empty() {
                types.push(TYPES.choose(rng).unwrap().to_string());
            }
            let log_levels = if rng.random_bool(0.5) {
                vec![]
            } else {
                LEVELS
                    .iter()
                    .filter(|_| rng.random_bool(0.5))
                    .map(|l| l.to_string())
                    .collect()
            };
            stream.selection = Some(EventSelection {
                event_types: types,
                include_step_details: true,
                log_levels,
                ..Default::default()
            });
            stream.enabled = rng.random_bool(0.8);
            match create_stream(admin, stream).await {
                Ok(_) => streams += 1,
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {}
                Err(s) => panic!("stream on {n}: {s}"),
            }
        }
        for n in nodes.into_iter().skip(1) {
            workspaces.insert(n, org.clone());
        }
    }
    assert!(streams >= 8, "the seed made only {streams} streams");
    workspaces
}

/// What Explain says applies to `workspace`, narrowed by each stream's selection.
async fn expected(
    admin: &mut ConfigClient,
    workspace: &str,
) -> BTreeMap<(String, String), BTreeSet<String>> {
    let e = admin
        .explain(pb::ExplainRequest {
            workspace_id: workspace.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = BTreeMap::new();
    for event_type in TYPES {
        let levels: &[&str] = if event_type == "log_event" {
            &LEVELS
        } else {
            &[""]
        };
        for level in levels {
            let streams = e
                .effective
                .iter()
                .filter(|s| selects(s, event_type, level))
                .map(|s| s.id.clone())
                .collect();
            out.insert((event_type.to_owned(), level.to_string()), streams);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_reaches_only_the_streams_explain_names_for_its_workspace() {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut tree = BTreeMap::new();
    let mut p = pipeline_sized(
        async |a: &mut ConfigClient| tree = random_tree(a, &mut rng).await,
        Some(512 << 20),
    )
    .await;
    let revision = p.revision().await;
    p.router.wait_revision(revision).await;

    // One example per type, re-addressed per event; log events get a random level.
    let examples: BTreeMap<String, serde_json::Value> = example_lines()
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["event_type"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    let workspaces: Vec<&String> = tree.keys().collect();
    let mut sent: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for batch in 0..EVENTS / 2000 {
        let mut body = String::new();
        for i in 0..2000 {
            let id = format!("iso-{batch}-{i}");
            let ws = *workspaces.choose(&mut rng).unwrap();
            let event_type = *TYPES.choose(&mut rng).unwrap();
            let mut v = examples[event_type].clone();
            v["id"] = id.clone().into();
            v["workspace_id"] = ws.clone().into();
            v["org_id"] = tree[ws].clone().into();
            let level = if event_type == "log_event" {
                let level = *LEVELS.choose(&mut rng).unwrap();
                v["data"]["level"] = level.into();
                level
            } else {
                ""
            };
            body.push_str(&v.to_string());
            body.push('\n');
            sent.insert(id, (ws.clone(), event_type.to_owned(), level.to_owned()));
        }
        let r = post(&p.gateway, body, &[ndjson()]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Everything in AUDIT_INGEST routed: these events and the config service's self-audit.
    p.wait_all_processed_within(Duration::from_secs(300)).await;

    let js = p.nats.jetstream().await;
    let mut got: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for d in deliveries(&js).await {
        let id = d.event_id();
        if !id.starts_with("iso-") {
            continue; // the config service's self-audit events
        }
        // The delivery carries the event's own tenant, whatever stream it is for.
        let (ws, _, _) = &sent[id];
        assert_eq!(d.header(h::WORKSPACE_ID), ws, "{id}");
        *got.entry(id.to_owned())
            .or_default()
            .entry(d.stream_id().to_owned())
            .or_default() += 1;
    }
    let mut want_by_ws = BTreeMap::new();
    for ws in tree.keys() {
        want_by_ws.insert(ws.clone(), expected(&mut p.admin, ws).await);
    }
    let (mut deliveries_checked, mut without_stream) = (0, 0);
    for (id, (ws, event_type, level)) in &sent {
        let want = &want_by_ws[ws][&(event_type.clone(), level.clone())];
        let streams = got.remove(id).unwrap_or_default();
        let have: BTreeSet<String> = streams.keys().cloned().collect();
        assert_eq!(&have, want, "{id} ({ws}, {event_type} {level})");
        assert!(streams.values().all(|n| *n == 1), "{id}: {streams:?}");
        // Every stream it reached sits in its own organization's tree (node ids start with
        // their organization's, streams are `s-<node>`).
        let org = &tree[ws];
        for stream in streams.keys() {
            assert!(
                stream.starts_with(&format!("s-{org}")),
                "{id} of {org} reached {stream}"
            );
        }
        deliveries_checked += streams.len();
        without_stream += usize::from(want.is_empty());
    }
    assert!(
        got.is_empty(),
        "deliveries of unknown events: {:?}",
        got.keys().take(5)
    );
    // The random tree really exercised routing both ways.
    assert!(deliveries_checked > EVENTS / 10, "{deliveries_checked}");
    assert!(
        without_stream > 0 && without_stream < EVENTS,
        "{without_stream}"
    );
    println!(
        "{} workspaces in {} organizations, {EVENTS} events, {deliveries_checked} deliveries, {without_stream} events for no stream",
        tree.len(),
        tree.values().collect::<BTreeSet<_>>().len()
    );
}
