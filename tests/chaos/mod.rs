//! The chaos run: the whole pipeline as real processes (nats-server, gateway, config-service,
//! router and the four sinks) under a steady load from the load generator, while services
//! are killed with SIGKILL and restarted at random moments, nats-server is restarted and
//! paused (SIGSTOP), the destinations fail (the HTTP receiver answers 503, then 403, then
//! hangs; Azure Monitor's stand-in answers 503, then 403, then 500; the S3 and Azurite
//! stand-ins are stopped for each window), and `AUDIT_INGEST`'s disk
//! quota is filled (filler traffic until JetStream refuses, `discard: new`) so the gateway's
//! 503 path is taken, then freed. At the end everything is
//! healed and every id the gateway accepted must reach the destination: duplicates are
//! counted and reported, a missing id fails the run.
//!
//! `make chaos` runs the full plan ([`Plan::full`], release binaries, ≤ 20 minutes) from
//! `benches/chaos.rs`; `make test` runs [`Plan::smoke`] (debug binaries, about a minute)
//! from `tests/chaos_smoke.rs`. Both print the same report.

// Shared by a bench and a test, which each use part of it.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use auditstream_loadgen::{
    mix::Shape,
    receive::Receiver,
    send::{SendPlan, Transport, run as send},
    setup::{extra_destination, setup},
};
use auditstream_proto::v1::{self as pb, connection::Credentials, destination::Target};
use auditstream_testkit::{
    AzureMonitorStandIn, Azurite, Behavior, HttpReceiver, MonitorContract, MonitorFault,
    NatsCluster, NatsServer, S3Server,
};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use serde_json::{Value, json};

const TOKEN: &str = "chaos-token-0123456789abcdef";
const ADMIN: &str = "chaos-admin-0123456789abcdef";
/// The data-plane service kinds; each presents a config-service token of its own.
const SERVICE_KINDS: [&str; 5] = [
    "router",
    "sink_s3",
    "sink_azure_blob",
    "sink_azure_monitor",
    "sink_http",
];

fn service_token(kind: &str) -> String {
    format!("chaos-service-{kind}-0123456789abcdef")
}
/// The config service's sealing key (base64 of 32 bytes).
const SECRETS_KEY: &str = "JMnO8wqj774c+NSE+UuHYKpcrNJr4DHKRVKUQbdX2IA=";

/// What the destination does during an outage window.
#[derive(Debug, Clone, Copy)]
pub enum Outage {
    /// Answers this status to every request (503: down; 403: credentials refused).
    Status(u16),
    /// Accepts connections and never answers.
    Hang,
}

