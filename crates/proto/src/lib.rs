//! Generated types for Auditstream's gRPC contracts (`proto/auditstream/v1`).
//!
//! This crate owns code generation, the TLS settings of the gRPC transport ([`tls`])
//! that every server and client shares, and the one reading of a connection's endpoint
//! binding from the wire types ([`binding`]) that the config service and the sinks share;
//! other validation and behaviour live in `model` and the services.

pub mod binding;
pub mod tls;

/// `auditstream.v1`: the ingest API (and, in later versions, the config API).
pub mod v1 {
    tonic::include_proto!("auditstream.v1");
    include!(concat!(env!("OUT_DIR"), "/auditstream.v1.serde.rs"));
}

/// The encoded `FileDescriptorSet` of every Auditstream proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("auditstream_descriptor");

impl v1::Stream {
    /// The stream's identity on the bus and in the data plane: its immutable `uid`, or its
    /// id for a stream stored before uids existed (whose subjects already carry the id).
    /// Delivery, backlog and DLQ subjects, sink lanes and destination caches key on it.
    pub fn key(&self) -> &str {
        if self.uid.is_empty() {
            &self.id
        } else {
            &self.uid
        }
    }
}
