//! The Azure Monitor sink's settings (`sink.*` in its configuration file).

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// The Logs Ingestion API refuses a request whose body is over 1 MB.
pub const SERVICE_MAX_REQUEST_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureMonitorSinkConfig {
    /// Longest wait for one request (token or ingestion): connecting, sending the body and
    /// reading the answer. A request that takes longer is retried later.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest wait for a connection (TCP and TLS handshake), per address tried.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Accept `http://` ingestion endpoints and authority hosts. Off by default: tokens, secrets
    /// and audit events would cross the network unencrypted. Meant for tests.
    pub allow_insecure_http: bool,
    /// Networks, addresses or exact host names that endpoints and authority hosts may reach
    /// although they are not public (a private-link DCE, say). Everything else non-public is
    /// refused when connecting, as for HTTP destinations.
    pub allowed_networks: Vec<String>,
    /// A PEM file of extra CA certificates trusted besides the system's. Certificates are
    /// always verified.
    pub extra_ca_file: Option<PathBuf>,
    /// Largest request body in bytes, before compression. The service's limit is 1 MB
    /// (1 048 576 bytes); the default keeps a margin below it, and more is refused.
    pub max_request_bytes: usize,
    /// Most events in one request.
    pub max_request_events: usize,
    /// A token is renewed in the background this long before it expires (at most half its
    /// lifetime), so deliveries never wait for Entra ID while a token is valid.
    #[serde(with = "humantime_serde")]
    pub token_refresh_before: Duration,
    /// The `User-Agent` of every request.
    pub user_agent: String,
}

impl Default for AzureMonitorSinkConfig {
    fn default() -> Self {
        AzureMonitorSinkConfig {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            allow_insecure_http: false,
            allowed_networks: Vec::new(),
            extra_ca_file: None,
            max_request_bytes: 1_000_000,
            max_request_events: 10_000,
            token_refresh_before: Duration::from_secs(300),
            user_agent: concat!("auditstream-sink-azure-monitor/", env!("CARGO_PKG_VERSION"))
                .to_owned(),
        }
    }
}
