//! Gateway metrics (all prefixed `auditstream_gateway_`; the README lists them).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    pub transport: &'static str,
    pub reason: &'static str,
}

pub struct Metrics {
    /// Events durable in AUDIT_INGEST (duplicates included).
    pub accepted: Family<TransportLabel, Counter>,
    /// Of those, events JetStream already had (same id within the dedup window).
    pub duplicates: Family<TransportLabel, Counter>,
    /// Events refused: per-item validation codes, or `unavailable` / `stream_full` when
    /// JetStream could not store them.
    pub rejected: Family<ReasonLabel, Counter>,
    /// Whole requests refused before their events were read (auth, size, gzip, framing).
    pub requests_rejected: Family<ReasonLabel, Counter>,
    /// Time from sending one event to JetStream until its PubAck.
    pub publish_seconds: Histogram,
    /// Producer `traceparent` headers dropped because they were not W3C-shaped.
    pub traceparent_dropped: Counter,
    /// HTTP request bodies held now (raw and decompressed), against
    /// `server.max_inflight_body_bytes`.
    pub inflight_body_bytes: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            accepted: Family::default(),
            duplicates: Family::default(),
            rejected: Family::default(),
            requests_rejected: Family::default(),
            // 0.5 ms .. ~4 s
            publish_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 14),
            ),
            traceparent_dropped: Counter::default(),
            inflight_body_bytes: Gauge::default(),
        };
        let r = registry.sub_registry_with_prefix("auditstream_gateway");
        r.register(
            "events_accepted",
            "Events stored in AUDIT_INGEST",
            m.accepted.clone(),
        );
        r.register(
            "events_duplicate",
            "Accepted events that JetStream had already stored",
            m.duplicates.clone(),
        );
        r.register(
            "events_rejected",
            "Events refused, by reason",
            m.rejected.clone(),
        );
        r.register(
            "requests_rejected",
            "Whole requests refused, by reason",
            m.requests_rejected.clone(),
        );
        r.register_with_unit(
            "publish_duration",
            "Time from publish to JetStream acknowledgement, per event",
            prometheus_client::registry::Unit::Seconds,
            m.publish_seconds.clone(),
        );
        r.register(
            "traceparent_dropped",
            "Producer traceparent headers dropped as not W3C-shaped",
            m.traceparent_dropped.clone(),
        );
        r.register_with_unit(
            "inflight_body",
            "HTTP request body bytes held now, raw and decompressed",
            prometheus_client::registry::Unit::Bytes,
            m.inflight_body_bytes.clone(),
        );
        m
    }

    pub fn request_rejected(&self, transport: &'static str, reason: &'static str) {
        self.requests_rejected
            .get_or_create(&ReasonLabel { transport, reason })
            .inc();
    }
}
