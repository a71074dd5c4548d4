//! The authorization matrix of the config service: every principal of the test
//! configuration × every RPC, on nodes inside partner p1's subtree and inside partner p2's,
//! against the role table of `config-service/src/authz.rs`:
//!
//! | role | reads | writes | data plane |
//! |---|---|---|---|
//! | `service` | everything | nothing | snapshot, destinations with secrets, status reports |
//! | `platform_admin` | everything | everything | no |
//! | `directory_sync` | everything | the tenant directory: creates, moves, deletes nodes (not their streams or connections), sets every node field | no |
//! | `partner_admin` of N | N's subtree | connections, streams (`descendants` too) and the name and contacts of the nodes in N's subtree | no |
//! | `workspace_admin` of N | N | N's own `self` streams and connections, and N's name/contacts, only while N is neither governed nor managed | no |
//! | `auditor` | everything | nothing | no |
//!
//! The tree: `org` → `p1` → `c1` and `org` → `p2` → `c3`; an S3 connection and a `self`
//! stream at p1, c1 and p2. No stream applies to descendants, so c1 is not governed and its
//! workspace admin may write there (until one does: see
//! `a_workspace_admin_loses_write_access_while_an_ancestor_governs`).
//!
//! Beyond codes: a missing id and another tenant's id get the same code and text from every
//! RPC, and Explain shows a tenant nothing of its ancestors' settings.

mod common;

use auditstream_config_service::authz::{Role, ServiceKind};
use auditstream_proto::v1::{
    self as pb, AppliesTo, Connection, HealthState, Node, NodeKind, S3Credentials, Stream,
    StreamStatus, config_service_client::ConfigServiceClient, connection::Credentials,
    get_destination_request::Key, s3_credentials,
};
use auditstream_testkit::{ConfigClient, TestToken};
use common::config::*;
use tonic::{Code, Request, Status, transport::Channel};

// ----------------------------------------------------------------------------- RPCs

/// One case per RPC of `ConfigService`; PutNode twice (changing a node, creating a child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    /// Renames the target node (parent and kind unchanged).
    PutNode,
    /// Creates a child of the target node (of the kind that may sit there).
    PutChild,
    /// Sets the `external_id` of a fresh child of the target node.
    SetExternalId,
    GetNode,
    ListChildren,
    /// Deletes a fresh child of the target node.
    DeleteNode,
    CreateConnection,
    GetConnection,
    ListConnections,
    /// Rotates the secret of a fresh connection at the target node.
    UpdateConnection,
    DeleteConnection,
    ListTargets,
    CreateStream,
    /// Creates a disabled `descendants` stream at the target node.
    CreateDescendants,
    GetStream,
    ListStreams,
    /// Renames a fresh stream at the target node.
    UpdateStream,
    /// Enables a fresh, disabled stream at the target node.
    SetStreamEnabled,
    DeleteStream,
    Explain,
    GetStatus,
    GetRoutingSnapshot,
    GetDestination,
    ReportStatus,
}

use Rpc::*;

const ALL_RPCS: [Rpc; 24] = [
    PutNode,
    PutChild,
    SetExternalId,
    GetNode,
    ListChildren,
    DeleteNode,
    CreateConnection,
    GetConnection,
    ListConnections,
    UpdateConnection,
    DeleteConnection,
    ListTargets,
    CreateStream,
    CreateDescendants,
    GetStream,
    ListStreams,
    UpdateStream,
    SetStreamEnabled,
    DeleteStream,
    Explain,
    GetStatus,
    GetRoutingSnapshot,
    GetDestination,
    ReportStatus,
];

/// A node of the fixture with a connection and a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Partner p1 (its own OEM admin workspace).
    P1,
    /// Customer c1 under p1: in p1's subtree, and the workspace admin's node.
    C1,
    /// Partner p2: another partner's subtree.
    P2,
}

use Target::*;

impl Target {
    fn place(self) -> Place {
        match self {
            P1 => Place::new("p1", "org", NodeKind::Partner),
            C1 => Place::new("c1", "p1", NodeKind::Customer),
            P2 => Place::new("p2", "org", NodeKind::Partner),
        }
    }
}

/// Where an RPC acts: a node, its parent and kind; its connection is `conn-<node>` and its
/// stream `s-<node>`.
#[derive(Debug, Clone)]
struct Place {
    node: String,
    parent: String,
    kind: NodeKind,
}

impl Place {
    fn new(node: &str, parent: &str, kind: NodeKind) -> Place {
        Place {
            node: node.into(),
            parent: parent.into(),
            kind,
        }
    }

    fn connection(&self) -> String {
        format!("conn-{}", self.node)
    }

    fn stream(&self) -> String {
        format!("s-{}", self.node)
    }

    /// The kind a child of this node has under the kind rules.
    fn child_kind(&self) -> NodeKind {
        match self.kind {
            NodeKind::Organization | NodeKind::Customer => NodeKind::Workspace,
            NodeKind::Partner => NodeKind::Customer,
            other => panic!("a {other:?} has no children"),
        }
    }
}

/// The tree of the module doc, built by the platform admin.
async fn fixture() -> ConfigStack {
    let mut s = config_stack().await;
    let a = &mut s.admin;
    tree(
        a,
        &[
            ("org", "", NodeKind::Organization),
            ("p1", "org", NodeKind::Partner),
            ("c1", "p1", NodeKind::Customer),
            ("p2", "org", NodeKind::Partner),
            ("c3", "p2", NodeKind::Customer),
        ],
    )
    .await;
    for t in [P1, C1, P2] {
        let at = t.place();
        create_connection(a, s3_connection(&at.connection(), &at.node, SECRET)).await;
        create_stream(
            a,
            s3_stream(
                &at.stream(),
                &at.node,
                AppliesTo::SelfOnly,
                &at.connection(),
            ),
        )
        .await
        .expect("fixture stream");
    }
    s
}

/// Creates, as platform admin, what `rpc` acts on at `at` and returns its id: a fresh
/// object for the calls that change or delete one (so rows do not disturb each other), the
/// node's own node, connection or stream otherwise. `fresh` is an unused id.
async fn prepare(admin: &mut ConfigClient, rpc: Rpc, at: &Place, fresh: &str) -> String {
    match rpc {
        PutNode | GetNode | ListChildren | ListConnections | ListStreams | Explain
        | GetRoutingSnapshot => at.node.clone(),
        PutChild | CreateConnection | CreateStream | CreateDescendants => fresh.into(),
        GetConnection | ListTargets => at.connection(),
        GetStream | GetStatus | GetDestination | ReportStatus => at.stream(),
        DeleteNode | SetExternalId => {
            put(admin, node(fresh, &at.node, at.child_kind())).await;
            fresh.into()
        }
        UpdateConnection | DeleteConnection => {
            create_connection(admin, s3_connection(fresh, &at.node, SECRET)).await;
            fresh.into()
        }
        UpdateStream | SetStreamEnabled | DeleteStream => {
            let stream = Stream {
                enabled: false,
                ..s3_stream(fresh, &at.node, AppliesTo::SelfOnly, &at.connection())
            };
            create_stream(admin, stream).await.expect("fresh stream");
            fresh.into()
        }
    }
}

