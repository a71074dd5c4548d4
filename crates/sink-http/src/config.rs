//! The HTTP sink's settings (`sink.*` in its configuration file).

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSinkConfig {
    /// Longest wait for one request: connecting, sending the body and reading the answer. A
    /// request that takes longer is retried later (a transient failure).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest wait for a connection to be established (TCP and TLS handshake), per address
    /// tried.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Accept `http://` destination URLs. Off by default: audit events would cross the network
    /// unencrypted. Meant for tests and receivers on a trusted network.
    pub allow_insecure_http: bool,
    /// Networks (`10.1.0.0/16`, `fd00::/8`), single addresses (`192.168.1.10`, `::1`) or exact
    /// host names (`receiver.internal`) that destinations may reach although they are
    /// loopback, private, link-local etc. Every address a destination's host resolves to is
    /// checked when connecting; anything else non-public is refused. Cloud metadata addresses
    /// are only let through by a network entry that contains them, never by a host name.
    pub allowed_networks: Vec<String>,
    /// Largest request body in bytes (before compression) for the generic preset; the Sumo
    /// Logic, Datadog and Splunk presets use their service's limit when it is lower.
    pub max_request_bytes: usize,
    /// Most events in one request, for every preset (Datadog: at most 1000 whatever this says).
    pub max_request_events: usize,
    /// A PEM file of extra CA certificates trusted besides the system's, for destinations
    /// behind a private PKI. Certificates are always verified; there is no switch to turn
    /// verification off.
    pub extra_ca_file: Option<PathBuf>,
    /// The `User-Agent` of every request.
    pub user_agent: String,
}

impl Default for HttpSinkConfig {
    fn default() -> Self {
        HttpSinkConfig {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            allow_insecure_http: false,
            allowed_networks: Vec::new(),
            max_request_bytes: 5 * 1024 * 1024,
            max_request_events: 1000,
            extra_ca_file: None,
            user_agent: concat!("auditstream-sink-http/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}
