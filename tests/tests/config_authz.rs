//! The authorization matrix of the config service: every principal of the test
//! configuration × every RPC, on nodes inside partner p1's subtree and inside partner p2's,
//! against the role table of `config-service/src/authz.rs`:
//!
//! | role | reads | writes | data plane |
//! |---|---|---|---|
//! | `service` | everything | nothing | snapshot, destinations with secrets, status reports |
//! | `platform_admin` | everything | everything | no |
//! | `partner_admin` of N | N's subtree | N's subtree (N itself: not its parent or kind, not delete) | no |
//! | `workspace_admin` of N | N | N's own streams and connections, and N's name/contacts, only while N is neither governed nor managed | no |
//! | `auditor` | everything | nothing | no |
//!
//! The tree: `org` → `p1` → `c1` and `org` → `p2` → `c3`; an S3 connection and a `self`
//! stream at p1, c1 and p2. No stream applies to descendants, so c1 is not governed and its
//! workspace admin may write there (until one does: see
//! `a_workspace_admin_loses_write_access_while_an_ancestor_governs`).

mod common;

use auditstream_config_service::authz::Role;
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
    /// Creates a workspace under the target node.
    PutChild,
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

const ALL_RPCS: [Rpc; 22] = [
    PutNode,
    PutChild,
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

/// A node with a connection and a stream, and the node's place in the tree.
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
    fn node(self) -> &'static str {
        match self {
            P1 => "p1",
            C1 => "c1",
            P2 => "p2",
        }
    }

    fn parent(self) -> &'static str {
        match self {
            P1 | P2 => "org",
            C1 => "p1",
        }
    }

    fn kind(self) -> NodeKind {
        match self {
            P1 | P2 => NodeKind::Partner,
            C1 => NodeKind::Customer,
        }
    }

    fn connection(self) -> String {
        format!("conn-{}", self.node())
    }

    fn stream(self) -> String {
        format!("s-{}", self.node())
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
        create_connection(a, s3_connection(&t.connection(), t.node(), SECRET)).await;
        create_stream(
            a,
            s3_stream(&t.stream(), t.node(), AppliesTo::SelfOnly, &t.connection()),
        )
        .await
        .expect("fixture stream");
    }
    s
}

/// Creates, as platform admin, what `rpc` acts on at `at` and returns its id: a fresh
/// object for the calls that change or delete one (so rows do not disturb each other), the
/// fixture's node, connection or stream otherwise. `fresh` is an unused id.
async fn prepare(admin: &mut ConfigClient, rpc: Rpc, at: Target, fresh: &str) -> String {
    match rpc {
        PutNode | GetNode | ListChildren | ListConnections | ListStreams | Explain
        | GetRoutingSnapshot => at.node().into(),
        PutChild | CreateConnection | CreateStream => fresh.into(),
        GetConnection | ListTargets => at.connection(),
        GetStream | GetStatus | GetDestination | ReportStatus => at.stream(),
        DeleteNode => {
            put(admin, node(fresh, at.node(), NodeKind::Workspace)).await;
            fresh.into()
        }
        UpdateConnection | DeleteConnection => {
            create_connection(admin, s3_connection(fresh, at.node(), SECRET)).await;
            fresh.into()
        }
        UpdateStream | SetStreamEnabled | DeleteStream => {
            let stream = Stream {
                enabled: false,
                ..s3_stream(fresh, at.node(), AppliesTo::SelfOnly, &at.connection())
            };
            create_stream(admin, stream).await.expect("fresh stream");
            fresh.into()
        }
    }
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
async fn call(caller: &mut Caller, rpc: Rpc, at: Target, id: &str) -> Status {
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
                ..node(&id, at.parent(), at.kind())
            };
            c.put_node(request(auth, pb::PutNodeRequest { node: Some(n) }))
                .await
                .map(drop)
        }
        PutChild => {
            let n = node(&id, at.node(), NodeKind::Workspace);
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
            let connection = Some(s3_connection(&id, at.node(), SECRET));
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
            let connection = Some(s3_connection(&id, at.node(), "rotated-secret-0123456789"));
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
                at.node(),
                AppliesTo::SelfOnly,
                &at.connection(),
            ));
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

/// The principals of the test configuration, in the matrix's column order.
const PRINCIPALS: [(Role, Option<&str>); 6] = [
    (Role::Service, None),
    (Role::PlatformAdmin, None),
    (Role::PartnerAdmin, Some("p1")),
    (Role::PartnerAdmin, Some("p2")),
    (Role::WorkspaceAdmin, Some("c1")),
    (Role::Auditor, None),
];

