//! Config-service configuration (defaults < file < `AUDITSTREAM_*` environment).

use std::{net::SocketAddr, time::Duration};

use auditstream_bus::NatsConfig;
use auditstream_telemetry::{logging::LogConfig, service::ServiceConfig};
use serde::{Deserialize, Serialize};

use crate::{
    authz::TokenConfig,
    crypto::SecretsConfig,
    validate::{ConnectionsConfig, HttpPolicyConfig},
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigServiceConfig {
    /// gRPC `ConfigService`, health and reflection.
    pub grpc_addr: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub ops_addr: SocketAddr,
    /// TLS (and optionally client certificates) for the gRPC port.
    pub grpc_tls: auditstream_proto::tls::ServerTls,
    pub database: DatabaseConfig,
    pub nats: NatsConfig,
    pub auth: AuthConfig,
    pub secrets: SecretsConfig,
    pub http: HttpPolicyConfig,
    /// Where connections may use the platform's own cloud identity (H6).
    pub connections: ConnectionsConfig,
    /// E-mail to scope admins when a destination breaks and recovers.
    pub notifications: crate::notify::NotifyConfig,
    /// Longest wait for a sink to answer ListTargets or TestDestination (and for JetStream's
    /// backlog and DLQ depths in GetStatus).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// After SIGTERM: how long open connections (router and sink channels) may take before
    /// the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Largest message of `StreamRoutingSnapshot` (H5): the snapshot goes to the router and
    /// the sinks in pages of at most this many bytes, far below any gRPC decode limit.
    pub snapshot_page_bytes: usize,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db?mode=rwc` (embedded default) or `postgres://user@host/db`.
    pub url: String,
    /// Postgres pool size (SQLite always uses one connection: it has one writer).
    pub max_connections: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer tokens and the principal each one stands for.
    pub tokens: Vec<TokenConfig>,
}

impl Default for ConfigServiceConfig {
    fn default() -> Self {
        ConfigServiceConfig {
            grpc_addr: ([0, 0, 0, 0], 50052).into(),
            ops_addr: ([0, 0, 0, 0], 9091).into(),
            grpc_tls: Default::default(),
            database: DatabaseConfig::default(),
            nats: NatsConfig::default(),
            auth: AuthConfig::default(),
            secrets: SecretsConfig::default(),
            http: HttpPolicyConfig::default(),
            connections: ConnectionsConfig::default(),
            notifications: crate::notify::NotifyConfig::default(),
            request_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(10),
            snapshot_page_bytes: 1024 * 1024,
            log: LogConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://auditstream-config.db?mode=rwc".into(),
            max_connections: 8,
        }
    }
}

impl ServiceConfig for ConfigServiceConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_lists_every_setting() {
        auditstream_telemetry::config::assert_documented::<ConfigServiceConfig>(include_str!(
            "../../../README.md"
        ));
    }
}
