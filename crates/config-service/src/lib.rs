//! The config service: Auditstream's control plane.
//!
//! Owns the tenant directory (organization → partner → customer → workspace), connections
//! (destination credentials, sealed with AES-256-GCM), streams (what goes where), the
//! override write rules, `Explain`, destination status, the change feed on AUDIT_CONTROL and
//! the self-audit events. Storage is SQLite (embedded default) or Postgres through one sqlx
//! implementation. The override rule itself lives in `model::routing`, shared with the router.
//!
//! It never touches events in flight: the data plane reads a snapshot plus the change feed.

pub mod audit;
pub mod authz;
pub mod config;
pub mod convert;
pub mod credentials;
pub mod crypto;
pub mod dlq;
pub mod error;
pub mod feed;
pub mod metrics;
pub mod notify;
pub mod service;
pub mod signing;
mod sink_rpc;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod validate;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use auditstream_bus::{connect, jetstream_context};
use auditstream_proto::v1::config_service_server::ConfigServiceServer;
use auditstream_telemetry::OpsState;
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;

pub use config::ConfigServiceConfig;

pub struct Listeners {
    pub grpc: TcpListener,
    pub ops: TcpListener,
}

/// Runs the config service until `shutdown` is cancelled.
pub async fn run(
    config: ConfigServiceConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sealer = crypto::Sealer::new(&config.secrets).map_err(anyhow::Error::msg)?;
    let auth = Arc::new(
        authz::Authenticator::new(config.auth.tokens.clone()).map_err(anyhow::Error::msg)?,
    );
    let policy = Arc::new(
        validate::Policy::new(&config.http)
            .map_err(anyhow::Error::msg)?
            .with_platform_identity_nodes(&config.connections),
    );
    let store = Arc::new(
        store::Store::connect(&config.database.url, config.database.max_connections)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    // Fingerprints use a stored key of their own, which rotations of the secrets key leave
    // alone (L3).
    let fingerprint_key = crypto::load_fingerprint_key(&store, &sealer)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let sealer = Arc::new(sealer.with_fingerprint_key(fingerprint_key));
    let signer = Arc::new(
        signing::FeedSigner::load_or_create(&store, &sealer)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let nats = connect(&config.nats, auditstream_bus::Service::ConfigService)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats.redacted_url()))?;
    let js = jetstream_context(nats.clone(), config.nats.publish_timeout);
    let committed = Arc::new(Notify::new());

    let mut registry = Registry::default();
    let metrics = Arc::new(metrics::Metrics::new(&mut registry));
    let ready = Arc::new(AtomicBool::new(false));
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let watcher = tokio::spawn(watch(
        store.clone(),
        topology_keeper(&config.nats, &nats, &js),
        ready.clone(),
        metrics.clone(),
        health_reporter,
        shutdown.clone(),
    ));
    let mailer = tokio::spawn(notify::run_mailer(
        store.clone(),
        config.notifications.clone(),
        js.clone(),
        config.request_timeout,
        metrics.clone(),
        shutdown.clone(),
    ));
    let publisher = tokio::spawn(feed::run_publisher(
        store.clone(),
        js.clone(),
        signer.clone(),
        committed.clone(),
        config.nats.publish_timeout,
        metrics.clone(),
        shutdown.clone(),
    ));

    let service = service::Service {
        store,
        sealer,
        feed_public_key: signer.public_key(),
        auth,
        policy,
        committed,
        nats: nats.clone(),
        js: js.clone(),
        request_timeout: config.request_timeout,
        publish_timeout: config.nats.publish_timeout,
        notifications: config.notifications.clone(),
        snapshot_page_bytes: config.snapshot_page_bytes,
    };
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(auditstream_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("gRPC reflection")?;
    let ready_flag = ready.clone();
    let ops = OpsState {
        registry: Arc::new(registry),
        readiness: Arc::new(move || {
            if ready_flag.load(Ordering::Acquire) {
                Ok(())
            } else {
                Err("database or NATS not reachable".into())
            }
        }),
    };
    tracing::info!(
        grpc = %listeners.grpc.local_addr()?,
        ops = %listeners.ops.local_addr()?,
        database = %store_kind(&config.database.url),
        "config service listening"
    );
    let grpc = config
        .grpc_tls
        .server("grpc_tls")
        .map_err(anyhow::Error::msg)?
        .add_service(health_service)
        .add_service(reflection)
        .add_service(ConfigServiceServer::new(service))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listeners.grpc),
            shutdown.clone().cancelled_owned(),
        );
    let ops = auditstream_telemetry::serve_ops(listeners.ops, ops, shutdown.clone());
    let served = auditstream_telemetry::service::serve_with_grace(
        async {
            tokio::try_join!(async { grpc.await.context("grpc server failed") }, async {
                ops.await.context("ops server failed")
            },)
        },
        &shutdown,
        config.shutdown_grace,
    )
    .await
    .unwrap_or(Ok(((), ())));
    shutdown.cancel();
    let _ = tokio::join!(watcher, publisher, mailer);
    let _ = tokio::time::timeout(Duration::from_secs(2), nats.flush()).await;
    tracing::info!("config service stopped");
    served.map(|_| ())
}

fn store_kind(url: &str) -> &'static str {
    match store::Backend::of_url(url) {
        Ok(store::Backend::Sqlite) => "sqlite",
        Ok(store::Backend::Postgres) => "postgres",
        Err(_) => "unknown",
    }
}

/// The config service owns the JetStream topology (security review L8: one owner, so a
/// service started with defaults cannot lower limits): it ensures the streams unless
/// `nats.ensure_topology` hands them to an operator, and then only verifies them.
fn topology_keeper(
    config: &auditstream_bus::NatsConfig,
    nats: &async_nats::Client,
    js: &async_nats::jetstream::Context,
) -> auditstream_bus::TopologyKeeper {
    let role = if config.ensure_topology {
        auditstream_bus::TopologyRole::Owner
    } else {
        auditstream_bus::TopologyRole::Verifier
    };
    auditstream_bus::TopologyKeeper::new(
        nats.clone(),
        js.clone(),
        auditstream_bus::TopologyGate::new(
            config.topology.clone(),
            auditstream_bus::Service::ConfigService,
        ),
        role,
    )
}

/// Keeps readiness and gRPC health current, and ensures (or verifies) the JetStream topology
/// after every (re)connect so the change feed has its stream.
async fn watch(
    store: Arc<store::Store>,
    mut keeper: auditstream_bus::TopologyKeeper,
    ready: Arc<AtomicBool>,
    metrics: Arc<metrics::Metrics>,
    health: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
) {
    const SERVICE: &str = "auditstream.v1.ConfigService";
    loop {
        let state = keeper.tick().await;
        let revision = store.revision().await;
        let db_ok = revision.is_ok();
        if let Ok(revision) = revision {
            metrics.revision.set(revision as i64);
        }
        let is_ready = state.connected && state.ready && db_ok;
        ready.store(is_ready, Ordering::Release);
        metrics.ready.set(i64::from(is_ready));
        let status = if is_ready {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        for service in ["", SERVICE] {
            health.set_service_status(service, status).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
