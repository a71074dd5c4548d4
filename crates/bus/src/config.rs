//! How a service reaches NATS and the JetStream topology it expects; the `nats` section of
//! every service's configuration.

use std::{path::PathBuf, time::Duration};

use auditstream_telemetry::Secret;
use serde::{Deserialize, Serialize};

use crate::TopologyConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    pub url: String,
    /// Read by the config service only, the topology's one owner: it creates or updates the
    /// JetStream streams at start and after every reconnect. Turn off where an operator owns
    /// the streams (`auditctl topology apply`, NACK); the config service then only verifies
    /// them, as every other service always does. Other services accept the setting, so one
    /// shared `nats` section loads everywhere, and ignore it.
    pub ensure_topology: bool,
    /// What this service needs of the streams. The owner applies it; the others refuse
    /// streams weaker than it (fewer replicas, shorter `max_age`, smaller limits).
    pub topology: TopologyConfig,
    /// Longest wait for JetStream's acknowledgement of one publish (and for JetStream API
    /// calls) before the work counts as not done.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// User name and password, when the server's `authorization` asks for them.
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// A token, when the server's `authorization` asks for one.
    pub token: Option<Secret>,
    /// A `.creds` file (JWT + NKey seed) for servers run with decentralized auth (NGS,
    /// operator mode).
    pub creds_file: Option<PathBuf>,
    pub tls: NatsTls,
}

/// TLS towards NATS. A `tls://` URL, or a server that requires TLS, turns it on even without
/// these settings (system roots are then trusted).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsTls {
    /// Refuse to talk to a server that does not offer TLS.
    pub required: bool,
    /// PEM file of the CA(s) that signed the server's certificate, added to the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients (`verify: true`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            ensure_topology: true,
            topology: TopologyConfig::default(),
            publish_timeout: Duration::from_secs(5),
            user: None,
            password: None,
            token: None,
            creds_file: None,
            tls: NatsTls::default(),
        }
    }
}
