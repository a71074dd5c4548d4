//! The platform's cloud identity and the secrets key, through the real gRPC API (security
//! review H6 and L3):
//!
//! - an S3 connection that would act as the platform's own AWS identity (`default_chain`, or
//!   `assume_role` without source keys) is saved only at a node the operator allowed
//!   (`connections.platform_identity_nodes`) or below it, and `ListTargets` refuses one
//!   stored elsewhere before the rule;
//! - an assume-role connection's external id is the service's: generated, distinct per
//!   connection, never set by the tenant, kept across updates;
//! - after a key rotation, `Reseal` leaves no row sealed with the old key: the service then
//!   starts with only the new key and serves every secret, the same feed key and the same
//!   fingerprints.

mod common;

use auditstream_config_service::{ConfigServiceConfig, authz::Role, authz::ServiceKind};
use auditstream_proto::v1::{
    self as pb, Connection, NodeKind, S3AssumeRole, S3Credentials, S3DefaultChain, S3StaticKeys,
    connection::Credentials, get_destination_request::Key, s3_credentials,
};
use auditstream_telemetry::Secret;
use auditstream_testkit::{ConfigClient, ConfigHarness, Database, NatsServer, TEST_SECRETS_KEY};
use common::config::*;
use tonic::Code;

/// o1 (organization) → p1 (partner) → c1 (customer), and o1 → p2 (partner).
async fn tree_of(admin: &mut ConfigClient) {
    tree(
        admin,
        &[
            ("o1", "", NodeKind::Organization),
            ("p1", "o1", NodeKind::Partner),
            ("c1", "p1", NodeKind::Customer),
            ("p2", "o1", NodeKind::Partner),
        ],
    )
    .await;
}

