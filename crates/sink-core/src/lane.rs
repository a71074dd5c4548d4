//! One stream's lane in a sink replica: its destination (built from config-service's
//! `GetDestination`, rebuilt when the stream or its connection changes), its health, the
//! closed batches waiting for it (the in-flight window), and the worker task that delivers
//! them, retries, moves work to the backlog when the destination is broken or slow, probes,
//! and drains the backlog in order before live traffic flows directly again.
//!
//! The ordering rule: once anything of a stream went to the backlog, every later batch of
//! that stream goes there too (`backlogged`), until the worker finds the backlog empty with
//! no spill in progress and no spill finished since it looked (`spill_gen`). So a stream's
//! events reach the destination in the order the replica received them, backlog first.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::jetstream::consumer::{AckPolicy, pull};
use auditstream_bus::{headers, publish_durable, subjects, topology};
use auditstream_proto::v1::{HealthState, StreamStatus};
use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::{
    batch::Batch,
    classify::Class,
    control::result_word,
    deliver::{Answer, Destination, deliver},
    event::Event,
    health::{DestinationHealth, Health, Transition},
    runtime::Runtime,
    sink::Sink,
};

/// Where a batch's events came from: the live consumer, or the stream's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Live,
    Backlog,
}

pub(crate) struct Lane<S: Sink> {
    /// The stream's key (`Stream::key`, its immutable uid): the last token of its delivery,
    /// backlog and DLQ subjects. A lane belongs to one stream for good; a re-created id has
    /// another key and so another lane, destination cache and backlog.
    pub key: String,
    /// The stream's user-chosen id, for status reports, logs and metrics (the key when the
    /// stream was already deleted when the lane was made).
    pub stream_id: String,
    backlog_subject: String,
    dlq_subject: String,
    queue: Mutex<VecDeque<Batch<Event>>>,
    pub wake: Notify,
    pub st: Mutex<LaneState>,
    dest: tokio::sync::Mutex<Option<(DestKey, Arc<S::Destination>)>>,
}

/// (stream version, connection version): a different key means rebuild the destination.
type DestKey = (u64, u64);

pub(crate) struct LaneState {
    pub backlogged: bool,
    pub spilling: usize,
    pub spill_gen: u64,
    pub health: DestinationHealth,
    /// The key of the destination built last; the config watcher compares against it.
    pub dest_key: Option<DestKey>,
    /// The stream or its connection changed: probe at once if broken.
    pub config_changed: bool,
    pub last_error: String,
    pub hint: String,
    pub last_delivery_at: Option<time::OffsetDateTime>,
    /// Events refused in a row, in batches nearly all refused (`delivery.broken_after_refused`).
    pub refused_run: u64,
    pub backlog_depth: u64,
    pub expiring: u64,
    pub oldest_expires_at: String,
    /// Increments since the last status report.
    pub counts: Counts,
    /// Something changed since the last status report.
    pub dirty: bool,
    /// Its stream was deleted and nothing of it is left here: the lane takes no more
    /// batches, and its worker ends once its queue is empty (L6).
    pub retired: bool,
}

/// Why [`Lane::offer`] did not take a batch.
pub(crate) enum NotTaken {
    /// The lane cannot take live traffic now: move the batch to the backlog.
    Backlog(Batch<Event>),
    /// The lane was retired meanwhile: hand the batch to the stream's current lane.
    Retired(Batch<Event>),
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub delivered: u64,
    pub dead_lettered: u64,
    pub replayed: u64,
    pub expired: u64,
    pub failed_requests: u64,
}

impl Counts {
    pub fn add(&mut self, o: Counts) {
        self.delivered += o.delivered;
        self.dead_lettered += o.dead_lettered;
        self.replayed += o.replayed;
        self.expired += o.expired;
        self.failed_requests += o.failed_requests;
    }
}

enum DestError {
    /// The stream no longer exists: its events cannot be delivered anywhere.
    Gone(String),
    Answer(Answer),
}