/// A node with its connection and its stream, as the fixture has at p1, c1 and p2.
async fn furnish(admin: &mut ConfigClient, at: &Place) {
    put(admin, node(&at.node, &at.parent, at.kind)).await;
    create_connection(admin, s3_connection(&at.connection(), &at.node, SECRET)).await;
    create_stream(
        admin,
        s3_stream(
            &at.stream(),
            &at.node,
            AppliesTo::SelfOnly,
            &at.connection(),
        ),
    )
    .await
    .expect("stream");
}

/// A caller: a plain channel and the `authorization` header it sends, if any.
struct Caller {
    client: ConfigServiceClient<Channel>,
    authorization: Option<String>,
}

impl Caller {
    async fn new(s: &ConfigStack, authorization: Option<String>) -> Caller {
        let client = ConfigServiceClient::connect(s.config.url())
            .await
            .expect("connect to config service");
        Caller {
            client,
            authorization,
        }
    }

    async fn as_token(s: &ConfigStack, t: &TestToken) -> Caller {
        Caller::new(s, Some(format!("Bearer {}", t.token))).await
    }
}

fn request<T>(authorization: Option<&str>, message: T) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(value) = authorization {
        r.metadata_mut()
            .insert("authorization", value.parse().expect("ascii header"));
    }
    r
}

