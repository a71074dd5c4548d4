//! Micro-benchmark of the router's per-event work: `pipeline::route` (place the workspace,
//! resolve its effective streams, filter by each stream's selection, enrich the event once,
//! render it per stream), plus what a config revision costs (`RoutingTable::build`) and
//! `Template::compile`.
//!
//! Run: `make bench` (= `cargo bench -p auditstream-router --bench pipeline`, release
//! profile). No NATS, no network, no files outside the repo; about 10 s.
//!
//! The tree is built in memory as a `ConfigView` (what config-client hands the router):
//! organization `org-acme` -> 20 partners (`partner-01`..`partner-20`) -> 50 customers each
//! (`ws-cust-1`..`ws-cust-1000`, customer n under partner (n-1)/50+1).
//! - `s-org-all`: an organization-level `descendants` stream, disabled (so it governs nothing).
//! - partners 01..05 govern their customers and their own OEM workspace with three
//!   `descendants` streams each: `archive` (S3, no template, step details off), `monitor`
//!   (Azure Monitor, array template, job events and error/fatal logs only, step details off)
//!   and `siem` (HTTP Splunk HEC, the `log_message_str`/`now_utc_micro`/`log_message`
//!   template, everything). partner-01 also has its own `self` stream, shadowed.
//! - partner-07's OEM workspace has a `self` stream (Azure Blob, everything).
//! - 300 customers (n % 10 in 0..=2) have `self` streams; those under partners 01..05 are
//!   shadowed. n % 10 == 0: `siem` (HTTP, template) + `blob` (Azure Blob, step details off);
//!   == 1: `jobs` (S3, job events only); == 2: `alerts` (Azure Monitor, template, user
//!   activity and `recipe` logs at warn and above). Customers with n % 10 == 9 are managed.
//!
//! Each case is one line of `tests/data/ingest-events.ndjson` (the envelope is the ingest
//! body, byte for byte) with `workspace_id` pointed at a tree node. Before timing, every
//! case's outcome is checked against what the tree implies (which streams, in which order,
//! with step details or not, each body valid JSON naming the workspace), so a change to the
//! tree or the pipeline cannot make a row silently measure a different path.
//!
//! How to read the output:
//! - `ns/event` is the median over 11 samples (after a warm-up) of the mean time of one
//!   `route` call, including dropping its result; `spread` is (max - min) / median of those
//!   samples, a noise indicator (a few % is normal; tens of % means a busy machine).
//! - `events/s` is 1e9 / median, for one core. `dlv` is the number of deliveries, `bytes`
//!   the sum of their rendered bodies (what the router publishes for that event).
//! - The stage table splits the governed-customer rows into `resolve` (Tree::resolve),
//!   `parse` (the envelope down to `data`), `enrich` (enrich::log_message, once per event)
//!   and `render siem` (one template render of the full message); `rest` is route minus
//!   those, i.e. the other renders/copies, the selection filter and allocations. It uses
//!   the best sample of each (not the median), as minima subtract more reliably.
//! - Numbers are per core and only comparable on the same machine; compare runs, not absolutes.

use std::{
    collections::BTreeMap,
    hint::black_box,
    time::{Duration, Instant},
};

use auditstream_config_client::ConfigView;
use auditstream_model::{EventType, template::Template};
use auditstream_proto::v1::{
    AppliesTo, AzureBlobTarget, AzureMonitorTarget, Destination, EventSelection, HttpPreset,
    HttpTarget, Node, NodeKind, S3Target, Stream, destination::Target,
};
use auditstream_router::{
    enrich::{Account, AuditMeta, RawObject, log_message},
    pipeline::{Incoming, Outcome, route},
    table::RoutingTable,
};
use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

const EVENTS: &str = include_str!("../../../tests/data/ingest-events.ndjson");
/// The workspace every example line names; replaced per case.
const EXAMPLE_WORKSPACE: &str = "ws-cust-17";

