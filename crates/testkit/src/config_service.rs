//! The real config service, in-process on port 0, on SQLite (a temporary file) or on a
//! Postgres schema of its own, with one token per role.

use std::{net::SocketAddr, time::Duration};

use auditstream_config_service::{
    ConfigServiceConfig, Listeners,
    authz::{Role, ServiceKind, TokenConfig},
};
use auditstream_proto::v1::config_service_client::ConfigServiceClient;
use auditstream_telemetry::Secret;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

use crate::{PgSchema, small_topology};

/// A token of the test configuration and the principal it stands for.
#[derive(Debug, Clone, Copy)]
pub struct TestToken {
    pub token: &'static str,
    pub role: Role,
    pub node: Option<&'static str>,
    /// For `service` tokens: the one kind of data-plane service that presents it.
    pub service: Option<ServiceKind>,
    pub name: &'static str,
}

const fn service_token(token: &'static str, kind: ServiceKind, name: &'static str) -> TestToken {
    TestToken {
        token,
        role: Role::Service,
        node: None,
        service: Some(kind),
        name,
    }
}

const fn admin_token(
    token: &'static str,
    role: Role,
    node: Option<&'static str>,
    name: &'static str,
) -> TestToken {
    TestToken {
        token,
        role,
        node,
        service: None,
        name,
    }
}

/// The principals every test config service knows. Scoped admins administer `p1` (a partner)
/// and `c1` (a customer), the node ids the scenario tests use.
pub const TOKENS: [TestToken; 11] = [
    service_token(
        "tok-service-router-0123456789",
        ServiceKind::Router,
        "router",
    ),
    service_token(
        "tok-service-sink-s3-0123456789",
        ServiceKind::SinkS3,
        "sink-s3",
    ),
    service_token(
        "tok-service-sink-azure-blob-0123456789",
        ServiceKind::SinkAzureBlob,
        "sink-azure-blob",
    ),
    service_token(
        "tok-service-sink-azure-monitor-0123456789",
        ServiceKind::SinkAzureMonitor,
        "sink-azure-monitor",
    ),
    service_token(
        "tok-service-sink-http-0123456789",
        ServiceKind::SinkHttp,
        "sink-http",
    ),
    admin_token(
        "tok-platform-0123456789",
        Role::PlatformAdmin,
        None,
        "root@platform",
    ),
    admin_token(
        "tok-directory-sync-0123456789",
        Role::DirectorySync,
        None,
        "directory-sync",
    ),
    admin_token(
        "tok-partner-p1-0123456789",
        Role::PartnerAdmin,
        Some("p1"),
        "admin@p1",
    ),
    admin_token(
        "tok-partner-p2-0123456789",
        Role::PartnerAdmin,
        Some("p2"),
        "admin@p2",
    ),
    admin_token(
        "tok-workspace-c1-0123456789",
        Role::WorkspaceAdmin,
        Some("c1"),
        "admin@c1",
    ),
    admin_token("tok-auditor-0123456789", Role::Auditor, None, "auditor"),
];

impl TestToken {
    /// The token of a human or directory principal; for `service` use [`TestToken::service`].
    pub fn of(role: Role, node: Option<&str>) -> TestToken {
        assert!(
            role != Role::Service,
            "service tokens are per kind: TestToken::service(kind)"
        );
        *TOKENS
            .iter()
            .find(|t| t.role == role && t.node == node)
            .expect("a test token for that principal")
    }

    /// The token of data-plane service `kind`.
    pub fn service(kind: ServiceKind) -> TestToken {
        *TOKENS
            .iter()
            .find(|t| t.service == Some(kind))
            .expect("a test token for every service kind")
    }

    /// The token of the sink for destination type `t`.
    pub fn sink(t: auditstream_model::SinkType) -> TestToken {
        TestToken::service(ServiceKind::sink(t))
    }
}

/// The test configuration's secrets key (`test-key`): fixed, and random-looking enough for
/// the service's strength check (a key like `[7u8; 32]` is refused at start).
pub const TEST_SECRETS_KEY: &str = "UiR8sjtpOYzxYtkxLjNrpYh+NAuFYcfqgtbRjvUCyfw=";

/// Where the harness keeps its data.
pub enum Database {
    Sqlite,
    Postgres,
    /// The database of another harness (its `database_url`): replicas of the config
    /// service sharing one database, as in production.
    Shared(String),
}

