//! Router configuration (defaults < file < `AUDITSTREAM_*` environment).

use std::{net::SocketAddr, time::Duration};

use auditstream_bus::{NatsConfig, pack::PackConfig};
use auditstream_telemetry::{Secret, logging::LogConfig, service::ServiceConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// `/healthz`, `/readyz`, `/metrics`.
    pub ops_addr: SocketAddr,
    pub nats: NatsConfig,
    pub config_service: ConfigServiceSource,
    pub consumer: ConsumerConfig,
    pub pack: PackConfig,
    pub park: ParkConfig,
    /// Guards against a configuration that suddenly loses most of the tree (a config
    /// service pointed at an empty or wrong database).
    pub routing: RoutingGuard,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigServiceSource {
    pub url: String,
    /// A token of the config service's `service` role.
    pub token: Secret,
    /// For an `https://` URL.
    pub tls: auditstream_proto::tls::ClientTls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Durable consumer on AUDIT_INGEST shared by every replica.
    pub durable_name: String,
    /// Messages per pull.
    pub batch: usize,
    /// Bytes per pull: what bounds a pull when its messages are packs of many events.
    pub batch_bytes: usize,
    /// Groups in flight per replica (each waits for its deliveries' PubAcks).
    pub concurrency: usize,
    /// At most this many ready messages are routed together as one group (their deliveries
    /// to one stream are packed).
    pub group: usize,
    /// Unacked messages are redelivered after this long (a crashed replica's work).
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Cap on unacked messages across replicas.
    pub max_ack_pending: i64,
    /// Redelivery delay after a failed publish.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
    /// After this many deliveries, an ingest message this build cannot read (an unknown
    /// pack version, which an upgraded replica might) goes to the router's dead letters
    /// instead of holding an ack slot forever.
    pub max_deliver: u64,
}

/// Events of workspaces the directory does not know yet (a workspace's first events race
/// its registration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParkConfig {
    /// How long a parked event waits for its workspace before it goes to the router's dead
    /// letters (reason `unknown_workspace`), counted.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How often AUDIT_PARKED is checked for events whose workspace appeared, and for
    /// events past `max_age`.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingGuard {
    /// A new configuration that keeps fewer than this share of the previous one's nodes is
    /// refused (the router keeps routing on the last one and says so); 0 turns the guard
    /// off. Only applies once the previous tree had `min_nodes` nodes.
    pub min_kept_share: f64,
    pub min_nodes: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            ops_addr: ([0, 0, 0, 0], 9092).into(),
            nats: NatsConfig::default(),
            config_service: ConfigServiceSource::default(),
            consumer: ConsumerConfig::default(),
            pack: PackConfig::default(),
            park: ParkConfig::default(),
            routing: RoutingGuard::default(),
            shutdown_grace: Duration::from_secs(10),
            log: LogConfig::default(),
        }
    }
}

impl Default for ConfigServiceSource {
    fn default() -> Self {
        ConfigServiceSource {
            url: "http://127.0.0.1:50052".into(),
            token: Secret::new(""),
            tls: Default::default(),
        }
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            durable_name: "router".into(),
            batch: 500,
            batch_bytes: 4 * 1024 * 1024,
            concurrency: 4,
            group: 256,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 20_000,
            retry_delay: Duration::from_secs(2),
            max_deliver: 20,
        }
    }
}

impl Default for ParkConfig {
    fn default() -> Self {
        ParkConfig {
            max_age: Duration::from_secs(3600),
            check_interval: Duration::from_secs(5),
        }
    }
}

impl Default for RoutingGuard {
    fn default() -> Self {
        RoutingGuard {
            min_kept_share: 0.5,
            min_nodes: 100,
        }
    }
}

impl ServiceConfig for RouterConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_lists_every_setting() {
        auditstream_telemetry::config::assert_documented::<RouterConfig>(include_str!(
            "../../../README.md"
        ));
    }
}
