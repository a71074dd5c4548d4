//! The ingest gateway: the only way events enter Auditstream.
//!
//! Owns producer authentication, request framing (HTTP JSON / NDJSON / gzip, gRPC), per-item
//! validation (through `model`) and durable publication to `AUDIT_INGEST` (through `bus`).
//! It answers success only after JetStream's PubAck, and 503 / UNAVAILABLE with a retry
//! delay whenever JetStream cannot take an event. It does no routing: that is the router's.
//!
//! [`run`] serves on listeners it is given until the shutdown token fires, so tests run the
//! real gateway in-process on port 0; `main.rs` only loads configuration and binds.

pub mod auth;
mod budget;
pub mod config;
mod grpc;
mod http;
pub mod ingest;
pub mod metrics;
pub mod ratelimit;
mod serve;
pub mod traceparent;

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use async_nats::connection::State;
use auditstream_bus::{TopologyGate, TopologyKeeper, TopologyRole, connect, jetstream_context};
use auditstream_model::Limits;
use auditstream_proto::v1::ingest_service_server::IngestServiceServer;
use auditstream_telemetry::OpsState;
use axum::http::HeaderValue;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::GatewayConfig;

use crate::{auth::Auth, ingest::Ingestor, metrics::Metrics, ratelimit::RateLimiter};

/// Room for NATS headers on top of the event body when comparing with `max_payload`.
const HEADER_ROOM: usize = 4096;

/// The sockets the gateway serves on, bound by the caller.
pub struct Listeners {
    pub http: TcpListener,
    pub grpc: TcpListener,
    pub ops: TcpListener,
}

/// State shared by both transports.
pub(crate) struct Core {
    pub(crate) ingestor: Ingestor,
    pub(crate) auth: Auth,
    pub(crate) limits: Limits,
    pub(crate) retry_after: Duration,
    pub(crate) request_timeout: Duration,
    /// HTTP bodies held over all requests (`server.max_inflight_body_bytes`).
    pub(crate) budget: budget::Budget,
    pub(crate) stream: grpc::StreamLimits,
    pub(crate) metrics: Arc<Metrics>,
}

impl Core {
    pub(crate) fn retry_after_header(&self) -> HeaderValue {
        HeaderValue::from(self.retry_after.as_secs().max(1))
    }
}