impl Outage {
    fn label(self) -> String {
        match self {
            Outage::Status(s) => format!("answers {s}"),
            Outage::Hang => "hangs".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// Where the service binaries are (`target/debug` or `target/release`).
    pub bin_dir: PathBuf,
    /// How long the load runs; every fault happens inside it.
    pub load_for: Duration,
    /// Events per second sent by the load generator.
    pub rate: f64,
    /// SIGKILL + restart per service (gateway, config-service, router, sink-http).
    pub kills_per_service: usize,
    pub nats_restarts: usize,
    /// One SIGSTOP of nats-server this long (zero: none).
    pub nats_pause: Duration,
    /// Destination misbehaviour windows, one after the other.
    pub outages: Vec<(Outage, Duration)>,
    /// Fill AUDIT_INGEST's quota once and keep it full this long.
    pub full_stream_for: Duration,
    /// Longest wait, after healing, for every accepted id to arrive.
    pub drain_timeout: Duration,
    /// Every stream's size cap: room for the whole run's backlog (AUDIT_HISTORY, bounded by
    /// the same cap, drops its oldest). The JetStream store is sized for ten of them.
    pub stream_bytes: u64,
    pub seed: u64,
    /// A 3-node JetStream cluster (streams at replicas 3) instead of one server: a nats
    /// restart SIGKILLs and restarts the node leading AUDIT_INGEST, a pause stops the one
    /// leading AUDIT_DELIVER.
    pub cluster: bool,
}

impl Plan {
    /// `make chaos`: ≥ 20 kills of each service, 10 minutes of destination outage.
    pub fn full(bin_dir: PathBuf) -> Plan {
        Plan {
            bin_dir,
            load_for: Duration::from_secs(11 * 60),
            rate: 400.0,
            kills_per_service: 20,
            nats_restarts: 3,
            nats_pause: Duration::from_secs(30),
            outages: vec![
                (Outage::Status(503), Duration::from_secs(4 * 60)),
                (Outage::Status(403), Duration::from_secs(3 * 60)),
                (Outage::Hang, Duration::from_secs(3 * 60)),
            ],
            full_stream_for: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(180),
            stream_bytes: 1 << 30,
            seed: 20261123,
            cluster: false,
        }
    }

    /// `make test`: every kind of fault once or twice, in about a minute.
    pub fn smoke(bin_dir: PathBuf) -> Plan {
        Plan {
            bin_dir,
            load_for: Duration::from_secs(50),
            rate: 200.0,
            kills_per_service: 2,
            nats_restarts: 1,
            nats_pause: Duration::from_secs(3),
            outages: vec![
                (Outage::Status(503), Duration::from_secs(5)),
                (Outage::Status(403), Duration::from_secs(5)),
                (Outage::Hang, Duration::from_secs(5)),
            ],
            full_stream_for: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(240),
            stream_bytes: 256 << 20,
            seed: 7,
            cluster: false,
        }
    }
}

/// One service process, restartable on the same ports with the same environment.
struct Proc {
    name: &'static str,
    bin: PathBuf,
    env: Vec<(String, String)>,
    ops: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("service log");
        let child = Command::new(&self.bin)
            .env_clear()
            .envs(self.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
    }

    /// SIGKILL, as a crash or an OOM kill would.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if reqwest::get(format!("http://127.0.0.1:{}/readyz", self.ops))
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited with {status}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready within {timeout:?}; see {}",
                self.name,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The run's directory (service logs, the config database); kept when the run fails or
/// panics, for whoever investigates.
struct LogDir(Option<tempfile::TempDir>);

impl LogDir {
    fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }

    fn keep(&mut self) {
        if let Some(dir) = self.0.take() {
            eprintln!("chaos: logs kept in {}", dir.keep().display());
        }
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.keep();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// The services, in start order, with their environment. The config service comes first:
/// it owns the JetStream topology, and the others are ready only once its streams exist.
fn services(plan: &Plan, dir: &Path, nats_url: &str) -> Vec<Proc> {
    let e = |k: &str, v: String| (k.to_owned(), v);
    let mut common = vec![
        e("AUDITSTREAM_NATS__URL", nats_url.to_owned()),
        e("AUDITSTREAM_LOG__FORMAT", "text".into()),
        // Info, so the logs the secrets check reads hold every failure the run provokes.
        e("AUDITSTREAM_LOG__FILTER", "info".into()),
        e("AUDITSTREAM_SHUTDOWN_GRACE", "2s".into()),
    ];
    for s in ["INGEST", "HISTORY", "PARKED", "DELIVER", "BACKLOG", "DLQ"] {
        common.push(e(
            &format!("AUDITSTREAM_NATS__TOPOLOGY__{s}__MAX_BYTES"),
            plan.stream_bytes.to_string(),
        ));
    }
    common.push(e(
        "AUDITSTREAM_NATS__TOPOLOGY__CONTROL__MAX_BYTES",
        (64u64 << 20).to_string(),
    ));
    if plan.cluster {
        common.push(e("AUDITSTREAM_NATS__TOPOLOGY__REPLICAS", "3".into()));
    }
    let (gw_http, config_grpc) = (free_port(), free_port());
    let proc = |name: &'static str, bin: &str, ops: u16, extra: Vec<(String, String)>| Proc {
        name,
        bin: plan.bin_dir.join(bin),
        env: common
            .iter()
            .cloned()
            .chain([e("AUDITSTREAM_OPS_ADDR", format!("127.0.0.1:{ops}"))])
            // Each service as its own NATS user.
            .chain(
                auditstream_testkit::login_env(auditstream_testkit::binary_service(bin))
                    .map(|(k, v)| (k.to_owned(), v)),
            )
            .chain(extra)
            .collect(),
        ops,
        log: dir.join(format!("{name}.log")),
        child: None,
    };
    let data_plane = |kind: &str| {
        vec![
            e(
                "AUDITSTREAM_CONFIG_SERVICE__URL",
                format!("http://127.0.0.1:{config_grpc}"),
            ),
            e("AUDITSTREAM_CONFIG_SERVICE__TOKEN", service_token(kind)),
        ]
    };
    let sink_env = |kind: &str| {
        let mut env = data_plane(kind);
        env.extend([
            e("AUDITSTREAM_SINK__ALLOW_INSECURE_HTTP", "true".into()),
            e("AUDITSTREAM_SINK__ALLOWED_NETWORKS", "127.0.0.0/8".into()),
            // A hung destination costs a request this long, not the 30 s default.
            e("AUDITSTREAM_SINK__REQUEST_TIMEOUT", "3s".into()),
            e("AUDITSTREAM_DELIVERY__PROBE__INITIAL", "500ms".into()),
            e("AUDITSTREAM_DELIVERY__PROBE__MAX", "2s".into()),
            e("AUDITSTREAM_DELIVERY__BROKEN_AFTER", "5s".into()),
        ]);
        env
    };
    let mut tokens = vec![json!({"token": ADMIN, "role": "platform_admin", "name": "chaos"})];
    for kind in SERVICE_KINDS {
        tokens.push(
            json!({"token": service_token(kind), "role": "service", "service": kind, "name": kind}),
        );
    }
    vec![
        proc(
            "config-service",
            "auditstream-config-service",
            free_port(),
            vec![
                e("AUDITSTREAM_GRPC_ADDR", format!("127.0.0.1:{config_grpc}")),
                e(
                    "AUDITSTREAM_DATABASE__URL",
                    format!("sqlite://{}?mode=rwc", dir.join("config.db").display()),
                ),
                e("AUDITSTREAM_AUTH__TOKENS", Value::Array(tokens).to_string()),
                e("AUDITSTREAM_SECRETS__ACTIVE_KEY", "chaos".into()),
                e(
                    "AUDITSTREAM_SECRETS__KEYS",
                    json!({ "chaos": SECRETS_KEY }).to_string(),
                ),
                e("AUDITSTREAM_HTTP__ALLOW_INSECURE_HTTP", "true".into()),
                e("AUDITSTREAM_HTTP__ALLOWED_NETWORKS", "127.0.0.0/8".into()),
            ],
        ),
        proc(
            "gateway",
            "auditstream-gateway",
            free_port(),
            vec![
                e("AUDITSTREAM_HTTP_ADDR", format!("127.0.0.1:{gw_http}")),
                e(
                    "AUDITSTREAM_GRPC_ADDR",
                    format!("127.0.0.1:{}", free_port()),
                ),
                e("AUDITSTREAM_AUTH__TOKENS", TOKEN.into()),
                e("AUDITSTREAM_NATS__PUBLISH_TIMEOUT", "2s".into()),
                e("AUDITSTREAM_RETRY_AFTER", "1s".into()),
            ],
        ),
        proc(
            "router",
            "auditstream-router",
            free_port(),
            data_plane("router"),
        ),
        proc(
            "sink-http",
            "auditstream-sink-http",
            free_port(),
            sink_env("sink_http"),
        ),
        proc(
            "sink-s3",
            "auditstream-sink-s3",
            free_port(),
            sink_env("sink_s3"),
        ),
        proc(
            "sink-azure-blob",
            "auditstream-sink-azure-blob",
            free_port(),
            sink_env("sink_azure_blob"),
        ),
        proc(
            "sink-azure-monitor",
            "auditstream-sink-azure-monitor",
            free_port(),
            sink_env("sink_azure_monitor"),
        ),
    ]
    .into_iter()
    .map(|mut p| {
        if p.name == "gateway" {
            // The HTTP port the load generator needs travels in the environment.
            p.env.push(e("CHAOS_HTTP_PORT", gw_http.to_string()));
        }
        p
    })
    .collect()
}

fn named<'p>(procs: &'p [Proc], name: &str) -> &'p Proc {
    procs
        .iter()
        .find(|p| p.name == name)
        .expect("a service of that name")
}

fn gateway_http(procs: &[Proc]) -> String {
    let port = named(procs, "gateway")
        .env
        .iter()
        .find(|(k, _)| k == "CHAOS_HTTP_PORT")
        .map(|(_, v)| v.clone())
        .expect("gateway port");
    format!("http://127.0.0.1:{port}")
}

fn config_url(procs: &[Proc]) -> String {
    let addr = named(procs, "config-service")
        .env
        .iter()
        .find(|(k, _)| k == "AUDITSTREAM_GRPC_ADDR")
        .map(|(_, v)| v.clone())
        .expect("config-service address");
    format!("http://{addr}")
}

/// The destinations besides the HTTP receiver, each taking one organization's events
/// (organizations 1, 2 and 3; all four also go to the receiver).
struct Stores {
    s3: S3Server,
    azurite: Azurite,
    monitor: AzureMonitorStandIn,
    /// An HTTP intake whose URL is the credential (as Sumo Logic's), with a sealed header:
    /// the run searches for both secrets as for the others.
    sumo: HttpReceiver,
}

/// The secret path of the URL credential and the sealed header's value.
const URL_TOKEN: &str = "chaos-url-token-0123456789";
const SEALED_HEADER: &str = "chaos-sealed-header-0123456789";

const BUCKET: &str = "chaos";

impl Stores {
    async fn start() -> Stores {
        let s3 = S3Server::s3s_fs("chaos-access-key", "chaos-secret-key-0123456789");
        s3.create_bucket(BUCKET).await;
        let azurite = Azurite::start();
        azurite.create_container(BUCKET).await;
        let monitor = AzureMonitorStandIn::start(MonitorContract::default()).await;
        let sumo = HttpReceiver::start().await;
        sumo.set_behavior(Behavior::RequireHeader {
            name: "x-chaos-key".into(),
            value: SEALED_HEADER.into(),
            otherwise: 403,
        });
        Stores {
            s3,
            azurite,
            monitor,
            sumo,
        }
    }

