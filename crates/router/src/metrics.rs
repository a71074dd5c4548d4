//! Router metrics (prefix `auditstream_router_`; the README lists them).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink_type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

pub struct Metrics {
    /// Ingested events settled and acked (routed, not wanted or unroutable; a pack counts
    /// each of its events).
    pub processed: Counter,
    /// Deliveries (one event for one stream) stored, per destination type.
    pub routed: Family<SinkLabel, Counter>,
    /// NATS messages published to AUDIT_DELIVER (a pack carries several deliveries).
    pub deliver_messages: Counter,
    /// Their bytes: payload, headers and subject (what JetStream stores per message, less
    /// its own framing).
    pub deliver_bytes: Counter,
    /// Ingest messages stored in AUDIT_HISTORY (a pack counts once).
    pub history_messages: Counter,
    /// Events no stream selected (none applies, or the selection filtered them out).
    pub filtered: Counter,
    pub unroutable: Family<ReasonLabel, Counter>,
    /// Events of unknown workspaces stored in AUDIT_PARKED.
    pub parked: Counter,
    /// Parked events sent back to AUDIT_INGEST once their workspace appeared.
    pub unparked: Counter,
    /// Events waiting in AUDIT_PARKED at the last check.
    pub parked_messages: Gauge,
    /// Messages moved to the router's dead letters, per reason.
    pub dead_lettered: Family<ReasonLabel, Counter>,
    /// Routing tables refused because they lost most of the tree.
    pub config_refused: Counter,
    /// Ingest messages left for redelivery because a delivery publish failed.
    pub retried: Counter,
    /// The config revision routing runs on.
    pub config_revision: Gauge,
    /// Snapshots loaded (1 at start, +1 per resync after a gap or reconnect).
    pub config_snapshots: Gauge,
    /// Place + resolve + filter + enrich + render, per event.
    pub resolve_seconds: Histogram,
    /// Publishing a group's deliveries until their PubAcks.
    pub publish_seconds: Histogram,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let buckets =
            || prometheus_client::metrics::histogram::exponential_buckets(0.00001, 3.0, 14);
        let m = Metrics {
            processed: Counter::default(),
            routed: Family::default(),
            deliver_messages: Counter::default(),
            deliver_bytes: Counter::default(),
            history_messages: Counter::default(),
            filtered: Counter::default(),
            unroutable: Family::default(),
            parked: Counter::default(),
            unparked: Counter::default(),
            parked_messages: Gauge::default(),
            dead_lettered: Family::default(),
            config_refused: Counter::default(),
            retried: Counter::default(),
            config_revision: Gauge::default(),
            config_snapshots: Gauge::default(),
            resolve_seconds: Histogram::new(buckets()),
            publish_seconds: Histogram::new(buckets()),
        };
        let r = registry.sub_registry_with_prefix("auditstream_router");
        r.register(
            "events_processed",
            "Ingest messages acked",
            m.processed.clone(),
        );
        r.register(
            "deliveries",
            "Deliveries (one event for one stream) stored, per destination type",
            m.routed.clone(),
        );
        r.register(
            "deliver_messages",
            "NATS messages published to AUDIT_DELIVER (a pack holds several deliveries)",
            m.deliver_messages.clone(),
        );
        r.register(
            "deliver_bytes",
            "Bytes of the messages published to AUDIT_DELIVER: payload, headers and subject",
            m.deliver_bytes.clone(),
        );
        r.register(
            "history_messages",
            "Ingest messages stored in AUDIT_HISTORY before their ack (a pack counts once)",
            m.history_messages.clone(),
        );
        r.register(
            "events_parked",
            "Events of unknown workspaces stored in AUDIT_PARKED",
            m.parked.clone(),
        );
        r.register(
            "events_unparked",
            "Parked events sent back to AUDIT_INGEST once their workspace appeared",
            m.unparked.clone(),
        );
        r.register(
            "parked_messages",
            "Events waiting in AUDIT_PARKED at the last check",
            m.parked_messages.clone(),
        );
        r.register(
            "dead_lettered",
            "Messages moved to the router's dead letters (audit.dlq.router.<org>), per reason",
            m.dead_lettered.clone(),
        );
        r.register(
            "config_refused",
            "Routing tables refused because they lost most of the tree",
            m.config_refused.clone(),
        );
        r.register(
            "events_filtered",
            "Events no stream selected",
            m.filtered.clone(),
        );
        r.register(
            "events_unroutable",
            "Events that could not be placed, by reason",
            m.unroutable.clone(),
        );
        r.register(
            "events_retried",
            "Ingest messages left for redelivery after a failed publish",
            m.retried.clone(),
        );
        r.register(
            "config_revision",
            "Config revision routing runs on",
            m.config_revision.clone(),
        );
        r.register(
            "config_snapshots",
            "Config snapshots loaded",
            m.config_snapshots.clone(),
        );
        r.register_with_unit(
            "resolve_duration",
            "Per-event routing work",
            Unit::Seconds,
            m.resolve_seconds.clone(),
        );
        r.register_with_unit(
            "publish_duration",
            "Publishing an event's deliveries",
            Unit::Seconds,
            m.publish_seconds.clone(),
        );
        // Every known reason is exported from the start (at 0), so an alert on a rate sees
        // the first one.
        for reason in ["org_mismatch", "malformed"] {
            let _ = m.unroutable.get_or_create(&ReasonLabel { reason });
        }
        for reason in crate::dead_letter::Reason::ALL {
            let _ = m.dead_lettered.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        m
    }
}
