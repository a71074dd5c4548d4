//! TLS wherever a connection carries events or secrets, with self-signed certificates from a
//! private CA: gRPC ingest, the config service with client certificates (mutual TLS) and its
//! clients (config-client, auditctl), and NATS with TLS and a user/password.

mod common;

use std::time::Duration;

use auditstream_bus::topology::INGEST;
use auditstream_config_client::{ConfigSource, Follower};
use auditstream_config_service::authz::{Role, ServiceKind};
use auditstream_proto::{
    tls::{ClientTls, ServerTls},
    v1::{IngestEvent, IngestRequest, ingest_service_client::IngestServiceClient},
};
use auditstream_telemetry::Secret;
use auditstream_testkit::{
    ConfigHarness, Database, GatewayHarness, NatsServer, TEST_TOKEN, TestCerts, TestToken,
    read_stream, test_gateway_config,
};
use common::*;
use tokio_util::sync::CancellationToken;
use tonic::{Request, metadata::MetadataValue, transport::Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn server_tls(certs: &TestCerts, client_ca: bool) -> ServerTls {
    ServerTls {
        cert_file: Some(certs.server_cert()),
        key_file: Some(certs.server_key()),
        client_ca_file: client_ca.then(|| certs.ca()),
    }
}

fn trusting(certs: &TestCerts) -> ClientTls {
    ClientTls {
        ca_file: Some(certs.ca()),
        ..Default::default()
    }
}

fn one_event(id: &str) -> Request<IngestRequest> {
    let mut req = Request::new(IngestRequest {
        events: vec![IngestEvent {
            id: id.into(),
            event_type: "api_platform".into(),
            occurred_at: "2026-11-21T10:17:00Z".into(),
            org_id: "acme".into(),
            workspace_id: "ws-1".into(),
            data_json: b"{}".to_vec(),
        }],
    });
    let value: MetadataValue<_> = format!("Bearer {TEST_TOKEN}").parse().unwrap();
    req.metadata_mut().insert("authorization", value);
    req
}

/// Sends one event over `endpoint`; the error chain as text if the connection or call fails.
async fn ingest_over(endpoint: Endpoint, id: &str) -> Result<u32, String> {
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| chain(&e))?;
    let reply = IngestServiceClient::new(channel)
        .ingest(one_event(id))
        .await
        .map_err(|e| chain(&e))?;
    Ok(reply.into_inner().accepted)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[tokio::test]
async fn grpc_ingest_over_tls_trusts_only_the_configured_ca() {
    let certs = TestCerts::generate();
    let nats = NatsServer::start();
    let mut config = test_gateway_config(&nats.url());
    config.grpc_tls = server_tls(&certs, false);
    let gw = GatewayHarness::start(config).await;
    let url = format!("https://localhost:{}", gw.grpc.port());

    let with_ca = trusting(&certs).endpoint(&url, "test").unwrap();
    assert_eq!(ingest_over(with_ca, "over-tls").await, Ok(1));

    // The system roots alone do not know the private CA.
    let without_ca = ClientTls::default().endpoint(&url, "test").unwrap();
    let err = ingest_over(without_ca, "no-ca").await.unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // Plaintext HTTP/2 to the TLS port gets nowhere.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{}", gw.grpc.port())).unwrap();
    assert!(ingest_over(plain, "plaintext").await.is_err());

    assert_eq!(
        ids(&read_stream(&nats.jetstream().await, INGEST).await),
        ["over-tls"]
    );
}

#[tokio::test]
async fn the_config_service_requires_client_certificates_when_told_to() {
    let certs = TestCerts::generate();
    let nats = NatsServer::start();
    let cfg = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.grpc_tls = server_tls(&certs, true);
    })
    .await;
    let url = format!("https://localhost:{}", cfg.grpc.port());
    let health = |tls: ClientTls| {
        let url = url.clone();
        async move {
            let channel = tls
                .endpoint(&url, "test")
                .unwrap()
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(|e| chain(&e))?;
            HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| r.into_inner().status)
                .map_err(|e| chain(&e))
        }
    };
    let with_cert = ClientTls {
        cert_file: Some(certs.client_cert()),
        key_file: Some(certs.client_key()),
        ..trusting(&certs)
    };
    assert_eq!(health(with_cert.clone()).await, Ok(1), "SERVING");
    let err = health(trusting(&certs)).await.unwrap_err();
    assert!(!err.is_empty());

    // The routing follower (router and sinks) with a client certificate loads its snapshot.
    let shutdown = CancellationToken::new();
    let follower = Follower::start(
        ConfigSource {
            url: url.clone(),
            token: TestToken::service(ServiceKind::Router).token.to_owned(),
            tls: with_cert,
        },
        nats.connect().await,
        shutdown.clone(),
    );
    assert!(follower.wait_for(0, Duration::from_secs(15)).await.synced);
    shutdown.cancel();
}

#[tokio::test]
async fn auditctl_trusts_a_private_ca_with_ca_file() {
    let certs = TestCerts::generate();
    let nats = NatsServer::start();
    let cfg = ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.grpc_tls = server_tls(&certs, false);
    })
    .await;
    let url = format!("https://localhost:{}", cfg.grpc.port());
    let token = TestToken::of(Role::PlatformAdmin, None).token;
    let run = |extra: Vec<String>| {
        let url = url.clone();
        async move {
            let mut argv = vec![
                "auditctl".to_owned(),
                "--server".into(),
                url,
                "--token".into(),
                token.to_owned(),
            ];
            argv.extend(extra);
            argv.extend(["node".into(), "list".into()]);
            let mut out = Vec::new();
            auditstream_cli::run_args(argv, &mut out)
                .await
                .map(|()| String::from_utf8(out).unwrap())
                .map_err(|e| e.to_string())
        }
    };
    let ca = certs.ca().display().to_string();
    assert!(run(vec!["--ca-file".into(), ca]).await.is_ok());
    let err = run(vec![]).await.unwrap_err();
    assert!(err.contains("UNAVAILABLE"), "{err}");
}

#[tokio::test]
async fn services_reach_nats_over_tls_with_credentials() {
    let certs = TestCerts::generate();
    let nats = NatsServer::start_secured(&certs, "auditstream", "nats-password-0123");
    let mut config = test_gateway_config(&nats.url());
    config.nats.tls.ca_file = Some(certs.ca());
    config.nats.tls.required = true;
    config.nats.user = Some("auditstream".into());
    config.nats.password = Some(Secret::new("nats-password-0123"));

    let gw = GatewayHarness::start(config.clone()).await;
    let r = post(&gw, example_lines()[0], &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(read_stream(&nats.jetstream().await, INGEST).await.len(), 1);

    // A wrong password, or a client that does not trust the server's CA, never gets ready
    // and answers 503 rather than accepting anything.
    let mut wrong_password = config.clone();
    wrong_password.nats.password = Some(Secret::new("not-the-password"));
    let mut untrusted = config.clone();
    untrusted.nats.tls.ca_file = None;
    for (what, config) in [
        ("wrong password", wrong_password),
        ("unknown CA", untrusted),
    ] {
        let gw = GatewayHarness::start_unready(config).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(gw.readyz().await, 503, "{what}");
        let r = post(&gw, example_lines()[1], &[]).await;
        assert_eq!(r.status, 503, "{what}: {}", r.body);
    }
    assert_eq!(read_stream(&nats.jetstream().await, INGEST).await.len(), 1);
}