fn label(t: &TestToken) -> String {
    match t.node {
        Some(n) => format!("{:?} of {n}", t.role),
        None => format!("{:?}", t.role),
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
/// partner_admin of p1, partner_admin of p2, workspace_admin of c1, auditor.
#[rustfmt::skip]
const MATRIX: &[(Rpc, Target, [Code; 6])] = &[
    //                                  svc  plat  p1   p2   c1   aud
    // Reads: service, platform admin and auditor everywhere; a partner admin in its own
    // subtree only; the workspace admin at its own node only.
    (GetNode,            P1, [OK,  OK,  OK,  NO,  NO,  OK]),
    (GetNode,            C1, [OK,  OK,  OK,  NO,  OK,  OK]),
    (GetNode,            P2, [OK,  OK,  NO,  OK,  NO,  OK]),
    (ListChildren,       P1, [OK,  OK,  OK,  NO,  NO,  OK]),
    (ListChildren,       C1, [OK,  OK,  OK,  NO,  OK,  OK]),
    (ListChildren,       P2, [OK,  OK,  NO,  OK,  NO,  OK]),
    (GetConnection,      P1, [OK,  OK,  OK,  NO,  NO,  OK]),
    (GetConnection,      C1, [OK,  OK,  OK,  NO,  OK,  OK]),
    (GetConnection,      P2, [OK,  OK,  NO,  OK,  NO,  OK]),
    (ListConnections,    P1, [OK,  OK,  OK,  NO,  NO,  OK]),
    (ListConnections,    C1, [OK,  OK,  OK,  NO,  OK,  OK]),
    (ListConnections,    P2, [OK,  OK,  NO,  OK,  NO,  OK]),
    (ListTargets,        P1, [UN,  UN,  UN,  NO,  NO,  UN]),
    (ListTargets,        C1, [UN,  UN,  UN,  NO,  UN,  UN]),
    (ListTargets,        P2, [UN,  UN,  NO,  UN,  NO,  UN]),
    (GetStream,          P1, [OK,  OK,  OK,  NO,  NO,  OK]),
    (GetStream,          C1, [OK,  OK,  OK,  NO,  OK,  OK]),
    (GetStream,          P2, [OK,  OK,  NO,  OK,  NO,  OK]),
    (ListStreams,        P1, [OK,  OK,  OK,  NO,  NO,  OK]),
    (ListStreams,        C1, [OK,  OK,  OK,  NO,  OK,  OK]),
    (ListStreams,        P2, [OK,  OK,  NO,  OK,  NO,  OK]),
    (Explain,            P1, [OK,  OK,  OK,  NO,  NO,  OK]),
    (Explain,            C1, [OK,  OK,  OK,  NO,  OK,  OK]),
    (Explain,            P2, [OK,  OK,  NO,  OK,  NO,  OK]),
    (GetStatus,          P1, [OK,  OK,  OK,  NO,  NO,  OK]),
    (GetStatus,          C1, [OK,  OK,  OK,  NO,  OK,  OK]),
    (GetStatus,          P2, [OK,  OK,  NO,  OK,  NO,  OK]),
    // Writes: the platform admin everywhere; a partner admin in its own subtree (its own
    // node included, by name); the workspace admin its own node's name, streams and
    // connections; never the service or the auditor.
    (PutNode,            P1, [NO,  OK,  OK,  NO,  NO,  NO]),
    (PutNode,            C1, [NO,  OK,  OK,  NO,  OK,  NO]),
    (PutNode,            P2, [NO,  OK,  NO,  OK,  NO,  NO]),
    (CreateConnection,   P1, [NO,  OK,  OK,  NO,  NO,  NO]),
    (CreateConnection,   C1, [NO,  OK,  OK,  NO,  OK,  NO]),
    (CreateConnection,   P2, [NO,  OK,  NO,  OK,  NO,  NO]),
    (UpdateConnection,   P1, [NO,  OK,  OK,  NO,  NO,  NO]),
    (UpdateConnection,   C1, [NO,  OK,  OK,  NO,  OK,  NO]),
    (UpdateConnection,   P2, [NO,  OK,  NO,  OK,  NO,  NO]),
    (DeleteConnection,   P1, [NO,  OK,  OK,  NO,  NO,  NO]),
    (DeleteConnection,   C1, [NO,  OK,  OK,  NO,  OK,  NO]),
    (DeleteConnection,   P2, [NO,  OK,  NO,  OK,  NO,  NO]),
    (CreateStream,       P1, [NO,  OK,  OK,  NO,  NO,  NO]),
    (CreateStream,       C1, [NO,  OK,  OK,  NO,  OK,  NO]),
    (CreateStream,       P2, [NO,  OK,  NO,  OK,  NO,  NO]),
    (UpdateStream,       P1, [NO,  OK,  OK,  NO,  NO,  NO]),
    (UpdateStream,       C1, [NO,  OK,  OK,  NO,  OK,  NO]),
    (UpdateStream,       P2, [NO,  OK,  NO,  OK,  NO,  NO]),
    (SetStreamEnabled,   P1, [NO,  OK,  OK,  NO,  NO,  NO]),
    (SetStreamEnabled,   C1, [NO,  OK,  OK,  NO,  OK,  NO]),
    (SetStreamEnabled,   P2, [NO,  OK,  NO,  OK,  NO,  NO]),
    (DeleteStream,       P1, [NO,  OK,  OK,  NO,  NO,  NO]),
    (DeleteStream,       C1, [NO,  OK,  OK,  NO,  OK,  NO]),
    (DeleteStream,       P2, [NO,  OK,  NO,  OK,  NO,  NO]),
    // The tree's shape: a workspace admin creates and deletes no nodes.
    (PutChild,           P1, [NO,  OK,  OK,  NO,  NO,  NO]),
    (PutChild,           C1, [NO,  OK,  OK,  NO,  NO,  NO]),
    (PutChild,           P2, [NO,  OK,  NO,  OK,  NO,  NO]),
    (DeleteNode,         P1, [NO,  OK,  OK,  NO,  NO,  NO]),
    (DeleteNode,         C1, [NO,  OK,  OK,  NO,  NO,  NO]),
    (DeleteNode,         P2, [NO,  OK,  NO,  OK,  NO,  NO]),
    // Data plane: the service only.
    (GetRoutingSnapshot, P1, [OK,  NO,  NO,  NO,  NO,  NO]),
    (GetDestination,     P1, [OK,  NO,  NO,  NO,  NO,  NO]),
    (GetDestination,     C1, [OK,  NO,  NO,  NO,  NO,  NO]),
    (GetDestination,     P2, [OK,  NO,  NO,  NO,  NO,  NO]),
    (ReportStatus,       P1, [OK,  NO,  NO,  NO,  NO,  NO]),
    (ReportStatus,       C1, [OK,  NO,  NO,  NO,  NO,  NO]),
    (ReportStatus,       P2, [OK,  NO,  NO,  NO,  NO,  NO]),
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
    for (column, (role, scope)) in PRINCIPALS.iter().enumerate() {
        let token = TestToken::of(*role, *scope);
        // A stack per principal; every row that changes something acts on fresh objects.
        let mut s = fixture().await;
        let mut caller = Caller::as_token(&s, &token).await;
        for (row, (rpc, at, expected)) in MATRIX.iter().enumerate() {
            let id = prepare(&mut s.admin, *rpc, *at, &format!("x{row}")).await;
            let got = call(&mut caller, *rpc, *at, &id).await;
            if got.code() != expected[column] {
                mismatches.push(format!(
                    "{rpc:?} at {} as {}: expected {:?}, got {:?} ({})",
                    at.node(),
                    label(&token),
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
            let id = prepare(&mut s.admin, rpc, P1, &format!("u{n}")).await;
            let got = call(&mut caller, rpc, P1, &id).await;
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
/// Disabling that stream gives the access back. (Deleting nodes and the data plane are
/// refused to a workspace admin whatever governs; see the matrix.)
#[tokio::test]
async fn a_workspace_admin_loses_write_access_while_an_ancestor_governs() {
    #[rustfmt::skip]
    const STILL_ALLOWED: [(Rpc, Code); 9] = [
        (GetNode, OK), (ListChildren, OK), (GetConnection, OK), (ListConnections, OK),
        (ListTargets, UN), (GetStream, OK), (ListStreams, OK), (Explain, OK), (GetStatus, OK),
    ];
    #[rustfmt::skip]
    const NOW_REFUSED: [Rpc; 9] = [
        PutNode, PutChild, CreateConnection, UpdateConnection, DeleteConnection,
        CreateStream, UpdateStream, SetStreamEnabled, DeleteStream,
    ];
    const REASON: &str = "may not change node c1: partner p1 governs it with stream s-p1-all";

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
        ids.push(prepare(&mut s.admin, *rpc, C1, &format!("g{row}")).await);
    }
    create_stream(
        &mut s.admin,
        s3_stream("s-p1-all", "p1", AppliesTo::Descendants, "conn-p1"),
    )
    .await
    .expect("governing stream");

    let mut mismatches = Vec::new();
    for ((rpc, expected), id) in rows.iter().zip(&ids) {
        let got = call(&mut caller, *rpc, C1, id).await;
        let reason_ok = *expected != NO || got.message().contains(REASON);
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
    let id = prepare(&mut s.admin, CreateStream, C1, "after").await;
    assert_eq!(call(&mut caller, CreateStream, C1, &id).await.code(), OK);
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
    for (role, scope) in PRINCIPALS {
        if scope == Some("p2") {
            continue; // may not read c1 at all (see the matrix)
        }
        let mut c = s.config.client_as(role, scope).await;
        let who = label(&TestToken::of(role, scope));
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

    let mut service = s.config.client_as(Role::Service, None).await;
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

/// "N itself: not its parent or kind, not delete": scoped admins may rename the node they
/// administer and change its contacts, nothing more; only a platform admin makes roots.
#[tokio::test]
async fn scoped_admins_may_rename_their_own_node_but_not_move_retype_or_delete_it() {
    let s = fixture().await;
    for (scope, role, parent, kind) in [
        ("p1", Role::PartnerAdmin, "org", NodeKind::Partner),
        ("c1", Role::WorkspaceAdmin, "p1", NodeKind::Customer),
    ] {
        let mut c = s.config.client_as(role, Some(scope)).await;
        let own = node(scope, parent, kind);
        let renamed = put(
            &mut c,
            Node {
                name: "Renamed".into(),
                admin_emails: vec![format!("ops@{scope}.example")],
                ..own.clone()
            },
        )
        .await;
        assert_eq!(renamed.name, "Renamed");
        let refused: [(&str, Node); 4] = [
            (
                "move",
                Node {
                    parent_id: "p2".into(),
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
            ("create a root", node(&format!("{scope}-root"), "", kind)),
        ];
        for (what, n) in refused {
            let err = c
                .put_node(pb::PutNodeRequest { node: Some(n) })
                .await
                .expect_err(what);
            assert_eq!(
                err.code(),
                Code::PermissionDenied,
                "{scope} {what}: {err:?}"
            );
        }
        let err = c
            .delete_node(pb::DeleteNodeRequest {
                id: scope.into(),
                cascade: true,
                ..Default::default()
            })
            .await
            .expect_err("delete own node");
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(
            err.message()
                .contains("may not delete the node it administers"),
            "{err:?}"
        );
    }
    // A partner admin may not move a node of its subtree out of it.
    let mut p1 = s.config.client_as(Role::PartnerAdmin, Some("p1")).await;
    for parent in ["p2", ""] {
        let err = p1
            .put_node(pb::PutNodeRequest {
                node: Some(node("c1", parent, NodeKind::Customer)),
            })
            .await
            .expect_err("move c1 out of p1");
        assert_eq!(err.code(), Code::PermissionDenied, "to {parent:?}: {err:?}");
    }
}

/// ListChildren without a parent lists the roots the caller may see: a scoped admin's root
/// is the node it administers.
#[tokio::test]
async fn list_children_without_a_parent_starts_at_the_callers_scope() {
    let s = fixture().await;
    for (role, scope) in PRINCIPALS {
        let mut c = s.config.client_as(role, scope).await;
        let roots: Vec<String> = c
            .list_children(pb::ListChildrenRequest::default())
            .await
            .unwrap()
            .into_inner()
            .nodes
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(roots, vec![scope.unwrap_or("org").to_owned()], "{role:?}");
    }
}

/// A partner admin cannot route its streams through another partner's credentials.
#[tokio::test]
async fn a_partner_admin_cannot_use_another_partners_connection() {
    let s = fixture().await;
    let mut p1 = s.config.client_as(Role::PartnerAdmin, Some("p1")).await;
    let err = create_stream(
        &mut p1,
        s3_stream("s-steal", "c1", AppliesTo::SelfOnly, "conn-p2"),
    )
    .await
    .expect_err("conn-p2 is p2's");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("cannot use connection conn-p2"),
        "{err:?}"
    );
}

/// A scoped admin cannot tell a missing id from one in another subtree: both are
/// PERMISSION_DENIED. Unscoped principals get NOT_FOUND for what does not exist.
#[tokio::test]
async fn scoped_admins_cannot_probe_for_existence() {
    use auditstream_proto::v1 as pb;
    let mut s = common::config::config_stack().await;
    common::config::tree(
        &mut s.admin,
        &[
            ("org", "", pb::NodeKind::Organization),
            ("p1", "org", pb::NodeKind::Partner),
            ("p2", "org", pb::NodeKind::Partner),
        ],
    )
    .await;
    let mut p2 = s
        .config
        .client_as(
            auditstream_config_service::authz::Role::PartnerAdmin,
            Some("p2"),
        )
        .await;
    for id in ["p1", "no-such-node"] {
        let err = p2
            .get_node(pb::GetNodeRequest { id: id.into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{id}");
    }
    for id in ["no-such-stream"] {
        let err = p2
            .get_stream(pb::GetStreamRequest { id: id.into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{id}");
    }
    let err = s
        .admin
        .get_node(pb::GetNodeRequest {
            id: "no-such-node".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}
