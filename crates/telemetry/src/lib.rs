//! The edge every Auditstream service shares: JSON logs, OpenTelemetry traces carried across
//! the NATS hops ([`traces`]), the ops HTTP server (`/healthz`, `/readyz`, Prometheus
//! `/metrics`) and layered configuration (defaults < file < `AUDITSTREAM_*` environment).
//!
//! Libraries never read the environment or bind sockets here: a service's `main` passes the
//! environment and listeners in, which keeps services testable in-process.

pub mod config;
pub mod logging;
pub mod ops;
pub mod service;
pub mod traces;

pub use config::{ConfigError, Loaded, Secret, load};
pub use ops::{OpsState, Readiness, serve_ops};