impl<S: Sink> Lane<S> {
    pub fn new(key: &str, stream_id: &str, broken_after: Duration) -> Self {
        Lane {
            key: key.to_owned(),
            stream_id: stream_id.to_owned(),
            backlog_subject: subjects::backlog(S::TYPE, key).expect("stream keys are valid"),
            dlq_subject: subjects::dlq(S::TYPE, key).expect("stream keys are valid"),
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            st: Mutex::new(LaneState {
                backlogged: false,
                spilling: 0,
                spill_gen: 0,
                health: DestinationHealth::new(broken_after),
                dest_key: None,
                config_changed: false,
                last_error: String::new(),
                hint: String::new(),
                last_delivery_at: None,
                refused_run: 0,
                backlog_depth: 0,
                expiring: 0,
                oldest_expires_at: String::new(),
                counts: Counts::default(),
                dirty: false,
                retired: false,
            }),
            dest: tokio::sync::Mutex::new(None),
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.st.lock().expect("lane state lock")
    }

    /// Takes a closed batch for delivery if the destination takes live traffic and the
    /// window has room; otherwise the caller spills it to the backlog.
    pub fn offer(&self, rt: &Runtime<S>, batch: Batch<Event>) -> Result<(), NotTaken> {
        let mut st = self.st();
        if st.retired {
            return Err(NotTaken::Retired(batch));
        }
        let mut queue = self.queue.lock().expect("lane queue lock");
        let inflight = rt.inflight_bytes.load(std::sync::atomic::Ordering::Relaxed);
        let accept = !st.backlogged
            && st.health.accepts_live()
            && queue.len() < rt.settings.delivery.window
            && inflight + batch.bytes <= rt.settings.delivery.max_inflight_bytes;
        if !accept {
            st.backlogged = true;
            st.spilling += 1;
            return Err(NotTaken::Backlog(batch));
        }
        rt.inflight_bytes
            .fetch_add(batch.bytes, std::sync::atomic::Ordering::Relaxed);
        queue.push_back(batch);
        drop(queue);
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    /// Retires the lane if nothing of its stream is left here: no batch queued, none being
    /// moved to the backlog, no backlog (`backlog_empty`: the last scan found none, and the
    /// lane is not draining one). Called with the runtime's lanes locked, so no batch can
    /// reach the lane after this; its worker finishes what it holds, then ends.
    pub fn retire_if_idle(&self, backlog_empty: bool) -> bool {
        let mut st = self.st();
        let queue_empty = self.queue.lock().expect("lane queue lock").is_empty();
        if !backlog_empty || st.backlogged || st.spilling > 0 || !queue_empty {
            return false;
        }
        st.retired = true;
        drop(st);
        self.wake.notify_one();
        true
    }

    /// Moves a batch the lane did not take to the backlog: published with PubAck, then
    /// acked. A publish that fails leaves the event to be redelivered (nak), never lost.
    pub async fn spill(&self, rt: &Runtime<S>, events: Vec<Event>) {
        let moved = futures_util::stream::iter(events)
            .map(|e| self.to_backlog(rt, e))
            .buffer_unordered(64)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await;
        rt.metrics.backlogged.inc_by(moved as u64);
        let mut st = self.st();
        st.spilling -= 1;
        st.spill_gen += 1;
        st.dirty = true;
        drop(st);
        self.wake.notify_one();
    }

    async fn to_backlog(&self, rt: &Runtime<S>, event: Event) -> bool {
        let msg_id = event.msg_id(&self.key);
        let (headers, body) = (&event.headers, &event.body);
        let publish = |msg_id: String| async move {
            publish_durable(
                &rt.js,
                self.backlog_subject.clone(),
                &msg_id,
                headers.clone(),
                body.clone(),
                rt.settings.publish_timeout,
            )
            .await
        };
        let mut published = publish(msg_id.clone()).await;
        // A duplicate is stored only if the copy it names is still in the backlog. If that
        // copy was drained already (the backlog is a work queue), this is another arrival of
        // the event within the de-duplication window, e.g. a DLQ replay whose message has no
        // id of its own (L5): kept under an id of its own, never taken as stored. At worst
        // the event is delivered twice.
        if let Ok(ack) = &published
            && ack.duplicate
            && !self.in_backlog(rt, ack.sequence, &msg_id).await
        {
            published = publish(format!(
                "{msg_id}.again.{}",
                auditstream_model::new_event_id()
            ))
            .await;
        }
        match published {
            Ok(_) => {
                event.ack().await;
                true
            }
            Err(e) => {
                tracing::warn!(stream = %self.stream_id, error = %e, "cannot move an event to the backlog; it will be redelivered");
                event.nak(Some(rt.settings.consumer.retry_delay)).await;
                false
            }
        }
    }

    /// Whether the type's backlog stream still holds message `sequence` under `msg_id`.
    /// Unknown (the stream cannot be read) counts as no: publishing once more is safe.
    async fn in_backlog(&self, rt: &Runtime<S>, sequence: u64, msg_id: &str) -> bool {
        let Ok(stream) = rt.js.get_stream(topology::backlog(S::TYPE)).await else {
            return false;
        };
        match stream.direct_get(sequence).await {
            Ok(m) => m
                .headers
                .get(headers::MSG_ID)
                .is_some_and(|v| v.as_str() == msg_id),
            Err(_) => false,
        }
    }

    /// Sends an event to the DLQ with the reason, then acks it.
    async fn dead_letter(&self, rt: &Runtime<S>, event: Event, reason: &str) -> bool {
        let mut h = event.headers.clone();
        h.insert(headers::ERROR, truncate(reason, 1024));
        h.insert(headers::STREAM_ID, self.stream_id.as_str());
        // A fresh id: the same event may be dead-lettered again after a replay.
        let msg_id = format!(
            "{}.dlq.{}",
            event.msg_id(&self.key),
            auditstream_model::new_event_id()
        );
        let published = publish_durable(
            &rt.js,
            self.dlq_subject.clone(),
            &msg_id,
            h,
            event.body.clone(),
            rt.settings.publish_timeout,
        )
        .await;
        match published {
            Ok(_) => {
                event.ack().await;
                true
            }
            Err(e) => {
                tracing::warn!(stream = %self.stream_id, error = %e, "cannot dead-letter an event; it will be redelivered");
                event.nak(Some(rt.settings.consumer.retry_delay)).await;
                false
            }
        }
    }

    /// The destination, built from config-service's answer and cached until the stream or
    /// its connection changes. While config-service is unreachable the last one is used.
    async fn destination(&self, rt: &Runtime<S>) -> Result<Arc<S::Destination>, DestError> {
        let view = rt.view.borrow().clone();
        let key = view
            .stream_by_key(&self.key)
            .map(|s| (s.version, s.connection_version));
        let mut cache = self.dest.lock().await;
        if let Some((cached, d)) = cache.as_ref()
            && (key.is_none() || key == Some(*cached))
            && (key.is_some() || !view.synced)
        {
            return Ok(d.clone());
        }
        let gone = || {
            DestError::Gone(format!(
                "stream {} was deleted before its events were delivered",
                self.stream_id
            ))
        };
        // Asked by key, never by id, which may name a new stream by now. (The view may not
        // know the stream yet: the router can be ahead of this sink.)
        let details = match rt.control.destination(&self.key).await {
            Ok(d) => d,
            Err(e) if e.code() == tonic::Code::NotFound => return Err(gone()),
            Err(e) => {
                if let Some((_, d)) = cache.as_ref() {
                    tracing::warn!(stream = %self.stream_id, error = %e.message(), "config-service unreachable; delivering with the last known destination");
                    return Ok(d.clone());
                }
                return Err(DestError::Answer(Answer::new(
                    Class::Transient { retry_after: None },
                    format!("cannot load the destination: {}", e.message()),
                    "config-service is unreachable from the sink; it retries by itself",
                )));
            }
        };
        let (Some(stream), Some(connection)) = (details.stream, details.connection) else {
            return Err(DestError::Answer(Answer::new(
                Class::Configuration,
                "config-service returned no destination for the stream",
                "give the stream a destination with a connection",
            )));
        };
        if stream.key() != self.key {
            return Err(gone());
        }
        let Some(destination) = stream.destination.as_ref() else {
            return Err(DestError::Answer(Answer::new(
                Class::Configuration,
                "the stream has no destination",
                "give the stream a destination",
            )));
        };
        let built = rt
            .sink
            .build(destination, &connection)
            .map_err(DestError::Answer)?;
        let key = (stream.version, stream.connection_version);
        let built = Arc::new(built);
        *cache = Some((key, built.clone()));
        self.st().dest_key = Some(key);
        Ok(built)
    }

    /// The worker: delivers queued batches, drains the backlog, probes while broken.
    pub async fn work(self: Arc<Self>, rt: Arc<Runtime<S>>) {
        let mut probe_attempt = 0u32;
        let mut next_probe = Instant::now();
        let mut next_expiry = Instant::now();
        loop {
            let next = self.queue.lock().expect("lane queue lock").pop_front();
            if let Some(batch) = next {
                let bytes = batch.bytes;
                self.deliver_batch(&rt, batch.items, Source::Live).await;
                rt.inflight_bytes
                    .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            if rt.shutdown.is_cancelled() || self.st().retired {
                return;
            }
            let (broken, backlogged, changed) = {
                let mut st = self.st();
                let changed = std::mem::take(&mut st.config_changed);
                (
                    matches!(st.health.state(), Health::Broken { .. }),
                    st.backlogged,
                    changed,
                )
            };
            let now = Instant::now();
            let mut wait_until = now + rt.settings.backlog.scan_interval;
            if broken {
                if changed {
                    (next_probe, probe_attempt) = (now, 0);
                }
                if now >= next_probe {
                    if self.probe(&rt).await {
                        probe_attempt = 0;
                        continue;
                    }
                    next_probe = Instant::now()
                        + rt.settings
                            .delivery
                            .probe
                            .delay(probe_attempt, None, &mut rand::rng());
                    probe_attempt += 1;
                }
                if backlogged && now >= next_expiry {
                    self.expire(&rt).await;
                    next_expiry = Instant::now() + rt.settings.backlog.scan_interval;
                }
                wait_until = next_probe.min(next_expiry.max(now + Duration::from_millis(100)));
            } else if backlogged {
                match self.drain_once(&rt).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(stream = %self.stream_id, error = %e, "cannot read the backlog; retrying");
                        wait_until = Instant::now() + rt.settings.consumer.retry_delay;
                    }
                }
            }
            tokio::select! {
                _ = rt.shutdown.cancelled() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(wait_until.into()) => {}
            }
        }
    }

    /// Delivers one batch: retries transient failures with backoff (keeping the messages
    /// alive with in-progress acks), dead-letters refused events, and moves the rest to the
    /// backlog when the destination breaks.
    pub(crate) async fn deliver_batch(&self, rt: &Runtime<S>, items: Vec<Event>, source: Source) {
        let mut items = items;
        let mut attempt = 0u32;
        while !items.is_empty() {
            let dest = match self.destination(rt).await {
                Ok(d) => d,
                Err(DestError::Gone(reason)) => {
                    for e in items {
                        if self.dead_letter(rt, e, &reason).await {
                            rt.metrics.dead_lettered.inc();
                            self.st().counts.dead_lettered += 1;
                        }
                    }
                    return;
                }
                Err(DestError::Answer(answer)) => {
                    match self.failed(rt, items, source, answer, attempt).await {
                        Some(rest) => {
                            items = rest;
                            attempt += 1;
                            continue;
                        }
                        None => return,
                    }
                }
            };
            // One span per event around the destination call, in the event's trace (only
            // while traces are exported: otherwise none is made).
            let spans: Vec<tracing::Span> = if auditstream_telemetry::traces::enabled() {
                items.iter().map(Event::span).collect()
            } else {
                Vec::new()
            };
            let started = Instant::now();
            let mut outcome = with_progress(rt, &items, deliver(&*dest, &items)).await;
            let requests = outcome.requests as u64;
            let failed = u64::from(outcome.stopped_by.is_some());
            self.refusing_everything(rt, &mut outcome);
            for (i, span) in spans.iter().enumerate() {
                let result = if outcome.delivered.contains(&i) {
                    "delivered"
                } else if outcome.rejected.iter().any(|(r, _)| *r == i) {
                    "rejected"
                } else {
                    "pending"
                };
                span.record("result", result);
            }
            drop(spans);
            rt.metrics
                .delivery_seconds
                .observe(started.elapsed().as_secs_f64());
            let mut slots: Vec<Option<Event>> = items.into_iter().map(Some).collect();
            let now = time::OffsetDateTime::now_utc();
            let delivered = outcome.delivered.len() as u64;
            for &i in &outcome.delivered {
                let e = slots[i].take().expect("each index once");
                if let Some(at) = received_at(&e) {
                    rt.metrics
                        .latency_seconds
                        .get_or_create(&crate::metrics::StreamLabel {
                            stream: self.stream_id.clone(),
                        })
                        .observe((now - at).as_seconds_f64().max(0.0));
                }
                e.ack().await;
            }
            for _ in 0..requests - failed {
                rt.metrics.request("delivered");
            }
            let mut dead = 0u64;
            for (i, reason) in &outcome.rejected {
                let e = slots[*i].take().expect("each index once");
                if self.dead_letter(rt, e, reason).await {
                    dead += 1;
                }
            }
            rt.metrics.delivered.inc_by(delivered);
            rt.metrics.dead_lettered.inc_by(dead);
            if delivered > 0 {
                rt.metrics.batch_events.observe(delivered as f64);
            }
            if source == Source::Backlog {
                rt.metrics.replayed.inc_by(delivered);
            }
            {
                let mut st = self.st();
                st.counts.delivered += delivered;
                st.counts.dead_lettered += dead;
                if source == Source::Backlog {
                    st.counts.replayed += delivered;
                }
                if delivered > 0 {
                    st.last_delivery_at = Some(now);
                }
                st.dirty = true;
                if outcome.stopped_by.is_none() {
                    st.health.record(&Class::Delivered, "", Instant::now());
                }
            }
            let Some(answer) = outcome.stopped_by else {
                return;
            };
            let pending: Vec<Event> = outcome
                .pending
                .iter()
                .map(|&i| slots[i].take().expect("each index once"))
                .collect();
            match self.failed(rt, pending, source, answer, attempt).await {
                Some(rest) => {
                    items = rest;
                    attempt += 1;
                }
                None => return,
            }
        }
    }

    /// Keeps count of events refused in a row; once `delivery.broken_after_refused` of them
    /// were, the destination refuses (nearly) everything, which is its configuration, not
    /// the events (M12): the refused events of this batch are not dead-lettered but stop it
    /// with a configuration answer, so they go to the backlog and the stream is broken
    /// (status, e-mail) until a probe or a configuration change.
    fn refusing_everything(&self, rt: &Runtime<S>, outcome: &mut crate::deliver::Outcome) {
        let refused = outcome.rejected.len() as u64;
        let mut st = self.st();
        let (run, broken) = refusal_run(
            st.refused_run,
            outcome.delivered.len() as u64,
            refused,
            rt.settings.delivery.broken_after_refused,
        );
        st.refused_run = run;
        drop(st);
        if !broken {
            return;
        }
        let last = outcome
            .rejected
            .last()
            .map(|(_, reason)| reason.clone())
            .unwrap_or_default();
        let mut pending: Vec<usize> = outcome
            .rejected
            .drain(..)
            .map(|(i, _)| i)
            .chain(outcome.pending.drain(..))
            .collect();
        // In batch order, so the backlog keeps the stream's order.
        pending.sort_unstable();
        outcome.pending = pending;
        outcome.stopped_by = Some(Answer::configuration(
            format!("the destination refused {run} events in a row; the last answer: {last}"),
            "nearly every event is refused, so the cause is the destination's settings or the \
             stream's (its template, the destination's schema, a policy), not the events: fix \
             it, and the events waiting in the backlog are delivered",
        ));
        // A fresh count once the destination takes events again.
        self.st().refused_run = 0;
    }

    /// Handles an answer that stopped a batch. Returns the events to try again (after the
    /// backoff, already waited), or `None` when they went to the backlog or back to JetStream.
    async fn failed(
        &self,
        rt: &Runtime<S>,
        pending: Vec<Event>,
        source: Source,
        answer: Answer,
        attempt: u32,
    ) -> Option<Vec<Event>> {
        rt.metrics.request(result_word(&answer.class));
        let (broken, transition) = {
            let mut st = self.st();
            let transition = st
                .health
                .record(&answer.class, &answer.detail, Instant::now());
            st.last_error = answer.detail.clone();
            st.hint = answer.hint.clone();
            st.counts.failed_requests += 1;
            st.dirty = true;
            let broken = matches!(st.health.state(), Health::Broken { .. });
            if broken {
                st.backlogged = true;
                if source == Source::Live {
                    st.spilling += 1;
                }
            }
            (broken, transition)
        };
        if let Some(t) = &transition {
            if let Transition::Broke { reason } = t {
                tracing::warn!(stream = %self.stream_id, reason, hint = %answer.hint, "destination broken; its events go to the backlog");
            }
            rt.report_now.notify_one();
        }
        if broken || rt.shutdown.is_cancelled() {
            match source {
                // Counted as spilling above, so the lane does not go live before it lands.
                Source::Live if broken => self.spill(rt, pending).await,
                // Back to the backlog consumer (or the live one at shutdown), redelivered
                // first when the lane reads again.
                _ => {
                    for e in &pending {
                        e.nak(None).await;
                    }
                }
            }
            return None;
        }
        let retry_after = match answer.class {
            Class::Transient { retry_after } => retry_after,
            _ => None,
        };
        let delay = rt
            .settings
            .delivery
            .retry
            .delay(attempt, retry_after, &mut rand::rng());
        tracing::debug!(stream = %self.stream_id, ?delay, attempt, detail = %answer.detail, "retrying");
        let wait = async {
            tokio::select! {
                _ = rt.shutdown.cancelled() => {}
                _ = tokio::time::sleep(delay) => {}
            }
        };
        with_progress(rt, &pending, wait).await;
        if rt.shutdown.is_cancelled() {
            for e in &pending {
                e.nak(None).await;
            }
            return None;
        }
        Some(pending)
    }

    /// Probes the broken destination (rebuilding it from the current configuration).
    /// On success the lane starts recovering: the backlog drains first.
    async fn probe(&self, rt: &Runtime<S>) -> bool {
        let answer = match self.destination(rt).await {
            Ok(d) => tokio::time::timeout(rt.settings.delivery.probe_timeout, d.probe())
                .await
                .unwrap_or_else(|_| {
                    Answer::new(
                        Class::Transient { retry_after: None },
                        "probe timed out",
                        "",
                    )
                }),
            Err(DestError::Gone(reason)) => Answer::new(Class::Configuration, reason, ""),
            Err(DestError::Answer(a)) => a,
        };
        rt.metrics
            .probes
            .get_or_create(&crate::metrics::ResultLabel {
                result: result_word(&answer.class),
            })
            .inc();
        let mut st = self.st();
        if answer.class == Class::Delivered {
            tracing::info!(stream = %self.stream_id, "destination answers again; draining its backlog");
            st.health.probe_succeeded();
            st.dirty = true;
            drop(st);
            rt.report_now.notify_one();
            true
        } else {
            if st.last_error != answer.detail {
                st.last_error = answer.detail;
                st.hint = answer.hint;
                st.dirty = true;
            }
            false
        }
    }

    async fn backlog_consumer(
        &self,
        rt: &Runtime<S>,
    ) -> Result<async_nats::jetstream::consumer::Consumer<pull::Config>, String> {
        let name = format!("backlog-{}-{}", S::TYPE.as_str(), self.key);
        let backlog = topology::backlog(S::TYPE);
        let stream = rt
            .js
            .get_stream(&backlog)
            .await
            .map_err(|e| format!("{backlog}: {e}"))?;
        stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some(format!("auditstream: backlog of stream {}", self.stream_id)),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: rt.settings.consumer.ack_wait,
                    filter_subject: self.backlog_subject.clone(),
                    inactive_threshold: rt.settings.backlog.consumer_inactive_threshold,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("backlog consumer {name}: {e}"))
    }