    /// The streams: `lg-org-1` → S3, `lg-org-2` → Azure Blob, `lg-org-3` → Azure Monitor,
    /// `lg-org-0` → the URL-credential intake.
    async fn configure(&self, config_url: &str) {
        let contract = self.monitor.contract();
        let destinations = [
            (
                "lg-org-1",
                "s3",
                Credentials::S3(pb::S3Credentials {
                    method: Some(pb::s3_credentials::Method::StaticKeys(pb::S3StaticKeys {
                        access_key_id: self.s3.access_key().into(),
                        secret_access_key: self.s3.secret_key().into(),
                        session_token: String::new(),
                    })),
                    region: "us-east-1".into(),
                    endpoint: self.s3.endpoint(),
                    force_path_style: true,
                }),
                Target::S3(pb::S3Target {
                    bucket: BUCKET.into(),
                    prefix: "audit".into(),
                    ..Default::default()
                }),
            ),
            (
                "lg-org-2",
                "blob",
                Credentials::AzureBlob(pb::AzureBlobCredentials {
                    account: Azurite::ACCOUNT.into(),
                    endpoint: self.azurite.endpoint(),
                    method: Some(pb::azure_blob_credentials::Method::SharedKey(
                        pb::AzureSharedKey {
                            account_key: Azurite::KEY.into(),
                        },
                    )),
                }),
                Target::AzureBlob(pb::AzureBlobTarget {
                    container: BUCKET.into(),
                    prefix: "audit".into(),
                    ..Default::default()
                }),
            ),
            (
                "lg-org-3",
                "monitor",
                Credentials::AzureMonitor(pb::AzureMonitorCredentials {
                    ingestion_endpoint: self.monitor.ingestion_endpoint(),
                    method: Some(pb::azure_monitor_credentials::Method::ClientCredentials(
                        pb::AzureClientCredentials {
                            tenant_id: contract.tenant_id.clone(),
                            client_id: contract.client_id.clone(),
                            client_secret: contract.client_secret.clone(),
                            authority_host: self.monitor.authority_host(),
                        },
                    )),
                }),
                Target::AzureMonitor(pb::AzureMonitorTarget {
                    ingestion_endpoint: self.monitor.ingestion_endpoint(),
                    dcr_immutable_id: contract.dcr_immutable_id.clone(),
                    stream_name: contract.stream_name.clone(),
                    log_type: "AuditLogs".into(),
                    ..Default::default()
                }),
            ),
            (
                "lg-org-0",
                "sumo",
                Credentials::Http(pb::HttpCredentials {
                    auth: Some(pb::http_credentials::Auth::Url(pb::HttpUrlAuth {
                        url: self.sumo.url(&format!("/receiver/v1/http/{URL_TOKEN}")),
                    })),
                    headers: [("X-Chaos-Key".to_owned(), SEALED_HEADER.to_owned())].into(),
                    ..Default::default()
                }),
                Target::Http(pb::HttpTarget::default()),
            ),
        ];
        for (org, name, credentials, target) in destinations {
            extra_destination(config_url, ADMIN, org, name, credentials, target)
                .await
                .unwrap_or_else(|e| panic!("{name} stream: {e}"));
        }
    }

