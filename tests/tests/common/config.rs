//! Builders for config-service scenarios: nodes, S3 connections and streams with valid
//! defaults, so each test states only what it is about.

use auditstream_config_service::authz::Role;
use auditstream_proto::v1::{
    self as pb, AppliesTo, Connection, Destination, EventSelection, Node, NodeKind, S3Credentials,
    S3StaticKeys, S3Target, Stream, connection::Credentials, destination::Target, s3_credentials,
};
use auditstream_testkit::{ConfigClient, ConfigHarness, Database, NatsServer};

pub const SECRET: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";

pub struct ConfigStack {
    pub nats: NatsServer,
    pub config: ConfigHarness,
    pub admin: ConfigClient,
}

pub async fn config_stack() -> ConfigStack {
    let nats = NatsServer::start();
    let config = ConfigHarness::start(&nats.url(), Database::Sqlite, |_| {}).await;
    let admin = config.client_as(Role::PlatformAdmin, None).await;
    ConfigStack {
        nats,
        config,
        admin,
    }
}

pub fn node(id: &str, parent: &str, kind: NodeKind) -> Node {
    Node {
        id: id.into(),
        parent_id: parent.into(),
        kind: kind as i32,
        name: format!("Node {id}"),
        ..Default::default()
    }
}

pub async fn put(client: &mut ConfigClient, n: Node) -> Node {
    client
        .put_node(pb::PutNodeRequest { node: Some(n) })
        .await
        .expect("put node")
        .into_inner()
}

/// Creates the nodes in order: (id, parent, kind).
pub async fn tree(client: &mut ConfigClient, nodes: &[(&str, &str, NodeKind)]) {
    for (id, parent, kind) in nodes {
        put(client, node(id, parent, *kind)).await;
    }
}

pub fn s3_connection(id: &str, node_id: &str, secret: &str) -> Connection {
    Connection {
        id: id.into(),
        node_id: node_id.into(),
        name: format!("S3 {id}"),
        credentials: Some(Credentials::S3(S3Credentials {
            method: Some(s3_credentials::Method::StaticKeys(S3StaticKeys {
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: secret.into(),
                session_token: String::new(),
            })),
            region: "us-east-1".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub async fn create_connection(client: &mut ConfigClient, c: Connection) -> Connection {
    client
        .create_connection(pb::CreateConnectionRequest {
            connection: Some(c),
        })
        .await
        .expect("create connection")
        .into_inner()
}

pub fn s3_stream(id: &str, node_id: &str, applies_to: AppliesTo, connection: &str) -> Stream {
    Stream {
        id: id.into(),
        node_id: node_id.into(),
        name: format!("stream {id}"),
        applies_to: applies_to as i32,
        enabled: true,
        selection: Some(EventSelection {
            event_types: vec!["job_status".into(), "user_activity".into()],
            ..Default::default()
        }),
        destination: Some(Destination {
            connection_id: connection.into(),
            target: Some(Target::S3(S3Target {
                bucket: format!("audit-{id}"),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

pub async fn create_stream(client: &mut ConfigClient, s: Stream) -> Result<Stream, tonic::Status> {
    client
        .create_stream(pb::CreateStreamRequest { stream: Some(s) })
        .await
        .map(|r| r.into_inner())
}

pub async fn set_enabled(
    client: &mut ConfigClient,
    id: &str,
    enabled: bool,
) -> Result<Stream, tonic::Status> {
    client
        .set_stream_enabled(pb::SetStreamEnabledRequest {
            id: id.into(),
            enabled,
        })
        .await
        .map(|r| r.into_inner())
}

/// Explain as `(effective ids, [(inactive id, reason)])`.
pub async fn explain(
    client: &mut ConfigClient,
    workspace: &str,
) -> (Vec<String>, Vec<(String, String)>) {
    let e = client
        .explain(pb::ExplainRequest {
            workspace_id: workspace.into(),
        })
        .await
        .expect("explain")
        .into_inner();
    (
        e.effective.into_iter().map(|s| s.id).collect(),
        e.inactive
            .into_iter()
            .map(|i| (i.stream.map(|s| s.id).unwrap_or_default(), i.reason))
            .collect(),
    )
}
