//! The edge every Auditstream service shares: JSON logs, OpenTelemetry traces carried across
//! the NATS hops ([`traces`]), the ops HTTP server (`/healthz`, `/readyz`, Prometheus
//! `/metrics`) and layered configuration (defaults < file < `AUDITSTREAM_*` environment),
//! and the process-wide TLS crypto provider ([`install_crypto_provider`]).
//!
//! Libraries never read the environment or bind sockets here: a service's `main` passes the
//! environment and listeners in, which keeps services testable in-process.

pub mod config;
pub mod logging;
pub mod memory;
pub mod ops;
pub mod service;
pub mod traces;

pub use config::{ConfigError, Loaded, Secret, load};

/// Makes ring the process's default rustls crypto provider, once.
///
/// The workspace's dependency tree enables both of rustls' providers (ring for our own TLS,
/// aws-lc-rs through the AWS and Azure SDKs), and then rustls cannot pick a default by itself:
/// libraries that build their TLS configuration without naming a provider (tonic's TLS,
/// async-nats' TLS) would panic. Every place that builds such a configuration calls this
/// first; later calls do nothing.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is all this wants.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
pub use ops::{OpsState, Readiness, serve_ops};
