//! The sink service: one durable pull consumer per destination type on
//! `audit.deliver.<type>.>` shared by every replica, a batcher per replica, one lane per
//! stream (see [`crate::lane`]), and the background tasks around them: following the
//! configuration, scanning its type's backlog stream, reporting status, answering config-service.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
};
use auditstream_bus::{TopologyGate, connect, jetstream_context, subjects, topology};
use auditstream_config_client::{ConfigSource, ConfigView, Follower};
use auditstream_telemetry::OpsState;
use futures_util::StreamExt;
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, sync::Notify, sync::watch};
use tokio_util::sync::CancellationToken;

use crate::{
    batch::{Batch, BatchLimits, Batcher},
    config::{BacklogConfig, BatchingConfig, ConsumerConfig, DeliveryConfig, SinkConfig},
    control::{Control, serve_rpcs},
    event::{Event, Held, Live},
    lane::{Lane, NotTaken, rfc3339},
    metrics::{Metrics, StreamLabel},
    sink::Sink,
};

pub struct Listeners {
    pub ops: TcpListener,
}

/// The runtime's settings (the sink's own section is the sink's business).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub consumer: ConsumerConfig,
    pub batching: BatchingConfig,
    pub delivery: DeliveryConfig,
    pub backlog: BacklogConfig,
    pub publish_timeout: Duration,
    pub status_interval: Duration,
}

