//! One owner of the JetStream topology (security review L8): only the config service or
//! `auditctl topology apply` creates or changes streams. A router configured with lower
//! limits leaves a stronger stream alone; one configured with higher limits refuses it, says
//! why on `/readyz`, and changes nothing; a gateway started before the streams exist becomes
//! ready once `auditctl topology apply` creates them, and applying twice changes nothing.

use std::time::Duration;

use auditstream_bus::{
    Mismatch, Service, TopologyConfig, Verdict, VerifyError, topology, verify_topology,
};
use auditstream_testkit::{
    ConfigHarness, Database, GatewayHarness, NatsServer, RouterHarness, small_topology,
    stream_configs, test_gateway_config, test_router_config,
};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Polls `readyz` until its text contains `want`; returns that text. Panics after 20 s.
async fn wait_readyz_saying<F, Fut>(readyz: F, want: &str) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (u16, String)>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, text) = readyz().await;
        if text.contains(want) {
            assert_eq!(status, 503, "{text}");
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never said {want:?}; last: {status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the platform's owner chose: longer ages than the test kit's defaults.
fn owners_topology() -> TopologyConfig {
    let mut t = small_topology();
    t.history.max_age = 2 * DAY;
    t.dlq.max_age = 14 * DAY;
    t
}

#[tokio::test]
async fn a_router_never_changes_the_streams_and_refuses_weaker_ones_naming_them() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.nats.topology = owners_topology()
    })
    .await;
    let before = stream_configs(&js).await;

    // Configured with the defaults (shorter ages than stored): fine, and nothing is lowered.
    let lower = RouterHarness::start(test_router_config(&nats.url(), &config.url())).await;
    assert_eq!(
        stream_configs(&js).await,
        before,
        "a verifier changed a stream"
    );
    lower.stop().await.expect("clean shutdown");

    // Configured for more than is stored: refused, with stream, field and both values.
    let mut higher = test_router_config(&nats.url(), &config.url());
    higher.nats.topology = owners_topology();
    higher.nats.topology.history.max_age = 30 * DAY;
    higher.nats.topology.replicas = 3;
    let router = RouterHarness::start_unready(higher.clone()).await;
    let text = wait_readyz_saying(|| router.readyz(), "jetstream topology refused").await;
    for part in [
        "stream AUDIT_HISTORY: max_age is 2days stored, 30days configured (weaker)",
        "stream AUDIT_CONTROL: replicas is 1 stored, 3 configured (weaker)",
        "only the config service or `auditctl topology apply` changes the topology",
    ] {
        assert!(text.contains(part), "{part:?} not in {text:?}");
    }
    assert_eq!(
        stream_configs(&js).await,
        before,
        "a refusing verifier changed a stream"
    );

    // The same check as a typed error: every weaker field of every stream the router works
    // on (not the sinks' backlogs, which it neither reads nor may read), nothing else.
    let Err(VerifyError::Mismatch(refused)) =
        verify_topology(&js, &higher.nats.topology, Service::Router).await
    else {
        panic!("a weaker stored topology was accepted");
    };
    let mut fields: Vec<_> = refused
        .iter()
        .map(|m| match m {
            Mismatch::Weaker(d) => {
                assert_eq!(d.verdict, Verdict::Weaker);
                (d.stream.as_str(), d.field)
            }
            Mismatch::Missing { stream } => panic!("{stream} reported missing"),
        })
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            ("AUDIT_CONTROL", "replicas"),
            ("AUDIT_DELIVER", "replicas"),
            ("AUDIT_DLQ", "replicas"),
            ("AUDIT_HISTORY", "max_age"),
            ("AUDIT_HISTORY", "replicas"),
            ("AUDIT_INGEST", "replicas"),
            ("AUDIT_PARKED", "replicas"),
        ]
    );
    router.stop().await.expect("clean shutdown");
}

