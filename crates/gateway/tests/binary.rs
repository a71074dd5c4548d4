//! The `auditstream-gateway` binary as an operator runs it: configured only through
//! `AUDITSTREAM_*` variables, stopped with SIGTERM, and failing clearly when it cannot start.

use std::{
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use auditstream_testkit::{NatsServer, TEST_TOKEN, small_topology};

const BIN: &str = env!("CARGO_BIN_EXE_auditstream-gateway");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The gateway binary with the test kit's small topology, which the test applies first (the
/// gateway only verifies the streams; the config service owns them).
fn gateway(nats_url: &str, http: u16, ops: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("AUDITSTREAM_NATS__URL", nats_url)
        .env("AUDITSTREAM_HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env(
            "AUDITSTREAM_GRPC_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("AUDITSTREAM_OPS_ADDR", format!("127.0.0.1:{ops}"))
        .env(
            "AUDITSTREAM_AUTH__TOKENS",
            format!("{TEST_TOKEN},second-token-0123456789"),
        )
        .env("AUDITSTREAM_NATS__TOPOLOGY__INGEST__MAX_BYTES", "67108864")
        .env("AUDITSTREAM_NATS__TOPOLOGY__DELIVER__MAX_BYTES", "67108864")
        .env("AUDITSTREAM_NATS__TOPOLOGY__BACKLOG__MAX_BYTES", "67108864")
        .env("AUDITSTREAM_NATS__TOPOLOGY__DLQ__MAX_BYTES", "67108864")
        .env("AUDITSTREAM_NATS__TOPOLOGY__CONTROL__MAX_BYTES", "67108864")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[tokio::test]
async fn configured_by_environment_serves_and_stops_on_sigterm() {
    let nats = NatsServer::start();
    // The streams exist (the config service creates them); the gateway only checks them.
    nats.apply_topology(&small_topology()).await;
    let (http, ops) = (free_port(), free_port());
    let child = gateway(&nats.url(), http, ops)
        .envs(auditstream_testkit::login_env(
            auditstream_bus::Service::Gateway,
        ))
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = client
            .get(format!("http://127.0.0.1:{ops}/readyz"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "binary not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The second token from the comma-separated variable works too.
    let resp = client
        .post(format!("http://127.0.0.1:{http}/v1/events"))
        .bearer_auth("second-token-0123456789")
        .body(r#"{"event_type":"api_platform","occurred_at":"2026-11-21T10:17:00Z","org_id":"o","workspace_id":"w","data":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("gateway stopped"), "{stderr}");
    // JSON logs by default, and the tokens never appear in them.
    assert!(stderr.lines().all(|l| l.starts_with('{')), "{stderr}");
    assert!(
        !stderr.contains(TEST_TOKEN) && !stderr.contains("second-token"),
        "{stderr}"
    );
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = gateway("nats://127.0.0.1:1", port, free_port())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on http_addr 127.0.0.1:{port} (is the port in use?)"
        )),
        "{stderr}"
    );
}

#[test]
fn missing_tokens_and_bad_values_are_clear_errors() {
    let out = gateway("nats://127.0.0.1:1", free_port(), free_port())
        .env_remove("AUDITSTREAM_AUTH__TOKENS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth.tokens is empty"), "{stderr}");

    let out = gateway("nats://127.0.0.1:1", free_port(), free_port())
        .env("AUDITSTREAM_LIMITS__MAX_DEPTH", "deep")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("AUDITSTREAM_LIMITS__MAX_DEPTH: expected a number"),
        "{stderr}"
    );
}

#[tokio::test]
async fn nats_credentials_never_reach_the_logs() {
    let certs = auditstream_testkit::TestCerts::generate();
    let nats = NatsServer::start_secured(&certs, "auditstream", "nats-secret-password-42");
    nats.apply_topology(&small_topology()).await;
    // The password as its own setting, or (M13) inside the URL, where the logs must not
    // show it either.
    let in_url = |password: &str| {
        nats.url()
            .replace("tls://", &format!("tls://auditstream:{password}@"))
    };
    let cases = [
        ("wrong-secret-password-17", false),
        ("nats-secret-password-42", false),
        ("wrong-secret-password-18", true),
        ("nats-secret-password-42", true),
    ];
    for (password, url_credentials) in cases {
        let (http, ops) = (free_port(), free_port());
        let mut cmd = if url_credentials {
            gateway(&in_url(password), http, ops)
        } else {
            let mut cmd = gateway(&nats.url(), http, ops);
            cmd.env("AUDITSTREAM_NATS__USER", "auditstream")
                .env("AUDITSTREAM_NATS__PASSWORD", password);
            cmd
        };
        let child = cmd
            .env("AUDITSTREAM_NATS__TLS__CA_FILE", certs.ca())
            .env("AUDITSTREAM_LOG__FILTER", "debug,h2=info,hyper=info")
            .spawn()
            .unwrap();
        let client = reqwest::Client::new();
        // Ready with the right password; with the wrong one, 3 s of refused connections.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut ready = false;
        while Instant::now() < deadline && !ready {
            ready = client
                .get(format!("http://127.0.0.1:{ops}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(ready, password.starts_with("nats-"), "{password}");
        let status = client
            .post(format!("http://127.0.0.1:{http}/v1/events"))
            .bearer_auth(TEST_TOKEN)
            .body(r#"{"event_type":"api_platform","occurred_at":"2026-11-21T10:17:00Z","org_id":"o","workspace_id":"w","data":{}}"#)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), if ready { 200 } else { 503 });
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("gateway stopped"), "{stderr}");
        for secret in [password, TEST_TOKEN, "second-token"] {
            assert!(!stderr.contains(secret), "{secret} in the logs:\n{stderr}");
        }
    }
}