pub(crate) struct Runtime<S: Sink> {
    pub sink: Arc<S>,
    pub settings: Settings,
    pub js: jetstream::Context,
    pub control: Control,
    pub view: watch::Receiver<Arc<ConfigView>>,
    pub lanes: Mutex<HashMap<String, Arc<Lane<S>>>>,
    pub metrics: Metrics,
    pub inflight_bytes: AtomicUsize,
    /// The live consumer's messages this replica holds: kept alive, redeliveries dropped.
    pub held: Arc<Held>,
    /// KiB of batches being moved to the backlog (`delivery.max_spill_bytes`).
    spill_budget: Arc<tokio::sync::Semaphore>,
    spill_kib: usize,
    pub shutdown: CancellationToken,
    pub report_now: Notify,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl<S: Sink> Runtime<S> {
    /// The lane of the stream with key `key` (the subject token, `Stream::key`), created
    /// (with its worker) on first use.
    /// `stream_id` names the stream where the view may not know it yet (the router can be
    /// ahead of this sink): the id the router put in the messages.
    pub fn lane(self: &Arc<Self>, key: &str, stream_id: Option<&str>) -> Arc<Lane<S>> {
        let mut lanes = self.lanes.lock().expect("lanes lock");
        if let Some(l) = lanes.get(key) {
            return l.clone();
        }
        let stream_id = self
            .view
            .borrow()
            .stream_by_key(key)
            .map(|s| s.id.clone())
            .or_else(|| stream_id.map(str::to_owned))
            .unwrap_or_else(|| key.to_owned());
        let lane = Arc::new(Lane::new(
            key,
            &stream_id,
            self.settings.delivery.broken_after,
        ));
        lanes.insert(key.to_owned(), lane.clone());
        self.metrics.lanes.set(lanes.len() as i64);
        let worker = tokio::spawn(lane.clone().work(self.clone()));
        let mut workers = self.workers.lock().expect("workers lock");
        // Workers of retired lanes have ended: keep only the running ones.
        workers.retain(|w| !w.is_finished());
        workers.push(worker);
        lane
    }

    /// Removes the lanes of deleted streams that have nothing left here (L6): lanes and
    /// their per-stream metric series would otherwise grow without bound as streams come and
    /// go. `backlogged` holds the keys of the streams the last scan found a backlog for. A
    /// stream the view does not know is deleted only once the view is synced (before, the
    /// router may simply be ahead of this sink); if it shows up after all, its next batch
    /// makes a new lane.
    fn retire_lanes(&self, backlogged: &std::collections::HashSet<&str>) {
        let view = self.view.borrow().clone();
        if !view.synced {
            return;
        }
        let mut lanes = self.lanes.lock().expect("lanes lock");
        let mut retired = Vec::new();
        lanes.retain(|key, lane| {
            let gone = view.stream_by_key(key).is_none()
                && lane.retire_if_idle(!backlogged.contains(key.as_str()));
            if gone {
                retired.push(lane.stream_id.clone());
            }
            !gone
        });
        self.metrics.lanes.set(lanes.len() as i64);
        for stream_id in retired {
            tracing::info!(stream = %stream_id, "stream deleted and its backlog empty; lane removed");
            // A re-created stream of the same id keeps its series.
            if lanes.values().any(|l| l.stream_id == stream_id) {
                continue;
            }
            self.metrics.forget_stream(&stream_id);
        }
    }

    fn lanes(&self) -> Vec<Arc<Lane<S>>> {
        self.lanes
            .lock()
            .expect("lanes lock")
            .values()
            .cloned()
            .collect()
    }

    /// The batching of the stream with key `key`: its own settings, the sink's defaults
    /// where it sets none.
    pub fn limits(&self, key: &str) -> BatchLimits {
        let d = self.settings.batching.defaults();
        let view = self.view.borrow();
        let Some(b) = view.stream_by_key(key).and_then(|s| s.batching.as_ref()) else {
            return d;
        };
        BatchLimits {
            max_events: if b.max_events > 0 {
                b.max_events as usize
            } else {
                d.max_events
            },
            max_bytes: if b.max_bytes > 0 {
                b.max_bytes as usize
            } else {
                d.max_bytes
            },
            max_age: if b.max_age_ms > 0 {
                Duration::from_millis(b.max_age_ms.into())
            } else {
                d.max_age
            },
        }
    }

    /// A closed batch goes to its lane, or to the backlog if the lane cannot take it now.
    /// Moves to the backlog run beside the consumer, within `delivery.max_spill_bytes`:
    /// when they fill it, this waits, so the consumer stops pulling instead of holding
    /// everything a broken destination cannot take.
    async fn hand(self: &Arc<Self>, batch: Batch<Event>) {
        let stream_id = batch
            .items
            .first()
            .and_then(|e| e.headers.get(auditstream_bus::headers::STREAM_ID))
            .map(|v| v.as_str().to_owned());
        let mut batch = batch;
        let (lane, batch) = loop {
            let lane = self.lane(&batch.stream_id, stream_id.as_deref());
            match lane.offer(self, batch) {
                Ok(()) => return,
                Err(NotTaken::Backlog(b)) => break (lane, b),
                // Retired between the lookup and the offer: the next lookup makes a new lane.
                Err(NotTaken::Retired(b)) => batch = b,
            }
        };
        let kib = (batch.bytes / 1024).clamp(1, self.spill_kib) as u32;
        let permit = self
            .spill_budget
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("the spill budget is never closed");
        let rt = self.clone();
        tokio::spawn(async move {
            lane.spill(&rt, batch.items).await;
            drop(permit);
        });
    }
}

/// Runs a sink until `shutdown` is cancelled: stops pulling, hands open batches to their
/// lanes, lets the lanes finish within `shutdown_grace` (what is left is redelivered),
/// then returns.
pub async fn run<S: Sink, C>(
    sink: S,
    config: SinkConfig<C>,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sink_type = S::TYPE.as_str();
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry, sink_type);
    let nats = connect(&config.nats, auditstream_bus::Service::Sink(S::TYPE))
        .await
        .with_context(|| format!("cannot connect to NATS at {}", config.nats.redacted_url()))?;
    let js = jetstream_context(nats.clone(), config.nats.publish_timeout);
    let control = Control::new(&config.config_service)?;
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
    // At least one KiB, and within what a semaphore can count.
    let spill_kib = (config.delivery.max_spill_bytes / 1024).clamp(1, 1 << 30);
    let rt = Arc::new(Runtime {
        sink: Arc::new(sink),
        settings: Settings {
            consumer: config.consumer.clone(),
            batching: config.batching.clone(),
            delivery: config.delivery.clone(),
            backlog: config.backlog.clone(),
            publish_timeout: config.nats.publish_timeout,
            status_interval: config.status_interval,
        },
        js: js.clone(),
        control: control.clone(),
        view: follower.subscribe(),
        lanes: Mutex::new(HashMap::new()),
        metrics,
        inflight_bytes: AtomicUsize::new(0),
        held: Arc::new(Held::default()),
        spill_budget: Arc::new(tokio::sync::Semaphore::new(spill_kib)),
        spill_kib,
        shutdown: CancellationToken::new(),
        report_now: Notify::new(),
        workers: Mutex::new(Vec::new()),
    });