    fn outage(&mut self, outage: Outage) {
        self.s3.stop();
        self.azurite.stop();
        match outage {
            Outage::Status(403) => self.monitor.set_role_assigned(false),
            Outage::Status(status) => self.monitor.set_fault(MonitorFault::Status(status)),
            Outage::Hang => self.monitor.set_fault(MonitorFault::Status(500)),
        }
        let status = match outage {
            Outage::Status(status) => status,
            Outage::Hang => 503,
        };
        self.sumo.set_behavior(Behavior::Status {
            status,
            retry_after: None,
            body: String::new(),
        });
    }

    fn heal(&mut self) {
        self.s3.restart();
        self.azurite.restart();
        self.monitor.set_role_assigned(true);
        self.monitor.set_fault(MonitorFault::None);
        self.sumo.set_behavior(Behavior::RequireHeader {
            name: "x-chaos-key".into(),
            value: SEALED_HEADER.into(),
            otherwise: 403,
        });
    }

    /// Every delivery each store holds (ids repeat for duplicates).
    async fn arrivals(&self) -> [(&'static str, &'static str, Vec<String>); 4] {
        [
            ("S3 (s3s-fs)", "lg-org-1", self.s3.event_ids(BUCKET).await),
            (
                "Azure Blob (Azurite)",
                "lg-org-2",
                self.azurite.event_ids(BUCKET).await,
            ),
            (
                "Azure Monitor (stand-in)",
                "lg-org-3",
                self.monitor.accepted_ids(),
            ),
            (
                "HTTP with a URL credential (receiver)",
                "lg-org-0",
                self.sumo.accepted_ids(),
            ),
        ]
    }
}

/// One destination's count at the end.
#[derive(Debug, Clone)]
pub struct Tally {
    pub destination: &'static str,
    pub accepted: usize,
    pub delivered: usize,
    pub lost: usize,
    pub duplicates: usize,
}

/// A fault at a moment of the run.
#[derive(Debug, Clone)]
enum Fault {
    Kill(usize),
    RestartNats,
    PauseNats,
    Destination(Outage, Duration),
    FillIngest,
}

/// The faults at random moments (the seed makes a run repeatable): kills and NATS restarts
/// anywhere in the first 85 % of the load; destination windows back to back from 5 %; the
/// pause and the full stream in between.
fn schedule(plan: &Plan, services: usize, rng: &mut StdRng) -> Vec<(Duration, Fault)> {
    let span = plan.load_for.mul_f64(0.85);
    let at = |rng: &mut StdRng, lo: f64, hi: f64| span.mul_f64(rng.random_range(lo..hi));
    let mut faults = Vec::new();
    for s in 0..services {
        for _ in 0..plan.kills_per_service {
            faults.push((at(rng, 0.02, 1.0), Fault::Kill(s)));
        }
    }
    for _ in 0..plan.nats_restarts {
        faults.push((at(rng, 0.05, 1.0), Fault::RestartNats));
    }
    if !plan.nats_pause.is_zero() {
        faults.push((at(rng, 0.3, 0.7), Fault::PauseNats));
    }
    let mut t = plan.load_for.mul_f64(0.05);
    for (outage, length) in &plan.outages {
        faults.push((t, Fault::Destination(*outage, *length)));
        t += *length;
    }
    if !plan.full_stream_for.is_zero() {
        faults.push((at(rng, 0.2, 0.8), Fault::FillIngest));
    }
    faults.sort_by_key(|(t, _)| *t);
    faults
}

#[derive(Debug, Default)]
pub struct Report {
    pub accepted: usize,
    pub delivered: usize,
    /// Accepted ids missing at a destination that should have them, over all destinations.
    pub lost: usize,
    /// Per destination: the HTTP receiver (every organization) and the four stores.
    pub destinations: Vec<Tally>,
    /// The first lost ids (at most 1000), for the investigation.
    pub missing: Vec<String>,
    pub duplicates: u64,
    pub requests: u64,
    pub failed_requests: u64,
    pub kills: BTreeMap<&'static str, usize>,
    pub nats_restarts: usize,
    pub nats_paused: Duration,
    pub outages: Vec<(String, Duration)>,
    /// Answers to probes while AUDIT_INGEST was full, by status (0: none; 1: a 503 without
    /// `Retry-After`).
    pub full_stream_answers: BTreeMap<u16, usize>,
    /// MiB of filler it took to fill AUDIT_INGEST.
    pub filler_mib: usize,
    /// Log lines and status answers (GetStatus, every service's /metrics) read for secrets,
    /// and where one was found.
    pub log_lines_checked: usize,
    pub status_answers_checked: usize,
    /// Messages of AUDIT_CONTROL (the change feed, status reports) read for secrets.
    pub bus_messages_checked: usize,
    pub secret_leaks: Vec<String>,
    pub drain: Duration,
    pub elapsed: Duration,
    /// After the drain: AUDIT_INGEST's messages, the router consumer's pending and unacked.
    pub ingest_left: (u64, u64, usize),
    /// "one nats-server" or "3-node cluster, replicas 3".
    pub nats: &'static str,
}

impl Report {
    pub fn json(&self) -> Value {
        json!({
            "nats": self.nats,
            "accepted": self.accepted,
            "delivered": self.delivered,
            "lost": self.lost,
            "destinations": self.destinations.iter().map(|t| json!({
                "destination": t.destination, "accepted": t.accepted, "delivered": t.delivered,
                "lost": t.lost, "duplicates": t.duplicates,
            })).collect::<Vec<_>>(),
            "duplicates": self.duplicates,
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "kills": self.kills,
            "nats_restarts": self.nats_restarts,
            "nats_paused_s": self.nats_paused.as_secs_f64(),
            "destination_outages": self.outages.iter().map(|(what, d)| json!({"what": what, "s": d.as_secs_f64()})).collect::<Vec<_>>(),
            "full_stream_answers": self.full_stream_answers,
            "filler_mib": self.filler_mib,
            "log_lines_checked": self.log_lines_checked,
            "status_answers_checked": self.status_answers_checked,
            "bus_messages_checked": self.bus_messages_checked,
            "secret_leaks": self.secret_leaks,
            "drain_s": self.drain.as_secs_f64(),
            "elapsed_s": self.elapsed.as_secs_f64(),
        })
    }

