//! The `auditstream-config-service` binary as operators run it: configured by environment,
//! logging at debug level, and never writing a secret to its logs, whatever the caller does
//! (create, rotate, fetch as the service, submit an invalid connection).

use std::{
    net::TcpListener,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use auditstream_config_service::authz::{Role, ServiceKind};
use auditstream_proto::v1::{
    self as pb, Connection, NodeKind, S3Credentials, S3StaticKeys,
    config_service_client::ConfigServiceClient, connection::Credentials,
    get_destination_request::Key, s3_credentials,
};
use auditstream_testkit::{NatsServer, TOKENS, TestToken};

const BIN: &str = env!("CARGO_BIN_EXE_auditstream-config-service");
const FIRST: &str = "first-secret-value-7f3a9c1e";
const SECOND: &str = "second-secret-value-2b8d4f6a";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connection(secret: &str, access_key: &str) -> Connection {
    Connection {
        id: "conn".into(),
        node_id: "org".into(),
        name: "s3".into(),
        credentials: Some(Credentials::S3(S3Credentials {
            method: Some(s3_credentials::Method::StaticKeys(S3StaticKeys {
                access_key_id: access_key.into(),
                secret_access_key: secret.into(),
                session_token: String::new(),
            })),
            region: "us-east-1".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (grpc, ops) = (free_port(), free_port());
    let tokens: Vec<serde_json::Value> = TOKENS
        .iter()
        .map(|t| serde_json::json!({"token": t.token, "role": t.role, "node": t.node, "service": t.service, "name": t.name}))
        .collect();
    let child = Command::new(BIN)
        .env_clear()
        .env("AUDITSTREAM_GRPC_ADDR", format!("127.0.0.1:{grpc}"))
        .env("AUDITSTREAM_OPS_ADDR", format!("127.0.0.1:{ops}"))
        .env("AUDITSTREAM_NATS__URL", nats.url())
        .envs(auditstream_testkit::login_env(
            auditstream_bus::Service::ConfigService,
        ))
        .env(
            "AUDITSTREAM_DATABASE__URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display()),
        )
        .env(
            "AUDITSTREAM_AUTH__TOKENS",
            serde_json::to_string(&tokens).unwrap(),
        )
        .env("AUDITSTREAM_SECRETS__ACTIVE_KEY", "k1")
        .env(
            "AUDITSTREAM_SECRETS__KEYS",
            format!(
                r#"{{"k1":"{}"}}"#,
                "LJCFoJ+bcWRF/kBM9tHkzMmQ9u1LQ73jNhBeiGF0IDU="
            ),
        )
        .env(
            "AUDITSTREAM_LOG__FILTER",
            "debug,h2=info,hyper=info,tower=info",
        )
        .env("AUDITSTREAM_SHUTDOWN_GRACE", "1s")
        .env("AUDITSTREAM_NATS__TOPOLOGY__INGEST__MAX_BYTES", "67108864")
        .env("AUDITSTREAM_NATS__TOPOLOGY__DELIVER__MAX_BYTES", "67108864")
        .env("AUDITSTREAM_NATS__TOPOLOGY__BACKLOG__MAX_BYTES", "67108864")
        .env("AUDITSTREAM_NATS__TOPOLOGY__DLQ__MAX_BYTES", "67108864")
        .env("AUDITSTREAM_NATS__TOPOLOGY__HISTORY__MAX_BYTES", "67108864")
        .env("AUDITSTREAM_NATS__TOPOLOGY__PARKED__MAX_BYTES", "67108864")
        .stdout(Stdio::null())
        // A file, not a pipe: debug logging would fill an undrained pipe and stall the child.
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reqwest::get(format!("http://127.0.0.1:{ops}/readyz"))
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "config service binary not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let client = async |token: TestToken| {
        let token = token.token;
        let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let value: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        ConfigServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", value.clone());
            Ok(r)
        })
    };
    let mut admin = client(TestToken::of(Role::PlatformAdmin, None)).await;
    let org = pb::Node {
        id: "org".into(),
        kind: NodeKind::Organization as i32,
        ..Default::default()
    };
    admin
        .put_node(pb::PutNodeRequest { node: Some(org) })
        .await
        .unwrap();
    admin
        .create_connection(pb::CreateConnectionRequest {
            connection: Some(connection(FIRST, "AKIA1")),
        })
        .await
        .unwrap();
    admin
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(connection(SECOND, "AKIA1")),
        })
        .await
        .unwrap();
    // A refused request that carries a secret: the error names the field, not the value.
    let mut bad = connection(FIRST, "");
    bad.id = "bad".into();
    let err = admin
        .create_connection(pb::CreateConnectionRequest {
            connection: Some(bad),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("access_key_id"), "{}", err.message());
    assert!(!err.message().contains(FIRST));
    let mut service = client(TestToken::service(ServiceKind::SinkS3)).await;
    let details = service
        .get_destination(pb::GetDestinationRequest {
            key: Some(Key::ConnectionId("conn".into())),
        })
        .await
        .unwrap();
    assert!(
        format!("{details:?}").contains(SECOND),
        "the service role does get the secret"
    );

    // The clients stay connected: shutdown must not wait for them beyond the grace period.
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let mut child = child;
    let status = child.wait().unwrap();
    let logs = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains("connections still open after the shutdown grace period"),
        "{logs}"
    );
    drop((admin, service));
    assert!(
        logs.lines().count() > 5,
        "debug logging produced output:\n{logs}"
    );
    for secret in [FIRST, SECOND] {
        assert!(!logs.contains(secret), "a secret reached the logs:\n{logs}");
    }
    for t in TOKENS {
        assert!(!logs.contains(t.token), "a token reached the logs");
    }
}