/// A topology file as an operator (or a Helm job) passes it: a service's whole TOML file,
/// whose other sections `auditctl topology apply` ignores.
fn topology_file(dir: &tempfile::TempDir, history_max_age: &str) -> std::path::PathBuf {
    // As the topology's owner: the config service's NATS user.
    let owner = auditstream_bus::Service::ConfigService;
    let (user, password) = (owner.user(), auditstream_testkit::service_password(owner));
    let mut text = format!(
        "ops_addr = \"127.0.0.1:9\"\n[log]\nformat = \"text\"\n[nats]\nurl = \"nats://127.0.0.1:9\"\n\
         user = \"{user}\"\npassword = \"{password}\"\n\
         [nats.topology.ingest]\nmax_bytes = 67108864\n\
         [nats.topology.history]\nmax_age = \"{history_max_age}\"\nmax_bytes = 67108864\n"
    );
    for stream in ["parked", "deliver", "backlog", "dlq", "control"] {
        text += &format!("[nats.topology.{stream}]\nmax_bytes = 67108864\n");
    }
    let path = dir.path().join("service.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `auditctl topology apply --config FILE --nats-url URL [--json]`, in-process.
async fn apply(file: &std::path::Path, nats_url: &str, json: bool) -> String {
    let file = file.to_str().unwrap();
    let mut argv = vec!["auditctl", "topology", "apply", "--config", file];
    argv.extend(["--nats-url", nats_url]);
    if json {
        argv.push("--json");
    }
    let mut out = Vec::new();
    auditstream_cli::run_args(argv, &mut out)
        .await
        .unwrap_or_else(|e| panic!("auditctl topology apply failed: {e}"));
    String::from_utf8(out).unwrap()
}

fn columns(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[tokio::test]
async fn a_gateway_started_before_the_streams_becomes_ready_once_auditctl_applies_them() {
    let nats = NatsServer::start();
    let gateway = GatewayHarness::start_unready(test_gateway_config(&nats.url())).await;
    let text = wait_readyz_saying(
        || auditstream_testkit::readyz(gateway.ops),
        "stream AUDIT_INGEST is missing",
    )
    .await;
    assert!(text.contains("`auditctl topology apply`"), "{text}");
    // The gateway created nothing while it waited.
    let js = nats.jetstream().await;
    assert!(
        js.get_stream(topology::INGEST).await.is_err(),
        "a verifier created a stream"
    );

    let dir = tempfile::tempdir().unwrap();
    apply(&topology_file(&dir, "1d"), &nats.url(), false).await;
    gateway.wait_ready(Duration::from_secs(20)).await;
    gateway.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn auditctl_topology_apply_creates_the_streams_and_is_idempotent() {
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let dir = tempfile::tempdir().unwrap();
    let file = topology_file(&dir, "1d");
    let names = [
        "AUDIT_INGEST",
        "AUDIT_DELIVER",
        "AUDIT_BACKLOG_S3",
        "AUDIT_BACKLOG_AZURE_BLOB",
        "AUDIT_BACKLOG_AZURE_MONITOR",
        "AUDIT_BACKLOG_HTTP",
        "AUDIT_DLQ",
        "AUDIT_CONTROL",
        "AUDIT_HISTORY",
        "AUDIT_PARKED",
    ];
    let expect = |change: &[&str]| -> Vec<Vec<String>> {
        names
            .iter()
            .zip(change)
            .map(|(n, c)| vec![(*n).to_owned(), (*c).to_owned()])
            .collect()
    };

    let first = apply(&file, &nats.url(), false).await;
    assert_eq!(columns(&first), expect(&["created"; 10]), "{first}");
    let created = stream_configs(&js).await;
    // The file's topology, not the defaults (which would reserve 4 GiB and more).
    assert_eq!(created[0]["max_bytes"], 67108864);

    let second = apply(&file, &nats.url(), false).await;
    assert_eq!(columns(&second), expect(&["unchanged"; 10]), "{second}");
    assert_eq!(stream_configs(&js).await, created);

    // A longer age is applied in place; `--json` says so per stream.
    let longer = topology_file(&dir, "2d");
    let json: serde_json::Value =
        serde_json::from_str(&apply(&longer, &nats.url(), true).await).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"stream": "AUDIT_INGEST", "change": "unchanged"},
            {"stream": "AUDIT_DELIVER", "change": "unchanged"},
            {"stream": "AUDIT_BACKLOG_S3", "change": "unchanged"},
            {"stream": "AUDIT_BACKLOG_AZURE_BLOB", "change": "unchanged"},
            {"stream": "AUDIT_BACKLOG_AZURE_MONITOR", "change": "unchanged"},
            {"stream": "AUDIT_BACKLOG_HTTP", "change": "unchanged"},
            {"stream": "AUDIT_DLQ", "change": "unchanged"},
            {"stream": "AUDIT_CONTROL", "change": "unchanged"},
            {"stream": "AUDIT_HISTORY", "change": "updated"},
            {"stream": "AUDIT_PARKED", "change": "unchanged"},
        ])
    );
    let info = js.get_stream(topology::HISTORY).await.unwrap();
    assert_eq!(info.cached_info().config.max_age, 2 * DAY);
}