    pub fn markdown(&self) -> String {
        let kills: Vec<String> = self.kills.iter().map(|(s, n)| format!("{s} {n}")).collect();
        let outages: Vec<String> = self
            .outages
            .iter()
            .map(|(what, d)| format!("{what} {:.0} s", d.as_secs_f64()))
            .collect();
        let destinations: String = self
            .destinations
            .iter()
            .map(|t| {
                format!(
                    "| … at {}: accepted for it / delivered / lost / duplicates | {} / {} / **{}** / {} |\n",
                    t.destination, t.accepted, t.delivered, t.lost, t.duplicates
                )
            })
            .collect();
        format!(
            "| figure | value |\n|---|---|\n\
             | events accepted by the gateway | {} |\n\
             | delivered (distinct ids) | {} |\n\
             | **lost** | **{}** |\n{destinations}\
             | duplicates delivered | {} ({:.2} %) |\n\
             | requests (failed: not accepted, resent by no one) | {} ({}) |\n\
             | SIGKILLs (each followed by a restart) | {} |\n\
             | NATS | {} |\n\
             | nats-server restarts (in a cluster: the AUDIT_INGEST leader) | {} |\n\
             | nats-server paused (SIGSTOP) | {:.0} s |\n\
             | destination outages | {} |\n\
             | answers while AUDIT_INGEST was full (filled with {} MiB; status: count) | {:?} |\n\
             | secrets found in {} log lines, {} status and /metrics answers and {} AUDIT_CONTROL messages | {} |\n\
             | left in AUDIT_INGEST after the drain (messages / router pending / unacked) | {:?} |\n\
             | drain after healing | {:.1} s |\n\
             | whole run | {:.0} s |\n",
            self.accepted,
            self.delivered,
            self.lost,
            self.duplicates,
            100.0 * self.duplicates as f64 / self.accepted.max(1) as f64,
            self.requests,
            self.failed_requests,
            kills.join(", "),
            self.nats,
            self.nats_restarts,
            self.nats_paused.as_secs_f64(),
            outages.join(", "),
            self.filler_mib,
            self.full_stream_answers,
            self.log_lines_checked,
            self.status_answers_checked,
            self.bus_messages_checked,
            self.secret_leaks.len(),
            self.ingest_left,
            self.drain.as_secs_f64(),
            self.elapsed.as_secs_f64(),
        )
    }
}

/// The run's NATS: one server, or a 3-node cluster.
enum Nats {
    Single(NatsServer),
    Cluster(NatsCluster),
}

impl Nats {
    fn start(plan: &Plan, store: &str) -> Nats {
        if plan.cluster {
            Nats::Cluster(NatsCluster::start(3, store))
        } else {
            Nats::Single(NatsServer::start_with(store, false))
        }
    }

