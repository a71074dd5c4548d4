//! The Azure Blob sink's settings (`sink.*` in its configuration file).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureBlobSinkConfig {
    /// Longest wait for one storage call (an upload, a container check, a listing), Entra ID
    /// token included. A call that takes longer is a transient failure: sink-core retries it
    /// with backoff (the SDK's own retries are off, so there is one retry policy).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Uploads of one request running at once: `per_event` writes one blob per event, and an
    /// `ndjson` request spanning several partitions one blob per partition. Bounds the
    /// connections one stream opens to its storage account.
    pub max_parallel_uploads: usize,
    /// Most events in one request (one `send`); sink-core's batching (`batching.*`) normally
    /// cuts batches well below this. A bound on the blobs one request writes.
    pub max_object_events: usize,
    /// Largest request in bytes (uncompressed event bodies), a bound on the memory one upload
    /// holds. Far below a block blob's limit; batching normally cuts earlier.
    pub max_object_bytes: usize,
    /// Accept `http://` endpoints (Azurite). Off by default: audit events and SAS tokens would
    /// cross the network unencrypted. Meant for tests and emulators on a trusted network.
    pub allow_insecure_http: bool,
    /// Networks (CIDR), addresses or host names an endpoint's or authority's *name* may
    /// resolve to although they are loopback, private, link-local or metadata addresses
    /// (checked at connect time, as the HTTP sinks do; IP-literal endpoints are checked when
    /// saved).
    pub allowed_networks: Vec<String>,
}

impl Default for AzureBlobSinkConfig {
    fn default() -> Self {
        AzureBlobSinkConfig {
            request_timeout: Duration::from_secs(30),
            max_parallel_uploads: 16,
            max_object_events: 100_000,
            max_object_bytes: 64 * 1024 * 1024,
            allow_insecure_http: false,
            allowed_networks: Vec::new(),
        }
    }
}
