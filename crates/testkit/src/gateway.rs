//! The real gateway, in-process on port 0.

use std::{net::SocketAddr, time::Duration};

use auditstream_gateway::{GatewayConfig, Listeners, auth::ProducerToken};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::small_topology;

/// The bearer token [`test_gateway_config`] accepts.
pub const TEST_TOKEN: &str = "test-token-0123456789abcdef";

/// A gateway configuration for tests: loopback, the test token, a small topology and short
/// timeouts so outage tests finish quickly.
pub fn test_gateway_config(nats_url: &str) -> GatewayConfig {
    let mut c = GatewayConfig::default();
    c.nats.url = nats_url.to_owned();
    crate::login(&mut c.nats, auditstream_bus::Service::Gateway);
    c.nats.topology = small_topology();
    c.nats.publish_timeout = Duration::from_secs(2);
    c.retry_after = Duration::from_secs(1);
    c.auth.tokens = vec![ProducerToken::any_org(TEST_TOKEN)];
    // Tests send bursts far above a production rate; the limit has its own tests.
    c.rate_limit.events_per_second = 0;
    c.rate_limit.token_events_per_second = 0;
    c
}

pub struct GatewayHarness {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub ops: SocketAddr,
    shutdown: CancellationToken,
    /// The gateway's `run`, with its error flattened to text for assertions.
    task: Option<JoinHandle<Result<(), String>>>,
}

impl GatewayHarness {
    /// Starts the gateway with `config` (addresses are replaced by port 0 listeners) and
    /// waits until `/readyz` says it is ready. The streams are created first, as the config
    /// service would: the gateway's NATS user may only check them.
    pub async fn start(config: GatewayConfig) -> Self {
        crate::provision_for(&config.nats).await;
        let harness = Self::start_unready(config).await;
        harness.wait_ready(Duration::from_secs(15)).await;
        harness
    }

    /// Starts the gateway without waiting for readiness (e.g. while NATS is down) and without
    /// applying the topology.
    pub async fn start_unready(config: GatewayConfig) -> Self {
        let bind = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind port 0") };
        let listeners = Listeners {
            http: bind().await,
            grpc: bind().await,
            ops: bind().await,
        };
        let (http, grpc, ops) = (
            listeners.http.local_addr().unwrap(),
            listeners.grpc.local_addr().unwrap(),
            listeners.ops.local_addr().unwrap(),
        );
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                auditstream_gateway::run(config, listeners, shutdown)
                    .await
                    .map_err(|e| format!("{e:#}"))
            }
        });
        GatewayHarness {
            http,
            grpc,
            ops,
            shutdown,
            task: Some(task),
        }
    }

    pub fn events_url(&self) -> String {
        format!("http://{}/v1/events", self.http)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops)
    }

    /// `/readyz` status code.
    pub async fn readyz(&self) -> u16 {
        crate::readyz(self.ops).await.0
    }

    /// Polls `/readyz` until 200; panics after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) {
        crate::wait_ready("gateway", self.ops, self.task.as_ref(), timeout).await;
    }

    /// Stops the gateway gracefully and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), String> {
        self.shutdown.cancel();
        self.task
            .take()
            .expect("running")
            .await
            .expect("gateway task")
    }
}

impl Drop for GatewayHarness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
