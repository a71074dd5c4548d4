//! Tenant isolation under load: a random tenant tree with random streams (seeded, so a
//! failure can be replayed), 100 000 events through the gateway and router, and every event
//! is found at exactly the streams `Explain` names for its workspace (narrowed by each
//! stream's selection) — at no other organization's, no disabled one, no sibling's — and at
//! each of them once. Some events name a workspace of another organization than the one
//! they are sent for (never delivered, counted), and some producer ids are used in two
//! organizations at once (two events, each delivered).

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
                nodes.push(customer.clone());
                for w in 0..rng.random_range(0..3) {
                    let ws = format!("{customer}-ws{w}");
                    put(admin, node(&ws, &customer, NodeKind::Workspace)).await;
                    nodes.push(ws);
                }
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
    let orgs: Vec<&String> = tree.values().collect::<BTreeSet<_>>().into_iter().collect();
    // Keyed by (organization, id): the same producer id in two organizations is two events.
    let mut sent: BTreeMap<(String, String), (String, String, String)> = BTreeMap::new();
    // Accepted for an organization that is not their workspace's: never delivered.
    let mut forged: BTreeSet<String> = BTreeSet::new();
    let event = |id: &str, ws: &str, org: &str, rng: &mut StdRng| {
        let event_type = *TYPES.choose(rng).unwrap();
        let mut v = examples[event_type].clone();
        v["id"] = id.into();
        v["workspace_id"] = ws.into();
        v["org_id"] = org.into();
        let level = if event_type == "log_event" {
            let level = *LEVELS.choose(rng).unwrap();
            v["data"]["level"] = level.into();
            level
        } else {
            ""
        };
        (v.to_string(), event_type.to_owned(), level.to_owned())
    };
    let mut refused_at_gateway = 0;
    for batch in 0..EVENTS / 2000 {
        let mut body = String::new();
        // Per line of the request: whether it is forged.
        let mut is_forged = Vec::new();
        for i in 0..2000 {
            let ws = *workspaces.choose(&mut rng).unwrap();
            let org = &tree[ws];
            let roll: f64 = rng.random();
            if roll < 0.03 {
                // A producer of another organization naming this workspace.
                let other = *orgs
                    .iter()
                    .filter(|o| **o != org)
                    .collect::<Vec<_>>()
                    .choose(&mut rng)
                    .unwrap();
                let id = format!("forged-{batch}-{i}");
                let (line, _, _) = event(&id, ws, other, &mut rng);
                body.push_str(&line);
                body.push('\n');
                forged.insert(id);
                is_forged.push(true);
                continue;
            }
            // Mostly unique ids; some shared with an event of another organization in the
            // same request (ids like `evt-0001` are what unrelated producers send).
            let id = if roll < 0.06 {
                format!("shared-{batch}-{}", i % 50)
            } else {
                format!("iso-{batch}-{i}")
            };
            if sent.contains_key(&(org.clone(), id.clone())) {
                continue; // the same id twice in one organization: the property is per org
            }
            let (line, event_type, level) = event(&id, ws, org, &mut rng);
            body.push_str(&line);
            body.push('\n');
            is_forged.push(false);
            sent.insert((org.clone(), id), (ws.clone(), event_type, level));
        }
        let r = post(&p.gateway, body, &[ndjson()]).await;
        let results = r.body["results"]
            .as_array()
            .unwrap_or_else(|| panic!("{:?}", r.body));
        assert_eq!(results.len(), is_forged.len());
        for (item, forged) in results.iter().zip(&is_forged) {
            match (*forged, item["status"].as_str()) {
                (_, Some("accepted")) => {}
                (true, Some("rejected")) => refused_at_gateway += 1,
                _ => panic!("{item}"),
            }
        }
    }
    let shared_across_orgs = sent
        .keys()
        .filter(|(_, id)| id.starts_with("shared-"))
        .fold(BTreeMap::<&str, usize>::new(), |mut m, (_, id)| {
            *m.entry(id).or_default() += 1;
            m
        })
        .values()
        .filter(|n| **n > 1)
        .count();
    assert!(shared_across_orgs > 100, "{shared_across_orgs}");
    // Everything in AUDIT_INGEST routed: these events and the config service's self-audit.
    p.wait_all_processed_within(Duration::from_secs(300)).await;

    let js = p.nats.jetstream().await;
    let mut got: BTreeMap<(String, String), BTreeMap<String, usize>> = BTreeMap::new();
    for d in deliveries(&js).await {
        let id = d.event_id();
        assert!(
            !forged.contains(id),
            "forged event {id} was delivered to {}",
            d.stream_id()
        );
        if !id.starts_with("iso-") && !id.starts_with("shared-") {
            continue; // the config service's self-audit events
        }
        // The delivery carries the event's own tenant, whatever stream it is for.
        let key = (d.header(h::ORG_ID).to_owned(), id.to_owned());
        let (ws, _, _) = sent
            .get(&key)
            .unwrap_or_else(|| panic!("delivery of an event never sent: {key:?}"));
        assert_eq!(d.header(h::WORKSPACE_ID), ws, "{id}");
        *got.entry(key)
            .or_default()
            .entry(d.stream_id().to_owned())
            .or_default() += 1;
    }
    let mut want_by_ws = BTreeMap::new();
    for ws in tree.keys() {
        want_by_ws.insert(ws.clone(), expected(&mut p.admin, ws).await);
    }
    let (mut deliveries_checked, mut without_stream) = (0, 0);
    for ((org, id), (ws, event_type, level)) in &sent {
        let want = &want_by_ws[ws][&(event_type.clone(), level.clone())];
        let streams = got.remove(&(org.clone(), id.clone())).unwrap_or_default();
        let have: BTreeSet<String> = streams.keys().cloned().collect();
        assert_eq!(&have, want, "{id} ({ws}, {event_type} {level})");
        assert!(streams.values().all(|n| *n == 1), "{id}: {streams:?}");
        // Every stream it reached sits in its own organization's tree (node ids start with
        // their organization's, streams are `s-<node>`).
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
        without_stream > 0 && without_stream < sent.len(),
        "{without_stream}"
    );
    // The forged events were counted as refused (by the router, or the gateway per item).
    let refused = p
        .router
        .metric(r#"auditstream_router_events_unroutable_total{reason="org_mismatch"}"#)
        .await as usize;
    assert_eq!(refused + refused_at_gateway, forged.len());
    assert!(forged.len() > 1000, "{}", forged.len());
    println!(
        "{} workspaces in {} organizations, {} events ({} forged, {shared_across_orgs} ids shared across organizations), {deliveries_checked} deliveries, {without_stream} events for no stream",
        tree.len(),
        orgs.len(),
        sent.len() + forged.len(),
        forged.len(),
    );
}
