//! Generated types for Auditstream's gRPC contracts (`proto/auditstream/v1`).
//!
//! This crate owns code generation, and the TLS settings of the gRPC transport ([`tls`])
//! that every server and client shares; validation and behaviour live in `model` and the
//! services.

pub mod tls;

/// `auditstream.v1`: the ingest API (and, in later versions, the config API).
pub mod v1 {
    tonic::include_proto!("auditstream.v1");
    include!(concat!(env!("OUT_DIR"), "/auditstream.v1.serde.rs"));
}

/// The encoded `FileDescriptorSet` of every Auditstream proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("auditstream_descriptor");