    let (consuming_tx, consuming) = watch::channel(false);
    // Sinks never change the streams (the config service owns them): they consume only once
    // the streams exist and are at least as strong as this sink's configuration.
    let topology = TopologyGate::new(
        config.nats.topology.clone(),
        auditstream_bus::Service::Sink(S::TYPE),
    );
    let ready_topology = topology.clone();
    let ready_nats = nats.clone();
    let ops = OpsState {
        registry: Arc::new(registry),
        readiness: Arc::new(move || {
            if ready_nats.connection_state() != async_nats::connection::State::Connected {
                return Err("not connected to NATS".into());
            }
            if !*consuming.borrow() {
                // Say why, when the reason is the topology.
                ready_topology.readiness()?;
                return Err("not consuming yet".into());
            }
            Ok(())
        }),
    };
    tracing::info!(sink_type, ops = %listeners.ops.local_addr()?, nats = %config.nats.redacted_url(), config_service = %config.config_service.url, "sink starting");
    let ops_server = tokio::spawn(auditstream_telemetry::serve_ops(
        listeners.ops,
        ops,
        shutdown.clone(),
    ));
    // Background tasks stop with the runtime's own token, after the lanes are done, so
    // status reports and the config view keep working during the grace period.
    let background = rt.shutdown.clone();
    tokio::spawn(serve_rpcs(
        rt.sink.clone(),
        control,
        nats.clone(),
        config.delivery.probe_timeout,
        background.clone(),
    ));
    tokio::spawn(watch_config(rt.clone()));
    tokio::spawn(scan_backlog(rt.clone()));
    tokio::spawn(keep_alive(rt.clone()));
    let reporter = tokio::spawn(report_status(rt.clone()));

    let consumed = consume(&rt, &topology, &shutdown, consuming_tx).await;

    // Shutdown: the dispatcher handed its open batches to the lanes; give them the grace
    // period, then stop everything (unfinished messages are redelivered after ack_wait, or
    // at once where they were nak'd).
    rt.shutdown.cancel();
    let workers: Vec<_> = std::mem::take(&mut *rt.workers.lock().expect("workers lock"));
    let finished = tokio::time::timeout(
        config.shutdown_grace,
        futures_util::future::join_all(workers),
    )
    .await;
    if finished.is_err() {
        tracing::warn!(grace = ?config.shutdown_grace, "deliveries still running after the grace period; they will be redelivered");
    }
    rt.report_now.notify_one();
    let _ = tokio::time::timeout(Duration::from_secs(2), reporter).await;
    shutdown.cancel();
    let _ = ops_server.await;
    let _ = tokio::time::timeout(Duration::from_secs(2), nats.flush()).await;
    tracing::info!(sink_type, "sink stopped");
    consumed
}

async fn live_consumer<S: Sink>(
    rt: &Runtime<S>,
    topology: &TopologyGate,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    topology.verify(&rt.js).await?;
    let stream = rt.js.get_stream(topology::DELIVER).await?;
    let c = &rt.settings.consumer;
    let name = if c.durable_name.is_empty() {
        format!("sink-{}", S::TYPE.as_str())
    } else {
        c.durable_name.clone()
    };
    Ok(stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                description: Some(format!(
                    "auditstream sink-{}: shared by its replicas",
                    S::TYPE.as_str()
                )),
                ack_policy: AckPolicy::Explicit,
                ack_wait: c.ack_wait,
                max_ack_pending: c.max_ack_pending,
                filter_subject: subjects::deliver_filter(S::TYPE),
                ..Default::default()
            },
        )
        .await?)
}