/// Calls `rpc` on `id` (see [`prepare`]) at `at` and returns the status.
async fn call(caller: &mut Caller, rpc: Rpc, at: &Place, id: &str) -> Status {
    let Caller {
        client: c,
        authorization,
    } = caller;
    let auth = authorization.as_deref();
    let id = id.to_owned();
    let result = match rpc {
        PutNode => {
            let n = Node {
                name: format!("{id} renamed"),
                ..node(&id, &at.parent, at.kind)
            };
            c.put_node(request(auth, pb::PutNodeRequest { node: Some(n) }))
                .await
                .map(drop)
        }
        PutChild => {
            let n = node(&id, &at.node, at.child_kind());
            c.put_node(request(auth, pb::PutNodeRequest { node: Some(n) }))
                .await
                .map(drop)
        }
        SetExternalId => {
            let n = Node {
                external_id: "EXT-1".into(),
                ..node(&id, &at.node, at.child_kind())
            };
            c.put_node(request(auth, pb::PutNodeRequest { node: Some(n) }))
                .await
                .map(drop)
        }
        GetNode => c
            .get_node(request(auth, pb::GetNodeRequest { id }))
            .await
            .map(drop),
        ListChildren => c
            .list_children(request(auth, pb::ListChildrenRequest { parent_id: id }))
            .await
            .map(drop),
        DeleteNode => c
            .delete_node(request(
                auth,
                pb::DeleteNodeRequest {
                    id,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        CreateConnection => {
            let connection = Some(s3_connection(&id, &at.node, SECRET));
            c.create_connection(request(auth, pb::CreateConnectionRequest { connection }))
                .await
                .map(drop)
        }
        GetConnection => c
            .get_connection(request(auth, pb::GetConnectionRequest { id }))
            .await
            .map(drop),
        ListConnections => c
            .list_connections(request(
                auth,
                pb::ListConnectionsRequest {
                    node_id: id,
                    include_inherited: true,
                },
            ))
            .await
            .map(drop),
        UpdateConnection => {
            let connection = Some(s3_connection(&id, &at.node, "rotated-secret-0123456789"));
            c.update_connection(request(auth, pb::UpdateConnectionRequest { connection }))
                .await
                .map(drop)
        }
        DeleteConnection => c
            .delete_connection(request(auth, pb::DeleteConnectionRequest { id }))
            .await
            .map(drop),
        ListTargets => c
            .list_targets(request(auth, pb::ListTargetsRequest { connection_id: id }))
            .await
            .map(drop),
        CreateStream => {
            let stream = Some(s3_stream(
                &id,
                &at.node,
                AppliesTo::SelfOnly,
                &at.connection(),
            ));
            c.create_stream(request(auth, pb::CreateStreamRequest { stream }))
                .await
                .map(drop)
        }
        CreateDescendants => {
            let stream = Some(Stream {
                enabled: false,
                ..s3_stream(&id, &at.node, AppliesTo::Descendants, &at.connection())
            });
            c.create_stream(request(auth, pb::CreateStreamRequest { stream }))
                .await
                .map(drop)
        }
        GetStream => c
            .get_stream(request(auth, pb::GetStreamRequest { id }))
            .await
            .map(drop),
        ListStreams => c
            .list_streams(request(auth, pb::ListStreamsRequest { node_id: id }))
            .await
            .map(drop),
        UpdateStream => {
            let stream = Some(Stream {
                id: id.clone(),
                name: format!("{id} renamed"),
                ..Default::default()
            });
            let update_mask = vec!["name".into()];
            c.update_stream(request(
                auth,
                pb::UpdateStreamRequest {
                    stream,
                    update_mask,
                },
            ))
            .await
            .map(drop)
        }
        SetStreamEnabled => c
            .set_stream_enabled(request(
                auth,
                pb::SetStreamEnabledRequest { id, enabled: true },
            ))
            .await
            .map(drop),
        DeleteStream => c
            .delete_stream(request(
                auth,
                pb::DeleteStreamRequest {
                    id,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Explain => c
            .explain(request(auth, pb::ExplainRequest { workspace_id: id }))
            .await
            .map(drop),
        GetStatus => c
            .get_status(request(auth, pb::GetStatusRequest { stream_id: id }))
            .await
            .map(drop),
        GetRoutingSnapshot => c
            .get_routing_snapshot(request(auth, pb::GetRoutingSnapshotRequest {}))
            .await
            .map(drop),
        GetDestination => {
            let key = Some(Key::StreamId(id));
            c.get_destination(request(auth, pb::GetDestinationRequest { key }))
                .await
                .map(drop)
        }
        ReportStatus => {
            let status = Some(StreamStatus {
                stream_id: id,
                state: HealthState::Healthy as i32,
                ..Default::default()
            });
            c.report_status(request(auth, pb::ReportStatusRequest { status }))
                .await
                .map(drop)
        }
    };
    result.err().unwrap_or_else(|| Status::ok(""))
}

// --------------------------------------------------------------------------- matrix

/// The principals of the test configuration, in the matrix's column order. The fixture's
/// connections are S3 ones, so the service column is sink-s3's token (the other service
/// kinds: `service_kinds_get_only_their_own_data_plane_calls`).
fn principals() -> [TestToken; 7] {
    [
        TestToken::service(ServiceKind::SinkS3),
        TestToken::of(Role::PlatformAdmin, None),
        TestToken::of(Role::DirectorySync, None),
        TestToken::of(Role::PartnerAdmin, Some("p1")),
        TestToken::of(Role::PartnerAdmin, Some("p2")),
        TestToken::of(Role::WorkspaceAdmin, Some("c1")),
        TestToken::of(Role::Auditor, None),
    ]
}

fn label(t: &TestToken) -> String {
    match (t.node, t.service) {
        (Some(n), _) => format!("{:?} of {n}", t.role),
        (None, Some(kind)) => format!("service {}", kind.as_str()),
        (None, None) => format!("{:?}", t.role),
    }
}

/// Allowed, and succeeded.
const OK: Code = Code::Ok;
/// Refused by authorization.
const NO: Code = Code::PermissionDenied;
/// Allowed: authorization passed, then ListTargets found no sink to answer it (none runs in
/// these tests), which is UNAVAILABLE.
const UN: Code = Code::Unavailable;

/// RPC at a target × principal → the expected code. Columns: service, platform_admin,
/// directory_sync, partner_admin of p1, partner_admin of p2, workspace_admin of c1, auditor.
#[rustfmt::skip]
const MATRIX: &[(Rpc, Target, [Code; 7])] = &[
    //                                  svc  plat sync  p1   p2   c1   aud
    // Reads: service, platform admin, directory sync and auditor everywhere; a partner
    // admin in its own subtree only; the workspace admin at its own node only.
    (GetNode,            P1, [OK,  OK,  OK,  OK,  NO,  NO,  OK]),
    (GetNode,            C1, [OK,  OK,  OK,  OK,  NO,  OK,  OK]),
    (GetNode,            P2, [OK,  OK,  OK,  NO,  OK,  NO,  OK]),
    (ListChildren,       P1, [OK,  OK,  OK,  OK,  NO,  NO,  OK]),
    (ListChildren,       C1, [OK,  OK,  OK,  OK,  NO,  OK,  OK]),
    (ListChildren,       P2, [OK,  OK,  OK,  NO,  OK,  NO,  OK]),
    (GetConnection,      P1, [OK,  OK,  OK,  OK,  NO,  NO,  OK]),
    (GetConnection,      C1, [OK,  OK,  OK,  OK,  NO,  OK,  OK]),
    (GetConnection,      P2, [OK,  OK,  OK,  NO,  OK,  NO,  OK]),
    (ListConnections,    P1, [OK,  OK,  OK,  OK,  NO,  NO,  OK]),
    (ListConnections,    C1, [OK,  OK,  OK,  OK,  NO,  OK,  OK]),
    (ListConnections,    P2, [OK,  OK,  OK,  NO,  OK,  NO,  OK]),
    (ListTargets,        P1, [UN,  UN,  UN,  UN,  NO,  NO,  UN]),
    (ListTargets,        C1, [UN,  UN,  UN,  UN,  NO,  UN,  UN]),
    (ListTargets,        P2, [UN,  UN,  UN,  NO,  UN,  NO,  UN]),
    (GetStream,          P1, [OK,  OK,  OK,  OK,  NO,  NO,  OK]),
    (GetStream,          C1, [OK,  OK,  OK,  OK,  NO,  OK,  OK]),
    (GetStream,          P2, [OK,  OK,  OK,  NO,  OK,  NO,  OK]),
    (ListStreams,        P1, [OK,  OK,  OK,  OK,  NO,  NO,  OK]),
    (ListStreams,        C1, [OK,  OK,  OK,  OK,  NO,  OK,  OK]),
    (ListStreams,        P2, [OK,  OK,  OK,  NO,  OK,  NO,  OK]),
    (Explain,            P1, [OK,  OK,  OK,  OK,  NO,  NO,  OK]),
    (Explain,            C1, [OK,  OK,  OK,  OK,  NO,  OK,  OK]),
    (Explain,            P2, [OK,  OK,  OK,  NO,  OK,  NO,  OK]),
    (GetStatus,          P1, [OK,  OK,  OK,  OK,  NO,  NO,  OK]),
    (GetStatus,          C1, [OK,  OK,  OK,  OK,  NO,  OK,  OK]),
    (GetStatus,          P2, [OK,  OK,  OK,  NO,  OK,  NO,  OK]),
    // Renaming a node: the directory's principals anywhere; a partner admin in its own
    // subtree (its own node included); the workspace admin its own node.
    (PutNode,            P1, [NO,  OK,  OK,  OK,  NO,  NO,  NO]),
    (PutNode,            C1, [NO,  OK,  OK,  OK,  NO,  OK,  NO]),
    (PutNode,            P2, [NO,  OK,  OK,  NO,  OK,  NO,  NO]),
    // Configuration writes: the platform admin everywhere; a partner admin in its own
    // subtree; the workspace admin its own node's; never the service, the directory sync
    // or the auditor.
    (CreateConnection,   P1, [NO,  OK,  NO,  OK,  NO,  NO,  NO]),
    (CreateConnection,   C1, [NO,  OK,  NO,  OK,  NO,  OK,  NO]),
    (CreateConnection,   P2, [NO,  OK,  NO,  NO,  OK,  NO,  NO]),
    (UpdateConnection,   P1, [NO,  OK,  NO,  OK,  NO,  NO,  NO]),
    (UpdateConnection,   C1, [NO,  OK,  NO,  OK,  NO,  OK,  NO]),
    (UpdateConnection,   P2, [NO,  OK,  NO,  NO,  OK,  NO,  NO]),
    (DeleteConnection,   P1, [NO,  OK,  NO,  OK,  NO,  NO,  NO]),
    (DeleteConnection,   C1, [NO,  OK,  NO,  OK,  NO,  OK,  NO]),
    (DeleteConnection,   P2, [NO,  OK,  NO,  NO,  OK,  NO,  NO]),
    (CreateStream,       P1, [NO,  OK,  NO,  OK,  NO,  NO,  NO]),
    (CreateStream,       C1, [NO,  OK,  NO,  OK,  NO,  OK,  NO]),
    (CreateStream,       P2, [NO,  OK,  NO,  NO,  OK,  NO,  NO]),
    (UpdateStream,       P1, [NO,  OK,  NO,  OK,  NO,  NO,  NO]),
    (UpdateStream,       C1, [NO,  OK,  NO,  OK,  NO,  OK,  NO]),
    (UpdateStream,       P2, [NO,  OK,  NO,  NO,  OK,  NO,  NO]),
    (SetStreamEnabled,   P1, [NO,  OK,  NO,  OK,  NO,  NO,  NO]),
    (SetStreamEnabled,   C1, [NO,  OK,  NO,  OK,  NO,  OK,  NO]),
    (SetStreamEnabled,   P2, [NO,  OK,  NO,  NO,  OK,  NO,  NO]),
    (DeleteStream,       P1, [NO,  OK,  NO,  OK,  NO,  NO,  NO]),
    (DeleteStream,       C1, [NO,  OK,  NO,  OK,  NO,  OK,  NO]),
    (DeleteStream,       P2, [NO,  OK,  NO,  NO,  OK,  NO,  NO]),
    // A descendants stream: not for a workspace admin, even at its own node (M4).
    (CreateDescendants,  P1, [NO,  OK,  NO,  OK,  NO,  NO,  NO]),
    (CreateDescendants,  C1, [NO,  OK,  NO,  OK,  NO,  NO,  NO]),
    (CreateDescendants,  P2, [NO,  OK,  NO,  NO,  OK,  NO,  NO]),
    // The tree's shape and the directory's fields: platform principals only.
    (PutChild,           P1, [NO,  OK,  OK,  NO,  NO,  NO,  NO]),
    (PutChild,           C1, [NO,  OK,  OK,  NO,  NO,  NO,  NO]),
    (PutChild,           P2, [NO,  OK,  OK,  NO,  NO,  NO,  NO]),
    (SetExternalId,      P1, [NO,  OK,  OK,  NO,  NO,  NO,  NO]),
    (SetExternalId,      C1, [NO,  OK,  OK,  NO,  NO,  NO,  NO]),
    (SetExternalId,      P2, [NO,  OK,  OK,  NO,  NO,  NO,  NO]),
    (DeleteNode,         P1, [NO,  OK,  OK,  NO,  NO,  NO,  NO]),
    (DeleteNode,         C1, [NO,  OK,  OK,  NO,  NO,  NO,  NO]),
    (DeleteNode,         P2, [NO,  OK,  OK,  NO,  NO,  NO,  NO]),
    // Data plane: the service only.
    (GetRoutingSnapshot, P1, [OK,  NO,  NO,  NO,  NO,  NO,  NO]),
    (GetDestination,     P1, [OK,  NO,  NO,  NO,  NO,  NO,  NO]),
    (GetDestination,     C1, [OK,  NO,  NO,  NO,  NO,  NO,  NO]),
    (GetDestination,     P2, [OK,  NO,  NO,  NO,  NO,  NO,  NO]),
    (ReportStatus,       P1, [OK,  NO,  NO,  NO,  NO,  NO,  NO]),
    (ReportStatus,       C1, [OK,  NO,  NO,  NO,  NO,  NO,  NO]),
    (ReportStatus,       P2, [OK,  NO,  NO,  NO,  NO,  NO,  NO]),
];

#[tokio::test]
async fn each_principal_may_call_each_rpc_as_the_role_table_says() {
    for rpc in ALL_RPCS {
        assert!(
            MATRIX.iter().any(|(r, _, _)| *r == rpc),
            "{rpc:?} has no row in the matrix"
        );
    }
    let mut mismatches = Vec::new();
    for (column, token) in principals().iter().enumerate() {
        // A stack per principal; every row that changes something acts on fresh objects.
        let mut s = fixture().await;
        let mut caller = Caller::as_token(&s, token).await;
        for (row, (rpc, at, expected)) in MATRIX.iter().enumerate() {
            let at = at.place();
            let id = prepare(&mut s.admin, *rpc, &at, &format!("x{row}")).await;
            let got = call(&mut caller, *rpc, &at, &id).await;
            if got.code() != expected[column] {
                mismatches.push(format!(
                    "{rpc:?} at {} as {}: expected {:?}, got {:?} ({})",
                    at.node,
                    label(token),
                    expected[column],
                    got.code(),
                    got.message()
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} cell(s) of the matrix differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// No token, an unknown token, and a valid token without the Bearer scheme: every RPC
/// answers UNAUTHENTICATED before looking at anything.
#[tokio::test]
async fn unauthenticated_callers_are_refused_by_every_rpc() {
    let mut s = fixture().await;
    let platform = TestToken::of(Role::PlatformAdmin, None).token;
    let headers = [
        None,
        Some("Bearer tok-unknown-0123456789".to_owned()),
        Some(format!("Basic {platform}")),
        Some(platform.to_owned()),
    ];
    let mut mismatches = Vec::new();
    let mut n = 0;
    for header in headers {
        let mut caller = Caller::new(&s, header.clone()).await;
        for rpc in ALL_RPCS {
            n += 1;
            let id = prepare(&mut s.admin, rpc, &P1.place(), &format!("u{n}")).await;
            let got = call(&mut caller, rpc, &P1.place(), &id).await;
            if got.code() != Code::Unauthenticated {
                mismatches.push(format!(
                    "{rpc:?} with authorization {header:?}: got {:?} ({})",
                    got.code(),
                    got.message()
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // Nothing was changed: the fixture stream is still there and nothing was created.
    let a = &mut s.admin;
    a.get_stream(pb::GetStreamRequest { id: "s-p1".into() })
        .await
        .expect("fixture stream kept");
    let streams = a
        .list_streams(pb::ListStreamsRequest {
            node_id: "p1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .streams;
    assert!(
        streams
            .iter()
            .all(|s| s.id == "s-p1" || (!s.enabled && s.name.starts_with("stream "))),
        "an unauthenticated call changed a stream: {streams:?}"
    );
}

/// Once p1 holds an enabled `descendants` stream, c1 is governed: its workspace admin still
/// reads c1 but changes nothing there, and each refusal names the governing stream.
/// Disabling that stream gives the access back. (Creating and deleting nodes and the data
/// plane are refused to a workspace admin whatever governs; see the matrix.)
#[tokio::test]
async fn a_workspace_admin_loses_write_access_while_an_ancestor_governs() {
    #[rustfmt::skip]
    const STILL_ALLOWED: [(Rpc, Code); 9] = [
        (GetNode, OK), (ListChildren, OK), (GetConnection, OK), (ListConnections, OK),
        (ListTargets, UN), (GetStream, OK), (ListStreams, OK), (Explain, OK), (GetStatus, OK),
    ];
    #[rustfmt::skip]
    const NOW_REFUSED: [Rpc; 8] = [
        PutNode, CreateConnection, UpdateConnection, DeleteConnection,
        CreateStream, UpdateStream, SetStreamEnabled, DeleteStream,
    ];
    const REASON: &str = "admin@c1 (workspace_admin of c1) may not change node c1: partner p1 \
                          governs this node with stream s-p1-all (applies to descendants); \
                          change or disable that stream instead";

    let mut s = fixture().await;
    let token = TestToken::of(Role::WorkspaceAdmin, Some("c1"));
    let mut caller = Caller::as_token(&s, &token).await;
    let rows: Vec<(Rpc, Code)> = STILL_ALLOWED
        .into_iter()
        .chain(NOW_REFUSED.map(|rpc| (rpc, NO)))
        .collect();
    // Fresh objects first: a `self` stream cannot be created at a governed node.
    let mut ids = Vec::new();
    for (row, (rpc, _)) in rows.iter().enumerate() {
        ids.push(prepare(&mut s.admin, *rpc, &C1.place(), &format!("g{row}")).await);
    }
    create_stream(
        &mut s.admin,
        s3_stream("s-p1-all", "p1", AppliesTo::Descendants, "conn-p1"),
    )
    .await
    .expect("governing stream");

    let mut mismatches = Vec::new();
    for ((rpc, expected), id) in rows.iter().zip(&ids) {
        let got = call(&mut caller, *rpc, &C1.place(), id).await;
        let reason_ok = *expected != NO || got.message() == REASON;
        if got.code() != *expected || !reason_ok {
            mismatches.push(format!(
                "{rpc:?}: expected {expected:?}, got {:?} ({})",
                got.code(),
                got.message()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    set_enabled(&mut s.admin, "s-p1-all", false).await.unwrap();
    let id = prepare(&mut s.admin, CreateStream, &C1.place(), "after").await;
    assert_eq!(
        call(&mut caller, CreateStream, &C1.place(), &id)
            .await
            .code(),
        OK
    );
}

/// Managed and governed: the workspace admin's refusal names the stream its settings come
/// from, the one to change.
#[tokio::test]
async fn a_managed_and_governed_node_names_the_governing_stream() {
    let mut s = fixture().await;
    let a = &mut s.admin;
    put(
        a,
        Node {
            managed: true,
            ..node("c1", "p1", NodeKind::Customer)
        },
    )
    .await;
    create_stream(
        a,
        s3_stream("s-p1-all", "p1", AppliesTo::Descendants, "conn-p1"),
    )
    .await
    .expect("governing stream");
    let mut c1 = s.config.client_as(Role::WorkspaceAdmin, Some("c1")).await;
    let err = create_stream(
        &mut c1,
        s3_stream("s-own", "c1", AppliesTo::SelfOnly, "conn-c1"),
    )
    .await
    .expect_err("managed and governed");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().starts_with(
            "admin@c1 (workspace_admin of c1) may not change node c1: workspace c1 is managed"
        ) && err
            .message()
            .ends_with("partner p1 governs it with stream s-p1-all: change that stream instead"),
        "{}",
        err.message()
    );
    // The platform admin meets the write rule itself, with the same names.
    let err = create_stream(
        &mut s.admin,
        s3_stream("s-own", "c1", AppliesTo::SelfOnly, "conn-c1"),
    )
    .await
    .expect_err("managed and governed");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .ends_with("partner p1 governs it with stream s-p1-all: change that stream instead"),
        "{}",
        err.message()
    );
}

// ------------------------------------------------------------------ focused rules

fn static_keys(c: &Connection) -> &pb::S3StaticKeys {
    match c.credentials.as_ref() {
        Some(Credentials::S3(S3Credentials {
            method: Some(s3_credentials::Method::StaticKeys(k)),
            ..
        })) => k,
        other => panic!("not S3 static keys: {other:?}"),
    }
}

/// Checks that `c` carries no secret but a fingerprint of it; returns the fingerprint.
fn assert_secret_hidden(c: &Connection, who: &str) -> String {
    let keys = static_keys(c);
    assert_eq!(keys.access_key_id, "AKIAEXAMPLE", "{who}: non-secret kept");
    assert_eq!(keys.secret_access_key, "", "{who}: secret returned");
    assert_eq!(keys.session_token, "", "{who}");
    let fingerprint = c
        .secret_fingerprints
        .get("s3.static_keys.secret_access_key")
        .unwrap_or_else(|| panic!("{who}: no fingerprint in {:?}", c.secret_fingerprints))
        .clone();
    assert!(
        fingerprint.starts_with("hmac-sha256:")
            && fingerprint.len() == "hmac-sha256:".len() + 12
            && !fingerprint.contains(SECRET),
        "{who}: {fingerprint}"
    );
    fingerprint
}

/// Reads never return a secret, whoever asks; only GetDestination (service only) does.
#[tokio::test]
async fn only_get_destination_returns_secrets() {
    let s = fixture().await;
    let mut fingerprints = Vec::new();
    for token in principals() {
        if token.node == Some("p2") {
            continue; // may not read c1 at all (see the matrix)
        }
        let mut c = s.config.client(token.token).await;
        let who = label(&token);
        let conn = c
            .get_connection(pb::GetConnectionRequest {
                id: "conn-c1".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{who}: {e:?}"))
            .into_inner();
        fingerprints.push(assert_secret_hidden(&conn, &who));
        let listed = c
            .list_connections(pb::ListConnectionsRequest {
                node_id: "c1".into(),
                include_inherited: true,
            })
            .await
            .unwrap()
            .into_inner()
            .connections;
        assert!(!listed.is_empty(), "{who}");
        for conn in &listed {
            assert_secret_hidden(conn, &who);
        }
    }
    fingerprints.dedup();
    assert_eq!(fingerprints.len(), 1, "one secret, one fingerprint");

    let mut service = s.config.client_service(ServiceKind::SinkS3).await;
    for key in [
        Key::StreamId("s-c1".into()),
        Key::ConnectionId("conn-c1".into()),
    ] {
        let details = service
            .get_destination(pb::GetDestinationRequest {
                key: Some(key.clone()),
            })
            .await
            .unwrap()
            .into_inner();
        let conn = details.connection.expect("connection");
        assert_eq!(static_keys(&conn).secret_access_key, SECRET, "{key:?}");
        assert_eq!(
            conn.secret_fingerprints["s3.static_keys.secret_access_key"],
            fingerprints[0]
        );
        assert_eq!(details.stream.is_some(), matches!(key, Key::StreamId(_)));
    }
}

/// Service tokens are per kind (L9): every kind loads the routing snapshot, but only the
/// sink of a destination's own type fetches its secrets or reports its status; the router
/// does neither.
#[tokio::test]
async fn service_kinds_get_only_their_own_data_plane_calls() {
    let s = fixture().await;
    for kind in ServiceKind::ALL {
        let token = TestToken::service(kind);
        let mut c = s.config.client(token.token).await;
        c.get_routing_snapshot(pb::GetRoutingSnapshotRequest {})
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", label(&token)));
        // The fixture's connections and streams are S3 ones.
        let own = kind == ServiceKind::SinkS3;
        for key in [
            Key::StreamId("s-c1".into()),
            Key::ConnectionId("conn-c1".into()),
        ] {
            let got = c
                .get_destination(pb::GetDestinationRequest {
                    key: Some(key.clone()),
                })
                .await;
            match got {
                Ok(d) if own => assert!(d.into_inner().connection.is_some()),
                Ok(d) => panic!("{} got {key:?}: {:?}", label(&token), d.into_inner()),
                Err(e) if own => panic!("{}: {e:?}", label(&token)),
                Err(e) => {
                    assert_eq!(e.code(), Code::PermissionDenied, "{}", label(&token));
                    assert!(
                        e.message()
                            .contains("fetch secrets of, or report about, s3 destinations"),
                        "{}: {}",
                        label(&token),
                        e.message()
                    );
                    assert!(!e.message().contains(SECRET));
                }
            }
        }
        let report = c
            .report_status(pb::ReportStatusRequest {
                status: Some(pb::StreamStatus {
                    stream_id: "s-c1".into(),
                    state: pb::HealthState::Healthy as i32,
                    ..Default::default()
                }),
            })
            .await;
        assert_eq!(
            report.map(|_| Code::Ok).unwrap_or_else(|e| e.code()),
            if own {
                Code::Ok
            } else {
                Code::PermissionDenied
            },
            "{}",
            label(&token)
        );
    }
}

/// The text every refusal of a directory change contains.
const DIRECTORY: &str = "the tenant directory is the platform's";

/// Tenant admins may rename the nodes they may write and change their contacts, nothing
/// else of a node: no move, retype, `managed`, `external_id`, no new node, no delete.
#[tokio::test]
async fn tenant_admins_rename_nodes_but_do_not_shape_the_directory() {
    let s = fixture().await;
    // (principal, its node, a node it may write with that node's parent and kind, another
    // parent to move it to).
    let cases = [
        (
            Role::PartnerAdmin,
            "p1",
            ("p1", "org", NodeKind::Partner),
            "",
        ),
        (
            Role::PartnerAdmin,
            "p1",
            ("c1", "p1", NodeKind::Customer),
            "p2",
        ),
        (
            Role::WorkspaceAdmin,
            "c1",
            ("c1", "p1", NodeKind::Customer),
            "p2",
        ),
    ];
    for (role, scope, (id, parent, kind), elsewhere) in cases {
        let mut c = s.config.client_as(role, Some(scope)).await;
        let who = format!("{role:?} of {scope} on {id}");
        let own = node(id, parent, kind);
        let renamed = put(
            &mut c,
            Node {
                name: format!("Renamed by {scope}"),
                admin_emails: vec![format!("ops@{scope}.example")],
                ..own.clone()
            },
        )
        .await;
        assert_eq!(renamed.name, format!("Renamed by {scope}"), "{who}");
        let child_kind = Place::new(id, parent, kind).child_kind();
        let refused: [(&str, Node); 6] = [
            (
                "move",
                Node {
                    parent_id: elsewhere.into(),
                    ..own.clone()
                },
            ),
            (
                "retype",
                Node {
                    kind: NodeKind::Workspace as i32,
                    ..own.clone()
                },
            ),
            (
                "mark managed",
                Node {
                    managed: true,
                    ..own.clone()
                },
            ),
            (
                "set the external id",
                Node {
                    external_id: "EXT-9".into(),
                    ..own.clone()
                },
            ),
            (
                "create a child",
                node(&format!("{id}-child"), id, child_kind),
            ),
            (
                "create a root",
                node(&format!("{scope}-root"), "", NodeKind::Organization),
            ),
        ];
        for (what, n) in refused {
            let err = c
                .put_node(pb::PutNodeRequest { node: Some(n) })
                .await
                .expect_err(what);
            assert_eq!(err.code(), Code::PermissionDenied, "{who} {what}: {err:?}");
            assert!(err.message().contains(DIRECTORY), "{who} {what}: {err:?}");
        }
        let err = c
            .delete_node(pb::DeleteNodeRequest {
                id: id.into(),
                cascade: true,
                ..Default::default()
            })
            .await
            .expect_err("delete");
        assert_eq!(err.code(), Code::PermissionDenied, "{who}: {err:?}");
        assert!(err.message().contains(DIRECTORY), "{who}: {err:?}");
    }
    // Nothing of the directory changed: only the names and contacts.
    let mut admin = s.config.client_as(Role::PlatformAdmin, None).await;
    for (id, parent) in [("p1", "org"), ("c1", "p1")] {
        let n = admin
            .get_node(pb::GetNodeRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (n.parent_id.as_str(), n.managed, n.external_id.as_str()),
            (parent, false, ""),
            "{id}"
        );
        assert!(n.name.starts_with("Renamed by"), "{id}: {n:?}");
    }
    let children = admin
        .list_children(pb::ListChildrenRequest {
            parent_id: "c1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert!(children.is_empty(), "{children:?}");
}

/// The directory sync creates, moves, retypes and deletes nodes and sets every node field;
/// it changes no stream or connection, not even by deleting a node that holds some.
#[tokio::test]
async fn directory_sync_shapes_the_tree_and_nothing_else() {
    let mut s = fixture().await;
    let mut sync = s.config.client_as(Role::DirectorySync, None).await;
    let c9 = Node {
        external_id: "EXT-C9".into(),
        admin_emails: vec!["ops@c9.example".into()],
        ..node("c9", "p2", NodeKind::Customer)
    };
    put(&mut sync, c9.clone()).await;
    let moved = put(
        &mut sync,
        Node {
            parent_id: "p1".into(),
            managed: true,
            ..c9.clone()
        },
    )
    .await;
    assert_eq!(
        (moved.parent_id.as_str(), moved.managed),
        ("p1", true),
        "{moved:?}"
    );
    put(&mut sync, node("w9", "c9", NodeKind::Workspace)).await;
    let err = sync
        .delete_node(pb::DeleteNodeRequest {
            id: "c9".into(),
            cascade: false,
            ..Default::default()
        })
        .await
        .expect_err("has a child");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let deleted = sync
        .delete_node(pb::DeleteNodeRequest {
            id: "c9".into(),
            cascade: true,
            ..Default::default()
        })
        .await
        .expect("cascade over nodes only")
        .into_inner();
    assert_eq!(deleted.deleted_nodes, ["w9", "c9"]);

    // No configuration writes.
    let refusals = [
        (
            "create a connection",
            sync.create_connection(pb::CreateConnectionRequest {
                connection: Some(s3_connection("conn-sync", "p1", SECRET)),
            })
            .await
            .map(drop),
        ),
        (
            "create a stream",
            create_stream(
                &mut sync,
                s3_stream("s-sync", "p1", AppliesTo::SelfOnly, "conn-p1"),
            )
            .await
            .map(drop),
        ),
        (
            "disable a stream",
            set_enabled(&mut sync, "s-p1", false).await.map(drop),
        ),
        (
            "delete a stream",
            sync.delete_stream(pb::DeleteStreamRequest {
                id: "s-p1".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        ),
        (
            "delete a connection",
            sync.delete_connection(pb::DeleteConnectionRequest {
                id: "conn-p1".into(),
            })
            .await
            .map(drop),
        ),
        (
            "read the routing snapshot",
            sync.get_routing_snapshot(pb::GetRoutingSnapshotRequest {})
                .await
                .map(drop),
        ),
    ];
    for (what, result) in refusals {
        let err = result.expect_err(what);
        assert_eq!(err.code(), Code::PermissionDenied, "{what}: {err:?}");
    }
    // p2 holds a connection and a stream: deleting it would delete them.
    let err = sync
        .delete_node(pb::DeleteNodeRequest {
            id: "p2".into(),
            cascade: true,
            ..Default::default()
        })
        .await
        .expect_err("p2 holds configuration");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(
        err.message(),
        "directory-sync (directory_sync) may not delete the 1 stream(s) and 1 connection(s) in \
         the subtree of node p2; a platform_admin deletes them (or the node with cascade)"
    );
    let deleted = s
        .admin
        .delete_node(pb::DeleteNodeRequest {
            id: "p2".into(),
            cascade: true,
            ..Default::default()
        })
        .await
        .expect("the platform admin may")
        .into_inner();
    assert_eq!(deleted.deleted_nodes, ["c3", "p2"]);
}

/// A `descendants` stream captures the events of every node below its node, so a workspace
/// admin (who reads its own node only) may not create, change or enable one (M4), even on
/// its own node; the partner admin above may.
#[tokio::test]
async fn a_workspace_admin_cannot_scope_a_stream_to_descendants() {
    let mut s = fixture().await;
    const REFUSAL: &str = "admin@c1 (workspace_admin of c1) may not create, change or enable a \
                           stream that applies to descendants at node c1";
    let mut c1 = s.config.client_as(Role::WorkspaceAdmin, Some("c1")).await;
    let refused = |what: &str, e: Status| {
        assert_eq!(e.code(), Code::PermissionDenied, "{what}: {e:?}");
        assert!(e.message().starts_with(REFUSAL), "{what}: {e:?}");
    };
    for enabled in [true, false] {
        let stream = Stream {
            enabled,
            ..s3_stream("s-c1-all", "c1", AppliesTo::Descendants, "conn-c1")
        };
        refused("create", create_stream(&mut c1, stream).await.unwrap_err());
    }
    // Its own self stream turned into a descendants one.
    let update = pb::UpdateStreamRequest {
        stream: Some(s3_stream("s-c1", "c1", AppliesTo::Descendants, "conn-c1")),
        update_mask: vec!["applies_to".into()],
    };
    refused(
        "update applies_to",
        c1.update_stream(update).await.unwrap_err(),
    );
    // A disabled one the partner admin made: the workspace admin may neither enable it nor
    // change it (say, its destination) for the partner admin to enable later.
    let mut p1 = s.config.client_as(Role::PartnerAdmin, Some("p1")).await;
    create_stream(
        &mut p1,
        Stream {
            enabled: false,
            ..s3_stream("s-c1-all", "c1", AppliesTo::Descendants, "conn-c1")
        },
    )
    .await
    .expect("a partner admin may");
    refused(
        "enable",
        set_enabled(&mut c1, "s-c1-all", true).await.unwrap_err(),
    );
    let update = pb::UpdateStreamRequest {
        stream: Some(Stream {
            id: "s-c1-all".into(),
            name: "renamed".into(),
            ..Default::default()
        }),
        update_mask: vec!["name".into()],
    };
    refused("rename", c1.update_stream(update).await.unwrap_err());
    set_enabled(&mut p1, "s-c1-all", true)
        .await
        .expect("the partner admin enables it");
    // Nothing changed at c1 through the workspace admin.
    let stream = s
        .admin
        .get_stream(pb::GetStreamRequest { id: "s-c1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.applies_to(), AppliesTo::SelfOnly);
}

/// ListChildren without a parent lists the roots the caller may see: a scoped admin's root
/// is the node it administers.
#[tokio::test]
async fn list_children_without_a_parent_starts_at_the_callers_scope() {
    let s = fixture().await;
    for token in principals() {
        let mut c = s.config.client(token.token).await;
        let roots: Vec<String> = c
            .list_children(pb::ListChildrenRequest::default())
            .await
            .unwrap()
            .into_inner()
            .nodes
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(
            roots,
            vec![token.node.unwrap_or("org").to_owned()],
            "{}",
            label(&token)
        );
    }
}

/// A workspace admin of a customer reads the customer, not the workspaces below it.
#[tokio::test]
async fn list_children_shows_only_readable_children() {
    let mut s = fixture().await;
    put(&mut s.admin, node("w1", "c1", NodeKind::Workspace)).await;
    for (role, scope, want) in [
        (Role::PartnerAdmin, Some("p1"), vec!["w1"]),
        (Role::WorkspaceAdmin, Some("c1"), vec![]),
        (Role::Auditor, None, vec!["w1"]),
    ] {
        let mut c = s.config.client_as(role, scope).await;
        let children: Vec<String> = c
            .list_children(pb::ListChildrenRequest {
                parent_id: "c1".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .nodes
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(children, want, "{role:?}");
    }
}

/// A partner admin cannot route its streams through another partner's credentials: the
/// connection is as unknown to it as a missing one. One it may read, but not at the
/// stream's node or above, is refused naming where it is.
#[tokio::test]
async fn a_partner_admin_cannot_use_another_partners_connection() {
    let s = fixture().await;
    let mut p1 = s.config.client_as(Role::PartnerAdmin, Some("p1")).await;
    for cid in ["conn-p2", "conn-missing"] {
        let err = create_stream(
            &mut p1,
            s3_stream("s-steal", "c1", AppliesTo::SelfOnly, cid),
        )
        .await
        .expect_err("not p1's");
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert_eq!(
            err.message(),
            format!("admin@p1 (partner_admin of p1) may not read connection {cid}")
        );
    }
    let err = create_stream(
        &mut p1,
        s3_stream("s-up", "p1", AppliesTo::SelfOnly, "conn-c1"),
    )
    .await
    .expect_err("conn-c1 is below p1");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(
        err.message(),
        "stream s-up cannot use connection conn-c1: it belongs to node c1, which is not p1 or \
         one of its ancestors"
    );
}

/// For every RPC, a scoped admin gets the same code and text for another tenant's id as for
/// a missing one: each RPC is called on objects at a node outside the caller's scope, then,
/// once the platform admin deleted that node with everything at it, on the same ids again.
#[tokio::test]
async fn a_missing_id_and_another_tenants_id_get_the_same_answer() {
    let mut s = fixture().await;
    // p1's admin against another partner's subtree; c1's workspace admin against its own
    // partner's.
    for (role, scope, foreign_parent) in [
        (Role::PartnerAdmin, "p1", "p2"),
        (Role::WorkspaceAdmin, "c1", "p1"),
    ] {
        let token = TestToken::of(role, Some(scope));
        let mut caller = Caller::as_token(&s, &token).await;
        let mut mismatches = Vec::new();
        for (n, rpc) in ALL_RPCS.into_iter().enumerate() {
            let at = Place::new(
                &format!("f-{scope}-{n}"),
                foreign_parent,
                NodeKind::Customer,
            );
            furnish(&mut s.admin, &at).await;
            let id = prepare(&mut s.admin, rpc, &at, &format!("x-{scope}-{n}")).await;
            let foreign = call(&mut caller, rpc, &at, &id).await;
            s.admin
                .delete_node(pb::DeleteNodeRequest {
                    id: at.node.clone(),
                    cascade: true,
                    ..Default::default()
                })
                .await
                .expect("delete the foreign node");
            let missing = call(&mut caller, rpc, &at, &id).await;
            if foreign.code() == Code::Ok
                || (foreign.code(), foreign.message()) != (missing.code(), missing.message())
            {
                mismatches.push(format!(
                    "{rpc:?} as {}: {:?} {:?} for another tenant's id, {:?} {:?} for a missing one",
                    label(&token),
                    foreign.code(),
                    foreign.message(),
                    missing.code(),
                    missing.message()
                ));
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }
}

/// Creating an id that exists in another tenant answers as reading a missing id does, not
/// ALREADY_EXISTS; an id the caller may read is ALREADY_EXISTS.
#[tokio::test]
async fn creating_an_id_taken_in_another_tenant_answers_as_for_a_missing_id() {
    let mut s = fixture().await;
    let mut p1 = s.config.client_as(Role::PartnerAdmin, Some("p1")).await;
    let taken_connection = p1
        .create_connection(pb::CreateConnectionRequest {
            connection: Some(s3_connection("conn-p2", "p1", SECRET)),
        })
        .await
        .expect_err("conn-p2 is p2's");
    let taken_stream = create_stream(
        &mut p1,
        s3_stream("s-p2", "c1", AppliesTo::SelfOnly, "conn-p1"),
    )
    .await
    .expect_err("s-p2 is p2's");
    // Ids p1's admin may read: ALREADY_EXISTS.
    let err = p1
        .create_connection(pb::CreateConnectionRequest {
            connection: Some(s3_connection("conn-c1", "p1", SECRET)),
        })
        .await
        .expect_err("conn-c1 exists");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let err = create_stream(
        &mut p1,
        s3_stream("s-c1", "p1", AppliesTo::SelfOnly, "conn-p1"),
    )
    .await
    .expect_err("s-c1 exists");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    // The ids freed, p1's admin reads them as missing: the same answer as the creates got.
    let a = &mut s.admin;
    a.delete_stream(pb::DeleteStreamRequest {
        id: "s-p2".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    a.delete_connection(pb::DeleteConnectionRequest {
        id: "conn-p2".into(),
    })
    .await
    .unwrap();
    let missing_connection = p1
        .get_connection(pb::GetConnectionRequest {
            id: "conn-p2".into(),
        })
        .await
        .unwrap_err();
    let missing_stream = p1
        .get_stream(pb::GetStreamRequest { id: "s-p2".into() })
        .await
        .unwrap_err();
    for (taken, missing, want) in [
        (
            &taken_connection,
            &missing_connection,
            "admin@p1 (partner_admin of p1) may not read connection conn-p2",
        ),
        (
            &taken_stream,
            &missing_stream,
            "admin@p1 (partner_admin of p1) may not read stream s-p2",
        ),
    ] {
        assert_eq!(taken.code(), Code::PermissionDenied, "{taken:?}");
        assert_eq!(
            (taken.code(), taken.message()),
            (missing.code(), missing.message())
        );
        assert_eq!(taken.message(), want);
    }
    // Free now, the same ids can be created.
    create_connection(&mut p1, s3_connection("conn-p2", "p1", SECRET)).await;
    create_stream(
        &mut p1,
        s3_stream("s-p2", "c1", AppliesTo::SelfOnly, "conn-p1"),
    )
    .await
    .expect("free id");
}

async fn explain_c1_as(s: &ConfigStack, role: Role, scope: Option<&str>) -> pb::ExplainResponse {
    let mut c = s.config.client_as(role, scope).await;
    c.explain(pb::ExplainRequest {
        workspace_id: "c1".into(),
    })
    .await
    .expect("explain c1")
    .into_inner()
}

/// Explain to a customer's workspace admin under a governing partner stream: the path
/// above it and the streams there show only what says why a stream applies, none of the
/// partner's or the organization's settings (M1). A reader of the whole path sees it all.
#[tokio::test]
async fn explain_shows_a_tenant_nothing_of_its_ancestors_settings() {
    const URL: &str = "https://8.8.8.8/receiver/v1/http/partner-collector-credential";
    const TEMPLATE: &str = r#"{"partner_marker": {{{log_message}}}}"#;
    let mut s = fixture().await;
    let a = &mut s.admin;
    for (id, parent, kind) in [
        ("org", "", NodeKind::Organization),
        ("p1", "org", NodeKind::Partner),
    ] {
        put(
            a,
            Node {
                name: format!("Secret name {id}"),
                external_id: format!("EXT-{id}"),
                managed: id == "p1",
                admin_emails: vec![format!("ops@{id}.example")],
                ..node(id, parent, kind)
            },
        )
        .await;
    }
    create_connection(a, s3_connection("conn-org", "org", SECRET)).await;
    create_stream(
        a,
        s3_stream("s-org", "org", AppliesTo::SelfOnly, "conn-org"),
    )
    .await
    .unwrap();
    create_connection(
        a,
        Connection {
            id: "p1-http".into(),
            node_id: "p1".into(),
            name: "Partner collector".into(),
            credentials: Some(Credentials::Http(pb::HttpCredentials {
                auth: Some(pb::http_credentials::Auth::Bearer(pb::HttpBearerAuth {
                    token: SECRET.into(),
                })),
                origin: "https://8.8.8.8".into(),
                ..Default::default()
            })),
            ..Default::default()
        },
    )
    .await;
    let governing = Stream {
        template: TEMPLATE.into(),
        batching: Some(pb::Batching {
            max_events: 77,
            ..Default::default()
        }),
        destination: Some(pb::Destination {
            connection_id: "p1-http".into(),
            target: Some(pb::destination::Target::Http(pb::HttpTarget {
                url: URL.into(),
                ..Default::default()
            })),
        }),
        ..s3_stream("s-p1-all", "p1", AppliesTo::Descendants, "")
    };
    create_stream(a, governing).await.expect("governing stream");

    let got = explain_c1_as(&s, Role::WorkspaceAdmin, Some("c1")).await;
    let outline_node = |id: &str, kind: NodeKind| Node {
        id: id.into(),
        kind: kind as i32,
        ..Default::default()
    };
    let outline_stream = |id: &str, node_id: &str, applies_to: AppliesTo| Stream {
        id: id.into(),
        node_id: node_id.into(),
        applies_to: applies_to as i32,
        enabled: true,
        ..Default::default()
    };
    let c1 = s
        .admin
        .get_node(pb::GetNodeRequest { id: "c1".into() })
        .await
        .unwrap()
        .into_inner();
    let s_c1 = s
        .admin
        .get_stream(pb::GetStreamRequest { id: "s-c1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        got.path,
        [
            outline_node("org", NodeKind::Organization),
            outline_node("p1", NodeKind::Partner),
            c1
        ]
    );
    assert_eq!(
        got.effective,
        [outline_stream("s-p1-all", "p1", AppliesTo::Descendants)]
    );
    let inactive: Vec<(Option<Stream>, &str, &str)> = got
        .inactive
        .iter()
        .map(|i| (i.stream.clone(), i.code.as_str(), i.reason.as_str()))
        .collect();
    assert_eq!(
        inactive,
        [
            (
                Some(outline_stream("s-org", "org", AppliesTo::SelfOnly)),
                "other_node_only",
                "applies to organization org only"
            ),
            (
                Some(outline_stream("s-p1", "p1", AppliesTo::SelfOnly)),
                "other_node_only",
                "applies to partner p1 only"
            ),
            (
                Some(s_c1),
                "overridden",
                "overridden by partner p1 stream s-p1-all"
            ),
        ]
    );
    // The whole answer, as text: nothing of the ancestors' settings anywhere.
    let text = format!(
        "{got:?}\n{}",
        serde_json::to_string(&got).expect("explain as JSON")
    );
    for secret in [
        "8.8.8.8",
        "partner-collector-credential",
        "partner_marker",
        "p1-http",
        "conn-p1",
        "conn-org",
        "audit-s-p1",
        "audit-s-org",
        "ops@p1.example",
        "ops@org.example",
        "EXT-",
        "Secret name",
        "max_events: 77",
        "Partner collector",
        SECRET,
    ] {
        assert!(!text.contains(secret), "{secret:?} in {text}");
    }

    // A partner admin of p1 (and the platform admin) may read the whole path: all of it.
    for (role, scope) in [
        (Role::PartnerAdmin, Some("p1")),
        (Role::PlatformAdmin, None),
    ] {
        let full = explain_c1_as(&s, role, scope).await;
        let mut admin = s.config.client_as(Role::PlatformAdmin, None).await;
        let mut path = Vec::new();
        for id in ["org", "p1", "c1"] {
            path.push(
                admin
                    .get_node(pb::GetNodeRequest { id: id.into() })
                    .await
                    .unwrap()
                    .into_inner(),
            );
        }
        let governing = admin
            .get_stream(pb::GetStreamRequest {
                id: "s-p1-all".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if scope.is_some() {
            // The organization is above p1: outlined for its admin.
            path[0] = outline_node("org", NodeKind::Organization);
        }
        assert_eq!(full.path, path, "{role:?}");
        assert_eq!(full.effective, [governing], "{role:?}");
    }
}

/// A scoped admin cannot tell a missing id from one in another subtree: the same code and
/// text, naming the id asked about. Principals that read everything get NOT_FOUND for what
/// does not exist.
#[tokio::test]
async fn scoped_admins_cannot_probe_for_existence() {
    let s = fixture().await;
    let mut p2 = s.config.client_as(Role::PartnerAdmin, Some("p2")).await;
    for (what, existing, missing) in [
        ("node", "p1", "no-such-node"),
        ("stream", "s-p1", "no-such-stream"),
    ] {
        let mut answers = Vec::new();
        for id in [existing, missing] {
            let err = match what {
                "node" => p2
                    .get_node(pb::GetNodeRequest { id: id.into() })
                    .await
                    .map(drop),
                _ => p2
                    .get_stream(pb::GetStreamRequest { id: id.into() })
                    .await
                    .map(drop),
            }
            .unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{id}");
            answers.push(err.message().replace(id, "<id>"));
        }
        let want = format!("admin@p2 (partner_admin of p2) may not read {what} <id>");
        assert_eq!(answers, [want.clone(), want]);
    }
    for role in [Role::PlatformAdmin, Role::DirectorySync, Role::Auditor] {
        let mut c = s.config.client_as(role, None).await;
        let err = c
            .get_node(pb::GetNodeRequest {
                id: "no-such-node".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{role:?}");
        assert_eq!(err.message(), "node no-such-node does not exist");
    }
}
