//! Generated types for Auditstream's gRPC contracts (`proto/auditstream/v1`).
//!
//! This crate owns code generation only; validation and behaviour live in `model` and the
//! services.

/// `auditstream.v1`: the ingest API (and, in later versions, the config API).
pub mod v1 {
    tonic::include_proto!("auditstream.v1");
}