fn with_method(id: &str, node: &str, method: s3_credentials::Method) -> Connection {
    Connection {
        id: id.into(),
        node_id: node.into(),
        name: format!("S3 {id}"),
        credentials: Some(Credentials::S3(S3Credentials {
            method: Some(method),
            region: "us-east-1".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn default_chain(id: &str, node: &str) -> Connection {
    with_method(
        id,
        node,
        s3_credentials::Method::DefaultChain(S3DefaultChain {}),
    )
}

fn source_keys() -> S3StaticKeys {
    S3StaticKeys {
        access_key_id: "AKIAEXAMPLE".into(),
        secret_access_key: SECRET.into(),
        session_token: String::new(),
    }
}

fn assume_role(id: &str, node: &str, keys: Option<S3StaticKeys>, external_id: &str) -> Connection {
    with_method(
        id,
        node,
        s3_credentials::Method::AssumeRole(S3AssumeRole {
            role_arn: "arn:aws:iam::123456789012:role/auditstream-writer".into(),
            external_id: external_id.into(),
            session_name: String::new(),
            source_keys: keys,
        }),
    )
}

async fn create(c: &mut ConfigClient, conn: Connection) -> Result<Connection, tonic::Status> {
    c.create_connection(pb::CreateConnectionRequest {
        connection: Some(conn),
    })
    .await
    .map(|r| r.into_inner())
}

async fn update(c: &mut ConfigClient, conn: Connection) -> Result<Connection, tonic::Status> {
    c.update_connection(pb::UpdateConnectionRequest {
        connection: Some(conn),
    })
    .await
    .map(|r| r.into_inner())
}

async fn get(c: &mut ConfigClient, id: &str) -> Connection {
    c.get_connection(pb::GetConnectionRequest { id: id.into() })
        .await
        .expect("get connection")
        .into_inner()
}

fn external_id(c: &Connection) -> String {
    match c.credentials.as_ref() {
        Some(Credentials::S3(S3Credentials {
            method: Some(s3_credentials::Method::AssumeRole(r)),
            ..
        })) => r.external_id.clone(),
        other => panic!("not an assume-role connection: {other:?}"),
    }
}

/// The refusal of a connection that would use the platform's identity at `node`.
fn assert_platform_identity_refused(
    result: Result<impl std::fmt::Debug, tonic::Status>,
    field: &str,
    node: &str,
) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let m = status.message();
    for part in [
        &format!("{field}: "),
        "the platform's own AWS identity",
        "connections.platform_identity_nodes",
        &format!("node {node} is not"),
        "the operator must allow the node",
    ] {
        assert!(m.contains(part), "{part:?} missing in {m:?}");
    }
}

/// A harness on the SQLite file `db`, so a later harness can start on the same data.
async fn start_on(
    nats: &NatsServer,
    db: &std::path::Path,
    tweak: impl FnOnce(&mut ConfigServiceConfig),
) -> ConfigHarness {
    let url = format!("sqlite://{}?mode=rwc", db.display());
    ConfigHarness::start(&nats.url(), Database::Sqlite, |c| {
        c.database.url = url;
        tweak(c);
    })
    .await
}

#[tokio::test]
async fn the_platform_identity_is_only_for_the_nodes_the_operator_allows() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    let config = start_on(&nats, &db, |c| {
        c.connections.platform_identity_nodes = vec!["p1".into()];
    })
    .await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    tree_of(&mut admin).await;
    let mut p1 = config.client_as(Role::PartnerAdmin, Some("p1")).await;
    let mut p2 = config.client_as(Role::PartnerAdmin, Some("p2")).await;
    let mut c1 = config.client_as(Role::WorkspaceAdmin, Some("c1")).await;

    // Elsewhere: refused for a tenant admin and for the platform admin alike, both methods.
    assert_platform_identity_refused(
        create(&mut p2, default_chain("dc-p2", "p2")).await,
        "connection.s3.default_chain",
        "p2",
    );
    assert_platform_identity_refused(
        create(&mut admin, default_chain("dc-o1", "o1")).await,
        "connection.s3.default_chain",
        "o1",
    );
    assert_platform_identity_refused(
        create(&mut p2, assume_role("ar-p2", "p2", None, "")).await,
        "connection.s3.assume_role.source_keys",
        "p2",
    );
    for id in ["dc-p2", "dc-o1", "ar-p2"] {
        let status = admin
            .get_connection(pb::GetConnectionRequest { id: id.into() })
            .await
            .expect_err("nothing stored");
        assert_eq!(status.code(), Code::NotFound, "{id}");
    }
    // The tenant's own keys are fine anywhere, for STS too.
    create(
        &mut p2,
        assume_role("ar-keys-p2", "p2", Some(source_keys()), ""),
    )
    .await
    .expect("assume role with source keys");
    create(&mut p2, s3_connection("keys-p2", "p2", SECRET))
        .await
        .expect("static keys");
    // ...but an update cannot switch one to the platform's identity.
    assert_platform_identity_refused(
        update(&mut p2, default_chain("keys-p2", "p2")).await,
        "connection.s3.default_chain",
        "p2",
    );

    // At the allowed node and below it.
    create(&mut p1, default_chain("dc-p1", "p1"))
        .await
        .expect("default chain at the allowed node");
    create(&mut c1, default_chain("dc-c1", "c1"))
        .await
        .expect("default chain below the allowed node");
    create(&mut p1, assume_role("ar-c1", "c1", None, ""))
        .await
        .expect("assume role without source keys below the allowed node");
    // ListTargets goes on to the sink (none runs here, so no answer), not refused.
    let listed = p1
        .list_targets(pb::ListTargetsRequest {
            connection_id: "dc-p1".into(),
        })
        .await
        .expect_err("no sink answers");
    assert_ne!(listed.code(), Code::FailedPrecondition, "{listed:?}");
    config.stop().await.unwrap();

    // The operator withdraws p1: what is stored there stays (and keeps delivering), but it can
    // neither be listed with nor changed until the node is allowed again.
    let config = start_on(&nats, &db, |_| {}).await;
    let mut p1 = config.client_as(Role::PartnerAdmin, Some("p1")).await;
    assert_platform_identity_refused(
        p1.list_targets(pb::ListTargetsRequest {
            connection_id: "dc-p1".into(),
        })
        .await,
        "connection.s3.default_chain",
        "p1",
    );
    assert_platform_identity_refused(
        p1.list_targets(pb::ListTargetsRequest {
            connection_id: "ar-c1".into(),
        })
        .await,
        "connection.s3.assume_role.source_keys",
        "c1",
    );
    let mut renamed = get(&mut p1, "dc-p1").await;
    renamed.name = "renamed".into();
    assert_platform_identity_refused(
        update(&mut p1, renamed).await,
        "connection.s3.default_chain",
        "p1",
    );
    // Moving it to keys of its own is the way out.
    update(&mut p1, s3_connection("dc-p1", "p1", SECRET))
        .await
        .expect("to static keys");
    config.stop().await.unwrap();
}

#[tokio::test]
async fn assume_role_external_ids_are_generated_by_the_service() {
    let stack = config_stack().await;
    let mut admin = stack.admin.clone();
    tree_of(&mut admin).await;
    let mut p2 = stack.config.client_as(Role::PartnerAdmin, Some("p2")).await;

    let a = create(&mut p2, assume_role("ar-a", "p2", Some(source_keys()), ""))
        .await
        .expect("create a");
    let b = create(&mut p2, assume_role("ar-b", "p2", Some(source_keys()), ""))
        .await
        .expect("create b");
    let (id_a, id_b) = (external_id(&a), external_id(&b));
    for id in [&id_a, &id_b] {
        let hex = id.strip_prefix("auditstream-").expect("prefixed");
        assert!(
            hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
    }
    assert_ne!(id_a, id_b, "one per connection");
    // Read-only, and shown to readers: it goes into the customer's trust policy.
    assert_eq!(external_id(&get(&mut p2, "ar-a").await), id_a);
    let mut auditor = stack.config.client_as(Role::Auditor, None).await;
    assert_eq!(external_id(&get(&mut auditor, "ar-b").await), id_b);
    let listed = p2
        .list_connections(pb::ListConnectionsRequest {
            node_id: "p2".into(),
            include_inherited: false,
        })
        .await
        .unwrap()
        .into_inner();
    let shown: Vec<String> = listed.connections.iter().map(external_id).collect();
    assert_eq!(shown, vec![id_a.clone(), id_b.clone()]);

    // The tenant cannot choose it: not on create, not on update (another connection's id
    // included), and nothing is stored or changed by the attempt.
    let expected = "connection.s3.assume_role.external_id: external_id is generated by the service; leave it empty";
    let refused = create(
        &mut p2,
        assume_role("ar-c", "p2", Some(source_keys()), "acme-7f3c"),
    )
    .await
    .expect_err("chosen on create");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(refused.message(), expected);
    for chosen in ["acme-7f3c", id_b.as_str()] {
        let refused = update(&mut p2, assume_role("ar-a", "p2", None, chosen))
            .await
            .expect_err("chosen on update");
        assert_eq!(refused.code(), Code::InvalidArgument, "{chosen}");
        assert_eq!(refused.message(), expected);
    }
    assert_eq!(get(&mut p2, "ar-a").await.version, 1);

    // Stable across updates: sent empty (secrets kept too) or sent back unchanged.
    let kept_secret = S3StaticKeys {
        secret_access_key: String::new(),
        ..source_keys()
    };
    let mut changed = assume_role("ar-a", "p2", Some(kept_secret), "");
    changed.name = "renamed".into();
    let updated = update(&mut p2, changed).await.expect("update, id empty");
    assert_eq!(external_id(&updated), id_a);
    assert_eq!(updated.version, 2);
    let mut read_back = get(&mut p2, "ar-a").await;
    read_back.name = "renamed again".into();
    let updated = update(&mut p2, read_back)
        .await
        .expect("update, id sent back");
    assert_eq!(external_id(&updated), id_a);
    // And it is what the sink gets to call STS with.
    let mut sink = stack.config.client_service(ServiceKind::SinkS3).await;
    let details = sink
        .get_destination(pb::GetDestinationRequest {
            key: Some(Key::ConnectionId("ar-a".into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(external_id(details.connection.as_ref().unwrap()), id_a);
}

/// A strong key besides the test key, for the rotation.
const NEW_KEY: &str = "LJCFoJ+bcWRF/kBM9tHkzMmQ9u1LQ73jNhBeiGF0IDU=";

fn keys(c: &mut ConfigServiceConfig, active: &str, ids: &[&str]) {
    c.secrets.active_key = active.into();
    c.secrets.keys.clear();
    for id in ids {
        let key = if *id == "test-key" {
            TEST_SECRETS_KEY
        } else {
            NEW_KEY
        };
        c.secrets.keys.insert((*id).into(), Secret::new(key));
    }
}

async fn feed_public_key(config: &ConfigHarness) -> Vec<u8> {
    let mut router = config.client_service(ServiceKind::Router).await;
    router
        .get_routing_snapshot(pb::GetRoutingSnapshotRequest {})
        .await
        .unwrap()
        .into_inner()
        .feed_public_key
}

async fn fingerprint(c: &mut ConfigClient, id: &str) -> String {
    get(c, id).await.secret_fingerprints["s3.static_keys.secret_access_key"].clone()
}

#[tokio::test]
async fn reseal_after_a_rotation_leaves_nothing_under_the_old_key() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    let secrets = [
        ("conn-a", "secret-of-a-0123456789"),
        ("conn-b", "secret-of-b-0123456789"),
    ];

    // Before: the test key only.
    let config = start_on(&nats, &db, |_| {}).await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    tree_of(&mut admin).await;
    for (id, secret) in secrets {
        create(&mut admin, s3_connection(id, "p2", secret))
            .await
            .unwrap();
    }
    let feed_key = feed_public_key(&config).await;
    let fingerprint_a = fingerprint(&mut admin, "conn-a").await;
    config.stop().await.unwrap();

    // Rotated: the new key active, the old one still there to read with.
    let config = start_on(&nats, &db, |c| keys(c, "new-key", &["test-key", "new-key"])).await;
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    assert_eq!(fingerprint(&mut admin, "conn-a").await, fingerprint_a);
    // The same secret saved under the new key fingerprints the same: the fingerprint key did
    // not rotate with the secrets key.
    create(&mut admin, s3_connection("conn-c", "p2", secrets[0].1))
        .await
        .unwrap();
    assert_eq!(fingerprint(&mut admin, "conn-c").await, fingerprint_a);
    // Only the platform admin reseals.
    for (role, node) in [
        (Role::PartnerAdmin, Some("p2")),
        (Role::Auditor, None),
        (Role::DirectorySync, None),
    ] {
        let mut c = config.client_as(role, node).await;
        let status = c.reseal(pb::ResealRequest {}).await.expect_err("refused");
        assert_eq!(status.code(), Code::PermissionDenied, "{role:?}");
        assert!(
            status.message().contains("only platform_admin may"),
            "{status:?}"
        );
    }
    let mut sink = config.client_service(ServiceKind::SinkS3).await;
    assert_eq!(
        sink.reseal(pb::ResealRequest {})
            .await
            .expect_err("refused")
            .code(),
        Code::PermissionDenied
    );
    let done = admin
        .reseal(pb::ResealRequest {})
        .await
        .unwrap()
        .into_inner();
    // conn-a, conn-b, the feed signing key and the fingerprint key; conn-c already was.
    assert_eq!(
        (
            done.resealed,
            done.already_current,
            done.active_key.as_str()
        ),
        (4, 1, "new-key")
    );
    // auditctl prints the counts; a second run finds everything current.
    let mut out = Vec::new();
    auditstream_cli::run_args(
        [
            "auditctl",
            "--server",
            &config.url(),
            "--token",
            auditstream_testkit::TestToken::of(Role::PlatformAdmin, None).token,
            "reseal",
        ],
        &mut out,
    )
    .await
    .unwrap();
    let printed = String::from_utf8(out).unwrap();
    for line in ["resealed:", "already current:", "active key:"] {
        assert!(printed.contains(line), "{printed}");
    }
    let numbers: Vec<&str> = printed
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(numbers, vec!["0", "5", "new-key"], "{printed}");
    config.stop().await.unwrap();

    // After: the new key only. Every secret, the feed key and the fingerprints are intact.
    let config = start_on(&nats, &db, |c| keys(c, "new-key", &["new-key"])).await;
    let mut sink = config.client_service(ServiceKind::SinkS3).await;
    for (id, secret) in secrets.into_iter().chain([("conn-c", secrets[0].1)]) {
        let details = sink
            .get_destination(pb::GetDestinationRequest {
                key: Some(Key::ConnectionId(id.into())),
            })
            .await
            .unwrap_or_else(|e| panic!("{id}: {e:?}"))
            .into_inner();
        let Some(Credentials::S3(S3Credentials {
            method: Some(s3_credentials::Method::StaticKeys(k)),
            ..
        })) = details.connection.and_then(|c| c.credentials)
        else {
            panic!("{id}: no static keys");
        };
        assert_eq!(k.secret_access_key, secret, "{id}");
    }
    assert_eq!(feed_public_key(&config).await, feed_key);
    let mut admin = config.client_as(Role::PlatformAdmin, None).await;
    assert_eq!(fingerprint(&mut admin, "conn-a").await, fingerprint_a);
    // An update that keeps the stored secret fingerprints it the same as well.
    let mut renamed = s3_connection("conn-b", "p2", "");
    renamed.name = "renamed".into();
    let before = fingerprint(&mut admin, "conn-b").await;
    let updated = update(&mut admin, renamed).await.unwrap();
    assert_eq!(
        updated.secret_fingerprints["s3.static_keys.secret_access_key"],
        before
    );
    config.stop().await.unwrap();
}

#[tokio::test]
async fn weak_or_repeated_secrets_keys_stop_the_start() {
    let cases = [
        (
            // [0u8; 32]
            vec![(
                "k",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned(),
            )],
            "secrets.keys.k is one byte repeated",
        ),
        (
            // "local-only-demo-key-not-secret!!", the old Compose default
            vec![(
                "k",
                "bG9jYWwtb25seS1kZW1vLWtleS1ub3Qtc2VjcmV0ISE=".to_owned(),
            )],
            "secrets.keys.k has only 15 distinct byte values",
        ),
        (
            vec![
                ("k", TEST_SECRETS_KEY.to_owned()),
                ("l", TEST_SECRETS_KEY.to_owned()),
            ],
            "secrets.keys.l is the same key as secrets.keys.k",
        ),
    ];
    for (keys, expected) in cases {
        let mut config = auditstream_testkit::test_config_service_config(
            "nats://127.0.0.1:1",
            "sqlite::memory:",
        );
        config.secrets.active_key = "k".into();
        config.secrets.keys = keys
            .into_iter()
            .map(|(id, k)| (id.to_owned(), Secret::new(k)))
            .collect();
        let listeners = auditstream_config_service::Listeners {
            grpc: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            ops: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let err = auditstream_config_service::run(
            config,
            listeners,
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .expect_err("refused at start");
        assert!(err.to_string().contains(expected), "{err:#}");
    }
}
