//! SIGTERM under a steady load. The gateway, router and sink-http run as their real binaries
//! (the config service in-process; its binary's SIGTERM is tested in
//! `crates/config-service/tests/binary.rs`) while a producer posts events all the time. Each
//! binary in turn gets SIGTERM, must exit 0 within its shutdown grace period, and is started
//! again; at the end every event the gateway accepted (answered 200) is at the destination.
//! The other three sink binaries, which share sink-core's shutdown, are stopped the same way.

mod common;

use std::{
    collections::HashSet,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use auditstream_testkit::TEST_TOKEN;
use common::sink::*;

const GRACE: Duration = Duration::from_secs(5);
/// Process start-up and teardown around the grace period (not a performance bound: a
/// process that ignored SIGTERM would be killed only far later).
const SLACK: Duration = Duration::from_secs(3);

fn spawn(
    bin: &str,
    stack: &SinkStack,
    ops: u16,
    http: Option<u16>,
    log: &std::path::Path,
) -> Child {
    let mut cmd = match http {
        // The gateway needs no config service, but a listener and producer tokens.
        Some(http) => {
            let mut cmd = Command::new(common::built_bin(bin));
            cmd.env_clear()
                .env("AUDITSTREAM_OPS_ADDR", format!("127.0.0.1:{ops}"))
                .env("AUDITSTREAM_NATS__URL", stack.nats.url())
                // The config service's streams; the gateway refuses weaker ones than its own.
                .envs(common::topology_env(&auditstream_testkit::small_topology()))
                .envs(auditstream_testkit::login_env(
                    auditstream_testkit::binary_service(bin),
                ))
                .env("AUDITSTREAM_HTTP_ADDR", format!("127.0.0.1:{http}"))
                .env(
                    "AUDITSTREAM_GRPC_ADDR",
                    format!("127.0.0.1:{}", common::free_port()),
                )
                .env("AUDITSTREAM_AUTH__TOKENS", TEST_TOKEN)
                .stdout(Stdio::null());
            cmd
        }
        None => {
            let mut cmd = common::data_plane(bin, &stack.nats.url(), &stack.config.url(), ops);
            cmd.env("AUDITSTREAM_BATCHING__MAX_AGE", "200ms")
                .env("AUDITSTREAM_SINK__ALLOW_INSECURE_HTTP", "true")
                .env("AUDITSTREAM_SINK__ALLOWED_NETWORKS", "127.0.0.0/8");
            cmd
        }
    };
    cmd.env(
        "AUDITSTREAM_SHUTDOWN_GRACE",
        format!("{}s", GRACE.as_secs()),
    )
    .env("AUDITSTREAM_LOG__FORMAT", "text");
    cmd.stderr(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap(),
    )
    .spawn()
    .unwrap()
}

/// SIGTERM, then the exit status and how long it took.
async fn terminate(child: Child) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    (status, started.elapsed())
}

/// Posts 20 events every 20 ms until stopped; keeps the ids of the requests answered 200.
fn producer(
    http: u16,
    stop: Arc<Mutex<bool>>,
    accepted: Arc<Mutex<Vec<String>>>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let (mut n, mut refused) = (0, 0);
        while !*stop.lock().unwrap() {
            let (body, ids) = events(0, &format!("load{n}"), 20, None);
            n += 1;
            let ok = client
                .post(format!("http://127.0.0.1:{http}/v1/events"))
                .bearer_auth(TEST_TOKEN)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ok {
                accepted.lock().unwrap().extend(ids);
            } else {
                refused += 1;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        refused
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_within_the_grace_period_and_loses_nothing() {
    let mut stack = stack_without_sink(&[GOOD_TOKEN]).await;
    stack.router.take().unwrap().stop().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let (http, gateway_ops) = (common::free_port(), common::free_port());
    let (router_ops, sink_ops) = (common::free_port(), common::free_port());
    let mut gateway = spawn(
        "auditstream-gateway",
        &stack,
        gateway_ops,
        Some(http),
        &log("gateway"),
    );
    let mut router = spawn(
        "auditstream-router",
        &stack,
        router_ops,
        None,
        &log("router"),
    );
    let mut sink = spawn(
        "auditstream-sink-http",
        &stack,
        sink_ops,
        None,
        &log("sink"),
    );
    for ops in [gateway_ops, router_ops, sink_ops] {
        wait_sink_ready(ops).await;
    }

    let stop = Arc::new(Mutex::new(false));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let load = producer(http, stop.clone(), accepted.clone());
    let steady = || tokio::time::sleep(Duration::from_secs(2));
    let check = |what: &str, (status, took): (std::process::ExitStatus, Duration)| {
        assert!(status.success(), "{what} exited with {status}");
        assert!(
            took <= GRACE + SLACK,
            "{what} took {took:?} to stop, the grace period is {GRACE:?}"
        );
    };

    steady().await;
    check("router", terminate(router).await);
    router = spawn(
        "auditstream-router",
        &stack,
        router_ops,
        None,
        &log("router"),
    );
    wait_sink_ready(router_ops).await;

    steady().await;
    check("sink-http", terminate(sink).await);
    sink = spawn(
        "auditstream-sink-http",
        &stack,
        sink_ops,
        None,
        &log("sink"),
    );
    wait_sink_ready(sink_ops).await;

    steady().await;
    check("gateway", terminate(gateway).await);
    gateway = spawn(
        "auditstream-gateway",
        &stack,
        gateway_ops,
        Some(http),
        &log("gateway"),
    );
    wait_sink_ready(gateway_ops).await;

    steady().await;
    *stop.lock().unwrap() = true;
    let refused = load.await.unwrap();
    let accepted: Vec<String> = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= 1000,
        "a steady load: {} accepted, {refused} requests not",
        accepted.len()
    );
    stack
        .wait_delivered(0, &accepted, Duration::from_secs(120))
        .await;
    let delivered: HashSet<String> = stack.receivers[0].accepted_ids().into_iter().collect();
    let lost = accepted
        .iter()
        .filter(|id| !delivered.contains(*id))
        .count();
    assert_eq!(lost, 0);
    for (what, child) in [
        ("gateway", gateway),
        ("router", router),
        ("sink-http", sink),
    ] {
        check(what, terminate(child).await);
    }
    // The other sinks share sink-core's shutdown; each binary exits 0 in time as well.
    for bin in [
        "auditstream-sink-s3",
        "auditstream-sink-azure-blob",
        "auditstream-sink-azure-monitor",
    ] {
        let ops = common::free_port();
        let child = spawn(bin, &stack, ops, None, &log(bin));
        wait_sink_ready(ops).await;
        check(bin, terminate(child).await);
    }
    let logs = std::fs::read_to_string(log("sink")).unwrap();
    assert!(
        !logs.contains("panicked"),
        "no panic in the sink's logs: {logs}"
    );
}