/// Runs the gateway until `shutdown` is cancelled, then stops accepting requests, lets those
/// in flight finish (they are waiting for PubAcks) and flushes the NATS connection.
pub async fn run(
    config: GatewayConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate().map_err(anyhow::Error::msg)?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));

    // Returns at once; the client connects and reconnects in the background.
    let client = connect(&config.nats, auditstream_bus::Service::Gateway)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats.redacted_url()))?;
    let js = jetstream_context(client.clone(), config.nats.publish_timeout);

    // The gateway never changes the streams (the config service owns them); it waits until
    // they exist and are at least as strong as its own configuration.
    let topology = TopologyGate::new(
        config.nats.topology.clone(),
        auditstream_bus::Service::Gateway,
    );
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let watcher = tokio::spawn(watch_connection(
        client.clone(),
        js.clone(),
        config.clone(),
        topology.clone(),
        health_reporter,
        shutdown.clone(),
    ));

    let core = Arc::new(Core {
        ingestor: Ingestor {
            client: client.clone(),
            js,
            metrics: metrics.clone(),
            publish_timeout: config.nats.publish_timeout,
            limiter: RateLimiter::new(config.rate_limit.clone()),
            pack: config.pack.clone(),
        },
        auth: Auth::new(&config.auth.tokens, config.auth.allow_unauthenticated),
        limits: config.limits.clone(),
        retry_after: config.retry_after,
        request_timeout: config.server.request_timeout,
        budget: budget::Budget::new(
            config.server.max_inflight_body_bytes,
            metrics.inflight_body_bytes.clone(),
        ),
        stream: grpc::StreamLimits {
            max_stream_events: config.server.max_stream_events,
            stream_idle_timeout: config.server.stream_idle_timeout,
            max_stream_duration: config.server.max_stream_duration,
        },
        metrics,
    });

    let readiness_client = client.clone();
    let ops = OpsState {
        registry: Arc::new(registry),
        readiness: Arc::new(move || readiness(&readiness_client, &topology)),
    };

    tracing::info!(
        http = %listeners.http.local_addr()?,
        grpc = %listeners.grpc.local_addr()?,
        ops = %listeners.ops.local_addr()?,
        nats = %config.nats.redacted_url(),
        "gateway listening"
    );
    let http = serve::serve_http(
        listeners.http,
        http::router(core.clone()),
        config.server.clone(),
        shutdown.clone(),
    );
    let grpc = config
        .grpc_tls
        .server("grpc_tls")
        .map_err(anyhow::Error::msg)?
        // Closes HTTP/2 connections whose peer stopped answering pings (a vanished client
        // would otherwise hold one of `server.max_connections` for good).
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_max_header_list_size(
            u32::try_from(config.server.max_header_bytes).unwrap_or(u32::MAX),
        )
        .add_service(deadline(health_service, &config.server, &[]))
        .add_service(deadline(
            IngestServiceServer::new(grpc::GrpcIngest { core: core.clone() })
                .max_decoding_message_size(config.limits.max_request_bytes),
            &config.server,
            &["/IngestStream"],
        ))
        .serve_with_incoming_shutdown(
            serve::grpc_incoming(listeners.grpc, &config.server, shutdown.clone()),
            shutdown.clone().cancelled_owned(),
        );
    let ops = auditstream_telemetry::serve_ops(listeners.ops, ops, shutdown.clone());
    let served = auditstream_telemetry::service::serve_with_grace(
        async {
            tokio::try_join!(
                async { http.await.context("http server failed") },
                async { grpc.await.context("grpc server failed") },
                async { ops.await.context("ops server failed") },
            )
        },
        &shutdown,
        config.shutdown_grace,
    )
    .await
    .unwrap_or(Ok(((), (), ())));
    shutdown.cancel();
    let _ = watcher.await;
    // Every accepted event already has its PubAck; the flush only speeds up the goodbye,
    // and must not hang shutdown while NATS is unreachable.
    match tokio::time::timeout(Duration::from_secs(2), client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "nats flush on shutdown failed"),
        Err(_) => tracing::warn!("nats flush on shutdown timed out"),
    }
    tracing::info!("gateway stopped");
    served.map(|_| ())
}

/// Every gRPC call gets a deadline: `request_timeout` for unary calls; a stream call (the
/// `streaming` methods) ends itself within `max_stream_duration`, so its deadline here is
/// only a backstop past that.
fn deadline<S>(
    inner: S,
    server: &config::ServerLimits,
    streaming: &'static [&'static str],
) -> serve::Deadline<S> {
    serve::Deadline {
        inner,
        unary: server.request_timeout,
        stream: server.max_stream_duration + server.request_timeout,
        streaming,
    }
}

fn readiness(client: &async_nats::Client, topology: &TopologyGate) -> Result<(), String> {
    if client.connection_state() != State::Connected {
        return Err("not connected to NATS".into());
    }
    topology.readiness()
}

/// Follows the NATS connection: (re-)verifies the topology after every (re)connect (a NATS
/// that lost its state is refused until the config service has put the streams back), and
/// mirrors readiness into gRPC health.
async fn watch_connection(
    client: async_nats::Client,
    js: async_nats::jetstream::Context,
    config: GatewayConfig,
    topology: TopologyGate,
    health: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
) {
    const SERVICE: &str = "auditstream.v1.IngestService";
    let mut keeper =
        TopologyKeeper::new(client.clone(), js, topology.clone(), TopologyRole::Verifier);
    loop {
        let state = keeper.tick().await;
        if state.reconnected {
            check_max_payload(&client, &config.limits);
        }
        let status = if state.ready && readiness(&client, &topology).is_ok() {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        // "" is the whole server, as Kubernetes' gRPC probe asks by default.
        for service in ["", SERVICE] {
            health.set_service_status(service, status).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// An event that fits `max_event_bytes` must also fit NATS's `max_payload`, or it would be
/// accepted by validation and refused by NATS; say so loudly at start.
fn check_max_payload(client: &async_nats::Client, limits: &Limits) {
    let max_payload = client.server_info().max_payload;
    if limits.max_event_bytes + HEADER_ROOM > max_payload {
        tracing::error!(
            max_payload,
            max_event_bytes = limits.max_event_bytes,
            "nats max_payload is smaller than limits.max_event_bytes plus headers; raise max_payload on the server or lower the limit"
        );
    }
}