/// The brief's template: the message as a string and as JSON, plus a timestamp.
const SIEM_TEMPLATE: &str = r#"{"log_message_str": {{{log_message_str}}}, "now_utc_micro": {{{now_utc_micro}}}, "event": {{{log_message}}}}"#;
/// Azure Monitor style: an array of records, the message once escaped in a string, once as JSON.
const MONITOR_TEMPLATE: &str = r#"[{"TimeGenerated": "{{{now}}}", "RawData": "{{{log_message}}}", "Event": {{{log_message}}}, "Source": "auditstream"}]"#;

const ALL_TYPES: &[&str] = &[
    "job_status",
    "job_details",
    "user_activity",
    "api_platform",
    "log_event",
    "genie_conversation",
];

const PARTNERS: usize = 20;
const CUSTOMERS_PER_PARTNER: usize = 50;
const GOVERNING_PARTNERS: usize = 5;

const SAMPLES: usize = 11;
const SAMPLE_TIME: Duration = Duration::from_millis(12);
const WARM_UP: Duration = Duration::from_millis(30);

fn main() {
    let now = OffsetDateTime::parse("2026-11-21T10:15:03.250Z", &Rfc3339).expect("valid time");
    let view = config_view();
    let started = Instant::now();

    // A config revision: the whole tree compiled, cold (every template compiled) and as the
    // router does on the next revision (unchanged streams keep their compiled template).
    let table = RoutingTable::build(&view, None).expect("the tree is valid");
    assert_eq!(
        table.streams.len(),
        view.streams.len(),
        "every stream compiles"
    );
    assert_eq!(table.nodes.len(), view.nodes.len());
    let build_cold = measure(|| {
        black_box(RoutingTable::build(black_box(&view), None).expect("valid"));
    });
    let build_warm = measure(|| {
        black_box(RoutingTable::build(black_box(&view), Some(&table)).expect("valid"));
    });
    let compile_siem = measure(|| {
        black_box(Template::compile(black_box(SIEM_TEMPLATE)).expect("valid"));
    });
    let compile_monitor = measure(|| {
        black_box(Template::compile(black_box(MONITOR_TEMPLATE)).expect("valid"));
    });

    let examples = examples();
    let cases = cases(&examples);
    let mut rows = Vec::with_capacity(cases.len());
    for case in &cases {
        let incoming = case.incoming();
        let outcome = route(&table, &incoming, now);
        let (deliveries, bytes) = check(case, &outcome, &view);
        drop(outcome);
        let stats = measure(|| {
            black_box(route(black_box(&table), black_box(&incoming), now));
        });
        rows.push((case, deliveries, bytes, stats));
    }

    let stages: Vec<_> = cases
        .iter()
        .filter(|c| c.group == Group::Governed && c.label.is_none())
        .map(|case| (case, stages(&table, case, now)))
        .collect();

    print_report(
        &view,
        &[
            (
                "RoutingTable::build, cold (all templates compiled)",
                build_cold,
            ),
            (
                "RoutingTable::build, next revision (templates reused)",
                build_warm,
            ),
            ("Template::compile, siem template", compile_siem),
            ("Template::compile, monitor template", compile_monitor),
        ],
        &rows,
        &stages,
    );
    println!(
        "\ntotal bench time: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// The tree

fn config_view() -> ConfigView {
    let mut nodes = BTreeMap::new();
    let mut streams = BTreeMap::new();
    let mut add_node = |id: String, parent: &str, kind: NodeKind, external_id: String, managed| {
        let node = Node {
            id: id.clone(),
            parent_id: parent.to_owned(),
            kind: kind as i32,
            name: id.clone(),
            external_id,
            managed,
            admin_emails: vec![format!("admin@{id}.example")],
            revision: 1,
        };
        nodes.insert(id, node);
    };
    add_node(
        "org-acme".into(),
        "",
        NodeKind::Organization,
        "ACME".into(),
        false,
    );
    for p in 1..=PARTNERS {
        add_node(
            partner_id(p),
            "org-acme",
            NodeKind::Partner,
            format!("PARTNER-{p:02}"),
            false,
        );
    }
    for n in 1..=PARTNERS * CUSTOMERS_PER_PARTNER {
        // Most accounts carry the partner's id for them; every fifth does not (null).
        let external = if n % 5 == 4 {
            String::new()
        } else {
            format!("INI-{n:04}")
        };
        add_node(
            customer_id(n),
            &partner_id(partner_of(n)),
            NodeKind::Customer,
            external,
            n % 10 == 9,
        );
    }

    let mut add = |s: Stream| {
        streams.insert(s.id.clone(), s);
    };
    add(Spec::new("s-org-all", "org-acme", Sink::S3)
        .descendants()
        .disabled()
        .build());
    for p in 1..=GOVERNING_PARTNERS {
        let node = partner_id(p);
        add(Spec::new(&format!("s-p{p:02}-archive"), &node, Sink::S3)
            .descendants()
            .no_steps()
            .build());
        add(
            Spec::new(&format!("s-p{p:02}-monitor"), &node, Sink::AzureMonitor)
                .descendants()
                .types(&["job_status", "job_details", "log_event"])
                .levels(&["error", "fatal"])
                .template(MONITOR_TEMPLATE)
                .no_steps()
                .build(),
        );
        add(Spec::new(&format!("s-p{p:02}-siem"), &node, Sink::Http)
            .descendants()
            .template(SIEM_TEMPLATE)
            .build());
    }
    // Saved before partner-01's descendants streams were enabled; now shadowed.
    add(Spec::new("s-p01-oem", &partner_id(1), Sink::AzureBlob).build());
    add(Spec::new("s-p07-oem", &partner_id(7), Sink::AzureBlob).build());
    for n in 1..=PARTNERS * CUSTOMERS_PER_PARTNER {
        let node = customer_id(n);
        match n % 10 {
            0 => {
                add(Spec::new(&format!("s-c{n}-siem"), &node, Sink::Http)
                    .template(SIEM_TEMPLATE)
                    .build());
                add(Spec::new(&format!("s-c{n}-blob"), &node, Sink::AzureBlob)
                    .no_steps()
                    .build());
            }
            1 => add(Spec::new(&format!("s-c{n}-jobs"), &node, Sink::S3)
                .types(&["job_status", "job_details"])
                .no_steps()
                .build()),
            2 => add(
                Spec::new(&format!("s-c{n}-alerts"), &node, Sink::AzureMonitor)
                    .types(&["user_activity", "log_event"])
                    .log_types(&["recipe"])
                    .levels(&["warn", "error", "fatal"])
                    .template(MONITOR_TEMPLATE)
                    .build(),
            ),
            _ => {}
        }
    }
    let connection_versions = streams
        .values()
        .filter_map(|s| s.destination.as_ref())
        .map(|d| (d.connection_id.clone(), 1))
        .collect();
    let mut view = ConfigView::default();
    view.revision = 4242;
    view.nodes = nodes;
    view.connection_versions = connection_versions;
    view.synced = true;
    for s in streams.into_values() {
        view.put_stream(s);
    }
    view
}

fn partner_id(p: usize) -> String {
    format!("partner-{p:02}")
}

fn customer_id(n: usize) -> String {
    format!("ws-cust-{n}")
}

fn partner_of(customer: usize) -> usize {
    (customer - 1) / CUSTOMERS_PER_PARTNER + 1
}

#[derive(Clone, Copy)]
enum Sink {
    S3,
    AzureBlob,
    AzureMonitor,
    Http,
}

/// A stream with the defaults most have: `self`, enabled, every event type, step details on.
struct Spec {
    stream: Stream,
    selection: EventSelection,
}

impl Spec {
    fn new(id: &str, node_id: &str, sink: Sink) -> Spec {
        let target = match sink {
            Sink::S3 => Target::S3(S3Target {
                bucket: "audit-archive".into(),
                region: "eu-central-1".into(),
                prefix: format!("auditstream/{node_id}/"),
                ..Default::default()
            }),
            Sink::AzureBlob => Target::AzureBlob(AzureBlobTarget {
                container: "audit".into(),
                prefix: format!("{node_id}/"),
                ..Default::default()
            }),
            Sink::AzureMonitor => Target::AzureMonitor(AzureMonitorTarget {
                ingestion_endpoint: "https://dce-audit.westeurope-1.ingest.monitor.azure.com"
                    .into(),
                dcr_immutable_id: "dcr-0123456789abcdef0123456789abcdef".into(),
                stream_name: "Custom-AuditLogs_CL".into(),
                log_type: "AuditLogs".into(),
                ..Default::default()
            }),
            Sink::Http => Target::Http(HttpTarget {
                url: "https://siem.example/services/collector/event".into(),
                preset: HttpPreset::SplunkHec as i32,
                ..Default::default()
            }),
        };
        Spec {
            stream: Stream {
                id: id.to_owned(),
                node_id: node_id.to_owned(),
                name: id.to_owned(),
                applies_to: AppliesTo::SelfOnly as i32,
                enabled: true,
                destination: Some(Destination {
                    connection_id: format!("conn-{node_id}"),
                    target: Some(target),
                }),
                version: 3,
                connection_version: 1,
                revision: 7,
                ..Default::default()
            },
            selection: EventSelection {
                event_types: ALL_TYPES.iter().map(|t| (*t).to_owned()).collect(),
                include_step_details: true,
                log_types: Vec::new(),
                log_levels: Vec::new(),
            },
        }
    }

    fn descendants(mut self) -> Spec {
        self.stream.applies_to = AppliesTo::Descendants as i32;
        self
    }

    fn disabled(mut self) -> Spec {
        self.stream.enabled = false;
        self
    }

    fn no_steps(mut self) -> Spec {
        self.selection.include_step_details = false;
        self
    }

    fn types(mut self, types: &[&str]) -> Spec {
        self.selection.event_types = types.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    fn log_types(mut self, log_types: &[&str]) -> Spec {
        self.selection.log_types = log_types.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    fn levels(mut self, levels: &[&str]) -> Spec {
        self.selection.log_levels = levels.iter().map(|l| (*l).to_owned()).collect();
        self
    }

    fn template(mut self, template: &str) -> Spec {
        self.stream.template = template.to_owned();
        self
    }

    fn build(mut self) -> Stream {
        self.stream.selection = Some(self.selection);
        self.stream
    }
}

// ---------------------------------------------------------------------------------------------
// The cases

/// One example line per event type, with the header values the gateway would set.
struct Example {
    event_type: EventType,
    event_id: String,
    occurred_at: String,
    line: String,
}

fn examples() -> Vec<Example> {
    let examples: Vec<Example> = EVENTS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("example lines are JSON");
            let field = |k: &str| v[k].as_str().expect("string field").to_owned();
            assert_eq!(field("workspace_id"), EXAMPLE_WORKSPACE);
            Example {
                event_type: field("event_type").parse().expect("known event type"),
                event_id: field("id"),
                occurred_at: field("occurred_at"),
                line: line.to_owned(),
            }
        })
        .collect();
    for t in EventType::ALL {
        assert!(
            examples.iter().any(|e| e.event_type == t),
            "an example of {t}"
        );
    }
    examples
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Governed,
    SelfStream,
    PartnerOem,
    Other,
}

enum Expect {
    Routed(Vec<String>),
    NotWanted,
    Unroutable(&'static str),
}

struct Case {
    group: Group,
    /// Set for the extra rows; the matrix rows are named by group and event type.
    label: Option<&'static str>,
    /// The organization the event was accepted for.
    org: &'static str,
    workspace: String,
    event_type: EventType,
    event_id: String,
    occurred_at: String,
    body: Vec<u8>,
    expect: Expect,
}

impl Case {
    fn incoming(&self) -> Incoming<'_> {
        Incoming {
            event_id: &self.event_id,
            org_id: self.org,
            event_type: self.event_type,
            workspace_id: &self.workspace,
            occurred_at: &self.occurred_at,
            received_at: "2026-11-21T10:18:00.512Z",
            body: &self.body,
        }
    }

    fn name(&self) -> String {
        match self.label {
            Some(l) => l.to_owned(),
            None => {
                let group = match self.group {
                    Group::Governed => "governed customer",
                    Group::SelfStream => "self-stream customer",
                    Group::PartnerOem => "partner OEM workspace",
                    Group::Other => "",
                };
                format!("{group}: {}", self.event_type)
            }
        }
    }
}

fn ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

fn cases(examples: &[Example]) -> Vec<Case> {
    let example = |t: EventType| {
        examples
            .iter()
            .find(|e| e.event_type == t)
            .expect("an example")
    };
    let case = |group, label, workspace: &str, t: EventType, level: Option<&str>, expect| {
        let e = example(t);
        let from = format!(r#""workspace_id":"{EXAMPLE_WORKSPACE}""#);
        assert_eq!(e.line.matches(&from).count(), 1);
        let mut line = e
            .line
            .replace(&from, &format!(r#""workspace_id":"{workspace}""#));
        if let Some(level) = level {
            assert_eq!(line.matches(r#""level":"error""#).count(), 1);
            line = line.replace(r#""level":"error""#, &format!(r#""level":"{level}""#));
        }
        Case {
            group,
            label,
            org: "org-acme",
            workspace: workspace.to_owned(),
            event_type: t,
            event_id: e.event_id.clone(),
            occurred_at: e.occurred_at.clone(),
            body: line.into_bytes(),
            expect,
        }
    };

    let mut cases = Vec::new();
    // ws-cust-17 is under partner-01, which governs it with archive, monitor and siem.
    for t in EventType::ALL {
        let wanted = match t {
            EventType::JobStatus | EventType::JobDetails | EventType::LogEvent => {
                ids(&["s-p01-archive", "s-p01-monitor", "s-p01-siem"])
            }
            _ => ids(&["s-p01-archive", "s-p01-siem"]),
        };
        cases.push(case(
            Group::Governed,
            None,
            "ws-cust-17",
            t,
            None,
            Expect::Routed(wanted),
        ));
    }
    // ws-cust-500 is under partner-10 (no governor) and has siem + blob self streams.
    for t in EventType::ALL {
        cases.push(case(
            Group::SelfStream,
            None,
            "ws-cust-500",
            t,
            None,
            Expect::Routed(ids(&["s-c500-blob", "s-c500-siem"])),
        ));
    }
    // partner-07's OEM workspace: its own self stream.
    for t in EventType::ALL {
        cases.push(case(
            Group::PartnerOem,
            None,
            "partner-07",
            t,
            None,
            Expect::Routed(ids(&["s-p07-oem"])),
        ));
    }
    cases.push(case(
        Group::Other,
        Some("governed, log_event level info (monitor drops)"),
        "ws-cust-17",
        EventType::LogEvent,
        Some("info"),
        Expect::Routed(ids(&["s-p01-archive", "s-p01-siem"])),
    ));
    cases.push(case(
        Group::Other,
        Some("governed, own self streams shadowed: job_details"),
        "ws-cust-120",
        EventType::JobDetails,
        None,
        Expect::Routed(ids(&["s-p03-archive", "s-p03-monitor", "s-p03-siem"])),
    ));
    cases.push(case(
        Group::Other,
        Some("governing partner OEM, self shadowed: user_activity"),
        "partner-01",
        EventType::UserActivity,
        None,
        Expect::Routed(ids(&["s-p01-archive", "s-p01-siem"])),
    ));
    cases.push(case(
        Group::Other,
        Some("self stream selecting logs: log_event error"),
        "ws-cust-502",
        EventType::LogEvent,
        None,
        Expect::Routed(ids(&["s-c502-alerts"])),
    ));
    cases.push(case(
        Group::Other,
        Some("self stream not selecting: api_platform"),
        "ws-cust-501",
        EventType::ApiPlatform,
        None,
        Expect::NotWanted,
    ));
    cases.push(case(
        Group::Other,
        Some("customer without streams: job_status"),
        "ws-cust-505",
        EventType::JobStatus,
        None,
        Expect::NotWanted,
    ));
    cases.push(case(
        Group::Other,
        Some("unknown workspace: job_details"),
        "ws-not-in-directory",
        EventType::JobDetails,
        None,
        Expect::Unroutable("unknown_workspace"),
    ));
    // Accepted for another organization: refused, whatever the workspace's streams.
    let mut foreign = case(
        Group::Other,
        Some("another organization's workspace: job_status"),
        "ws-cust-17",
        EventType::JobStatus,
        None,
        Expect::Unroutable("org_mismatch"),
    );
    foreign.org = "org-other";
    cases.push(foreign);
    cases
}

/// Asserts `outcome` is what the tree implies for `case`; returns (deliveries, bytes).
fn check(case: &Case, outcome: &Outcome<'_>, view: &ConfigView) -> (usize, usize) {
    let name = case.name();
    let deliveries = match (&case.expect, outcome) {
        (Expect::Routed(want), Outcome::Routed(got)) => {
            let got_ids: Vec<&str> = got.iter().map(|d| d.stream_id).collect();
            assert_eq!(got_ids, *want, "{name}: delivered streams");
            got
        }
        (Expect::NotWanted, Outcome::NotWanted) => return (0, 0),
        (Expect::Unroutable(want), Outcome::Unroutable(got)) => {
            assert_eq!(got, want, "{name}");
            return (0, 0);
        }
        (_, other) => panic!("{name}: unexpected outcome {other:?}"),
    };
    for d in deliveries {
        let stream = &view.streams[d.stream_id];
        let body: Value = serde_json::from_slice(&d.body)
            .unwrap_or_else(|e| panic!("{name}: {} body is not JSON: {e}", d.stream_id));
        // The log message inside the rendered body.
        let message = match stream.template.as_str() {
            "" => &body,
            SIEM_TEMPLATE => {
                let as_str: Value = serde_json::from_str(
                    body["log_message_str"]
                        .as_str()
                        .expect("log_message_str is a string"),
                )
                .expect("log_message_str holds JSON");
                assert_eq!(as_str, body["event"], "{name}: {}", d.stream_id);
                assert!(body["now_utc_micro"].is_i64());
                &body["event"]
            }
            MONITOR_TEMPLATE => &body[0]["Event"],
            other => panic!("unexpected template {other}"),
        };
        assert_eq!(
            message["audit"]["workspace_id"], case.workspace,
            "{name}: {}",
            d.stream_id
        );
        assert_eq!(message["audit"]["event_type"], case.event_type.as_str());
        assert_eq!(message["audit"]["org_id"], "org-acme");
        if case.event_type == EventType::JobDetails {
            let steps = stream.selection.as_ref().unwrap().include_step_details;
            assert_eq!(
                message.get("lines").is_some(),
                steps,
                "{name}: {} step details",
                d.stream_id
            );
        }
        assert!(d.subject.starts_with("audit.deliver.") && d.subject.ends_with(d.stream_id));
    }
    (
        deliveries.len(),
        deliveries.iter().map(|d| d.body.len()).sum(),
    )
}

/// The stages of `route` for one case, each timed on its own.
struct Stages {
    resolve: Stats,
    parse: Stats,
    enrich: Stats,
    render_siem: Stats,
    route: Stats,
}

fn stages(table: &RoutingTable, case: &Case, now: OffsetDateTime) -> Stages {
    let incoming = case.incoming();
    let resolve = measure(|| {
        black_box(table.tree.resolve(black_box(&case.workspace)));
    });
    let text = std::str::from_utf8(&case.body).expect("UTF-8");
    let parse = measure(|| {
        let top = RawObject::parse(black_box(text)).expect("envelope");
        black_box(top.get("data"));
    });
    let data = RawObject::parse(text)
        .expect("envelope")
        .get("data")
        .expect("data")
        .get();
    let node = &table.nodes[&case.workspace];
    let audit = AuditMeta {
        event_id: incoming.event_id,
        event_type: case.event_type.as_str(),
        occurred_at: incoming.occurred_at,
        received_at: incoming.received_at,
        org_id: &node.org_id,
        workspace_id: &case.workspace,
    };
    let account = Account {
        id: &node.account_id,
        external_id: node.account_external_id.as_deref(),
    };
    let enrich = measure(|| {
        black_box(
            log_message(case.event_type, black_box(data), account, &audit).expect("enriches"),
        );
    });
    let message = log_message(case.event_type, data, account, &audit).expect("enriches");
    let siem = Template::compile(SIEM_TEMPLATE).expect("valid");
    let render_siem = measure(|| {
        black_box(siem.render(black_box(&message.full), now));
    });
    let route = measure(|| {
        black_box(route(black_box(table), black_box(&incoming), now));
    });
    Stages {
        resolve,
        parse,
        enrich,
        render_siem,
        route,
    }
}

// ---------------------------------------------------------------------------------------------
// Timing and output

#[derive(Clone, Copy)]
struct Stats {
    /// Nanoseconds per call: median, min and max over the samples.
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn spread(&self) -> f64 {
        (self.max - self.min) / self.median * 100.0
    }
}

/// Runs `f` for the warm-up, sizes a batch to about `SAMPLE_TIME`, then times `SAMPLES`
/// batches; each sample is one batch's mean time per call.
fn measure(mut f: impl FnMut()) -> Stats {
    let start = Instant::now();
    let mut calls: u64 = 0;
    while start.elapsed() < WARM_UP {
        f();
        calls += 1;
    }
    let per_call = start.elapsed().as_secs_f64() / calls as f64;
    let batch = ((SAMPLE_TIME.as_secs_f64() / per_call) as u64).max(1);
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    Stats {
        median: samples[SAMPLES / 2],
        min: samples[0],
        max: samples[SAMPLES - 1],
    }
}

fn duration(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn rate(ns: f64) -> String {
    let per_s = 1e9 / ns;
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else {
        format!("{:.0} k/s", per_s / 1e3)
    }
}

type Row<'a> = (&'a Case, usize, usize, Stats);

fn print_report(
    view: &ConfigView,
    once: &[(&str, Stats)],
    rows: &[Row<'_>],
    stages: &[(&Case, Stages)],
) {
    let self_streams = view
        .streams
        .values()
        .filter(|s| s.applies_to() == AppliesTo::SelfOnly)
        .count();
    println!(
        "auditstream-router pipeline bench: {} nodes ({PARTNERS} partners x {CUSTOMERS_PER_PARTNER} customers), \
         {} streams ({self_streams} self), {} cores; median of {SAMPLES} samples",
        view.nodes.len(),
        view.streams.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );

    println!("\nper config revision / stream save");
    println!("{:<56} {:>10} {:>7}", "operation", "time", "spread");
    for (name, s) in once {
        println!("{name:<56} {:>10} {:>6.1}%", duration(s.median), s.spread());
    }

    println!("\nper event: pipeline::route (resolve + filter + enrich + render)");
    println!(
        "{:<52} {:<29} {:>3} {:>6} {:>10} {:>10} {:>7}",
        "case", "outcome", "dlv", "bytes", "ns/event", "events/s", "spread"
    );
    for (case, deliveries, bytes, s) in rows {
        let outcome = match case.expect {
            Expect::Routed(_) => "routed".to_owned(),
            Expect::NotWanted => "not wanted".to_owned(),
            Expect::Unroutable(r) => format!("unroutable: {r}"),
        };
        println!(
            "{:<52} {:<29} {:>3} {:>6} {:>10.0} {:>10} {:>6.1}%",
            case.name(),
            outcome,
            deliveries,
            bytes,
            s.median,
            rate(s.median),
            s.spread()
        );
    }

    println!(
        "\nstages of route, governed customer ws-cust-17 (ns, best of {SAMPLES} samples; % of route)"
    );
    println!(
        "{:<20} {:>8} {:>8} {:>14} {:>14} {:>14} {:>8}",
        "event type", "resolve", "parse", "enrich", "render siem", "rest", "route"
    );
    for (case, st) in stages {
        // Best-of-samples: each stage is timed on its own, and minima add up more reliably
        // than medians taken at different moments on a shared machine.
        let r = st.route.min;
        let rest = r - st.resolve.min - st.parse.min - st.enrich.min - st.render_siem.min;
        let pct = |ns: f64| format!("{ns:.0} ({:.0}%)", ns / r * 100.0);
        println!(
            "{:<20} {:>8.0} {:>8.0} {:>14} {:>14} {:>14} {:>8.0}",
            case.event_type.as_str(),
            st.resolve.min,
            st.parse.min,
            pct(st.enrich.min),
            pct(st.render_siem.min),
            if rest > 0.0 {
                pct(rest)
            } else {
                "noisy, rerun".to_owned()
            },
            r
        );
    }
}
