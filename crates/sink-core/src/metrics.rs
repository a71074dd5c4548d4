//! Sink metrics (prefix `auditstream_sink_`, label `sink_type`; the README lists them).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StreamLabel {
    pub stream: String,
}

pub struct Metrics {
    /// Events the destination confirmed.
    pub delivered: Counter,
    /// Events refused for good, sent to the DLQ.
    pub dead_lettered: Counter,
    /// Events moved to the backlog (broken or slow destination).
    pub backlogged: Counter,
    /// Backlog events delivered.
    pub replayed: Counter,
    /// Backlog events older than the retention, moved to the DLQ.
    pub expired: Counter,
    /// Requests to destinations, by result (delivered, transient, configuration, too_large,
    /// rejected).
    pub requests: Family<ResultLabel, Counter>,
    /// Probes of broken destinations, by result.
    pub probes: Family<ResultLabel, Counter>,
    /// Time to deliver one batch (all its requests), seconds.
    pub delivery_seconds: Histogram,
    /// Events per delivered batch.
    pub batch_events: Histogram,
    /// From the event's arrival at the gateway to the destination's confirmation, per
    /// stream, seconds.
    pub latency_seconds: Family<StreamLabel, Histogram, fn() -> Histogram>,
    pub open_batches: Gauge,
    pub buffered_bytes: Gauge,
    /// The most open batches / buffered bytes seen since start (the bounds' proof).
    pub open_batches_peak: Gauge,
    pub buffered_peak_bytes: Gauge,
    pub inflight_bytes: Gauge,
    /// Live messages held unsettled by this replica (kept alive with in-progress acks).
    pub held_messages: Gauge,
    /// Redeliveries of messages this replica still held, dropped (the held copy goes on).
    pub redeliveries_dropped: Counter,
    /// Lanes (one per stream with traffic) this replica holds now.
    pub lanes: Gauge,
    /// Destinations of this replica's streams that are broken now.
    pub broken_destinations: Gauge,
    /// Events in the backlog per stream (from the last scan).
    pub backlog_events: Family<StreamLabel, Gauge>,
    /// Each stream's destination state: 0 healthy, 1 retrying, 2 recovering, 3 broken.
    pub stream_state: Family<StreamLabel, Gauge>,
    /// Backlog events within `backlog.warn_before` of expiry, per stream.
    pub expiring_events: Family<StreamLabel, Gauge>,
}

impl Metrics {
    pub fn new(registry: &mut Registry, sink_type: &'static str) -> Metrics {
        let m = Metrics {
            delivered: Counter::default(),
            dead_lettered: Counter::default(),
            backlogged: Counter::default(),
            replayed: Counter::default(),
            expired: Counter::default(),
            requests: Family::default(),
            probes: Family::default(),
            open_batches: Gauge::default(),
            buffered_bytes: Gauge::default(),
            open_batches_peak: Gauge::default(),
            buffered_peak_bytes: Gauge::default(),
            inflight_bytes: Gauge::default(),
            held_messages: Gauge::default(),
            redeliveries_dropped: Counter::default(),
            lanes: Gauge::default(),
            broken_destinations: Gauge::default(),
            backlog_events: Family::default(),
            stream_state: Family::default(),
            expiring_events: Family::default(),
            delivery_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.5, 14),
            ),
            batch_events: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 15),
            ),
            latency_seconds: Family::new_with_constructor(latency_histogram),
        };
        let r = registry
            .sub_registry_with_prefix("auditstream_sink")
            .sub_registry_with_label(("sink_type".into(), sink_type.into()));
        r.register(
            "events_delivered",
            "Events the destination confirmed",
            m.delivered.clone(),
        );
        r.register(
            "events_dead_lettered",
            "Events refused for good, sent to the DLQ",
            m.dead_lettered.clone(),
        );
        r.register(
            "events_backlogged",
            "Events moved to the backlog",
            m.backlogged.clone(),
        );
        r.register(
            "events_replayed",
            "Backlog events delivered",
            m.replayed.clone(),
        );
        r.register(
            "events_expired",
            "Backlog events past the retention, moved to the DLQ",
            m.expired.clone(),
        );
        r.register(
            "requests",
            "Requests to destinations by result",
            m.requests.clone(),
        );
        r.register(
            "probes",
            "Probes of broken destinations by result",
            m.probes.clone(),
        );
        r.register_with_unit(
            "delivery",
            "Time to deliver one batch",
            Unit::Seconds,
            m.delivery_seconds.clone(),
        );
        r.register(
            "batch_events",
            "Events per delivered batch",
            m.batch_events.clone(),
        );
        r.register_with_unit(
            "latency",
            "Gateway arrival to destination confirmation, per stream",
            Unit::Seconds,
            m.latency_seconds.clone(),
        );
        r.register("open_batches", "Open batches", m.open_batches.clone());
        r.register_with_unit(
            "buffered",
            "Bytes in open batches",
            Unit::Bytes,
            m.buffered_bytes.clone(),
        );
        r.register(
            "open_batches_peak",
            "Most open batches since start",
            m.open_batches_peak.clone(),
        );
        r.register_with_unit(
            "buffered_peak",
            "Most bytes in open batches since start",
            Unit::Bytes,
            m.buffered_peak_bytes.clone(),
        );
        r.register_with_unit(
            "inflight",
            "Bytes in closed, undelivered batches",
            Unit::Bytes,
            m.inflight_bytes.clone(),
        );
        r.register(
            "held_messages",
            "Live messages held unsettled by this replica, kept alive with in-progress acks",
            m.held_messages.clone(),
        );
        r.register(
            "redeliveries_dropped",
            "Redeliveries of messages this replica still held, dropped",
            m.redeliveries_dropped.clone(),
        );
        r.register(
            "lanes",
            "Stream lanes held by this replica",
            m.lanes.clone(),
        );
        r.register(
            "broken_destinations",
            "Destinations broken now",
            m.broken_destinations.clone(),
        );
        r.register(
            "backlog_events",
            "Events in the backlog per stream",
            m.backlog_events.clone(),
        );
        r.register(
            "stream_state",
            "Each stream's destination state: 0 healthy, 1 retrying, 2 recovering, 3 broken",
            m.stream_state.clone(),
        );
        r.register(
            "expiring_events",
            "Backlog events about to pass the retention, per stream",
            m.expiring_events.clone(),
        );
        m
    }

    /// Removes a stream's series (its lane was removed: the stream is deleted).
    pub fn forget_stream(&self, stream_id: &str) {
        let label = StreamLabel {
            stream: stream_id.to_owned(),
        };
        self.latency_seconds.remove(&label);
        self.backlog_events.remove(&label);
        self.stream_state.remove(&label);
        self.expiring_events.remove(&label);
    }

    pub fn request(&self, result: &'static str) {
        self.requests.get_or_create(&ResultLabel { result }).inc();
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.005, 2.5, 14,
    ))
}
