//! Test-only helpers. Every test gets real dependencies of its own: a nats-server with
//! JetStream on a free port and a temporary store (killed and removed on drop), the real
//! gateway running in-process on port 0, and read-back of what landed in a stream.
//!
//! Nothing here is mocked and nothing is skipped: when a binary is missing, the helper
//! panics with the command that installs it.

mod azure_monitor;
mod azurite;
mod config_service;
pub mod conformance;
mod dns;
mod gateway;
mod nats;
mod nats_cluster;
mod otlp;
mod postgres;
mod proxy;
mod receiver;
mod router;
mod s3_server;
mod sink;
mod smtp;
mod tls;

pub use azure_monitor::{
    AzureMonitorStandIn, INGESTION_API_VERSION, IngestRequest, MONITOR_SCOPE, MonitorContract,
    MonitorFault, TokenRequest,
};
pub use azurite::Azurite;
pub use config_service::{
    Bearer, ConfigClient, ConfigHarness, Database, TEST_SECRETS_KEY, TOKENS, TestToken,
    test_config_service_config,
};
pub use dns::{REBIND_TARGETS, RebindingDns, assert_refused_address};
pub use gateway::{GatewayHarness, TEST_TOKEN, test_gateway_config};
pub use nats::{
    NatsServer, TEST_SUPERUSER, apply_topology, binary_service, connect_superuser, login,
    login_env, nats_server_bin, provision_for, read_stream, service_password, small_topology,
    stream_configs, stream_messages,
};
pub use nats_cluster::NatsCluster;
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use postgres::PgSchema;
pub use proxy::FaultProxy;
pub use receiver::{Behavior, HttpReceiver, Recorded};
pub use router::{RouterHarness, metric, test_router_config};
pub use s3_server::{S3Server, StoredObject};
pub use sink::{SinkHarness, test_sink_config};
pub use smtp::SmtpServer;
pub use tls::TestCerts;

/// `/readyz` of a service's ops port: the status code (0 when it does not answer) and the
/// text, which gives the reason when not ready.
pub async fn readyz(ops: std::net::SocketAddr) -> (u16, String) {
    match reqwest::get(format!("http://{ops}/readyz")).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// Polls `http://<ops>/readyz` until it answers 200. Panics after `timeout`, or as soon as the
/// service's task has ended (it failed to start), naming `what`.
pub(crate) async fn wait_ready<T>(
    what: &str,
    ops: std::net::SocketAddr,
    task: Option<&tokio::task::JoinHandle<T>>,
    timeout: std::time::Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ready = reqwest::get(format!("http://{ops}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return;
        }
        assert!(
            !task.is_some_and(|t| t.is_finished()),
            "{what} exited before it was ready"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not ready within {timeout:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