    /// Delivers the next backlog batch. `Ok(false)` when the backlog was empty (and the lane
    /// went live again if nothing was spilled meanwhile).
    async fn drain_once(&self, rt: &Runtime<S>) -> Result<bool, String> {
        let generation = self.st().spill_gen;
        let consumer = self.backlog_consumer(rt).await?;
        let limits = rt.limits(&self.key);
        let mut batch = consumer
            .fetch()
            .max_messages(limits.max_events)
            .max_bytes(limits.max_bytes.max(1))
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| format!("backlog fetch: {e}"))?;
        let mut events = Vec::new();
        while let Some(m) = batch.next().await {
            match m {
                Ok(m) => match Event::from_message(m) {
                    Ok(es) => events.extend(es),
                    Err(e) => {
                        tracing::error!(stream = %self.stream_id, error = %e, "unreadable backlog message; left for redelivery")
                    }
                },
                Err(e) => tracing::debug!(error = %e, "backlog fetch ended"),
            }
        }
        if events.is_empty() {
            // An empty fetch is no proof of an empty backlog: a message larger than the
            // batch's byte limit is never handed out under it, and a fetch can come back
            // empty while the consumer's leader moves. Only the consumer's own counts say
            // the backlog is drained.
            let info = consumer
                .get_info()
                .await
                .map_err(|e| format!("backlog consumer info: {e}"))?;
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                events = self.fetch_one(&consumer).await?;
                if events.is_empty() {
                    return Ok(true);
                }
            }
        }
        if !events.is_empty() {
            self.deliver_batch(rt, events, Source::Backlog).await;
            return Ok(true);
        }
        let transition = {
            let mut st = self.st();
            let queue_empty = self.queue.lock().expect("lane queue lock").is_empty();
            if st.spilling > 0 || st.spill_gen != generation || !queue_empty {
                return Ok(false);
            }
            st.backlogged = false;
            st.backlog_depth = 0;
            st.expiring = 0;
            st.oldest_expires_at.clear();
            st.dirty = true;
            st.health.backlog_drained()
        };
        if transition.is_some() {
            tracing::info!(stream = %self.stream_id, "backlog drained; delivering live again");
            rt.report_now.notify_one();
        }
        Ok(false)
    }

    /// The next backlog message alone, whatever its size (up to the server's max_payload).
    async fn fetch_one(
        &self,
        consumer: &async_nats::jetstream::consumer::Consumer<pull::Config>,
    ) -> Result<Vec<Event>, String> {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| format!("backlog fetch: {e}"))?;
        let mut events = Vec::new();
        while let Some(m) = batch.next().await {
            match m
                .map_err(|e| e.to_string())
                .and_then(|m| Event::from_message(m).map_err(|e| e.to_string()))
            {
                Ok(es) => events.extend(es),
                Err(e) => {
                    tracing::debug!(stream = %self.stream_id, error = %e, "backlog fetch of one ended")
                }
            }
        }
        Ok(events)
    }

    /// While broken: backlog events older than the retention go to the DLQ (counted and
    /// reported; replayable from there), oldest first.
    async fn expire(&self, rt: &Runtime<S>) {
        let Ok(consumer) = self.backlog_consumer(rt).await else {
            return;
        };
        let cutoff = time::OffsetDateTime::now_utc() - rt.settings.backlog.retention;
        loop {
            let Ok(mut batch) = consumer
                .fetch()
                .max_messages(500)
                .expires(Duration::from_millis(300))
                .messages()
                .await
            else {
                return;
            };
            let mut expired = 0u64;
            let mut younger = false;
            while let Some(Ok(m)) = batch.next().await {
                let Ok(events) = Event::from_message(m) else {
                    continue; // unreadable: redelivered after ack_wait, never dropped
                };
                for e in events {
                    if younger || e.stored_at().is_some_and(|t| t > cutoff) {
                        younger = true;
                        e.nak(None).await;
                        continue;
                    }
                    let reason = format!(
                        "expired: in the backlog longer than the retention ({}) while the destination was broken",
                        humantime_format(rt.settings.backlog.retention)
                    );
                    if self.dead_letter(rt, e, &reason).await {
                        expired += 1;
                    }
                }
            }
            if expired > 0 {
                tracing::warn!(stream = %self.stream_id, expired, "backlog events passed the retention; moved to the DLQ");
                rt.metrics.expired.inc_by(expired);
                let mut st = self.st();
                st.counts.expired += expired;
                st.dirty = true;
            }
            if younger || expired == 0 {
                return;
            }
        }
    }

    /// The status to report (taking the counters reported with it).
    pub fn take_status(&self) -> Option<(StreamStatus, Counts)> {
        let mut st = self.st();
        if !st.dirty {
            return None;
        }
        st.dirty = false;
        let counts = std::mem::take(&mut st.counts);
        let state = match st.health.state() {
            Health::Healthy => HealthState::Healthy,
            Health::Retrying { .. } => HealthState::Retrying,
            Health::Broken { .. } => HealthState::Broken,
            Health::Recovering => HealthState::Recovering,
        };
        let status = StreamStatus {
            stream_id: self.stream_id.clone(),
            stream_uid: self.key.clone(),
            state: state as i32,
            last_error: st.last_error.clone(),
            hint: st.hint.clone(),
            backlog_depth: st.backlog_depth,
            last_delivery_at: st.last_delivery_at.map(rfc3339).unwrap_or_default(),
            replayed_events: counts.replayed,
            delivered_events: counts.delivered,
            dead_lettered_events: counts.dead_lettered,
            expiring_events: st.expiring,
            oldest_expires_at: st.oldest_expires_at.clone(),
            expired_events: counts.expired,
            failed_requests: counts.failed_requests,
            ..Default::default()
        };
        Some((status, counts))
    }

    /// A report that did not reach config-service: its counters go back for the next one.
    pub fn restore(&self, counts: Counts) {
        let mut st = self.st();
        st.counts.add(counts);
        st.dirty = true;
    }

    pub fn is_broken(&self) -> bool {
        matches!(self.st().health.state(), Health::Broken { .. })
    }

    /// The state as `auditstream_sink_stream_state` shows it: 0 healthy, 1 retrying,
    /// 2 recovering, 3 broken (higher is worse, so `max` over streams is meaningful).
    pub fn state_code(&self) -> i64 {
        match self.st().health.state() {
            Health::Healthy => 0,
            Health::Retrying { .. } => 1,
            Health::Recovering => 2,
            Health::Broken { .. } => 3,
        }
    }
}

