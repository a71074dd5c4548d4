//! `make run`'s script (`deploy/run-local.sh`) end to end: it starts its own nats-server, the
//! gateway, the config service (SQLite) with a demo tenant tree, the router, the four sinks
//! and the demo destination, sends the examples, which arrive under `received/`, serves the
//! printed commands, and Ctrl-C (SIGINT) stops everything it started.
//!
//! It runs the real binaries, which `make test` builds (`cargo build --workspace --bins`)
//! into the target directory beside this test's executable.

use std::{
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

/// `target/<profile>`: the test executable lives in its `deps/`.
fn bin_dir() -> std::path::PathBuf {
    let dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    for bin in [
        "auditstream-gateway",
        "auditstream-config-service",
        "auditstream-router",
        "auditstream-sink-s3",
        "auditstream-sink-azure-blob",
        "auditstream-sink-azure-monitor",
        "auditstream-sink-http",
        "auditctl",
    ] {
        assert!(
            dir.join(bin).exists(),
            "{bin} is not built in {}: run `make test` (or `cargo build --workspace --bins`) first",
            dir.display()
        );
    }
    dir
}

/// Ctrl-C for the script if the test fails half-way, so its processes do not outlive it.
struct Interrupt(u32);

impl Drop for Interrupt {
    fn drop(&mut self) {
        // Harmless when the script already ended.
        let _ = Command::new("kill")
            .args(["-INT", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn run_local_starts_the_stack_sends_examples_and_stops_on_sigint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run_dir = tempfile::tempdir().unwrap();
    let (http, grpc, ops) = (free_port(), free_port(), free_port());
    let (config_grpc, config_ops, router_ops) = (free_port(), free_port(), free_port());
    let receiver = free_port();
    let sink_ops = [free_port(), free_port(), free_port(), free_port()];
    let bins = bin_dir();
    let mut child = Command::new("bash")
        .arg(root.join("deploy/run-local.sh"))
        .env_remove("AUDITSTREAM_NATS_URL")
        .env("RUN_DIR", run_dir.path())
        .env("GATEWAY_HTTP_PORT", http.to_string())
        .env("GATEWAY_GRPC_PORT", grpc.to_string())
        .env("GATEWAY_OPS_PORT", ops.to_string())
        .env("CONFIG_GRPC_PORT", config_grpc.to_string())
        .env("CONFIG_OPS_PORT", config_ops.to_string())
        .env("ROUTER_OPS_PORT", router_ops.to_string())
        .env("DEMO_RECEIVER_PORT", receiver.to_string())
        .env("SINK_S3_OPS_PORT", sink_ops[0].to_string())
        .env("SINK_AZURE_BLOB_OPS_PORT", sink_ops[1].to_string())
        .env("SINK_AZURE_MONITOR_OPS_PORT", sink_ops[2].to_string())
        .env("SINK_HTTP_OPS_PORT", sink_ops[3].to_string())
        .env("BIN_DIR", &bins)
        .env("NATS_SERVER_BIN", auditstream_testkit::nats_server_bin())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let (tx, rx) = mpsc::channel();
    let _interrupt = Interrupt(child.id());
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.contains("tail -f")) {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("run-local.sh printed its banner");
        printed.push(line);
    }
    let examples = printed
        .iter()
        .find(|l| l.starts_with("{\"accepted\""))
        .expect("example reply");
    let reply: serde_json::Value = serde_json::from_str(examples).unwrap();
    assert_eq!(
        (reply["accepted"].as_u64(), reply["rejected"].as_u64()),
        (Some(6), Some(0))
    );

    // The printed instructions work: POST with the token from the run directory.
    let token = std::fs::read_to_string(run_dir.path().join("token")).unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/events"))
        .bearer_auth(token.trim())
        .body(r#"{"event_type":"api_platform","occurred_at":"2026-11-21T10:17:00Z","org_id":"org-acme","workspace_id":"ws-cust-17","data":{"status":200}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The router routed the examples (ws-cust-17's stream takes every event type).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while auditstream_testkit::metric(
        ([127, 0, 0, 1], router_ops).into(),
        r#"auditstream_router_deliveries_total{sink_type="http"}"#,
    )
    .await
        < 7.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the router did not route the examples"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The examples and the posted event arrive at the demo destination, as the banner says.
    let delivered_to = printed
        .iter()
        .find_map(|l| l.trim().strip_prefix("delivered to"))
        .expect("the banner says where deliveries go")
        .trim()
        .split_once(' ')
        .unwrap()
        .0
        .replace("<stream>", "s-ws17");
    let mut want: Vec<String> =
        std::fs::read_to_string(root.join("tests/data/ingest-events.ndjson"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
    want.sort();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let received = loop {
        let text = std::fs::read_to_string(&delivered_to).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mut ids: Vec<String> = lines
            .iter()
            .filter_map(|v| v["audit"]["event_id"].as_str().map(str::to_owned))
            .filter(|id| want.contains(id))
            .collect();
        ids.sort();
        ids.dedup();
        // The 6 examples plus the event posted above (a gateway-assigned id).
        if ids == want && lines.len() > want.len() {
            break lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{delivered_to}: {} lines, example ids {ids:?}",
            lines.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        received
            .iter()
            .all(|v| v["audit"]["org_id"] == "org-acme"
                && v["audit"]["workspace_id"] == "ws-cust-17"),
        "rendered messages, with the router's audit object"
    );

    // The demo tree is there, and the printed auditctl commands show the override rule.
    let admin = std::fs::read_to_string(run_dir.path().join("admin-token")).unwrap();
    let ctl = |args: &[&str]| {
        let out = Command::new(bins.join("auditctl"))
            .args([
                "--server",
                &format!("http://127.0.0.1:{config_grpc}"),
                "--token",
                admin.trim(),
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "auditctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let before = ctl(&["--json", "explain", "c-initech"]);
    let before: serde_json::Value = serde_json::from_str(&before).unwrap();
    assert_eq!(before["effective"][0]["id"], "s-initech", "{before}");
    // `auditctl stream status` (as printed) counts the deliveries once the sink reported them.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = ctl(&["stream", "status", "s-ws17"]);
        let delivered: u64 = status
            .lines()
            .find_map(|l| l.trim().strip_prefix("delivered"))
            .and_then(|v| v.trim().trim_start_matches(':').trim().parse().ok())
            .unwrap_or(0);
        if delivered >= 7 {
            assert!(status.contains("healthy"), "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ctl(&["stream", "enable", "s-globex-all"]);
    let after: serde_json::Value =
        serde_json::from_str(&ctl(&["--json", "explain", "c-initech"])).unwrap();
    assert_eq!(after["effective"][0]["id"], "s-globex-all", "{after}");
    assert_eq!(
        after["inactive"][0]["reason"],
        "overridden by partner p-globex stream s-globex-all"
    );

    // Ctrl-C: everything it started stops.
    Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    // Its exit status is the interrupted `wait`'s (130), as for any Ctrl-C'd script; what
    // matters is that it returns and leaves nothing running.
    child.wait().unwrap();
    for port in [
        http,
        grpc,
        ops,
        config_grpc,
        config_ops,
        router_ops,
        receiver,
    ]
    .into_iter()
    .chain(sink_ops)
    {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still served after Ctrl-C"
        );
    }
    let conf = std::fs::read_to_string(run_dir.path().join("nats.conf")).unwrap();
    let nats_port: u16 = conf
        .lines()
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        TcpStream::connect(("127.0.0.1", nats_port)).is_err(),
        "nats-server still running after Ctrl-C"
    );
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run_dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new("bash")
        .arg(root.join("deploy/run-local.sh"))
        .env_remove("AUDITSTREAM_NATS_URL")
        .env("RUN_DIR", run_dir.path())
        .env("GATEWAY_HTTP_PORT", port.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "error: port {port} on 127.0.0.1 is already in use"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("GATEWAY_HTTP_PORT"),
        "names the settings: {stderr}"
    );
    assert!(
        !run_dir.path().join("nats.conf").exists(),
        "nothing was started"
    );
}
