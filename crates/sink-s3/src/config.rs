//! The S3 sink's settings (`sink.*` in its configuration file).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3SinkConfig {
    /// Longest wait for one S3 call (an upload, a HEAD, a list), retries excluded: sink-core
    /// retries with backoff, the SDK's own retries are off so there is one retry policy.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest wait for a connection (TCP and TLS handshake).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Uploads of one request running at once (`per_event` writes one object per event; an
    /// `ndjson` request spanning several partitions writes one object per partition).
    pub max_parallel_uploads: usize,
    /// Most events in one request (one `send`); sink-core's batching (`batching.*`) normally
    /// cuts batches well below this.
    pub max_object_events: usize,
    /// Largest request in bytes (uncompressed), below S3's 5 GiB single-PUT limit.
    pub max_object_bytes: usize,
    /// Accept `http://` endpoints. Off by default: credentials are signed, but audit events
    /// would cross the network unencrypted. Meant for tests and stores on a trusted network.
    pub allow_insecure_http: bool,
    /// Networks (CIDR), addresses or host names an endpoint's *name* may resolve to although
    /// they are loopback, private, link-local or metadata addresses (checked at connect
    /// time, as the HTTP sinks do; IP-literal endpoints are checked when saved).
    pub allowed_networks: Vec<String>,
}

impl Default for S3SinkConfig {
    fn default() -> Self {
        S3SinkConfig {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_parallel_uploads: 16,
            max_object_events: 100_000,
            max_object_bytes: 64 * 1024 * 1024,
            allow_insecure_http: false,
            allowed_networks: Vec::new(),
        }
    }
}