/// The dispatcher: pulls, batches per stream, hands closed batches to lanes.
async fn consume<S: Sink>(
    rt: &Arc<Runtime<S>>,
    topology: &TopologyGate,
    shutdown: &CancellationToken,
    consuming: watch::Sender<bool>,
) -> anyhow::Result<()> {
    let consumer = loop {
        match live_consumer(rt, topology).await {
            Ok(c) => break c,
            Err(e) => {
                // The gate logs a topology refusal when it first appears, not every second.
                if e.downcast_ref::<auditstream_bus::VerifyError>().is_none() {
                    tracing::warn!(error = %e, "cannot open the AUDIT_DELIVER consumer; retrying");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(rt.settings.consumer.pull_batch)
        // Never below the server's max_payload: a delivery larger than the pull's byte
        // budget would never be handed out, and every delivery behind it would wait.
        .max_bytes_per_batch(
            rt.settings
                .consumer
                .pull_bytes
                .max(rt.js.client().server_info().max_payload)
                .max(1),
        )
        .messages()
        .await
        .context("pull from AUDIT_DELIVER")?;
    consuming.send_replace(true);
    tracing::info!(sink_type = S::TYPE.as_str(), "delivering");
    let mut batcher: Batcher<Event> = Batcher::new(rt.settings.batching.global());
    let prefix = format!("{}.{}.", subjects::DELIVER_PREFIX, S::TYPE.as_str());
    loop {
        let deadline = batcher
            .next_deadline()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            m = messages.next() => match m {
                Some(Ok(m)) => {
                    // The subject's last token is the stream key (`Stream::key`).
                    let Some(key) = m.subject.strip_prefix(prefix.as_str()).map(str::to_owned) else {
                        tracing::warn!(subject = %m.subject, "message outside this sink's subjects; acked");
                        let _ = m.ack().await;
                        continue;
                    };
                    let events = match Event::from_live_message(m, &rt.held) {
                        Ok(Live::Events(events)) => events,
                        Ok(Live::Held) => {
                            // Still in an open batch, queued or being delivered here: that
                            // copy is acked when it is settled (M10).
                            rt.metrics.redeliveries_dropped.inc();
                            continue;
                        }
                        Err(e) => {
                            // Left unacked: redelivered after ack_wait, to a sink that reads it.
                            tracing::error!(stream = %key, error = %e, "unreadable delivery message");
                            continue;
                        }
                    };
                    let limits = rt.limits(&key);
                    for event in events {
                        let size = event.body.len();
                        for batch in batcher.push(&key, event, size, limits, Instant::now()) {
                            rt.hand(batch).await;
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "pull from AUDIT_DELIVER failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => break,
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                for batch in batcher.due(Instant::now()) {
                    rt.hand(batch).await;
                }
            }
        }
        let (open, buffered) = (
            batcher.open_batches() as i64,
            batcher.buffered_bytes() as i64,
        );
        rt.metrics.open_batches.set(open);
        rt.metrics.buffered_bytes.set(buffered);
        if open > rt.metrics.open_batches_peak.get() {
            rt.metrics.open_batches_peak.set(open);
        }
        if buffered > rt.metrics.buffered_peak_bytes.get() {
            rt.metrics.buffered_peak_bytes.set(buffered);
        }
        rt.metrics
            .inflight_bytes
            .set(rt.inflight_bytes.load(Ordering::Relaxed) as i64);
        rt.metrics.held_messages.set(rt.held.len() as i64);
    }
    consuming.send_replace(false);
    // Stop pulling, and flush what is open: the lanes deliver it within the grace period.
    drop(messages);
    for batch in batcher.drain() {
        rt.hand(batch).await;
    }
    Ok(())
}

/// Every third of `consumer.ack_wait`: an in-progress ack for every live message this
/// replica holds (open batches, lane windows, deliveries, moves to the backlog), so
/// JetStream redelivers none of them while they wait here, however long the stream's
/// `batching.max_age` or its lane's queue (M10). It stops with the runtime: what a replica
/// still holds then (or when it dies) is redelivered after `ack_wait`.
async fn keep_alive<S: Sink>(rt: Arc<Runtime<S>>) {
    let every = (rt.settings.consumer.ack_wait / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = rt.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        rt.held.keep_alive().await;
    }
}

/// Tells lanes when their stream or its connection changed, so a broken destination is
/// probed at once with the new settings.
async fn watch_config<S: Sink>(rt: Arc<Runtime<S>>) {
    let mut view = rt.view.clone();
    loop {
        tokio::select! {
            _ = rt.shutdown.cancelled() => return,
            changed = view.changed() => if changed.is_err() { return },
        }
        let v = view.borrow_and_update().clone();
        for lane in rt.lanes() {
            let key = v
                .stream_by_key(&lane.key)
                .map(|s| (s.version, s.connection_version));
            let mut st = lane.st.lock().expect("lane state lock");
            if st.dest_key.is_some() && key.is_some() && st.dest_key != key {
                st.config_changed = true;
                drop(st);
                lane.wake.notify_one();
            }
        }
    }
}

/// Every `backlog.scan_interval`: which streams of this type have a backlog (left by another
/// replica or before a restart: their lanes start draining), how deep, and how close the
/// oldest events are to the retention.
async fn scan_backlog<S: Sink>(rt: Arc<Runtime<S>>) {
    let filter = format!("{}.{}.>", subjects::BACKLOG_PREFIX, S::TYPE.as_str());
    let prefix = format!("{}.{}.", subjects::BACKLOG_PREFIX, S::TYPE.as_str());
    loop {
        match backlog_depths(&rt, &filter).await {
            Ok(depths) => {
                let mut broken = 0;
                for lane in rt.lanes() {
                    if lane.is_broken() {
                        broken += 1;
                    }
                    let subject = format!("{prefix}{}", lane.key);
                    if !depths.contains_key(&subject) {
                        let mut st = lane.st.lock().expect("lane state lock");
                        if st.backlog_depth != 0 {
                            st.backlog_depth = 0;
                            st.dirty = true;
                        }
                        let label = StreamLabel {
                            stream: lane.stream_id.clone(),
                        };
                        rt.metrics.backlog_events.get_or_create(&label).set(0);
                        rt.metrics.expiring_events.get_or_create(&label).set(0);
                    }
                }
                rt.metrics.broken_destinations.set(broken);
                let backlogged: std::collections::HashSet<&str> = depths
                    .keys()
                    .filter_map(|s| s.strip_prefix(&prefix))
                    .collect();
                rt.retire_lanes(&backlogged);
                for (subject, depth) in depths {
                    let Some(key) = subject.strip_prefix(&prefix) else {
                        continue;
                    };
                    let lane = rt.lane(key, None);
                    let (expiring, oldest) = expiry(&rt, &subject).await;
                    let label = StreamLabel {
                        stream: lane.stream_id.clone(),
                    };
                    rt.metrics
                        .backlog_events
                        .get_or_create(&label)
                        .set(depth as i64);
                    rt.metrics
                        .expiring_events
                        .get_or_create(&label)
                        .set(expiring as i64);
                    let mut st = lane.st.lock().expect("lane state lock");
                    if st.backlog_depth != depth
                        || st.expiring != expiring
                        || st.oldest_expires_at != oldest
                    {
                        (st.backlog_depth, st.expiring, st.oldest_expires_at) =
                            (depth, expiring, oldest);
                        st.dirty = true;
                    }
                    if depth > 0 && !st.backlogged {
                        st.backlogged = true;
                        drop(st);
                        lane.wake.notify_one();
                    }
                }
            }
            Err(e) => {
                tracing::warn!(stream = %topology::backlog(S::TYPE), error = %e, "cannot scan the backlog")
            }
        }
        tokio::select! {
            _ = rt.shutdown.cancelled() => return,
            _ = tokio::time::sleep(rt.settings.backlog.scan_interval) => {}
        }
    }
}

async fn backlog_depths<S: Sink>(
    rt: &Runtime<S>,
    filter: &str,
) -> Result<HashMap<String, u64>, String> {
    let stream = rt
        .js
        .get_stream(topology::backlog(S::TYPE))
        .await
        .map_err(|e| e.to_string())?;
    let mut subjects = stream
        .info_with_subjects(filter)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    while let Some(s) = subjects.next().await {
        let (subject, count) = s.map_err(|e| e.to_string())?;
        if count > 0 {
            out.insert(subject, count as u64);
        }
    }
    Ok(out)
}

/// How many of `subject`'s backlog events expire within `warn_before`, and when the oldest
/// one expires (RFC 3339).
async fn expiry<S: Sink>(rt: &Runtime<S>, subject: &str) -> (u64, String) {
    let b = &rt.settings.backlog;
    let Ok(stream) = rt.js.get_stream(topology::backlog(S::TYPE)).await else {
        return (0, String::new());
    };
    let Ok(oldest) = stream.direct_get_first_for_subject(subject).await else {
        return (0, String::new());
    };
    let expires_at = oldest.time + b.retention;
    let now = time::OffsetDateTime::now_utc();
    if expires_at > now + b.warn_before {
        return (0, rfc3339(expires_at));
    }
    // Events stored before `threshold` expire within the warning period: count those
    // after it with a throwaway consumer and subtract.
    let threshold = now + b.warn_before - b.retention;
    let total = match stream.clone().info_with_subjects(subject).await {
        Ok(mut s) => match s.next().await {
            Some(Ok((_, n))) => n as u64,
            _ => 0,
        },
        Err(_) => 0,
    };
    let newer = match stream
        .create_consumer(pull::OrderedConfig {
            // Named, unique per call: the sink's NATS user may create consumers on its own
            // type's backlog stream only (`permissions`).
            name: Some(format!(
                "expiry-{}-{:016x}",
                S::TYPE.as_str(),
                rand::random::<u64>()
            )),
            filter_subject: subject.to_owned(),
            deliver_policy: DeliverPolicy::ByStartTime {
                start_time: threshold,
            },
            ..Default::default()
        })
        .await
    {
        Ok(mut c) => c.info().await.map(|i| i.num_pending).unwrap_or(0),
        Err(_) => 0,
    };
    (total.saturating_sub(newer), rfc3339(expires_at))
}

/// Sends the lanes' changed status to config-service, at once on a transition and every
/// `status_interval` otherwise. A failed report keeps its counters for the next one.
async fn report_status<S: Sink>(rt: Arc<Runtime<S>>) {
    loop {
        for lane in rt.lanes() {
            rt.metrics
                .stream_state
                .get_or_create(&StreamLabel {
                    stream: lane.stream_id.clone(),
                })
                .set(lane.state_code());
            let Some((mut status, counts)) = lane.take_status() else {
                continue;
            };
            // Under the stream's id as the view knows it now (the lane may have been made
            // before the view knew the stream).
            if let Some(s) = rt.view.borrow().stream_by_key(&lane.key) {
                status.stream_id.clone_from(&s.id);
            }
            match rt.control.report(status).await {
                Ok(()) => {}
                // The stream (this lane's uid) is gone: nobody is left to report to.
                Err(e) if e.code() == tonic::Code::NotFound => {
                    tracing::debug!(stream = %lane.stream_id, uid = %lane.key, "status of a deleted stream not reported");
                }
                Err(e) => {
                    tracing::debug!(stream = %lane.stream_id, error = %e.message(), "status report failed; retrying");
                    lane.restore(counts);
                }
            }
        }
        if rt.shutdown.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = rt.report_now.notified() => {}
            _ = tokio::time::sleep(rt.settings.status_interval) => {}
        }
    }
}

/// A sink binary's whole `main`: configuration, ops port, run until SIGINT/SIGTERM.
pub async fn sink_main<S, C, F>(make: F) -> std::process::ExitCode
where
    S: Sink,
    C: serde::Serialize + serde::de::DeserializeOwned + Default,
    F: FnOnce(&C) -> anyhow::Result<S>,
{
    let service = format!("auditstream-sink-{}", S::TYPE.as_str().replace('_', "-"));
    auditstream_telemetry::service::service_main(
        &service,
        |config: SinkConfig<C>, shutdown| async move {
            let sink = make(&config.sink).map_err(|e| format!("{e:#}"))?;
            let listeners = Listeners {
                ops: auditstream_telemetry::service::bind(config.ops_addr, "ops_addr").await?,
            };
            run(sink, config, listeners, shutdown)
                .await
                .map_err(|e| format!("{e:#}"))
        },
    )
    .await
}
