//! A real sink, in-process: sink-core's runtime around the given [`Sink`], following a
//! config service with the test service token.

use std::{net::SocketAddr, time::Duration};

use auditstream_sink_core::{Listeners, Sink, SinkConfig, retry::Backoff};
use auditstream_telemetry::Secret;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::{TestToken, small_topology};

/// A sink configuration for tests: short batching, retry, probe and status intervals, so
/// the scenarios run in seconds (the defaults are for production).
/// `sink_type` picks the config-service token of that sink kind.
pub fn test_sink_config<C: Default>(
    sink_type: auditstream_model::SinkType,
    nats_url: &str,
    config_url: &str,
) -> SinkConfig<C> {
    let mut c = SinkConfig::<C>::default();
    c.nats.url = nats_url.to_owned();
    crate::login(&mut c.nats, auditstream_bus::Service::Sink(sink_type));
    c.nats.topology = small_topology();
    c.nats.publish_timeout = Duration::from_secs(2);
    c.config_service.url = config_url.to_owned();
    c.config_service.token = Secret::new(TestToken::sink(sink_type).token);
    c.config_service.timeout = Duration::from_secs(2);
    c.consumer.retry_delay = Duration::from_millis(200);
    c.consumer.ack_wait = Duration::from_secs(10);
    c.batching.max_age = Duration::from_millis(100);
    c.delivery.retry = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };
    c.delivery.probe = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(1),
    };
    c.delivery.probe_timeout = Duration::from_secs(5);
    c.status_interval = Duration::from_millis(200);
    c.backlog.scan_interval = Duration::from_millis(500);
    c.shutdown_grace = Duration::from_secs(3);
    c
}

pub struct SinkHarness {
    pub ops: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), String>>>,
}

impl SinkHarness {
    pub async fn start<S, C>(sink: S, config: SinkConfig<C>) -> SinkHarness
    where
        S: Sink,
        C: Send + 'static,
    {
        let ops = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = ops.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                auditstream_sink_core::run(sink, config, Listeners { ops }, shutdown)
                    .await
                    .map_err(|e| format!("{e:#}"))
            }
        });
        let h = SinkHarness {
            ops: addr,
            shutdown,
            task: Some(task),
        };
        crate::wait_ready("sink", h.ops, h.task.as_ref(), Duration::from_secs(20)).await;
        h
    }

    /// A metric's value from `/metrics` (see [`crate::metric`]).
    pub async fn metric(&self, name: &str) -> f64 {
        crate::metric(self.ops, name).await
    }

    pub async fn stop(mut self) -> Result<(), String> {
        self.shutdown.cancel();
        self.task.take().expect("running").await.expect("sink task")
    }
}

impl Drop for SinkHarness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
