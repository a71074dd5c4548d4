//! Gateway configuration. Every field has a safe default; see the README for the
//! `AUDITSTREAM_*` variable of each.

use std::{net::SocketAddr, time::Duration};

use auditstream_bus::{NatsConfig, pack::PackConfig};
use auditstream_model::Limits;
use auditstream_proto::tls::ServerTls;
use auditstream_telemetry::{logging::LogConfig, service::ServiceConfig};
use serde::{Deserialize, Serialize};

use crate::{auth::ProducerToken, ratelimit::RateLimitConfig};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// HTTP ingest (`POST /v1/events`).
    pub http_addr: SocketAddr,
    /// gRPC `IngestService` and gRPC health.
    pub grpc_addr: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`; kept off the public ingest port.
    pub ops_addr: SocketAddr,
    /// TLS for the gRPC port (HTTP ingest is expected behind an ingress that terminates TLS).
    pub grpc_tls: ServerTls,
    pub nats: NatsConfig,
    pub auth: AuthConfig,
    pub limits: Limits,
    pub rate_limit: RateLimitConfig,
    pub server: ServerLimits,
    /// Packing: the events of one request and organization whose ids the gateway assigned
    /// go to JetStream as one message (`audit.ingest.<org>.pack`); events with the
    /// producer's id always go alone, so their de-duplication stays per event.
    pub pack: PackConfig,
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
    /// Bearer tokens accepted from producers, each for every organization or for a list of
    /// them. Several may be valid at once, so a token can be rotated without downtime.
    pub tokens: Vec<ProducerToken>,
    /// Accept requests without a token. Only for local experiments; the gateway refuses to
    /// start with no tokens unless this is set.
    pub allow_unauthenticated: bool,
}

/// Connection-level limits: what a slow or oversized client may hold of the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// HTTP: time a client has to send a request's line and headers, and the longest a
    /// keep-alive connection may sit idle (a slow-loris client is cut off here). gRPC: time
    /// a new connection has to send its first bytes.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time to receive a whole request body once its headers are in (HTTP 408 after it);
    /// for gRPC, the deadline of a unary call (stream calls have their own limits below).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Largest request line plus headers (HTTP 431 beyond it; gRPC: header list size).
    /// At least 8192.
    pub max_header_bytes: usize,
    /// Open connections, on the HTTP and on the gRPC port each; further clients wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
    /// HTTP request bodies held at once over all requests, raw and decompressed bytes
    /// counted; a request that would pass it is answered 503 `overloaded` with
    /// `Retry-After`. Bounds the memory of many concurrent large requests. At least twice
    /// `limits.max_request_bytes`, so one largest request always fits.
    pub max_inflight_body_bytes: usize,
    /// Events one gRPC `IngestStream` call may send; the call ends at the batch that would
    /// pass it (its response covers the events before). Bounds the results a call holds.
    pub max_stream_events: usize,
    /// Longest wait for the next message of an `IngestStream` call; the call then ends
    /// with the results so far.
    #[serde(with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    /// Longest an `IngestStream` call may last (instead of `request_timeout`, which bounds
    /// unary calls); it then ends with the results so far.
    #[serde(with = "humantime_serde")]
    pub max_stream_duration: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            max_inflight_body_bytes: 128 * 1024 * 1024,
            max_stream_events: 50_000,
            stream_idle_timeout: Duration::from_secs(60),
            max_stream_duration: Duration::from_secs(15 * 60),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            http_addr: ([0, 0, 0, 0], 8080).into(),
            grpc_addr: ([0, 0, 0, 0], 50051).into(),
            ops_addr: ([0, 0, 0, 0], 9090).into(),
            grpc_tls: ServerTls::default(),
            nats: NatsConfig::default(),
            auth: AuthConfig::default(),
            limits: Limits::default(),
            rate_limit: RateLimitConfig::default(),
            server: ServerLimits::default(),
            pack: PackConfig::default(),
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
        if self.auth.tokens.iter().any(|t| t.token.expose().len() < 16) {
            return Err("auth.tokens: every token must be at least 16 characters".into());
        }
        for org in self.auth.tokens.iter().flat_map(|t| &t.orgs) {
            auditstream_model::validate_id(org)
                .map_err(|e| format!("auth.tokens: organization {org:?}: {e}"))?;
        }
        self.rate_limit.validate()?;
        if self.server.max_header_bytes < 8192 {
            return Err("server.max_header_bytes must be at least 8192".into());
        }
        if self.server.header_read_timeout.is_zero()
            || self.server.request_timeout.is_zero()
            || self.server.max_connections == 0
        {
            return Err("server.header_read_timeout, server.request_timeout and server.max_connections must be greater than zero".into());
        }
        let s = &self.server;
        if s.max_inflight_body_bytes < 2 * self.limits.max_request_bytes {
            return Err(format!(
                "server.max_inflight_body_bytes ({}) must be at least twice limits.max_request_bytes ({}): one largest request holds its raw and its decompressed body",
                s.max_inflight_body_bytes, self.limits.max_request_bytes
            ));
        }
        if s.max_stream_events < self.limits.max_events_per_request {
            return Err(format!(
                "server.max_stream_events ({}) must be at least limits.max_events_per_request ({})",
                s.max_stream_events, self.limits.max_events_per_request
            ));
        }
        if s.stream_idle_timeout.is_zero() || s.max_stream_duration.is_zero() {
            return Err(
                "server.stream_idle_timeout and server.max_stream_duration must be greater than zero"
                    .into(),
            );
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
        c.auth.tokens = vec![ProducerToken::any_org("short")];
        assert!(c.validate().unwrap_err().contains("at least 16"));
    }
}