    fn url(&self) -> String {
        match self {
            Nats::Single(n) => n.url(),
            Nats::Cluster(c) => c.url(),
        }
    }

    async fn jetstream(&self) -> async_nats::jetstream::Context {
        match self {
            Nats::Single(n) => n.jetstream().await,
            Nats::Cluster(c) => {
                let js = c.jetstream().await;
                c.wait_jetstream(&js).await;
                js
            }
        }
    }

    /// SIGKILL and restart: the server, or the node leading AUDIT_INGEST.
    async fn restart(&mut self) {
        match self {
            Nats::Single(n) => n.restart(),
            Nats::Cluster(c) => {
                let js = c.jetstream().await;
                let leader = c.leader_of(&js, auditstream_bus::topology::INGEST).await;
                c.restart(leader);
            }
        }
    }

    /// The process to SIGSTOP: the server, or the node leading AUDIT_DELIVER.
    async fn pausable_pid(&self) -> u32 {
        match self {
            Nats::Single(n) => n.pid().expect("nats-server runs"),
            Nats::Cluster(c) => {
                let js = c.jetstream().await;
                let leader = c.leader_of(&js, auditstream_bus::topology::DELIVER).await;
                c.pid(leader).expect("the leader runs")
            }
        }
    }
}

/// Where the filler goes: messages without event headers, which the router acks as
/// malformed (counted) once it runs again.
const FILLER: &str = "audit.ingest.chaos-filler.ws-filler.job_status";

/// Fills AUDIT_INGEST's disk quota (`max_bytes`, `discard: new`) with 1 MiB filler messages
/// until JetStream refuses one, as a burst of traffic would; returns how many it took.
async fn fill_ingest(nats: &Nats) -> usize {
    let js = nats.jetstream().await;
    let chunk = bytes::Bytes::from(vec![b'x'; 1 << 20]);
    let (mut n, mut failures) = (0, 0);
    loop {
        let ack = js
            .publish(FILLER, chunk.clone())
            .await
            .expect("publish filler");
        match ack.await {
            Ok(_) => n += 1,
            Err(e) if e.to_string().contains("maximum bytes") => return n,
            // A cluster electing a stream leader answers "no stream" or times out for a
            // moment.
            Err(e) if failures < 100 => {
                failures += 1;
                eprintln!("chaos: filling AUDIT_INGEST: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("filling AUDIT_INGEST: {e}"),
        }
    }
}

/// AUDIT_INGEST's messages, and the router consumer's pending and unacked counts.
async fn ingest_left(nats: &Nats) -> (u64, u64, usize) {
    let js = nats.jetstream().await;
    let Ok(mut stream) = js.get_stream(auditstream_bus::topology::INGEST).await else {
        return (0, 0, 0);
    };
    let messages = stream.info().await.map_or(0, |i| i.state.messages);
    let consumer = match stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>("router")
        .await
    {
        Ok(mut c) => c
            .info()
            .await
            .map(|i| (i.num_pending, i.num_ack_pending))
            .ok(),
        Err(_) => None,
    };
    let (pending, unacked) = consumer.unwrap_or_default();
    (messages, pending, unacked)
}

/// POSTs one small request while the stream is full: its status, 503 only with
/// `Retry-After` (0: no answer).
async fn probe_full(http: &reqwest::Client, url: &str) -> u16 {
    let body = r#"{"event_type":"api_platform","occurred_at":"2026-11-23T10:00:00Z","org_id":"lg-org-0","workspace_id":"lg-org-0-ws-0","data":{"filler":"full stream probe"}}"#;
    http.post(format!("{url}/v1/events"))
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .map_or(0, |r| match r.status().as_u16() {
            503 if !r.headers().contains_key("retry-after") => 1,
            status => status,
        })
}

/// The run's secrets, by name: what must never appear in a log line or a status answer.
fn secrets(stores: &Stores) -> Vec<(&'static str, String)> {
    let mut secrets: Vec<(&'static str, String)> = SERVICE_KINDS
        .iter()
        .map(|kind| ("service token", service_token(kind)))
        .collect();
    secrets.extend([
        ("producer token", TOKEN.into()),
        ("admin token", ADMIN.into()),
        ("secrets key", SECRETS_KEY.into()),
        ("S3 secret key", stores.s3.secret_key().into()),
        ("Azure storage key", Azurite::KEY.into()),
        (
            "Entra client secret",
            stores.monitor.contract().client_secret,
        ),
        ("URL credential", URL_TOKEN.into()),
        ("sealed header value", SEALED_HEADER.into()),
    ]);
    secrets
}

/// Every message AUDIT_CONTROL holds (headers and payload), as bytes.
async fn control_messages(nats: &Nats) -> Vec<Vec<u8>> {
    let js = nats.jetstream().await;
    let mut stream = js
        .get_stream(auditstream_bus::topology::CONTROL)
        .await
        .expect("AUDIT_CONTROL");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(m) = stream.get_raw_message(seq).await {
            let mut bytes = format!("{:?}", m.headers).into_bytes();
            bytes.extend_from_slice(&m.payload);
            out.push(bytes);
        }
    }
    out
}

/// `GetStatus` of every stream (what `auditctl stream status` shows), as text.
async fn status_texts(config_url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(mut client) =
        pb::config_service_client::ConfigServiceClient::connect(config_url.to_owned()).await
    else {
        return out; // the config service may be down at this moment; the next sample counts
    };
    let mut ids: Vec<String> = (0..4).map(|o| format!("lg-org-{o}-all")).collect();
    ids.extend(["lg-org-1-s3", "lg-org-2-blob", "lg-org-3-monitor"].map(String::from));
    for id in ids {
        let mut request = tonic::Request::new(pb::GetStatusRequest { stream_id: id });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {ADMIN}").parse().expect("ASCII token"),
        );
        if let Ok(status) = client.get_status(request).await {
            out.push(format!("{:?}", status.into_inner()));
        }
    }
    out
}

/// Ends a destination outage window: the receiver answers again, the stores come back.
fn heal_destinations(receiver: &Receiver, stores: &mut Stores, down: &mut bool) {
    receiver.refuse(None);
    receiver.hang(false);
    if std::mem::take(down) {
        stores.heal();
    }
}

/// Waits until every store holds the accepted ids of its organization (or `deadline`
/// passes); the tally of each.
async fn tally_stores(
    stores: &Stores,
    accepted: &[String],
    orgs: &[String],
    deadline: Instant,
) -> Vec<(Tally, Vec<String>)> {
    loop {
        let mut tallies = Vec::new();
        for (destination, org, arrived) in stores.arrivals().await {
            let want: std::collections::HashSet<&String> = accepted
                .iter()
                .zip(orgs)
                .filter(|(_, o)| o.as_str() == org)
                .map(|(id, _)| id)
                .collect();
            let mut seen: std::collections::HashMap<&String, usize> = Default::default();
            for id in &arrived {
                *seen.entry(id).or_default() += 1;
            }
            let missing: Vec<String> = want
                .iter()
                .filter(|id| !seen.contains_key(**id))
                .map(|id| (*id).clone())
                .collect();
            tallies.push((
                Tally {
                    destination,
                    accepted: want.len(),
                    delivered: want.len() - missing.len(),
                    lost: missing.len(),
                    duplicates: seen.values().map(|n| n - 1).sum(),
                },
                missing,
            ));
        }
        if tallies.iter().all(|(t, _)| t.lost == 0) || Instant::now() >= deadline {
            return tallies;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

pub async fn run(plan: Plan) -> Report {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut dir = LogDir(Some(
        tempfile::Builder::new()
            .prefix("auditstream-chaos-")
            .tempdir()
            .expect("temp dir"),
    ));
    // INGEST, HISTORY, PARKED, DELIVER, DLQ and the four per-type backlogs, plus room for
    // AUDIT_CONTROL.
    let store = format!("{}MB", 10 * plan.stream_bytes / (1 << 20) + 256);
    let mut nats = Nats::start(&plan, &store);
    let mut stores = Stores::start().await;
    let mut procs = services(&plan, dir.path(), &nats.url());
    for p in &mut procs {
        p.start();
        p.wait_ready(Duration::from_secs(60)).await;
    }
    let receiver = Receiver::start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("receiver");
    let shape = Shape {
        orgs: 4,
        workspaces_per_org: 5,
        min_size: 200,
        max_size: 4096,
        run: "chaos".into(),
        ..Shape::default()
    };
    setup(
        &config_url(&procs),
        ADMIN,
        &shape,
        &format!("http://{}", receiver.addr()),
    )
    .await
    .expect("tenant tree and streams");
    stores.configure(&config_url(&procs)).await;
    // The router and the sinks follow the new streams through the change feed.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let gateway = gateway_http(&procs);
    let load = tokio::spawn(send(SendPlan {
        transport: Transport::Http,
        target: gateway.clone(),
        token: TOKEN.into(),
        batch: 20,
        concurrency: 4,
        rate: Some(plan.rate),
        duration: plan.load_for,
        max_events: None,
        shape,
        seed: plan.seed,
    }));

    let mut report = Report {
        nats: if plan.cluster {
            "3-node cluster, replicas 3"
        } else {
            "one nats-server"
        },
        ..Report::default()
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let load_started = Instant::now();
    // Destination windows run on their own clock so kills continue during them.
    let mut outage_until: Option<Instant> = None;
    let mut stores_down = false;
    let mut statuses = Vec::new();
    for (at, fault) in schedule(&plan, procs.len(), &mut rng) {
        let at = load_started + at;
        while Instant::now() < at {
            if outage_until.is_some_and(|t| Instant::now() >= t) {
                // What an admin would see while the destinations are failing.
                statuses.extend(status_texts(&config_url(&procs)).await);
                heal_destinations(&receiver, &mut stores, &mut stores_down);
                outage_until = None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match fault {
            Fault::Kill(i) => {
                let p = &mut procs[i];
                p.kill9();
                *report.kills.entry(p.name).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..2000))).await;
                p.start();
            }
            Fault::RestartNats => {
                nats.restart().await;
                report.nats_restarts += 1;
            }
            Fault::PauseNats => {
                let pid = nats.pausable_pid().await;
                signal(pid, "-STOP");
                tokio::time::sleep(plan.nats_pause).await;
                signal(pid, "-CONT");
                report.nats_paused += plan.nats_pause;
            }
            Fault::Destination(outage, length) => {
                if outage_until.is_some() {
                    statuses.extend(status_texts(&config_url(&procs)).await);
                }
                heal_destinations(&receiver, &mut stores, &mut stores_down);
                match outage {
                    Outage::Status(status) => receiver.refuse(Some(("/", status))),
                    Outage::Hang => receiver.hang(true),
                }
                stores.outage(outage);
                stores_down = true;
                outage_until = Some(Instant::now() + length);
                report.outages.push((outage.label(), length));
            }
            Fault::FillIngest => {
                // AUDIT_INGEST fills only while the router falls behind (it removes what it
                // routed): the routers stop, a burst fills the stream, and they go on after.
                let routers: Vec<u32> = procs
                    .iter()
                    .filter(|p| p.name == "router")
                    .filter_map(|p| p.child.as_ref().map(|c| c.id()))
                    .collect();
                for pid in &routers {
                    signal(*pid, "-STOP");
                }
                report.filler_mib = fill_ingest(&nats).await;
                let until = Instant::now() + plan.full_stream_for;
                while Instant::now() < until {
                    *report
                        .full_stream_answers
                        .entry(probe_full(&http, &gateway).await)
                        .or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                // The routers take the filler out again (messages without event headers:
                // acked as malformed, counted). No purge: on a cluster, purging one subject
                // of a work queue made the router's consumer skip other messages for good
                // (seen with nats-server 2.15.1; `ingest_left` in the report shows it).
                for pid in &routers {
                    signal(*pid, "-CONT");
                }
            }
        }
    }
    let sent = load.await.expect("load task").expect("load generator");
    // Heal: the destinations answer, NATS and every service run and are ready.
    if let Some(until) = outage_until {
        tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
        statuses.extend(status_texts(&config_url(&procs)).await);
    }
    heal_destinations(&receiver, &mut stores, &mut stores_down);
    for p in &mut procs {
        if p.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
        {
            p.start();
        }
        p.wait_ready(Duration::from_secs(60)).await;
    }
    let drain_started = Instant::now();
    let deadline = drain_started + plan.drain_timeout;
    let tally = receiver.wait_for(&sent.accepted, plan.drain_timeout).await;
    let stored = tally_stores(&stores, &sent.accepted, &sent.accepted_orgs, deadline).await;
    report.drain = drain_started.elapsed();
    // Where an event still waiting would be: unrouted in AUDIT_INGEST (and whether the
    // router's consumer still counts it as pending).
    report.ingest_left = ingest_left(&nats).await;
    report.accepted = sent.accepted.len();
    report.delivered = tally.delivered;
    report.duplicates = tally.duplicates;
    report.requests = sent.requests;
    report.failed_requests = sent.failed_requests;
    report.destinations.push(Tally {
        destination: "HTTP receiver (every organization)",
        accepted: sent.accepted.len(),
        delivered: tally.delivered,
        lost: tally.missing,
        duplicates: tally.duplicates as usize,
    });
    report.missing = receiver.missing(&sent.accepted);
    for (t, missing) in stored {
        report.missing.extend(missing);
        report.destinations.push(t);
    }
    report.lost = report.destinations.iter().map(|t| t.lost).sum();
    // No secret in any service's log or in what GetStatus said during and after the outages.
    statuses.extend(status_texts(&config_url(&procs)).await);
    let secrets = secrets(&stores);
    // What every service exposes on /metrics after the run counts as a status answer.
    for p in &procs {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{}/metrics", p.ops)).await
            && let Ok(text) = r.text().await
        {
            statuses.push(text);
        }
    }
    report.status_answers_checked = statuses.len();
    for p in &procs {
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        report.log_lines_checked += log.lines().count();
        for (name, value) in &secrets {
            if log.contains(value.as_str()) {
                report
                    .secret_leaks
                    .push(format!("{name} in {}'s log", p.name));
            }
        }
    }
    for (name, value) in &secrets {
        if statuses.iter().any(|s| s.contains(value.as_str())) {
            report
                .secret_leaks
                .push(format!("{name} in a GetStatus answer or /metrics"));
        }
    }
    let control = control_messages(&nats).await;
    report.bus_messages_checked = control.len();
    for (name, value) in &secrets {
        if control
            .iter()
            .any(|m| m.windows(value.len()).any(|w| w == value.as_bytes()))
        {
            report
                .secret_leaks
                .push(format!("{name} in an AUDIT_CONTROL message"));
        }
    }
    if report.lost > 0 || !report.secret_leaks.is_empty() {
        report.missing.truncate(1000);
        eprintln!("chaos: {} deliveries missing", report.lost);
        dir.keep();
    }
    report.elapsed = started.elapsed();
    drop(procs);
    drop(nats);
    report
}
