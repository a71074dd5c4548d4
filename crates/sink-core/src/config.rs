//! Configuration of a sink service (defaults < file < `AUDITSTREAM_*` environment): the
//! runtime's sections are the same for every sink type; `sink` holds the type's own settings.

use std::{net::SocketAddr, time::Duration};

use auditstream_bus::NatsConfig;
use auditstream_telemetry::{Secret, logging::LogConfig, service::ServiceConfig};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    batch::{BatchLimits, GlobalLimits},
    retry::Backoff,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    bound = "S: Serialize + DeserializeOwned + Default"
)]
pub struct SinkConfig<S> {
    /// `/healthz`, `/readyz`, `/metrics`.
    pub ops_addr: SocketAddr,
    pub nats: NatsConfig,
    pub config_service: ConfigServiceSource,
    pub consumer: ConsumerConfig,
    pub batching: BatchingConfig,
    pub delivery: DeliveryConfig,
    pub backlog: BacklogConfig,
    /// How often changed destination status is reported to config-service (transitions are
    /// reported at once).
    #[serde(with = "humantime_serde")]
    pub status_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub log: LogConfig,
    /// The destination type's own settings.
    pub sink: S,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigServiceSource {
    pub url: String,
    /// A token of the config service's `service` role.
    pub token: Secret,
    /// For an `https://` URL.
    pub tls: auditstream_proto::tls::ClientTls,
    /// Longest wait for one config-service call (GetDestination, ReportStatus).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Durable consumer on `audit.deliver.<type>.>` shared by every replica of the type;
    /// empty = `sink-<type>`.
    pub durable_name: String,
    /// Messages per pull.
    pub pull_batch: usize,
    /// Bytes per pull: what bounds a pull when its messages are packs of many events.
    pub pull_bytes: usize,
    /// Unacked messages are redelivered after this long (a crashed replica's work); long
    /// deliveries send in-progress acks every third of it.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Cap on unacked messages across the replicas of the type (open batches included).
    pub max_ack_pending: i64,
    /// Redelivery delay for a message that could not be moved on (backlog/DLQ publish failed).
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Events per batch when the stream does not say (its `batching.max_events` is 0).
    pub max_events: usize,
    /// Serialized bytes per batch when the stream does not say.
    pub max_bytes: usize,
    /// Oldest event in an open batch when the stream does not say.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Open batches across all streams of this replica; beyond it the oldest is flushed.
    pub max_open_batches: usize,
    /// Bytes in open batches across all streams of this replica; beyond it the oldest is
    /// flushed.
    pub max_buffered_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Retry schedule of a batch after transient failures (full jitter, `Retry-After`
    /// honoured up to `retry.max`).
    pub retry: Backoff,
    /// Transient failures for this long mark the destination broken (its traffic then goes
    /// to the backlog instead of waiting).
    #[serde(with = "humantime_serde")]
    pub broken_after: Duration,
    /// Refused events in a row (in batches of which nearly all, nine in ten or more, were
    /// refused, with no batch mostly delivered in between) that mark the destination broken
    /// instead of dead-lettering them: a destination that refuses (nearly) everything is
    /// misconfigured (a schema, a setting, a policy), not fed bad events, and its events wait
    /// in the backlog for the fix rather than all landing in the DLQ while the stream looks
    /// healthy. 0 = never (every refused event goes to the DLQ).
    pub broken_after_refused: u64,
    /// A stream's in-flight window: closed batches waiting for its destination. When full
    /// the destination is slower than its share and new batches go to the backlog.
    pub window: usize,
    /// Bytes in closed, undelivered batches across all streams of this replica; beyond it
    /// new batches go to the backlog.
    pub max_inflight_bytes: usize,
    /// Bytes of batches being moved to the backlog at once across this replica; beyond it
    /// the sink stops pulling until moves finish. This is what bounds memory while a
    /// destination is broken and everything for it goes to the backlog.
    pub max_spill_bytes: usize,
    /// Probe schedule of a broken destination (a config change of the stream or its
    /// connection probes at once).
    pub probe: Backoff,
    /// Longest wait for one probe.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BacklogConfig {
    /// Backlog events older than this are moved to the DLQ (counted, reported, replayable).
    /// Keep `nats.topology.backlog.max_age` longer.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Events this close to the retention are reported as expiring (status, metric, e-mail).
    #[serde(with = "humantime_serde")]
    pub warn_before: Duration,
    /// How often the type's backlog stream (`AUDIT_BACKLOG_<TYPE>`) is scanned for streams with a backlog (another replica's, or
    /// one left by a restart) and expiry is checked.
    #[serde(with = "humantime_serde")]
    pub scan_interval: Duration,
    /// Backlog consumers unused for this long are removed by JetStream.
    #[serde(with = "humantime_serde")]
    pub consumer_inactive_threshold: Duration,
}

impl<S: Default> Default for SinkConfig<S> {
    fn default() -> Self {
        SinkConfig {
            ops_addr: ([0, 0, 0, 0], 9093).into(),
            nats: NatsConfig::default(),
            config_service: ConfigServiceSource::default(),
            consumer: ConsumerConfig::default(),
            batching: BatchingConfig::default(),
            delivery: DeliveryConfig::default(),
            backlog: BacklogConfig::default(),
            status_interval: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            log: LogConfig::default(),
            sink: S::default(),
        }
    }
}

impl<S: Serialize + DeserializeOwned + Default> ServiceConfig for SinkConfig<S> {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

impl Default for ConfigServiceSource {
    fn default() -> Self {
        ConfigServiceSource {
            url: "http://127.0.0.1:50052".into(),
            token: Secret::new(""),
            tls: Default::default(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            durable_name: String::new(),
            pull_batch: 500,
            pull_bytes: 4 * 1024 * 1024,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 50_000,
            retry_delay: Duration::from_secs(2),
        }
    }
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            max_events: 500,
            max_bytes: 1024 * 1024,
            max_age: Duration::from_secs(1),
            max_open_batches: 1_000,
            max_buffered_bytes: 64 * 1024 * 1024,
        }
    }
}

impl BatchingConfig {
    pub fn global(&self) -> GlobalLimits {
        GlobalLimits {
            max_open_batches: self.max_open_batches,
            max_buffered_bytes: self.max_buffered_bytes,
        }
    }

    pub fn defaults(&self) -> BatchLimits {
        BatchLimits {
            max_events: self.max_events,
            max_bytes: self.max_bytes,
            max_age: self.max_age,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retry: Backoff::default(),
            broken_after: Duration::from_secs(300),
            broken_after_refused: 10,
            window: 4,
            max_inflight_bytes: 128 * 1024 * 1024,
            max_spill_bytes: 8 * 1024 * 1024,
            probe: Backoff {
                initial: Duration::from_secs(5),
                max: Duration::from_secs(300),
            },
            probe_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for BacklogConfig {
    fn default() -> Self {
        let day = Duration::from_secs(24 * 3600);
        BacklogConfig {
            retention: 7 * day,
            warn_before: day,
            scan_interval: Duration::from_secs(60),
            consumer_inactive_threshold: day,
        }
    }
}
