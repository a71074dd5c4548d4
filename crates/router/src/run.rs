//! The router service: config follower → routing table, and the shared durable consumer on
//! AUDIT_INGEST that runs the pipeline for each message.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, pull},
};
use auditstream_bus::{
    connect, ensure_topology, headers, headers::EventMeta, jetstream_context, publish_durable,
    subjects, topology,
};
use auditstream_config_client::{ConfigSource, Follower};
use auditstream_model::EventType;
use auditstream_telemetry::OpsState;
use futures_util::{StreamExt, future::join_all};
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

use crate::{
    RouterConfig,
    metrics::{Metrics, ReasonLabel, SinkLabel},
    pipeline::{Incoming, Outcome, route},
    table::RoutingTable,
};

pub struct Listeners {
    pub ops: TcpListener,
}

/// Runs the router until `shutdown` is cancelled: stops pulling, lets in-flight events finish
/// (or leaves them unacked for redelivery), then returns.
pub async fn run(
    config: RouterConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let nats = connect(&config.nats.url, "auditstream-router")
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats.url))?;
    let js = jetstream_context(nats.clone(), config.nats.publish_timeout);

    let follower = Follower::start(
        ConfigSource {
            url: config.config_service.url.clone(),
            token: config.config_service.token.expose().to_owned(),
        },
        nats.clone(),
        shutdown.clone(),
    );
    let (table_tx, table_rx) = watch::channel::<Option<Arc<RoutingTable>>>(None);
    tokio::spawn(keep_table(
        follower,
        table_tx,
        metrics.clone(),
        shutdown.clone(),
    ));

    let ready_nats = nats.clone();
    let ready_table = table_rx.clone();
    let ops = OpsState {
        registry: Arc::new(registry),
        readiness: Arc::new(move || {
            if ready_nats.connection_state() != async_nats::connection::State::Connected {
                return Err("not connected to NATS".into());
            }
            if ready_table.borrow().is_none() {
                return Err("no configuration from config-service yet".into());
            }
            Ok(())
        }),
    };
    tracing::info!(ops = %listeners.ops.local_addr()?, nats = %config.nats.url, config_service = %config.config_service.url, "router starting");
    let ops_server = tokio::spawn(auditstream_telemetry::serve_ops(
        listeners.ops,
        ops,
        shutdown.clone(),
    ));

    let consumed = consume(&config, &js, table_rx, metrics, &shutdown).await;
    shutdown.cancel();
    let _ = ops_server.await;
    let _ = tokio::time::timeout(Duration::from_secs(2), nats.flush()).await;
    tracing::info!("router stopped");
    consumed
}

/// Rebuilds the routing table whenever the followed configuration moves.
async fn keep_table(
    follower: Follower,
    tx: watch::Sender<Option<Arc<RoutingTable>>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut views = follower.subscribe();
    loop {
        let view = views.borrow_and_update().clone();
        if view.synced {
            let previous = tx.borrow().clone();
            match RoutingTable::build(&view, previous.as_deref()) {
                Ok(table) => {
                    metrics.config_revision.set(table.revision as i64);
                    tx.send_replace(Some(Arc::new(table)));
                }
                // Keep routing on the last good table.
                Err(e) => {
                    tracing::error!(revision = view.revision, error = %e, "cannot build routing table")
                }
            }
        }
        metrics
            .config_snapshots
            .set(follower.stats.snapshots.load(Ordering::Relaxed) as i64);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = views.changed() => if changed.is_err() { return },
        }
    }
}

async fn consume(
    config: &RouterConfig,
    js: &jetstream::Context,
    mut table: watch::Receiver<Option<Arc<RoutingTable>>>,
    metrics: Arc<Metrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    // Routing on no configuration would ack events into nowhere: wait for the first table.
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        r = table.wait_for(|t| t.is_some()) => { r.context("config follower stopped")?; }
    }
    let consumer = loop {
        match ingest_consumer(config, js).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the AUDIT_INGEST consumer; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    tracing::info!(consumer = %config.consumer.durable_name, "routing");
    let messages = consumer
        .stream()
        .max_messages_per_batch(config.consumer.batch)
        .messages()
        .await
        .context("pull from AUDIT_INGEST")?
        .take_until(shutdown.clone().cancelled_owned());
    let timeout = config.nats.publish_timeout;
    let retry_delay = config.consumer.retry_delay;
    messages
        .for_each_concurrent(config.consumer.concurrency, |message| {
            let table = table.borrow().clone();
            let metrics = metrics.clone();
            async move {
                match message {
                    Ok(m) => handle(js, m, table.as_deref(), &metrics, timeout, retry_delay).await,
                    Err(e) => tracing::warn!(error = %e, "pull from AUDIT_INGEST failed"),
                }
            }
        })
        .await;
    Ok(())
}

