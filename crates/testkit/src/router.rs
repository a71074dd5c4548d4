//! The real router, in-process, following a config service with the test service token.

use std::{net::SocketAddr, time::Duration};

use auditstream_config_service::authz::ServiceKind;
use auditstream_router::{Listeners, RouterConfig};
use auditstream_telemetry::Secret;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{TestToken, small_topology};

/// A router configuration for tests: the test service token, a small topology, short timeouts.
pub fn test_router_config(nats_url: &str, config_url: &str) -> RouterConfig {
    let mut c = RouterConfig::default();
    c.nats.url = nats_url.to_owned();
    crate::login(&mut c.nats, auditstream_bus::Service::Router);
    c.nats.topology = small_topology();
    c.nats.publish_timeout = Duration::from_secs(2);
    c.config_service.url = config_url.to_owned();
    c.config_service.token = Secret::new(TestToken::service(ServiceKind::Router).token);
    c.consumer.retry_delay = Duration::from_millis(200);
    c.park.check_interval = Duration::from_millis(100);
    c.shutdown_grace = Duration::from_secs(2);
    c
}

pub struct RouterHarness {
    pub ops: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), String>>>,
}

impl RouterHarness {
    /// Starts the router and waits until `/readyz` says it is ready.
    pub async fn start(config: RouterConfig) -> RouterHarness {
        let h = Self::start_unready(config).await;
        crate::wait_ready("router", h.ops, h.task.as_ref(), Duration::from_secs(20)).await;
        h
    }

    /// Starts the router without waiting for readiness (e.g. to watch it refuse a topology).
    pub async fn start_unready(config: RouterConfig) -> RouterHarness {
        let ops = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = ops.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                auditstream_router::run(config, Listeners { ops }, shutdown)
                    .await
                    .map_err(|e| format!("{e:#}"))
            }
        });
        RouterHarness {
            ops: addr,
            shutdown,
            task: Some(task),
        }
    }

    /// `/readyz`: its status code and text (the reason, when not ready).
    pub async fn readyz(&self) -> (u16, String) {
        crate::readyz(self.ops).await
    }

    /// A metric's value from `/metrics` (the first sample whose line starts with `name`).
    pub async fn metric(&self, name: &str) -> f64 {
        metric(self.ops, name).await
    }

    /// Waits until the router routes on config `revision` or later.
    pub async fn wait_revision(&self, revision: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.metric("auditstream_router_config_revision").await < revision as f64 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "router did not reach config revision {revision}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(mut self) -> Result<(), String> {
        self.shutdown.cancel();
        self.task
            .take()
            .expect("running")
            .await
            .expect("router task")
    }
}

impl Drop for RouterHarness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Reads one metric sample from a service's ops port: the value of the first line that
/// starts with `name` (so `name{label="x"}` selects a labelled series). 0 when absent.
pub async fn metric(ops: SocketAddr, name: &str) -> f64 {
    let text = match reqwest::get(format!("http://{ops}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return 0.0,
    };
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