/// A config-service configuration for tests: the tokens above, a fixed test key, loopback
/// and the given database URL.
pub fn test_config_service_config(nats_url: &str, database_url: &str) -> ConfigServiceConfig {
    let mut c = ConfigServiceConfig::default();
    c.nats.url = nats_url.to_owned();
    crate::login(&mut c.nats, auditstream_bus::Service::ConfigService);
    c.nats.topology = small_topology();
    c.nats.publish_timeout = Duration::from_secs(2);
    c.database.url = database_url.to_owned();
    c.request_timeout = Duration::from_secs(2);
    c.auth.tokens = TOKENS
        .iter()
        .map(|t| TokenConfig {
            token: Secret::new(t.token),
            role: t.role,
            node: t.node.map(str::to_owned),
            service: t.service,
            name: t.name.to_owned(),
        })
        .collect();
    c.secrets.active_key = "test-key".into();
    c.secrets
        .keys
        .insert("test-key".into(), Secret::new(TEST_SECRETS_KEY));
    c
}

pub struct ConfigHarness {
    pub grpc: SocketAddr,
    pub ops: SocketAddr,
    /// The database URL the service uses (a SQLite file or a Postgres schema).
    pub database_url: String,
    _dir: tempfile::TempDir,
    _pg: Option<PgSchema>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), String>>>,
}

impl ConfigHarness {
    /// Starts the config service on `database`, with `tweak` applied to the test config.
    pub async fn start(
        nats_url: &str,
        database: Database,
        tweak: impl FnOnce(&mut ConfigServiceConfig),
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("auditstream-config-")
            .tempdir()
            .expect("temp dir");
        let (database_url, pg) = match database {
            Database::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("config.db").display()
                ),
                None,
            ),
            Database::Postgres => {
                let pg = PgSchema::create().await;
                (pg.url(), Some(pg))
            }
            Database::Shared(url) => (url, None),
        };
        let mut config = test_config_service_config(nats_url, &database_url);
        tweak(&mut config);
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind port 0") };
        let listeners = Listeners {
            grpc: bind().await,
            ops: bind().await,
        };
        let (grpc, ops) = (
            listeners.grpc.local_addr().unwrap(),
            listeners.ops.local_addr().unwrap(),
        );
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                auditstream_config_service::run(config, listeners, shutdown)
                    .await
                    .map_err(|e| format!("{e:#}"))
            }
        });
        let harness = ConfigHarness {
            grpc,
            ops,
            database_url,
            _dir: dir,
            _pg: pg,
            shutdown,
            task: Some(task),
        };
        harness.wait_ready(Duration::from_secs(20)).await;
        harness
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        crate::wait_ready("config service", self.ops, self.task.as_ref(), timeout).await;
    }

    /// Stops the service gracefully and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), String> {
        self.shutdown.cancel();
        self.task
            .take()
            .expect("running")
            .await
            .expect("config service task")
    }
}

/// A `ConfigService` client that sends `token` as its bearer token.
pub type ConfigClient = ConfigServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

impl ConfigHarness {
    /// A client authenticated as `token` (see [`TOKENS`]).
    pub async fn client(&self, token: &str) -> ConfigClient {
        let channel = Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect to config service");
        let value = format!("Bearer {token}").parse().expect("ascii token");
        ConfigServiceClient::with_interceptor(channel, Bearer(value))
    }

    /// A client for the principal with `role` (and `node`, for scoped admins).
    pub async fn client_as(&self, role: Role, node: Option<&str>) -> ConfigClient {
        self.client(TestToken::of(role, node).token).await
    }

    /// The change feed's signing key this service uses, read from its database with its
    /// secrets key (what only a config service holds): to sign a change as it would.
    pub async fn feed_signer(&self) -> auditstream_config_service::signing::FeedSigner {
        use auditstream_config_service::{crypto::Sealer, signing::FeedSigner, store::Store};
        let store = Store::connect(&self.database_url, 1).await.expect("store");
        let sealer = Sealer::new(&test_config_service_config("", "").secrets).expect("key");
        FeedSigner::load_or_create(&store, &sealer)
            .await
            .expect("feed key")
    }

    /// A client for data-plane service `kind`.
    pub async fn client_service(&self, kind: ServiceKind) -> ConfigClient {
        self.client(TestToken::service(kind).token).await
    }
}

impl Drop for ConfigHarness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