async fn ingest_consumer(
    config: &RouterConfig,
    js: &jetstream::Context,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    if config.nats.ensure_topology {
        ensure_topology(js, &config.nats.topology).await?;
    }
    let stream = js.get_stream(topology::INGEST).await?;
    let c = &config.consumer;
    Ok(stream
        .get_or_create_consumer(
            &c.durable_name,
            pull::Config {
                durable_name: Some(c.durable_name.clone()),
                description: Some("auditstream router: routes every ingested event".into()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: c.ack_wait,
                max_ack_pending: c.max_ack_pending,
                filter_subject: format!("{}.>", subjects::INGEST_PREFIX),
                ..Default::default()
            },
        )
        .await?)
}

async fn handle(
    js: &jetstream::Context,
    message: jetstream::Message,
    table: Option<&RoutingTable>,
    metrics: &Metrics,
    timeout: Duration,
    retry_delay: Duration,
) {
    let Some(table) = table else {
        let _ = message.ack_with(AckKind::Nak(Some(retry_delay))).await;
        return;
    };
    let h = message.headers.as_ref();
    let get = |name: &str| h.and_then(|h| h.get(name)).map(|v| v.as_str());
    let (Some(event_id), Some(event_type), Some(workspace_id)) = (
        get(headers::EVENT_ID),
        get(headers::EVENT_TYPE).and_then(|t| t.parse::<EventType>().ok()),
        get(headers::WORKSPACE_ID),
    ) else {
        return unroutable(&message, metrics, "malformed").await;
    };
    let incoming = Incoming {
        event_id,
        event_type,
        workspace_id,
        occurred_at: get(headers::OCCURRED_AT).unwrap_or_default(),
        received_at: get(headers::RECEIVED_AT).unwrap_or_default(),
        body: &message.payload,
    };
    let started = Instant::now();
    let outcome = route(table, &incoming, time::OffsetDateTime::now_utc());
    metrics
        .resolve_seconds
        .observe(started.elapsed().as_secs_f64());
    let deliveries = match outcome {
        Outcome::Unroutable(reason) => return unroutable(&message, metrics, reason).await,
        Outcome::NotWanted => {
            metrics.filtered.inc();
            return ack(&message, metrics).await;
        }
        Outcome::Routed(d) => d,
    };
    let org_id = table
        .nodes
        .get(workspace_id)
        .map(|n| n.org_id.as_str())
        .unwrap_or_default();
    let started = Instant::now();
    let published = join_all(deliveries.into_iter().map(|d| {
        let mut h = EventMeta {
            event_id,
            org_id,
            workspace_id,
            event_type: event_type.as_str(),
            occurred_at: incoming.occurred_at,
            received_at: incoming.received_at,
            traceparent: get(headers::TRACEPARENT),
        }
        .to_headers();
        h.insert(headers::STREAM_ID, d.stream_id);
        let sink = table
            .streams
            .get(d.stream_id)
            .map(|s| s.sink.as_str())
            .unwrap_or_default();
        let msg_id = format!("{event_id}.{}", d.stream_id);
        async move {
            let r =
                publish_durable(js, d.subject.to_owned(), &msg_id, h, d.body.into(), timeout).await;
            (sink, r)
        }
    }))
    .await;
    metrics
        .publish_seconds
        .observe(started.elapsed().as_secs_f64());
    let mut failed = None;
    for (sink, r) in published {
        match r {
            Ok(_) => {
                metrics
                    .routed
                    .get_or_create(&SinkLabel { sink_type: sink })
                    .inc();
            }
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        // Some delivery is not stored: leave the ingest message for redelivery; the ones
        // already stored are de-duplicated by their Nats-Msg-Id when it comes back.
        Some(e) => {
            tracing::warn!(event_id, error = %e, "delivery not stored; the event will be redelivered");
            metrics.retried.inc();
            let _ = message.ack_with(AckKind::Nak(Some(retry_delay))).await;
        }
        None => ack(&message, metrics).await,
    }
}

async fn ack(message: &jetstream::Message, metrics: &Metrics) {
    match message.ack().await {
        Ok(()) => {
            metrics.processed.inc();
        }
        Err(e) => tracing::warn!(error = %e, "ack failed; the event will be redelivered"),
    }
}

async fn unroutable(message: &jetstream::Message, metrics: &Metrics, reason: &'static str) {
    metrics
        .unroutable
        .get_or_create(&ReasonLabel { reason })
        .inc();
    // Bounded: the first occurrences and then one in a thousand, not one line per event.
    let seen = metrics
        .unroutable
        .get_or_create(&ReasonLabel { reason })
        .get();
    if seen <= 10 || seen.is_multiple_of(1000) {
        tracing::warn!(reason, subject = %message.subject, seen, "event cannot be routed; acked and counted");
    }
    ack(message, metrics).await;
}
