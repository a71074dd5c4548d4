//! How a service reaches NATS and the JetStream topology it expects; the `nats` section of
//! every service's configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::TopologyConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    pub url: String,
    /// Create or update the JetStream streams at start. Turn off where an operator (or another
    /// service) owns the streams and this service's NATS user may not change them.
    pub ensure_topology: bool,
    pub topology: TopologyConfig,
    /// Longest wait for JetStream's acknowledgement of one publish (and for JetStream API
    /// calls) before the work counts as not done.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            ensure_topology: true,
            topology: TopologyConfig::default(),
            publish_timeout: Duration::from_secs(5),
        }
    }
}
