//! End-to-end throughput and latency beside the same-run JetStream ceiling (issue 9, first
//! part). Writes `target/bench/report.json` and `target/bench/report.md`.
//!
//! - **Ceiling**: the raw 2-hop pipeline on the project's own stream settings (the real
//!   `AUDIT_INGEST` and `AUDIT_DELIVER` of `bus::topology`, on a nats-server of its own):
//!   publish 1 KiB messages with a message id (pipelined PubAcks) → a pull consumer
//!   republishes each (PubAcks awaited, then a plain ack) → a pull consumer acks. One event
//!   per message.
//! - **End to end**: the release binaries of the gateway, config service (SQLite), router and
//!   sink-http as separate processes; `auditstream-loadgen`'s sender and receiver in this
//!   process. Saturated: as fast as the gateway answers, 1 KiB events over HTTP without
//!   producer ids (the gateway assigns them and packs each request's events per
//!   organization); then at half that rate for latency, also with producer ids (every event
//!   alone). The ratio end-to-end / ceiling is the figure to watch.
//! - JetStream messages and bytes per delivered event (AUDIT_INGEST's state, purged before
//!   each run, plus the router's `deliver_messages`/`deliver_bytes`): what packing saves.
//! - Peak RSS (VmHWM) of every service after the runs, and CPU per 1000 events.
//! - **Broken destination**: one organization's destination refuses (403) while
//!   `BENCH_BACKLOG_EVENTS` (1 000 000) of its events pile up in AUDIT_BACKLOG_HTTP; the sink's
//!   RSS holding them, the healthy organizations' p99 at half load beside it (against the
//!   half-load runs before), and the drain rate once the destination accepts again.
//! - **`sync_interval: always`**: the saturated run again on a nats-server that fsyncs
//!   before every ack.
//!
//! Every figure is the median of `RUNS` runs with min and max. Run with `make bench`, which
//! builds the release binaries first.

use std::{
    collections::BTreeMap,
    future::IntoFuture as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, consumer::pull, message::PublishMessage};
use auditstream_bus::topology::TopologyConfig;
use auditstream_loadgen::{
    mix::Shape,
    receive::Receiver,
    send::{self, SendPlan, Transport},
    setup::setup,
};
use auditstream_testkit::{NatsServer, stream_messages};
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

const RUNS: usize = 3;
const CEILING_EVENTS: usize = 100_000;
const EVENT_SIZE: usize = 1024;
const SATURATE_FOR: Duration = Duration::from_secs(8);
const HALF_LOAD_FOR: Duration = Duration::from_secs(8);
/// nats-server's `max_file_store` for the end-to-end stacks.
const STORE: &str = "14GB";
const TOKEN: &str = "bench-token-0123456789abcdef";
const ADMIN: &str = "bench-admin-0123456789abcdef";
/// The config-service tokens of the router and of sink-http (one per service kind).
const ROUTER_TOKEN: &str = "bench-router-0123456789abcdef";
const SINK_TOKEN: &str = "bench-sink-http-0123456789abcdef";

/// The streams every service uses, sized for the runs (JetStream reserves `max_bytes` up
/// front against the server's `max_file_store`, [`STORE`]): the backlog run holds a million
/// 1 KiB events in AUDIT_INGEST and again in AUDIT_BACKLOG_HTTP (each sink type has a backlog
/// stream of this size).
fn topology() -> TopologyConfig {
    let mut t = TopologyConfig::default();
    t.ingest.max_bytes = 2 << 30;
    t.history.max_bytes = 2 << 30;
    t.parked.max_bytes = 64 << 20;
    t.deliver.max_bytes = 768 << 20;
    t.backlog.max_bytes = 2 << 30;
    t.dlq.max_bytes = 64 << 20;
    t.control.max_bytes = 64 << 20;
    t
}

fn topology_env() -> Vec<(String, String)> {
    let t = topology();
    [
        ("INGEST", t.ingest.max_bytes),
        ("HISTORY", t.history.max_bytes),
        ("PARKED", t.parked.max_bytes),
        ("DELIVER", t.deliver.max_bytes),
        ("BACKLOG", t.backlog.max_bytes),
        ("DLQ", t.dlq.max_bytes),
        ("CONTROL", t.control.max_bytes),
    ]
    .into_iter()
    .map(|(s, b)| {
        (
            format!("AUDITSTREAM_NATS__TOPOLOGY__{s}__MAX_BYTES"),
            b.to_string(),
        )
    })
    .collect()
}

struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Stat {
        median: v[v.len() / 2],
        min: v[0],
        max: v[v.len() - 1],
    }
}

fn stat_json(s: &Stat) -> Value {
    json!({"median": s.median, "min": s.min, "max": s.max})
}

// ------------------------------------------------------------------------------ ceiling

async fn ceiling_run(js: &jetstream::Context, run: usize) -> f64 {
    let ingest = js.get_stream("AUDIT_INGEST").await.unwrap();
    let deliver = js.get_stream("AUDIT_DELIVER").await.unwrap();
    ingest.purge().await.unwrap();
    deliver.purge().await.unwrap();
    let hop = ingest
        .create_consumer(pull::Config {
            durable_name: Some(format!("ceiling-hop-{run}")),
            filter_subject: format!("audit.ingest.ceil{run}.>"),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 50_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let last = deliver
        .create_consumer(pull::Config {
            durable_name: Some(format!("ceiling-end-{run}")),
            filter_subject: format!("audit.deliver.http.ceil{run}"),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 50_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let payload = Bytes::from(vec![b'x'; EVENT_SIZE]);
    let started = Instant::now();
    let producer = {
        let js = js.clone();
        let payload = payload.clone();
        tokio::spawn(async move {
            let mut acks = futures_util::stream::FuturesUnordered::new();
            for i in 0..CEILING_EVENTS {
                let publish = PublishMessage::build()
                    .message_id(format!("c{run}-{i}"))
                    .payload(payload.clone());
                let ack = js
                    .send_publish(format!("audit.ingest.ceil{run}.ws.job_status"), publish)
                    .await
                    .unwrap()
                    .into_future();
                acks.push(ack);
                // A window of outstanding PubAcks, as the gateway's concurrent requests have.
                while acks.len() >= 512 {
                    acks.next().await.unwrap().unwrap();
                }
            }
            while let Some(ack) = acks.next().await {
                ack.unwrap();
            }
        })
    };
    let hopper = {
        let js = js.clone();
        tokio::spawn(async move {
            let mut moved = 0;
            while moved < CEILING_EVENTS {
                let mut batch = hop
                    .fetch()
                    .max_messages(500)
                    .expires(Duration::from_millis(200))
                    .messages()
                    .await
                    .unwrap();
                let mut messages = Vec::new();
                while let Some(m) = batch.next().await {
                    messages.push(m.unwrap());
                }
                let mut acks = Vec::with_capacity(messages.len());
                for m in &messages {
                    let id = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Msg-Id"))
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default();
                    let publish = PublishMessage::build()
                        .message_id(format!("{id}.s"))
                        .payload(m.payload.clone());
                    acks.push(
                        js.send_publish(format!("audit.deliver.http.ceil{run}"), publish)
                            .await
                            .unwrap()
                            .into_future(),
                    );
                }
                for a in futures_util::future::join_all(acks).await {
                    a.unwrap();
                }
                for m in &messages {
                    m.ack().await.unwrap();
                }
                moved += messages.len();
            }
        })
    };
    let mut consumed = 0;
    while consumed < CEILING_EVENTS {
        let mut batch = last
            .fetch()
            .max_messages(500)
            .expires(Duration::from_millis(200))
            .messages()
            .await
            .unwrap();
        while let Some(m) = batch.next().await {
            m.unwrap().ack().await.unwrap();
            consumed += 1;
        }
    }
    let elapsed = started.elapsed();
    producer.await.unwrap();
    hopper.await.unwrap();
    CEILING_EVENTS as f64 / elapsed.as_secs_f64()
}

async fn ceiling() -> Stat {
    let nats = NatsServer::start_with(STORE, false);
    let client = nats.connect().await;
    let js = jetstream::new(client);
    auditstream_bus::ensure_topology(&js, &topology())
        .await
        .unwrap();
    let mut runs = Vec::new();
    for run in 0..RUNS {
        let rate = ceiling_run(&js, run).await;
        eprintln!("ceiling run {run}: {rate:.0} events/s");
        runs.push(rate);
    }
    stat(runs)
}

// --------------------------------------------------------------------------- end to end

struct Stack {
    nats: NatsServer,
    _dir: tempfile::TempDir,
    children: Vec<(&'static str, Child)>,
    gateway_http: u16,
    gateway_grpc: u16,
    config_grpc: u16,
    router_ops: u16,
    nats_url: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn release_bin(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("release").join(name);
    assert!(
        path.exists(),
        "{} is missing: `make bench` builds the release binaries first",
        path.display()
    );
    path
}

async fn wait_ready(ops: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if reqwest::get(format!("http://127.0.0.1:{ops}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        assert!(Instant::now() < deadline, "{what} not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_stack(nats: NatsServer) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let nats_url = nats.url();
    let gateway_grpc = free_port();
    let (gateway_http, gateway_ops, config_grpc, config_ops, router_ops, sink_ops) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let spawn = |name: &'static str, bin: &str, env: Vec<(String, String)>| {
        let mut cmd = Command::new(release_bin(bin));
        cmd.env_clear()
            .env("AUDITSTREAM_NATS__URL", &nats_url)
            .envs(auditstream_testkit::login_env(
                auditstream_testkit::binary_service(bin),
            ))
            .env("AUDITSTREAM_LOG__FORMAT", "text")
            .env("AUDITSTREAM_LOG__FILTER", "warn")
            .envs(topology_env())
            .envs(env)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap());
        (name, cmd.spawn().unwrap())
    };
    let e = |k: &str, v: String| (k.to_owned(), v);
    let mut children = vec![spawn(
        "gateway",
        "auditstream-gateway",
        vec![
            e("AUDITSTREAM_HTTP_ADDR", format!("127.0.0.1:{gateway_http}")),
            e("AUDITSTREAM_GRPC_ADDR", format!("127.0.0.1:{gateway_grpc}")),
            e("AUDITSTREAM_OPS_ADDR", format!("127.0.0.1:{gateway_ops}")),
            e("AUDITSTREAM_AUTH__TOKENS", TOKEN.into()),
            // The bench measures the pipeline, and the broken-destination run sends one
            // organization a million events: per-organization limits off.
            e("AUDITSTREAM_RATE_LIMIT__EVENTS_PER_SECOND", "0".into()),
        ],
    )];
    let db = dir.path().join("config.db");
    children.push(spawn(
        "config-service",
        "auditstream-config-service",
        vec![
            e("AUDITSTREAM_GRPC_ADDR", format!("127.0.0.1:{config_grpc}")),
            e("AUDITSTREAM_OPS_ADDR", format!("127.0.0.1:{config_ops}")),
            e(
                "AUDITSTREAM_DATABASE__URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            ),
            e(
                "AUDITSTREAM_AUTH__TOKENS",
                json!([
                    {"token": ADMIN, "role": "platform_admin", "name": "bench"},
                    {"token": ROUTER_TOKEN, "role": "service", "service": "router", "name": "bench-router"},
                    {"token": SINK_TOKEN, "role": "service", "service": "sink_http", "name": "bench-sink-http"}
                ])
                .to_string(),
            ),
            e("AUDITSTREAM_SECRETS__ACTIVE_KEY", "bench".into()),
            e(
                "AUDITSTREAM_SECRETS__KEYS",
                json!({"bench": "JMnO8wqj774c+NSE+UuHYKpcrNJr4DHKRVKUQbdX2IA="}).to_string(),
            ),
            e("AUDITSTREAM_HTTP__ALLOW_INSECURE_HTTP", "true".into()),
            e("AUDITSTREAM_HTTP__ALLOWED_NETWORKS", "127.0.0.0/8".into()),
        ],
    ));
    wait_ready(config_ops, "config-service").await;
    // The gateway is ready once the config service, the topology's owner, made the streams.
    wait_ready(gateway_ops, "gateway").await;
    let data_plane = |ops: u16, token: &str| {
        vec![
            e("AUDITSTREAM_OPS_ADDR", format!("127.0.0.1:{ops}")),
            e(
                "AUDITSTREAM_CONFIG_SERVICE__URL",
                format!("http://127.0.0.1:{config_grpc}"),
            ),
            e("AUDITSTREAM_CONFIG_SERVICE__TOKEN", token.into()),
            e("AUDITSTREAM_SINK__ALLOW_INSECURE_HTTP", "true".into()),
            e("AUDITSTREAM_SINK__ALLOWED_NETWORKS", "127.0.0.1".into()),
        ]
    };
    children.push(spawn(
        "router",
        "auditstream-router",
        data_plane(router_ops, ROUTER_TOKEN),
    ));
    // A broken destination is probed every 2 s at most, so the drain starts soon after
    // the fix.
    let mut sink_env = data_plane(sink_ops, SINK_TOKEN);
    sink_env.push(e("AUDITSTREAM_DELIVERY__PROBE__INITIAL", "500ms".into()));
    sink_env.push(e("AUDITSTREAM_DELIVERY__PROBE__MAX", "2s".into()));
    children.push(spawn("sink-http", "auditstream-sink-http", sink_env));
    wait_ready(router_ops, "router").await;
    wait_ready(sink_ops, "sink-http").await;
    Stack {
        nats,
        _dir: dir,
        children,
        gateway_http,
        gateway_grpc,
        config_grpc,
        router_ops,
        nats_url,
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks)
        })
        .unwrap_or(0.0)
}

/// Every process of the stack (the services, nats-server, and this one: the load generator
/// and its receiver), by name.
fn processes(stack: &Stack) -> Vec<(&'static str, u32)> {
    let mut p: Vec<(&'static str, u32)> =
        stack.children.iter().map(|(n, c)| (*n, c.id())).collect();
    if let Some(pid) = stack.nats.pid() {
        p.push(("nats-server", pid));
    }
    p.push(("loadgen (sender + receiver)", std::process::id()));
    p
}

/// Peak resident memory of a process, MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// Resident memory of a process now, MiB.
fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

struct E2e {
    events: f64,
    events_per_s: f64,
    mib_per_s: f64,
    ack_p50: f64,
    ack_p99: f64,
    e2e_p50: f64,
    e2e_p99: f64,
    /// JetStream messages (ingest + deliver) per delivered event.
    messages_per_event: f64,
    /// Their bytes per delivered event.
    js_bytes_per_event: f64,
}

async fn e2e_run(
    stack: &Stack,
    receiver: &Receiver,
    run: &str,
    rate: Option<f64>,
    shape: &Shape,
    transport: Transport,
) -> E2e {
    let _ = receiver.take_latency();
    let router = |name: &'static str| {
        auditstream_testkit::metric(([127, 0, 0, 1], stack.router_ops).into(), name)
    };
    let deliver_before = (
        router("auditstream_router_deliver_messages_total").await,
        router("auditstream_router_deliver_bytes_total").await,
    );
    let started = Instant::now();
    let port = match transport {
        Transport::Http => stack.gateway_http,
        Transport::Grpc => stack.gateway_grpc,
    };
    let mut report = send::run(SendPlan {
        transport,
        target: format!("http://127.0.0.1:{port}"),
        token: TOKEN.into(),
        batch: 100,
        concurrency: 8,
        rate,
        duration: if rate.is_some() {
            HALF_LOAD_FOR
        } else {
            SATURATE_FOR
        },
        max_events: None,
        shape: Shape {
            run: run.into(),
            ..shape.clone()
        },
        seed: 1,
    })
    .await
    .unwrap();
    let tally = receiver
        .wait_for(&report.accepted, Duration::from_secs(300))
        .await;
    assert_eq!(tally.missing, 0, "{run}: events lost: {tally:?}");
    // Throughput counts until the last event arrived.
    let elapsed = started.elapsed().as_secs_f64();
    let mut latency = receiver.take_latency();
    // AUDIT_INGEST was purged before the run, so its state is this run's.
    let js = jetstream::new(auditstream_testkit::connect_superuser(&stack.nats_url).await);
    let ingest = js
        .get_stream("AUDIT_INGEST")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state;
    let events = report.accepted.len() as f64;
    let deliver_messages =
        router("auditstream_router_deliver_messages_total").await - deliver_before.0;
    let deliver_bytes = router("auditstream_router_deliver_bytes_total").await - deliver_before.1;
    E2e {
        messages_per_event: (ingest.messages as f64 + deliver_messages) / events,
        js_bytes_per_event: (ingest.bytes as f64 + deliver_bytes) / events,
        events: report.accepted.len() as f64,
        events_per_s: report.accepted.len() as f64 / elapsed,
        mib_per_s: report.bytes as f64 / elapsed / (1024.0 * 1024.0),
        ack_p50: report.ack.percentile_ms(50.0),
        ack_p99: report.ack.percentile_ms(99.0),
        e2e_p50: latency.percentile_ms(50.0),
        e2e_p99: latency.percentile_ms(99.0),
    }
}

/// The organization whose destination breaks in the backlog run (the others stay healthy).
const BROKEN_ORG: usize = 9;

struct Backlog {
    events: f64,
    fill_s: f64,
    /// The sink's RSS once every event is in the backlog, and after the healthy runs.
    sink_rss_mib: f64,
    /// The healthy organizations at half load beside the broken one.
    healthy: Vec<E2e>,
    /// From the fix to the first event leaving the backlog (the probe's delay).
    probe_delay_s: f64,
    drain_events_per_s: f64,
}

/// One destination refuses (403: broken at once) while `BENCH_BACKLOG_EVENTS` of its events
/// pile up in AUDIT_BACKLOG_HTTP; the other organizations run at half load beside it; then the
/// destination accepts again and the backlog drains.
async fn broken_destination(
    stack: &Stack,
    receiver: &Receiver,
    shape: &Shape,
    half_rate: f64,
) -> Backlog {
    let n: u64 = std::env::var("BENCH_BACKLOG_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let js = jetstream::new(auditstream_testkit::connect_superuser(&stack.nats_url).await);
    receiver.refuse(Some((&format!("/{}", Shape::org(BROKEN_ORG)), 403)));
    purge(&stack.nats_url).await;
    let started = Instant::now();
    let fill = send::run(SendPlan {
        transport: Transport::Http,
        target: format!("http://127.0.0.1:{}", stack.gateway_http),
        token: TOKEN.into(),
        batch: 100,
        concurrency: 8,
        rate: None,
        duration: Duration::from_secs(3600),
        max_events: Some(n),
        shape: Shape {
            orgs: 1,
            first_org: BROKEN_ORG,
            run: "backlog".into(),
            ..shape.clone()
        },
        seed: 2,
    })
    .await
    .unwrap();
    let accepted = fill.accepted.len() as u64;
    let held = loop {
        let held = stream_messages(&js, "AUDIT_BACKLOG_HTTP").await;
        if held >= accepted {
            break held;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1200),
            "only {held} of {accepted} events reached the backlog"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let fill_s = started.elapsed().as_secs_f64();
    let sink = stack
        .children
        .iter()
        .find(|(n, _)| *n == "sink-http")
        .map(|(_, c)| c.id())
        .unwrap();
    let mut sink_rss_mib = rss_mib(sink);
    eprintln!("backlog: {held} events held after {fill_s:.0} s; sink RSS {sink_rss_mib:.0} MiB");
    let mut healthy = Vec::new();
    for run in 0..RUNS {
        // Everything ingested so far is in the backlog: AUDIT_INGEST may be emptied.
        purge(&stack.nats_url).await;
        let r = e2e_run(
            stack,
            receiver,
            &format!("beside{run}"),
            Some(half_rate),
            &Shape {
                orgs: BROKEN_ORG,
                first_org: 0,
                ..shape.clone()
            },
            Transport::Http,
        )
        .await;
        eprintln!(
            "beside a broken destination, run {run}: e2e p99 {:.1} ms",
            r.e2e_p99
        );
        healthy.push(r);
    }
    sink_rss_mib = sink_rss_mib.max(rss_mib(sink));
    let arrived_before = receiver.tally(&[]).events;
    receiver.refuse(None);
    let fixed = Instant::now();
    let mut draining_since = None;
    loop {
        let left = stream_messages(&js, "AUDIT_BACKLOG_HTTP").await;
        if draining_since.is_none() && left < held {
            draining_since = Some(Instant::now());
        }
        if left == 0 && receiver.tally(&[]).events >= arrived_before + accepted {
            break;
        }
        assert!(
            fixed.elapsed() < Duration::from_secs(1200),
            "{left} events still in the backlog"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drained_at = Instant::now();
    let tally = receiver.tally(&fill.accepted);
    assert_eq!(tally.missing, 0, "backlog events lost: {tally:?}");
    let draining_since = draining_since.unwrap_or(fixed);
    Backlog {
        events: accepted as f64,
        fill_s,
        sink_rss_mib,
        healthy,
        probe_delay_s: draining_since.duration_since(fixed).as_secs_f64(),
        drain_events_per_s: accepted as f64
            / drained_at.duration_since(draining_since).as_secs_f64(),
    }
}

/// Creates the load generator's tree and streams on a stack and lets router and sink see them.
async fn set_up(stack: &Stack, receiver: &Receiver, shape: &Shape) {
    setup(
        &format!("http://127.0.0.1:{}", stack.config_grpc),
        ADMIN,
        shape,
        &format!("http://{}", receiver.addr()),
    )
    .await
    .unwrap();
    // The router and sink follow the new streams through the change feed.
    tokio::time::sleep(Duration::from_secs(2)).await;
}

async fn purge(nats_url: &str) {
    let js = jetstream::new(auditstream_testkit::connect_superuser(nats_url).await);
    // AUDIT_INGEST keeps everything (the backfill horizon); the runs would fill it.
    js.get_stream("AUDIT_INGEST")
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or_default().trim().to_owned())
        })
        .unwrap_or_default();
    let version = |cmd: &std::ffi::OsStr, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "rustc": version("rustc".as_ref(), "--version"),
        "nats_server": version(auditstream_testkit::nats_server_bin().as_os_str(), "--version"),
    })
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ceiling = ceiling().await;
        eprintln!("ceiling: {:.0} events/s", ceiling.median);

        let stack = start_stack(NatsServer::start_with(STORE, false)).await;
        // On a thread of its own: its parsing must not delay the sender's ack timings.
        let receiver = Receiver::start_on_own_thread("127.0.0.1:0".parse().unwrap()).unwrap();
        let shape = Shape {
            orgs: 10,
            workspaces_per_org: 10,
            min_size: EVENT_SIZE,
            max_size: EVENT_SIZE,
            run: "setup".into(),
            ..Shape::default()
        };
        set_up(&stack, &receiver, &shape).await;

        let cpu_before: Vec<(&str, f64)> = processes(&stack)
            .into_iter()
            .map(|(n, pid)| (n, cpu_seconds(pid)))
            .collect();
        let mut saturated = Vec::new();
        for run in 0..RUNS {
            purge(&stack.nats_url).await;
            let r = e2e_run(
                &stack,
                &receiver,
                &format!("sat{run}"),
                None,
                &shape,
                Transport::Http,
            )
            .await;
            eprintln!("saturated run {run}: {:.0} events/s", r.events_per_s);
            saturated.push(r);
        }
        // CPU per 1000 delivered events during the saturated runs: where the time goes.
        let delivered_events: f64 = saturated.iter().map(|r| r.events).sum();
        let cpu: BTreeMap<&str, f64> = processes(&stack)
            .into_iter()
            .zip(&cpu_before)
            .map(|((n, pid), (_, before))| (n, (cpu_seconds(pid) - before) * 1000.0 / delivered_events))
            .collect();
        let sat_rate = stat(saturated.iter().map(|r| r.events_per_s).collect());
        let mut half = Vec::new();
        for run in 0..RUNS {
            purge(&stack.nats_url).await;
            let r = e2e_run(
                &stack,
                &receiver,
                &format!("half{run}"),
                Some(sat_rate.median / 2.0),
                &shape,
                Transport::Http,
            )
            .await;
            eprintln!(
                "half-load run {run}: ack p99 {:.1} ms, e2e p99 {:.1} ms",
                r.ack_p99, r.e2e_p99
            );
            half.push(r);
        }
        // Half load again with producer ids: every event alone under its own `Nats-Msg-Id`
        // (no ingest packs), what a producer that needs per-id de-duplication gets.
        let mut half_ids = Vec::new();
        for run in 0..RUNS {
            purge(&stack.nats_url).await;
            let r = e2e_run(
                &stack,
                &receiver,
                &format!("ids{run}"),
                Some(sat_rate.median / 2.0),
                &Shape {
                    producer_ids: true,
                    ..shape.clone()
                },
                Transport::Http,
            )
            .await;
            eprintln!(
                "half-load run {run} with producer ids: ack p99 {:.1} ms, e2e p99 {:.1} ms",
                r.ack_p99, r.e2e_p99
            );
            half_ids.push(r);
        }
        // The same saturated run with gRPC ingest (`IngestService.Ingest`, batches of 100).
        let mut grpc = Vec::new();
        for run in 0..RUNS {
            purge(&stack.nats_url).await;
            let r = e2e_run(
                &stack,
                &receiver,
                &format!("grpc{run}"),
                None,
                &shape,
                Transport::Grpc,
            )
            .await;
            eprintln!("gRPC saturated run {run}: {:.0} events/s", r.events_per_s);
            grpc.push(r);
        }
        let rss: BTreeMap<&str, f64> = stack
            .children
            .iter()
            .map(|(name, child)| (*name, peak_rss_mib(child.id())))
            .collect();
        let backlog = broken_destination(&stack, &receiver, &shape, sat_rate.median / 2.0).await;
        eprintln!(
            "backlog drained at {:.0} events/s after a probe delay of {:.1} s",
            backlog.drain_events_per_s, backlog.probe_delay_s
        );
        drop(stack);

        // The same saturated runs on a nats-server that fsyncs before every ack.
        let stack = start_stack(NatsServer::start_with(STORE, true)).await;
        set_up(&stack, &receiver, &shape).await;
        let mut sync_always = Vec::new();
        for run in 0..RUNS {
            purge(&stack.nats_url).await;
            let r = e2e_run(
                &stack,
                &receiver,
                &format!("sync{run}"),
                None,
                &shape,
                Transport::Http,
            )
            .await;
            eprintln!("sync_interval always, run {run}: {:.0} events/s", r.events_per_s);
            sync_always.push(r);
        }
        drop(stack);
        let f = |rs: &[E2e], get: fn(&E2e) -> f64| stat(rs.iter().map(get).collect());
        let ratio = sat_rate.median / ceiling.median;
        let report = json!({
            "machine": machine(),
            "event_size_bytes": EVENT_SIZE,
            "runs": RUNS,
            "ceiling_events_per_s": stat_json(&ceiling),
            "e2e_saturated_events_per_s": stat_json(&sat_rate),
            "e2e_saturated_mib_per_s": stat_json(&f(&saturated, |r| r.mib_per_s)),
            "ratio_e2e_to_ceiling": ratio,
            "saturated_ack_p50_ms": stat_json(&f(&saturated, |r| r.ack_p50)),
            "saturated_ack_p99_ms": stat_json(&f(&saturated, |r| r.ack_p99)),
            "e2e_saturated_grpc_events_per_s": stat_json(&f(&grpc, |r| r.events_per_s)),
            "saturated_grpc_ack_p50_ms": stat_json(&f(&grpc, |r| r.ack_p50)),
            "saturated_grpc_ack_p99_ms": stat_json(&f(&grpc, |r| r.ack_p99)),
            "half_load_events_per_s": sat_rate.median / 2.0,
            "half_load_ack_p50_ms": stat_json(&f(&half, |r| r.ack_p50)),
            "half_load_ack_p99_ms": stat_json(&f(&half, |r| r.ack_p99)),
            "half_load_e2e_p50_ms": stat_json(&f(&half, |r| r.e2e_p50)),
            "half_load_producer_ids_ack_p50_ms": stat_json(&f(&half_ids, |r| r.ack_p50)),
            "half_load_producer_ids_ack_p99_ms": stat_json(&f(&half_ids, |r| r.ack_p99)),
            "half_load_producer_ids_messages_per_event": stat_json(&f(&half_ids, |r| r.messages_per_event)),
            "half_load_e2e_p99_ms": stat_json(&f(&half, |r| r.e2e_p99)),
            "peak_rss_mib": rss,
            "saturated_jetstream_messages_per_event": stat_json(&f(&saturated, |r| r.messages_per_event)),
            "saturated_jetstream_bytes_per_event": stat_json(&f(&saturated, |r| r.js_bytes_per_event)),
            "e2e_saturated_sync_always_events_per_s": stat_json(&f(&sync_always, |r| r.events_per_s)),
            "sync_always_ack_p99_ms": stat_json(&f(&sync_always, |r| r.ack_p99)),
            "backlog": {
                "events": backlog.events,
                "fill_s": backlog.fill_s,
                "sink_rss_mib": backlog.sink_rss_mib,
                "healthy_e2e_p99_ms": stat_json(&f(&backlog.healthy, |r| r.e2e_p99)),
                "healthy_e2e_p99_alone_ms": stat_json(&f(&half, |r| r.e2e_p99)),
                "probe_delay_s": backlog.probe_delay_s,
                "drain_events_per_s": backlog.drain_events_per_s,
                "drain_to_ceiling": backlog.drain_events_per_s / ceiling.median,
            },
            "cpu_ms_per_1000_events_saturated": cpu.iter().map(|(k, v)| (k.to_string(), json!(v * 1000.0))).collect::<serde_json::Map<_, _>>(),
        });
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&report).unwrap(),
        )
        .unwrap();
        let row = |name: &str, s: &Value, unit: &str| {
            let (median, min, max) = (
                s["median"].as_f64().unwrap(),
                s["min"].as_f64().unwrap(),
                s["max"].as_f64().unwrap(),
            );
            // Small figures (messages per event) need the second decimal.
            let p = if median < 10.0 { 2 } else { 1 };
            format!("| {name} | {median:.p$} | {min:.p$} – {max:.p$} | {unit} |\n")
        };
        let mut md = format!(
            "# Auditstream benchmark\n\nMachine: {} CPUs ({}), {}, {}. Events of {EVENT_SIZE} B, \
             median of {RUNS} runs.\n\n| figure | median | min – max | unit |\n|---|---|---|---|\n",
            report["machine"]["cpus"],
            report["machine"]["cpu"].as_str().unwrap_or_default(),
            report["machine"]["rustc"].as_str().unwrap_or_default(),
            report["machine"]["nats_server"]
                .as_str()
                .unwrap_or_default(),
        );
        md += &row(
            "JetStream 2-hop ceiling (1 event/message)",
            &report["ceiling_events_per_s"],
            "events/s",
        );
        md += &row(
            "end to end, saturated (HTTP → gateway → router → sink-http → receiver)",
            &report["e2e_saturated_events_per_s"],
            "events/s",
        );
        md += &row(
            "end to end, saturated",
            &report["e2e_saturated_mib_per_s"],
            "MiB/s",
        );
        md += &row(
            "end to end, saturated, gRPC ingest",
            &report["e2e_saturated_grpc_events_per_s"],
            "events/s",
        );
        md += &row(
            "gateway ack p99, saturated, gRPC ingest",
            &report["saturated_grpc_ack_p99_ms"],
            "ms",
        );
        md += &row(
            "gateway ack p50, saturated",
            &report["saturated_ack_p50_ms"],
            "ms",
        );
        md += &row(
            "gateway ack p99, saturated",
            &report["saturated_ack_p99_ms"],
            "ms",
        );
        md += &row(
            "gateway ack p50, half load",
            &report["half_load_ack_p50_ms"],
            "ms",
        );
        md += &row(
            "gateway ack p99, half load",
            &report["half_load_ack_p99_ms"],
            "ms",
        );
        md += &row(
            "gateway ack p50, half load, producer ids (each event alone, no ingest packs)",
            &report["half_load_producer_ids_ack_p50_ms"],
            "ms",
        );
        md += &row(
            "gateway ack p99, half load, producer ids",
            &report["half_load_producer_ids_ack_p99_ms"],
            "ms",
        );
        md += &row(
            "end-to-end p50, half load",
            &report["half_load_e2e_p50_ms"],
            "ms",
        );
        md += &row(
            "end-to-end p99, half load",
            &report["half_load_e2e_p99_ms"],
            "ms",
        );
        md += &row(
            "JetStream messages per delivered event, saturated (2 without packing)",
            &report["saturated_jetstream_messages_per_event"],
            "messages",
        );
        md += &row(
            "JetStream bytes per delivered event, saturated",
            &report["saturated_jetstream_bytes_per_event"],
            "bytes",
        );
        md += &row(
            "end to end, saturated, `sync_interval: always`",
            &report["e2e_saturated_sync_always_events_per_s"],
            "events/s",
        );
        md += &row(
            "gateway ack p99, saturated, `sync_interval: always`",
            &report["sync_always_ack_p99_ms"],
            "ms",
        );
        md += &row(
            "end-to-end p99 at half load beside a broken destination with its backlog",
            &report["backlog"]["healthy_e2e_p99_ms"],
            "ms",
        );
        md += &format!(
            "\nBroken destination (one run): {:.0} events of one organization refused (403) and \
             held in AUDIT_BACKLOG_HTTP (filled in {:.0} s); sink-http RSS while holding them \
             {:.0} MiB; after the fix the first probe came after {:.1} s and the backlog \
             drained at **{:.0} events/s** ({:.2} × the ceiling).\n",
            backlog.events,
            backlog.fill_s,
            backlog.sink_rss_mib,
            backlog.probe_delay_s,
            backlog.drain_events_per_s,
            backlog.drain_events_per_s / ceiling.median,
        );
        md += &format!("\n**Ratio end to end / ceiling: {ratio:.2}**\n\nPeak RSS (MiB): ");
        md += &rss
            .iter()
            .map(|(k, v)| format!("{k} {v:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        md += "\n\nCPU per 1000 delivered events while saturated (ms): ";
        md += &cpu
            .iter()
            .map(|(k, v)| format!("{k} {:.0}", v * 1000.0))
            .collect::<Vec<_>>()
            .join(", ");
        md += "\n";
        std::fs::write(dir.join("report.md"), &md).unwrap();
        println!("{md}");
    });
}