/// The run of refused events after a batch with `delivered` and `refused` events, and
/// whether it reached `threshold` (0: never). Only batches nearly all refused (nine in ten or
/// more) extend the run; a batch mostly delivered ends it (a poison event now and then is the
/// DLQ's business); a batch with neither (stopped before any answer) leaves it as it is.
fn refusal_run(run: u64, delivered: u64, refused: u64, threshold: u64) -> (u64, bool) {
    let run = if refused > 0 && refused * 10 >= (refused + delivered) * 9 {
        run + refused
    } else if delivered > 0 {
        0
    } else {
        run
    };
    (run, threshold > 0 && refused > 0 && run >= threshold)
}

/// Runs `work` while sending in-progress acks for `events` every third of the ack wait,
/// so JetStream does not hand them to another replica meanwhile.
async fn with_progress<S: Sink, T>(
    rt: &Runtime<S>,
    events: &[Event],
    work: impl std::future::Future<Output = T>,
) -> T {
    let every = (rt.settings.consumer.ack_wait / 3).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = tick.tick() => {
                for e in events {
                    e.progress().await;
                }
            }
        }
    }
}

fn received_at(e: &Event) -> Option<time::OffsetDateTime> {
    let v = e.headers.get(headers::RECEIVED_AT)?;
    time::OffsetDateTime::parse(v.as_str(), &time::format_description::well_known::Rfc3339).ok()
}

pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn humantime_format(d: Duration) -> String {
    let days = d.as_secs() / 86_400;
    if days > 0 && d.as_secs().is_multiple_of(86_400) {
        format!("{days}d")
    } else {
        format!("{}s", d.as_secs())
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_refusing_nearly_everything_is_broken() {
        // A whole batch refused event by event.
        assert_eq!(refusal_run(0, 0, 500, 10), (500, true));
        // Nearly all: 95 of 100.
        assert_eq!(refusal_run(0, 5, 95, 10), (95, true));
        // Single-event batches add up to the threshold.
        let mut run = 0;
        for n in 1..=10 {
            let (r, broken) = refusal_run(run, 0, 1, 10);
            assert_eq!((r, broken), (n, n == 10));
            run = r;
        }
        // A poison event in a batch otherwise delivered ends the run and breaks nothing.
        assert_eq!(refusal_run(9, 99, 1, 10), (0, false));
        assert_eq!(refusal_run(9, 40, 9, 10), (0, false));
        // A batch stopped before any answer (transient) keeps the run.
        assert_eq!(refusal_run(7, 0, 0, 10), (7, false));
        // 0 turns the rule off.
        assert_eq!(refusal_run(0, 0, 500, 0), (500, false));
    }
}
