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
    TopologyGate, connect, headers, headers::EventMeta, jetstream_context, pack, subjects, topology,
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
    config::RoutingGuard,
    dead_letter::Reason,
    deliver::{Out, Settings, dead_letter_messages, keep_history, publish},
    metrics::{Metrics, ReasonLabel},
    park::{Park, keep_unparking, park_all},
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
    let nats = connect(&config.nats, auditstream_bus::Service::Router)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats.redacted_url()))?;
    let js = jetstream_context(nats.clone(), config.nats.publish_timeout);

    let follower = Follower::start(
        ConfigSource {
            url: config.config_service.url.clone(),
            token: config.config_service.token.expose().to_owned(),
            tls: config.config_service.tls.clone(),
        },
        nats.clone(),
        shutdown.clone(),
    );
    follower.register_metrics(&mut registry);
    let (table_tx, table_rx) = watch::channel::<Option<Arc<RoutingTable>>>(None);
    tokio::spawn(keep_table(
        follower,
        table_tx,
        config.routing.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(keep_unparking(
        js.clone(),
        table_rx.clone(),
        config.park.clone(),
        metrics.clone(),
        config.nats.publish_timeout,
        shutdown.clone(),
    ));

    // The router never changes the streams (the config service owns them): it opens its
    // consumer only once they exist and are at least as strong as its configuration.
    let topology = TopologyGate::new(
        config.nats.topology.clone(),
        auditstream_bus::Service::Router,
    );
    let ready_nats = nats.clone();
    let ready_table = table_rx.clone();
    let ready_topology = topology.clone();
    let ops = OpsState {
        registry: Arc::new(registry),
        readiness: Arc::new(move || {
            if ready_nats.connection_state() != async_nats::connection::State::Connected {
                return Err("not connected to NATS".into());
            }
            if ready_table.borrow().is_none() {
                return Err("no configuration from config-service yet".into());
            }
            ready_topology.readiness()
        }),
    };
    tracing::info!(ops = %listeners.ops.local_addr()?, nats = %config.nats.redacted_url(), config_service = %config.config_service.url, "router starting");
    let ops_server = tokio::spawn(auditstream_telemetry::serve_ops(
        listeners.ops,
        ops,
        shutdown.clone(),
    ));

    let consumed = consume(&config, &js, &topology, table_rx, metrics, &shutdown).await;
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
    guard: RoutingGuard,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut views = follower.subscribe();
    loop {
        let view = views.borrow_and_update().clone();
        if view.synced {
            let previous = tx.borrow().clone();
            match RoutingTable::build(&view, previous.as_deref()) {
                Ok(table)
                    if lost_most_of_the_tree(
                        &guard,
                        previous.as_ref().map(|p| p.nodes.len()),
                        table.nodes.len(),
                    ) =>
                {
                    metrics.config_refused.inc();
                    tracing::error!(
                        revision = view.revision,
                        nodes = table.nodes.len(),
                        previous_nodes = previous.as_ref().map_or(0, |p| p.nodes.len()),
                        "configuration refused: it lost most of the tree (routing.min_kept_share); routing goes on with the last one"
                    );
                }
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

/// Whether a table of `after` nodes keeps fewer than the guard's share of the previous
/// table's `before` (none: the first table, always taken).
fn lost_most_of_the_tree(guard: &RoutingGuard, before: Option<usize>, after: usize) -> bool {
    let Some(before) = before else {
        return false;
    };
    before >= guard.min_nodes.max(1) && (after as f64) < guard.min_kept_share * before as f64
}

async fn consume(
    config: &RouterConfig,
    js: &jetstream::Context,
    topology: &TopologyGate,
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
        match ingest_consumer(config, js, topology).await {
            Ok(c) => break c,
            Err(e) => {
                // The gate logs a topology refusal when it first appears, not every second.
                if e.downcast_ref::<auditstream_bus::VerifyError>().is_none() {
                    tracing::warn!(error = %e, "cannot open the AUDIT_INGEST consumer; retrying");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    tracing::info!(consumer = %config.consumer.durable_name, "routing");
    // A pull never hands out a message larger than its byte budget: one below the server's
    // max_payload would leave such a message (a big pack, a big event) unpulled for ever,
    // and every message behind it with it.
    let max_payload = js.client().server_info().max_payload;
    let messages = consumer
        .stream()
        .max_messages_per_batch(config.consumer.batch)
        .max_bytes_per_batch(config.consumer.batch_bytes.max(max_payload).max(1))
        .messages()
        .await
        .context("pull from AUDIT_INGEST")?
        .take_until(shutdown.clone().cancelled_owned());
    let settings = Settings {
        timeout: config.nats.publish_timeout,
        retry_delay: config.consumer.retry_delay,
        pack_events: config.pack.max_events.max(1),
        pack_bytes: config.pack.max_bytes,
        max_deliver: config.consumer.max_deliver.max(1),
    };
    // What is ready is routed together (no waiting for more), so packs form under load and a
    // lone event goes out at once.
    messages
        .ready_chunks(config.consumer.group.max(1))
        .for_each_concurrent(config.consumer.concurrency.max(1), |group| {
            let table = table.borrow().clone();
            let metrics = metrics.clone();
            let settings = &settings;
            async move {
                let mut ready = Vec::with_capacity(group.len());
                for message in group {
                    match message {
                        Ok(m) => ready.push(m),
                        Err(e) => tracing::warn!(error = %e, "pull from AUDIT_INGEST failed"),
                    }
                }
                handle(js, ready, table.as_deref(), &metrics, settings).await
            }
        })
        .await;
    Ok(())
}

async fn ingest_consumer(
    config: &RouterConfig,
    js: &jetstream::Context,
    topology: &TopologyGate,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    topology.verify(js).await?;
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

/// Routes a group of ingest messages, publishes their deliveries (packed per stream), and
/// acks each ingest message whose deliveries all got their PubAck; the others are nak'ed for
/// redelivery (what was stored is de-duplicated by message id when they come back).
async fn handle(
    js: &jetstream::Context,
    group: Vec<jetstream::Message>,
    table: Option<&RoutingTable>,
    metrics: &Metrics,
    settings: &Settings,
) {
    let Some(table) = table else {
        let delay = Some(settings.retry_delay);
        join_all(group.iter().map(|m| m.ack_with(AckKind::Nak(delay)))).await;
        return;
    };
    let now = time::OffsetDateTime::now_utc();
    let mut outs: Vec<Out<'_>> = Vec::new();
    let mut parks: Vec<Park> = Vec::new();
    let mut routed: Vec<Routed> = group
        .iter()
        .enumerate()
        .map(|(i, message)| route_message(i, message, table, metrics, now, &mut outs, &mut parks))
        .collect();
    // A pack no replica read within max_deliver tries terminates in the dead letters.
    for (message, routed) in group.iter().zip(&mut routed) {
        if routed.retry
            && message
                .info()
                .is_ok_and(|info| info.delivered as u64 >= settings.max_deliver)
        {
            routed.retry = false;
            routed.dead = Some((
                Reason::UnknownPackVersion,
                format!(
                    "pack format {:?} not read after {} deliveries",
                    message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(pack::PACK))
                        .map(|v| v.as_str()),
                    settings.max_deliver
                ),
            ));
        }
    }
    let started = Instant::now();
    let published = !outs.is_empty();
    let (mut failed, unkept, unparked, undead) = tokio::join!(
        publish(js, outs, metrics, settings),
        keep_history(
            js,
            group
                .iter()
                .zip(&routed)
                .enumerate()
                .filter(|(_, (_, r))| !r.retry)
                .map(|(i, (m, _))| (i, m)),
            metrics,
            settings
        ),
        park_all(js, parks, metrics, settings.timeout),
        dead_letter_messages(
            js,
            group
                .iter()
                .zip(&routed)
                .enumerate()
                .filter_map(|(i, (m, r))| r
                    .dead
                    .clone()
                    .map(|(reason, detail)| (i, m, reason, detail))),
            metrics,
            settings
        ),
    );
    failed.extend(unkept);
    failed.extend(unparked);
    failed.extend(undead);
    if published {
        metrics
            .publish_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    join_all(
        group
            .iter()
            .zip(&routed)
            .enumerate()
            .map(|(i, (message, routed))| {
                let failed = failed.contains(&i);
                async move {
                    if failed || routed.retry {
                        if failed {
                            metrics.retried.inc();
                        }
                        let _ = message
                            .ack_with(AckKind::Nak(Some(settings.retry_delay)))
                            .await;
                        return;
                    }
                    for settled in &routed.settled {
                        match settled {
                            Settled::Unroutable(reason) => unroutable(message, metrics, reason),
                            Settled::Filtered => {
                                metrics.filtered.inc();
                            }
                            // Counted by `park_all` / `dead_letter` once stored.
                            Settled::Parked | Settled::DeadLettered => {}
                        }
                    }
                    ack(message, metrics, routed.events).await
                }
            }),
    )
    .await;
}

/// What routing one ingest message came to.
struct Routed {
    /// Events it holds: 1, or a pack's count.
    events: u64,
    /// Its events that settled without deliveries.
    settled: Vec<Settled>,
    /// Leave it for another try (a pack of a format this build does not read: an upgraded
    /// replica may).
    retry: bool,
    /// The whole ingest message goes to the router's dead letters before its ack.
    dead: Option<(Reason, String)>,
}

/// Routes one ingest message, a lone event or a pack of them: deliveries go to `outs`.
fn route_message<'t>(
    i: usize,
    message: &jetstream::Message,
    table: &'t RoutingTable,
    metrics: &Metrics,
    now: time::OffsetDateTime,
    outs: &mut Vec<Out<'t>>,
    parks: &mut Vec<Park>,
) -> Routed {
    let headers = message.headers.as_ref();
    let mut routed = Routed {
        events: 1,
        settled: Vec::new(),
        retry: false,
        dead: None,
    };
    match pack::is_pack(headers).map(|packed| packed.then(|| pack::unpack(&message.payload))) {
        Ok(None) => routed.settled.extend(route_one(
            i,
            headers,
            &message.payload,
            table,
            metrics,
            now,
            outs,
            parks,
        )),
        Ok(Some(Ok(events))) => {
            routed.events = events.len() as u64;
            for (h, body) in &events {
                routed.settled.extend(route_one(
                    i,
                    Some(h),
                    body,
                    table,
                    metrics,
                    now,
                    outs,
                    parks,
                ));
            }
        }
        // Cut off or garbled: nothing in it can be trusted to be an event.
        Ok(Some(Err(e))) => {
            tracing::warn!(subject = %message.subject, error = %e, "unreadable ingest pack");
            routed.settled.push(Settled::DeadLettered);
            routed.dead = Some((Reason::MalformedPack, e.to_string()));
        }
        Err(e) => {
            tracing::warn!(subject = %message.subject, error = %e, "ingest pack left for another replica");
            routed.retry = true;
        }
    }
    routed
}

#[derive(Clone, Copy)]
enum Settled {
    Unroutable(&'static str),
    Filtered,
    /// Its workspace is not in the directory yet: waits in AUDIT_PARKED.
    Parked,
    /// In the router's dead letters with its whole ingest message.
    DeadLettered,
}

/// Routes one event (of ingest message `i`): its deliveries go to `outs`; `Some` when it
/// has none.
#[allow(clippy::too_many_arguments)]
fn route_one<'t>(
    i: usize,
    h: Option<&async_nats::HeaderMap>,
    body: &bytes::Bytes,
    table: &'t RoutingTable,
    metrics: &Metrics,
    now: time::OffsetDateTime,
    outs: &mut Vec<Out<'t>>,
    parks: &mut Vec<Park>,
) -> Option<Settled> {
    let get = |name: &str| h.and_then(|h| h.get(name)).map(|v| v.as_str());
    let (Some(event_id), Some(event_type), Some(workspace_id)) = (
        get(headers::EVENT_ID),
        get(headers::EVENT_TYPE).and_then(|t| t.parse::<EventType>().ok()),
        get(headers::WORKSPACE_ID),
    ) else {
        return Some(Settled::Unroutable("malformed"));
    };
    let incoming = Incoming {
        event_id,
        org_id: get(headers::ORG_ID).unwrap_or_default(),
        event_type,
        workspace_id,
        occurred_at: get(headers::OCCURRED_AT).unwrap_or_default(),
        received_at: get(headers::RECEIVED_AT).unwrap_or_default(),
        body,
    };
    let started = Instant::now();
    let outcome = route(table, &incoming, now);
    metrics
        .resolve_seconds
        .observe(started.elapsed().as_secs_f64());
    let deliveries = match outcome {
        Outcome::Unroutable("unknown_workspace") => {
            let Ok(subject) = subjects::parked(incoming.org_id, workspace_id, event_type) else {
                return Some(Settled::Unroutable("malformed"));
            };
            parks.push(Park {
                from: i,
                org_id: incoming.org_id.to_owned(),
                subject,
                msg_id: format!("parked.{}.{event_id}", incoming.org_id),
                headers: h.cloned().unwrap_or_default(),
                body: body.clone(),
            });
            return Some(Settled::Parked);
        }
        Outcome::Unroutable(reason) => return Some(Settled::Unroutable(reason)),
        Outcome::NotWanted => return Some(Settled::Filtered),
        Outcome::Routed(d) => d,
    };
    let org_id = table
        .nodes
        .get(workspace_id)
        .map(|n| n.org_id.as_str())
        .unwrap_or_default();
    // This hop's span continues the event's trace; its traceparent goes on with every
    // delivery message.
    let hop = auditstream_telemetry::traces::hop("router.route", get(headers::TRACEPARENT));
    hop.span.record("event_id", event_id);
    let traceparent = hop.traceparent.as_deref();
    for d in deliveries {
        let mut h = EventMeta {
            event_id,
            org_id,
            workspace_id,
            event_type: event_type.as_str(),
            occurred_at: incoming.occurred_at,
            received_at: incoming.received_at,
            traceparent,
        }
        .to_headers();
        h.insert(headers::STREAM_ID, d.stream_id);
        let (sink, key) = table
            .streams
            .get(d.stream_id)
            .map(|s| (s.sink.as_str(), s.key.as_str()))
            .unwrap_or_default();
        // In the headers too: a pack carries each event's own id.
        let msg_id = format!("{event_id}.{key}");
        h.insert(headers::MSG_ID, msg_id.as_str());
        outs.push(Out {
            from: i,
            subject: d.subject,
            sink,
            msg_id,
            headers: h,
            body: d.body,
            event: body.clone(),
            org_id,
        });
    }
    None
}

/// Acks an ingest message holding `events` events.
async fn ack(message: &jetstream::Message, metrics: &Metrics, events: u64) {
    match message.ack().await {
        Ok(()) => {
            metrics.processed.inc_by(events);
        }
        Err(e) => tracing::warn!(error = %e, "ack failed; the event will be redelivered"),
    }
}

/// Counts an event no stream can take (it is acked with its message, not kept).
fn unroutable(message: &jetstream::Message, metrics: &Metrics, reason: &'static str) {
    let seen = metrics.unroutable.get_or_create(&ReasonLabel { reason });
    seen.inc();
    // Bounded: the first occurrences and then one in a thousand, not one line per event.
    let seen = seen.get();
    if seen <= 10 || seen.is_multiple_of(1000) {
        tracing::warn!(reason, subject = %message.subject, seen, "event cannot be routed; acked and counted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_loses_most_of_a_large_tree_is_refused() {
        let guard = RoutingGuard::default();
        // The first table is always taken, even an empty one (events are parked).
        assert!(!lost_most_of_the_tree(&guard, None, 0));
        assert!(lost_most_of_the_tree(&guard, Some(1000), 0));
        assert!(lost_most_of_the_tree(&guard, Some(1000), 499));
        assert!(!lost_most_of_the_tree(&guard, Some(1000), 500));
        assert!(!lost_most_of_the_tree(&guard, Some(1000), 2000));
        // A small tree may shrink freely: deleting 3 of 5 test nodes is no accident.
        assert!(!lost_most_of_the_tree(&guard, Some(99), 0));
        let off = RoutingGuard {
            min_kept_share: 0.0,
            ..guard
        };
        assert!(!lost_most_of_the_tree(&off, Some(1000), 0));
    }
}
