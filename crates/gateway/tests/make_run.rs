//! `make run`'s script (`deploy/run-local.sh`) end to end: it starts its own nats-server and
//! the gateway, sends the examples, serves the printed curl command, and Ctrl-C (SIGINT)
//! stops everything it started.

use std::{
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn run_local_starts_the_stack_sends_examples_and_stops_on_sigint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run_dir = tempfile::tempdir().unwrap();
    let (http, grpc, ops) = (free_port(), free_port(), free_port());
    let mut child = Command::new("bash")
        .arg(root.join("deploy/run-local.sh"))
        .env_remove("AUDITSTREAM_NATS_URL")
        .env("RUN_DIR", run_dir.path())
        .env("GATEWAY_HTTP_PORT", http.to_string())
        .env("GATEWAY_GRPC_PORT", grpc.to_string())
        .env("GATEWAY_OPS_PORT", ops.to_string())
        .env("GATEWAY_BIN", env!("CARGO_BIN_EXE_auditstream-gateway"))
        .env("NATS_SERVER_BIN", auditstream_testkit::nats_server_bin())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    while !printed
        .iter()
        .any(|l: &String| l.contains("Auditstream is running"))
    {
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

    // Ctrl-C: everything it started stops.
    Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    // Its exit status is the interrupted `wait`'s (130), as for any Ctrl-C'd script; what
    // matters is that it returns and leaves nothing running.
    child.wait().unwrap();
    for port in [http, grpc, ops] {
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
