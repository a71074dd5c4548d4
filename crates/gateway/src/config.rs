//! Gateway configuration. Every field has a safe default; see the README for the
//! `AUDITSTREAM_*` variable of each.

use std::{net::SocketAddr, time::Duration};

use auditstream_bus::NatsConfig;
use auditstream_model::Limits;
use auditstream_telemetry::{Secret, logging::LogConfig, service::ServiceConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// HTTP ingest (`POST /v1/events`).
    pub http_addr: SocketAddr,
    /// gRPC `IngestService` and gRPC health.
    pub grpc_addr: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`; kept off the public ingest port.
    pub ops_addr: SocketAddr,
    pub nats: NatsConfig,
    pub auth: AuthConfig,
    pub limits: Limits,
    /// Sent as `Retry-After` (whole seconds) with every 503 / UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// After SIGTERM: how long in-flight requests and open connections may take before the
    /// process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer tokens accepted from producers. Several may be valid at once, so a token can
    /// be rotated without downtime.
    pub tokens: Vec<Secret>,
    /// Accept requests without a token. Only for local experiments; the gateway refuses to
    /// start with no tokens unless this is set.
    pub allow_unauthenticated: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            http_addr: ([0, 0, 0, 0], 8080).into(),
            grpc_addr: ([0, 0, 0, 0], 50051).into(),
            ops_addr: ([0, 0, 0, 0], 9090).into(),
            nats: NatsConfig::default(),
            auth: AuthConfig::default(),
            limits: Limits::default(),
            retry_after: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            log: LogConfig::default(),
        }
    }
}

impl GatewayConfig {
    /// Checks what serde cannot: values that are individually valid but unusable.
    pub fn validate(&self) -> Result<(), String> {
        self.limits.validate()?;
        if self.auth.tokens.is_empty() && !self.auth.allow_unauthenticated {
            return Err("auth.tokens is empty: set AUDITSTREAM_AUTH__TOKENS (comma-separated), or auth.allow_unauthenticated = true for local use".into());
        }
        if self.auth.tokens.iter().any(|t| t.expose().len() < 16) {
            return Err("auth.tokens: every token must be at least 16 characters".into());
        }
        if self.nats.publish_timeout.is_zero() {
            return Err("nats.publish_timeout must be greater than zero".into());
        }
        Ok(())
    }
}

impl ServiceConfig for GatewayConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_lists_every_setting() {
        auditstream_telemetry::config::assert_documented::<GatewayConfig>(include_str!(
            "../../../README.md"
        ));
    }

    #[test]
    fn defaults_refuse_to_run_without_tokens() {
        let c = GatewayConfig::default();
        assert!(c.validate().unwrap_err().contains("auth.tokens is empty"));
        let mut c = GatewayConfig::default();
        c.auth.tokens = vec![Secret::new("short")];
        assert!(c.validate().unwrap_err().contains("at least 16"));
    }
}
