//! Creates what the generated events need in the config service: the organizations and
//! workspaces of the [`Shape`], and per organization one stream covering all its workspaces
//! that delivers every event type to `receiver_url/<org>` through a plain HTTP connection.
//! Idempotent: what exists is left as it is.

use auditstream_proto::v1::{
    self as pb, AppliesTo, NodeKind, config_service_client::ConfigServiceClient,
};
use tonic::{Code, Request, metadata::MetadataValue};

use crate::mix::{DEFAULT_MIX, Shape};

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = MetadataValue::try_from(format!("Bearer {token}")) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn exists_ok<T>(r: Result<T, tonic::Status>) -> anyhow::Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => Ok(()),
        Err(s) => Err(anyhow::anyhow!("{}: {}", s.code(), s.message())),
    }
}

/// Creates (unless they exist) connection `connection_id` on `org_id` and stream
/// `stream_id` there, covering all its workspaces and every event type, to `target`.
#[allow(clippy::too_many_arguments)]
async fn every_event_stream(
    client: &mut ConfigServiceClient<tonic::transport::Channel>,
    admin_token: &str,
    org_id: &str,
    connection_id: &str,
    stream_id: &str,
    name: &str,
    credentials: pb::connection::Credentials,
    target: pb::destination::Target,
) -> anyhow::Result<()> {
    let connection = pb::Connection {
        id: connection_id.to_owned(),
        node_id: org_id.to_owned(),
        name: format!("load generator {name}"),
        credentials: Some(credentials),
        ..Default::default()
    };
    exists_ok(
        client
            .create_connection(with_token(
                pb::CreateConnectionRequest {
                    connection: Some(connection),
                },
                admin_token,
            ))
            .await,
    )?;
    let stream = pb::Stream {
        id: stream_id.to_owned(),
        node_id: org_id.to_owned(),
        name: format!("load generator: every event to {name}"),
        applies_to: AppliesTo::Descendants as i32,
        enabled: true,
        selection: Some(pb::EventSelection {
            event_types: DEFAULT_MIX.iter().map(|(t, _)| (*t).to_owned()).collect(),
            ..Default::default()
        }),
        destination: Some(pb::Destination {
            connection_id: connection_id.to_owned(),
            target: Some(target),
        }),
        ..Default::default()
    };
    exists_ok(
        client
            .create_stream(with_token(
                pb::CreateStreamRequest {
                    stream: Some(stream),
                },
                admin_token,
            ))
            .await,
    )
}

/// Adds to organization `org_id` a connection and a stream (ids `<org_id>-<name>`) covering
/// all its workspaces and every event type, to another destination than the receiver (an
/// object store, Azure Monitor), so the same events are counted there too.
pub async fn extra_destination(
    config_url: &str,
    admin_token: &str,
    org_id: &str,
    name: &str,
    credentials: pb::connection::Credentials,
    target: pb::destination::Target,
) -> anyhow::Result<()> {
    let mut client = ConfigServiceClient::connect(config_url.to_owned()).await?;
    let id = format!("{org_id}-{name}");
    every_event_stream(
        &mut client,
        admin_token,
        org_id,
        &id,
        &id,
        name,
        credentials,
        target,
    )
    .await
}

pub async fn setup(
    config_url: &str,
    admin_token: &str,
    shape: &Shape,
    receiver_url: &str,
) -> anyhow::Result<()> {
    let mut client = ConfigServiceClient::connect(config_url.to_owned()).await?;
    for org in shape.first_org..shape.first_org + shape.orgs {
        let org_id = Shape::org(org);
        let mut nodes = vec![(org_id.clone(), String::new(), NodeKind::Organization)];
        for ws in 0..shape.workspaces_per_org {
            nodes.push((
                Shape::workspace(org, ws),
                org_id.clone(),
                NodeKind::Workspace,
            ));
        }
        for (id, parent, kind) in nodes {
            let node = pb::Node {
                id: id.clone(),
                parent_id: parent,
                kind: kind as i32,
                name: id,
                ..Default::default()
            };
            client
                .put_node(with_token(
                    pb::PutNodeRequest { node: Some(node) },
                    admin_token,
                ))
                .await
                .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?;
        }
        every_event_stream(
            &mut client,
            admin_token,
            &org_id,
            &format!("{org_id}-receiver"),
            &format!("{org_id}-all"),
            "receiver",
            pb::connection::Credentials::Http(pb::HttpCredentials {
                auth: Some(pb::http_credentials::Auth::None(pb::HttpNoAuth {})),
                ..Default::default()
            }),
            pb::destination::Target::Http(pb::HttpTarget {
                url: format!("{}/{org_id}", receiver_url.trim_end_matches('/')),
                ..Default::default()
            }),
        )
        .await?;
    }
    Ok(())
}
